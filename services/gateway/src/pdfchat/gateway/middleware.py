"""ASGI middleware: request ids on every request and socket, and Prometheus HTTP metrics."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pdfchat.gateway._context import REQUEST_ID_HEADER, incoming_request_id

HTTP_REQUESTS = Counter("pdfchat_gateway_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "pdfchat_gateway_http_request_seconds", "Time to the response's first byte", ["method", "route"]
)
WS_OPEN = Counter("pdfchat_gateway_websockets_total", "WebSocket connections accepted")


class RequestContextMiddleware:
    """Gives each request a request id (the caller's X-Request-ID or a new one), echoes it, counts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = rid
        if scope["type"] == "websocket":
            WS_OPEN.inc()
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message["headers"] = headers
                route = _route_of(scope)
                HTTP_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            HTTP_REQUESTS.labels(scope["method"], _route_of(scope), str(status)).inc()


def _route_of(scope: Scope) -> str:
    # The route's template keeps the label set small; unmatched paths share one label.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
