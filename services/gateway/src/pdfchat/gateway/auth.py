"""Bearer tokens: HS256 JWTs with the claims tenant, sub (user), roles, exp and iss.

`issue()` exists for the development token route and for tests; production tokens may come from any
issuer that signs with the shared secret and names the configured `iss`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from pdfchat.common.errors import Unauthenticated
from pdfchat.common.settings import AuthSettings

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    tenant: str
    user: str
    roles: tuple[str, ...]
    expires_at: int


def issue(
    settings: AuthSettings,
    tenant: str,
    user: str,
    roles: tuple[str, ...] = (),
    ttl_seconds: int | None = None,
) -> str:
    """A signed token for `user` of `tenant`, valid for `ttl_seconds` (the configured TTL by default)."""
    now = int(time.time())
    ttl = settings.jwt_ttl_seconds if ttl_seconds is None else ttl_seconds
    payload = {
        "tenant": tenant,
        "sub": user,
        "roles": list(roles),
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM)


def verify(settings: AuthSettings, token: str) -> Claims:
    """The claims of a valid token; raises Unauthenticated for a bad, expired or foreign one."""
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iss", "sub", "tenant"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from exc
    tenant, user, roles = payload.get("tenant"), payload.get("sub"), payload.get("roles", [])
    if not isinstance(tenant, str) or not tenant or not isinstance(user, str) or not user:
        raise Unauthenticated("invalid token: tenant and sub must be non-empty strings")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise Unauthenticated("invalid token: roles must be a list of strings")
    return Claims(tenant=tenant, user=user, roles=tuple(roles), expires_at=int(payload["exp"]))


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; raises Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()
