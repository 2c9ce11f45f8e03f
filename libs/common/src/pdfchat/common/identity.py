"""Who is calling: tenant, user, roles and request id, carried as gRPC metadata between services.

The gateway authenticates the user and puts the identity on every call; each service's server
interceptor reads it into a context variable, so domain code and outgoing calls find it with
`current()` / `require()` without threading it through every signature. Every read and write is
scoped by `tenant_id`.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

TENANT_KEY = "x-pdfchat-tenant"
USER_KEY = "x-pdfchat-user"
ROLES_KEY = "x-pdfchat-roles"
REQUEST_ID_KEY = "x-request-id"


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    user_id: str = ""
    roles: tuple[str, ...] = ()
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            (TENANT_KEY, self.tenant_id),
            (USER_KEY, self.user_id),
            (ROLES_KEY, ",".join(self.roles)),
            (REQUEST_ID_KEY, self.request_id),
        )

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity | None:
        """The identity in call metadata, or None when no tenant is named."""
        values = {key: value.decode() if isinstance(value, bytes) else value for key, value in metadata or ()}
        tenant = values.get(TENANT_KEY, "")
        if not tenant:
            return None
        roles = tuple(role for role in values.get(ROLES_KEY, "").split(",") if role)
        return cls(
            tenant_id=tenant,
            user_id=values.get(USER_KEY, ""),
            roles=roles,
            request_id=values.get(REQUEST_ID_KEY) or uuid.uuid4().hex,
        )


_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("pdfchat_identity", default=None)


def current() -> Identity | None:
    return _current.get()


def require() -> Identity:
    """The caller's identity; raises Unauthenticated when the call carried none."""
    found = _current.get()
    if found is None:
        from pdfchat.common.errors import Unauthenticated

        raise Unauthenticated("no tenant identity on the call")
    return found


def bind(identity: Identity | None) -> contextvars.Token[Identity | None]:
    return _current.set(identity)


def reset(token: contextvars.Token[Identity | None]) -> None:
    _current.reset(token)
