"""Who may call a server bound beyond loopback: an API key, and TLS.

`vidcap serve` binds to 127.0.0.1 by default and then needs neither. Bound elsewhere (`--host 0.0.0.0`, compose)
it refuses to start without an API key unless `--insecure` is said out loud. With a key every call carries it:
`authorization: Bearer KEY` as gRPC metadata or as the HTTP header (the web UI passes it on to the gRPC service
and asks browsers for it at its login page). Health checks stay open, so probes need no key.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from vidcap.errors import UnauthenticatedError, VidcapError, status_of

log = logging.getLogger("vidcap.security")

API_KEY_ENV = "VIDCAP_API_KEY"
OPEN_METHODS = ("/grpc.health.v1.Health/",)
REFUSED = UnauthenticatedError("missing or wrong API key (authorization: Bearer KEY)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Security:
    api_key: str | None = None
    tls_cert: Path | None = None  # PEM certificate chain and private key: TLS for gRPC, HTTP and the web UI
    tls_key: Path | None = None
    insecure: bool = False  # beyond loopback without a key: only when asked for by name
    hosts: frozenset[str] | None = frozenset(("localhost", "127.0.0.1", "::1"))  # Host names answered (None: any):
    # allowed_hosts(), the same as LOOPBACK_HOSTS for the default host

    @classmethod
    def load(cls, host: str, api_key_file: str | None = None, tls_cert: str | None = None,
             tls_key: str | None = None, insecure: bool = False, allow_hosts: Sequence[str] = ()) -> "Security":
        """Read the key ($VIDCAP_API_KEY or a file) and check the combination before anything starts."""
        key = os.environ.get(API_KEY_ENV) or None
        if api_key_file:
            try:
                key = Path(api_key_file).read_text().strip()
            except OSError as exc:
                raise VidcapError(f"cannot read the API key file: {exc.strerror}") from None
        if key is not None and len(key) < 16:
            raise VidcapError("the API key must be at least 16 characters")
        if bool(tls_cert) != bool(tls_key):
            raise VidcapError("TLS needs both --tls-cert and --tls-key")
        for path in (tls_cert, tls_key):
            if path and not Path(path).is_file():
                raise VidcapError(f"TLS file not found: {path}")
        if not is_loopback(host) and key is None and not insecure:
            raise VidcapError(f"binding to {host} exposes the service beyond this machine: give an API key "
                              f"(--api-key-file FILE or ${API_KEY_ENV}), or say --insecure")
        return cls(key, Path(tls_cert) if tls_cert else None, Path(tls_key) if tls_key else None, insecure,
                   allowed_hosts(host, allow_hosts))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def allows_media_paths(self, host: str) -> bool:
        """Analysing files by path in the media folder: on loopback, or beyond it with a key only."""
        return is_loopback(host) or self.api_key is not None

    def grpc_credentials(self) -> grpc.ServerCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_server_credentials([(self.tls_key.read_bytes(), self.tls_cert.read_bytes())])

    def grpc_interceptors(self) -> list[grpc.ServerInterceptor]:
        return [ApiKeyInterceptor(self.api_key)] if self.api_key else []


class ApiKeyInterceptor(grpc.ServerInterceptor):
    """UNAUTHENTICATED for a call without `authorization: Bearer KEY` (health checks excepted)."""

    def __init__(self, key: str):
        self._expected = f"Bearer {key}".encode()

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_METHODS):
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def refuse(_request, context: grpc.ServicerContext):
        context.abort(grpc.StatusCode[status_of(REFUSED)[0]], str(REFUSED))

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(refuse, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


# ---- what a web page may do ------------------------------------------------------------------------------------

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
LOOPBACK_HOSTS = frozenset(LOOPBACK_NAMES)
UNSAFE_METHODS = (b"POST", b"PUT", b"PATCH", b"DELETE")
ALL_INTERFACES = ("0.0.0.0", "::", "")


def allowed_hosts(bound_host: str, extra: Sequence[str] = ()) -> frozenset[str] | None:
    """The names a request's Host header may carry: the address the server is bound to, the loopback names when
    that is loopback, and those configured (--allow-host). None (any name) for a server bound to every interface
    without --allow-host: it is reached by names it cannot know, and needs an API key (or --insecure) there."""
    if bound_host in ALL_INTERFACES and not extra:
        return None
    names = {_host_name(bound_host)} | {_host_name(name) for name in extra}
    if is_loopback(bound_host) or bound_host in ALL_INTERFACES:
        names |= set(LOOPBACK_NAMES)
    return frozenset(names)


def _host_name(host: str) -> str:
    """`Host: name:port` / `[::1]:port` / an origin's netloc -> the name, lower case, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class RequestGuard:
    """ASGI middleware against web pages (the HTTP API and the web UI alike).

    - DNS rebinding: a page on evil.test whose name is made to point at 127.0.0.1 sends `Host: evil.test`; only
      the server's own names are answered (403 otherwise).
    - Cross-site requests: a state-changing request (POST, PUT, PATCH, DELETE, a websocket) whose Origin is not
      this server's own, or that the browser marks `Sec-Fetch-Site: cross-site`, is refused (403). Clients that
      are not browsers send neither header and are not affected.
    """

    def __init__(self, app, hosts: frozenset[str] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        refusal = self._refusal(scope, headers, host)
        if refusal is None:
            return await self.app(scope, receive, send)
        log.info("refused %s %s (Host %r, Origin %r): %s", scope.get("method", "websocket"), scope.get("path"),
                 host, headers.get(b"origin", b"").decode("latin-1"), refusal)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps({"error": refusal}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope, headers: dict, host: str) -> str | None:
        if self.hosts is not None and _host_name(host) not in self.hosts:
            return (f"Host {host!r} is not a name of this server (a page may be using DNS rebinding); to serve "
                    f"under that name start it with --allow-host")
        unsafe = scope["type"] == "websocket" or scope.get("method", "").encode() in UNSAFE_METHODS
        if not unsafe:
            return None
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and origin != "null":
            netloc = urlsplit(origin).netloc
            if netloc.lower() != host.lower():
                return f"cross-origin request from {origin} refused"
        elif origin == "null" or headers.get(b"sec-fetch-site", b"") in (b"cross-site", b"same-site"):
            return "cross-site request refused"
        return None
