"""Who may call a server bound beyond loopback: an API key, and TLS.

`vidcap serve` binds to 127.0.0.1 by default and then needs neither. Bound elsewhere (`--host 0.0.0.0`, compose)
it refuses to start without an API key unless `--insecure` is said out loud. With a key every call carries it:
`authorization: Bearer KEY` as gRPC metadata or as the HTTP header (the web UI passes it on to the gRPC service
and asks browsers for it at its login page). Health checks stay open, so probes need no key.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from vidcap.errors import UnauthenticatedError, VidcapError, status_of

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

    @classmethod
    def load(cls, host: str, api_key_file: str | None = None, tls_cert: str | None = None,
             tls_key: str | None = None, insecure: bool = False) -> "Security":
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
        return cls(key, Path(tls_cert) if tls_cert else None, Path(tls_key) if tls_key else None, insecure)

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
