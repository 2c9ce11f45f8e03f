"""/v1/usage: the tenant's LLM usage from the orchestrator's ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from google.protobuf.timestamp_pb2 import Timestamp

from pdfchat.common.identity import Identity
from pdfchat.gateway import views
from pdfchat.gateway._context import caller, gateway
from pdfchat.v1 import orchestrator_pb2

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage")
async def get_usage(
    request: Request,
    ident: Annotated[Identity, Depends(caller)],
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Requests, tokens and cost for the caller's tenant, optionally between `start` and `end` (ISO 8601)."""
    gw = gateway(request)
    query = orchestrator_pb2.GetUsageRequest()
    if start is not None:
        query.start_time.CopyFrom(_timestamp(start))
    if end is not None:
        query.end_time.CopyFrom(_timestamp(end))
    reply = await gw.orchestrator().GetUsage(
        query, metadata=ident.to_metadata(), timeout=gw.settings.rpc_timeout_seconds
    )
    return views.usage_report(reply)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
