"""A hard cap on a request's body, chunked bodies included, before anything parses it.

A declared ``Content-Length`` over the cap is answered 413 without reading the body. Otherwise every chunk
the server receives is counted on its way to the application, and the chunk that would cross the cap is
never handed over: the multipart parser (which spools uploads over 1 MB to a temporary file) sees at most
the cap, the application's answer to the cut body is dropped, and the client gets 413. So neither memory
nor disk ever holds more of a request than the cap, whatever the client declares or omits.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLarge(Exception):
    """Raised into the application's read of the body once it would cross the cap."""


class BodyLimit:
    """Pure ASGI middleware: 413 with ``{"detail": detail}`` for a body larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, detail: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)  # the body is never read
            return
        received = 0
        exceeded = started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:  # never read past the cap, even if the application asks again
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:  # the application's answer to a cut body (FastAPI: 400) becomes 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self.detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
