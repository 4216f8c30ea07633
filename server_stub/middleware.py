"""ASGI middleware at the edge: security headers, metrics and access logs; body size cap."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.protocol import ErrorCode

from .metrics import Metrics
from .problems import problem_response

log = logging.getLogger("tgflow.server.access")

_NO_CSP_PATHS = ("/docs", "/redoc")
#: Paths ending so take a file upload (``POST /staff/payments/import`` and the like) ...
UPLOAD_SUFFIX = "/import"
#: ... and so do the paths under this prefix (``POST /staff/imports/clients``).
UPLOAD_PREFIX = "/staff/imports/"


_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
_FRAME_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
_HSTS_HEADER = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class EdgeMiddleware:
    """The outermost layer: security headers on every answer, metrics and the access log.

    One layer, not two: each ASGI middleware wraps ``send`` once more per request. Security
    headers are added unless the response already set them. Only the method, route template,
    status and duration are recorded: never headers, query strings or bodies, which may carry
    credentials.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, hsts: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.hsts = hsts
        # The labelled children, looked up once per (method, route, status): a ``labels`` call
        # costs as much as the rest of the bookkeeping.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        hsts_header = (_HSTS_HEADER,) if hsts else ()
        self._docs_headers: tuple[tuple[bytes, bytes], ...] = (*_SECURITY_HEADERS, *hsts_header)
        self._headers = (*_SECURITY_HEADERS, *_FRAME_HEADERS, *hsts_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        path: str = scope.get("path", "")
        security = self._docs_headers if path.startswith(_NO_CSP_PATHS) else self._headers

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", ()))
                present = {name.lower() for name, _ in raw}
                raw += [h for h in security if h[0] not in present]
                message["headers"] = raw
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            key = (method, template, status)
            children = self._children.get(key)
            if children is None:
                children = (
                    self.metrics.requests.labels(method, template, str(status)),
                    self.metrics.latency.labels(method, template),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, whether announced or streamed.

    A file import (a path ending in :data:`UPLOAD_SUFFIX` or under :data:`UPLOAD_PREFIX`) may be
    up to ``upload_bytes``: a spreadsheet is larger than any JSON request, and the import refuses
    its content row by row.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
        # Built once: a response is stateless and may be sent any number of times.
        self.refuse = problem_response(
            ErrorCode.PAYLOAD_TOO_LARGE, f"request bodies are limited to {max_bytes} bytes"
        )
        self.refuse_upload = problem_response(
            ErrorCode.PAYLOAD_TOO_LARGE, f"imported files are limited to {self.upload_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refuse, limit = self.refuse, self.max_bytes
        path = scope.get("path", "")
        if path.endswith(UPLOAD_SUFFIX) or path.startswith(UPLOAD_PREFIX):
            refuse, limit = self.refuse_upload, self.upload_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await refuse(scope, receive, send)
                return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:
                    # Answer now; the app sees a disconnect and whatever it answers is dropped.
                    refused = True
                    await refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def client_address(scope: Scope, *, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                first: str = value.decode("latin-1").split(",")[0].strip()
                if first:
                    return first
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"
