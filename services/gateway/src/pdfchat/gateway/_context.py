"""Per-app resources and per-request context: settings, stubs, the authenticated caller, request ids."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from pdfchat.common import grpc_client
from pdfchat.common.errors import ResourceExhausted
from pdfchat.common.identity import Identity
from pdfchat.gateway import auth
from pdfchat.gateway.ratelimit import FixedWindowLimiter
from pdfchat.gateway.settings import GatewaySettings
from pdfchat.v1 import chat_pb2_grpc, ingestion_pb2_grpc, orchestrator_pb2_grpc

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Gateway:
    """What the routes share: settings, the rate limiter, and stubs on the shared channels."""

    settings: GatewaySettings
    limiter: FixedWindowLimiter | None

    def ingestion(self) -> ingestion_pb2_grpc.IngestionServiceAsyncStub:
        return ingestion_pb2_grpc.IngestionServiceStub(grpc_client.channel(self.settings.ingestion_addr))

    def chat(self) -> chat_pb2_grpc.ChatServiceAsyncStub:
        return chat_pb2_grpc.ChatServiceStub(grpc_client.channel(self.settings.chat_addr))

    def orchestrator(self) -> orchestrator_pb2_grpc.OrchestratorServiceAsyncStub:
        return orchestrator_pb2_grpc.OrchestratorServiceStub(grpc_client.channel(self.settings.orchestrator_addr))

    async def authenticate(self, token: str, request_id: str) -> Identity:
        """The identity in a bearer token, after the tenant's edge rate limit admits the request."""
        claims = auth.verify(self.settings, token)
        await self.admit(claims.tenant)
        return Identity(tenant_id=claims.tenant, user_id=claims.user, roles=claims.roles, request_id=request_id)

    async def admit(self, tenant: str) -> None:
        if self.limiter is None:
            return
        retry_after = await self.limiter.admit(tenant)
        if retry_after is not None:
            raise ResourceExhausted("rate limit exceeded for this tenant", retry_after_seconds=retry_after)


def gateway(connection: HTTPConnection) -> Gateway:
    found: Gateway = connection.app.state.gateway
    return found


def request_id(scope: dict[str, Any] | Any) -> str:
    """The request id of this HTTP request or WebSocket, set by the middleware."""
    state = scope.get("state") or {}
    found = state.get("request_id")
    return found if isinstance(found, str) else uuid.uuid4().hex


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is safe to log and forward, else a new one."""
    for key, value in headers:
        if key.lower() == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


async def caller(connection: HTTPConnection) -> Identity:
    """FastAPI dependency: the authenticated caller of a /v1 route (401 problem+json otherwise)."""
    token = auth.bearer_token(connection.headers.get("authorization"))
    return await gateway(connection).authenticate(token, request_id(connection.scope))
