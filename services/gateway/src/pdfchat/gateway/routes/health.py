"""/healthz (the process is up), /readyz (every gRPC service reports SERVING) and /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pdfchat.common import grpc_client
from pdfchat.gateway import problems
from pdfchat.gateway._context import gateway, request_id

router = APIRouter(tags=["health"])

SERVICES = ("ingestion", "worker_pdf", "embedding", "vector_index", "orchestrator", "chat")
_CHECK_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> dict[str, Any] | JSONResponse:
    settings = gateway(request).settings
    addresses = {name: getattr(settings, f"{name}_addr") for name in SERVICES}
    results = await asyncio.gather(*(_not_ready_reason(address) for address in addresses.values()))
    not_ready = {name: reason for name, reason in zip(addresses, results, strict=True) if reason is not None}
    if not not_ready:
        return {"status": "ready", "services": dict.fromkeys(addresses, "SERVING")}
    problem = problems.Problem(
        503,
        f"not ready: {', '.join(sorted(not_ready))}",
        extra={"not_ready": not_ready},
    )
    return problem.response(request.url.path, request_id(request.scope))


async def _not_ready_reason(address: str) -> str | None:
    try:
        await asyncio.wait_for(grpc_client.check_serving(address), timeout=_CHECK_SECONDS)
    except Exception as exc:
        return _describe(exc)
    return None


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        return str(code().name)
    if isinstance(exc, TimeoutError):
        return "timeout"
    return str(exc) or type(exc).__name__


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
