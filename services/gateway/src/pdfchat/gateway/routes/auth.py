"""POST /v1/auth/dev-token: a token for any tenant and user. Registered only in dev and test mode."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from pdfchat.gateway import auth
from pdfchat.gateway._context import gateway

router = APIRouter(prefix="/v1/auth", tags=["auth"])

_NAME = r"^[A-Za-z0-9._@-]{1,64}$"


class DevTokenRequest(BaseModel):
    tenant: str = Field(default="demo", pattern=_NAME)
    user: str = Field(default="demo", pattern=_NAME)
    roles: list[str] = Field(default_factory=list, max_length=16)


@router.post("/dev-token")
async def dev_token(request: Request, body: DevTokenRequest) -> dict[str, str]:
    settings = gateway(request).settings
    token = auth.issue(settings, body.tenant, body.user, tuple(body.roles))
    return {"token": token, "token_type": "Bearer"}
