"""A request-body size limit as a plain ASGI middleware (Starlette has none built in).

``Content-Length`` over the limit is refused before reading; a chunked body is counted as it arrives
and refused as soon as it passes the limit. Either way the answer is 413 with one line.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` (or the limit of the longest matching path prefix) with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int, prefixes: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = sorted((prefixes or {}).items(), key=lambda item: -len(item[0]))

    def limit(self, path: str) -> int:
        """The body limit of a request path."""
        return next((limit for prefix, limit in self.prefixes if path.startswith(prefix)), self.max_bytes)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": f"request body over the server's limit of {limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(str(scope.get("path", "")))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._refuse(send, limit)
                    return
        # Read the whole body first (FastAPI reads it whole anyway) so that an oversized chunked body is
        # refused with 413 here instead of surfacing as a body-parsing error inside the app.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await self._refuse(send, limit)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)
