"""The HTTP API's guards, outside its routes: each route's own body limit and a minimum upload rate while the
body streams in (BodyGuard), and the API key (BearerKey). Both answer in the API's JSON error shape."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable

from vidcap.errors import status_of
from vidcap.serving import metrics
from vidcap.serving.auth import REFUSED

log = logging.getLogger("vidcap.http")


class Refused(Exception):
    """A request refused by a guard while its body streams in: status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyGuard:
    """Each route's own body limit, enforced while the body streams in (Content-Length first, then the bytes counted),
    and a minimum upload rate: a client that has sent less than `min_rate` bytes a second on average, once `grace`
    seconds have passed, is cut off (408). A body over its limit is answered 413 without being read to the end."""

    def __init__(self, app, limit_of: Callable[[dict], int], min_rate: float, grace: float):
        self.app, self.limit_of, self.min_rate, self.grace = app, limit_of, min_rate, grace

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_of(scope)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await send_json(send, 413, {"error": _too_large(scope, limit)}, _CLOSE)
        received, began, complete = 0, asyncio.get_running_loop().time(), False
        started = False

        async def guarded_receive():
            nonlocal received, complete
            if complete:  # the body is in: what follows is the wait for a disconnect, however long the work takes
                return await receive()
            # The deadline for the next bytes: by then the average since the start must not be below min_rate.
            wait = began + self.grace + received / self.min_rate - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.001))
            except asyncio.TimeoutError:
                raise Refused(408, f"upload slower than {self.min_rate / 1024:g} KiB/s on average: cut off") \
                    from None
            received += len(message.get("body", b""))
            complete = message.get("type") != "http.request" or not message.get("more_body", False)
            if received > limit:
                raise Refused(413, _too_large(scope, limit))
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except Refused as refused:
            log.info("refused %s %s from %s: %s", scope.get("method"), scope.get("path"), client_of(scope), refused)
            metrics.ERRORS.labels("http", str(refused.status)).inc()
            if not started:
                await send_json(send, refused.status, {"error": str(refused)}, _CLOSE)


_CLOSE = [(b"connection", b"close")]  # the rest of a refused body is not read: this connection is done


def _too_large(scope: dict, limit: int) -> str:
    return f"request body above the limit of {limit} bytes for {scope.get('method')} {scope.get('path')}"


def client_of(scope: dict) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


class BearerKey:
    """Every request but the health check needs `Authorization: Bearer KEY` (when the server has a key)."""

    OPEN_PATHS = ("/healthz",)

    def __init__(self, app, key: str):
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") not in self.OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.key}".encode()):
                return await send_json(send, status_of(REFUSED)[1], {"error": str(REFUSED)},
                                        [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
