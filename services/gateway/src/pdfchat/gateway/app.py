"""The FastAPI application: routes, error translation, middleware and the web page."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from pdfchat.common import grpc_client
from pdfchat.common.errors import PdfchatError
from pdfchat.common.redis_client import create_redis
from pdfchat.gateway import problems
from pdfchat.gateway._context import Gateway, request_id
from pdfchat.gateway.middleware import RequestContextMiddleware
from pdfchat.gateway.ratelimit import FixedWindowLimiter
from pdfchat.gateway.routes import auth, chat, documents, health, usage, ws
from pdfchat.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app for `settings` (read from the environment when omitted)."""
    settings = settings or GatewaySettings()
    redis = create_redis(settings.redis_url) if settings.rate_limit_per_minute > 0 else None
    limiter = FixedWindowLimiter(redis, settings.rate_limit_per_minute) if redis is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # Channels and Redis connections belong to this event loop; a new loop opens new ones.
        await grpc_client.close_all()
        if redis is not None:
            await redis.aclose()

    app = FastAPI(
        title="pdfchat gateway",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if settings.is_dev else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.is_dev else None,
    )
    app.state.gateway = Gateway(settings, limiter)

    _register_error_handlers(app)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health.router)
    if settings.is_dev:
        app.include_router(auth.router)
    app.include_router(documents.router)
    app.include_router(chat.router)
    app.include_router(usage.router)
    app.include_router(ws.router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _register_error_handlers(app: FastAPI) -> None:
    def respond(request: Request, problem: problems.Problem) -> JSONResponse:
        response = problem.response(request.url.path, request_id(request.scope))
        if problem.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        problem = problems.from_exception(exc)
        if problem.status >= 500:
            if isinstance(exc, grpc.aio.AioRpcError):
                cause = f"{exc.code().name}: {exc.details()}"
            else:
                cause = f"{type(exc).__name__}: {exc}"
            log.warning("request failed: %s %s -> %d (%s)", request.method, request.url.path, problem.status, cause)
        return respond(request, problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        response = respond(request, problems.Problem(exc.status_code, str(exc.detail)))
        for key, value in (exc.headers or {}).items():
            response.headers.setdefault(key, value)
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": ".".join(str(part) for part in error.get("loc", ())), "message": error.get("msg", "")}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{error['location']}: {error['message']}" for error in errors) or "invalid request"
        return respond(request, problems.Problem(400, detail, extra={"errors": errors}))

    app.add_exception_handler(grpc.aio.AioRpcError, on_error)
    app.add_exception_handler(PdfchatError, on_error)
    app.add_exception_handler(problems.ProblemError, on_error)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_error)
