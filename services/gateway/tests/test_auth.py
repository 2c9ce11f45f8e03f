from __future__ import annotations

import time

import jwt
import pytest

from pdfchat.common.errors import Unauthenticated
from pdfchat.common.settings import AuthSettings
from pdfchat.gateway import auth

SETTINGS = AuthSettings(env="test", jwt_secret="unit-test-secret-0123456789abcdef")


def test_issued_token_verifies_with_its_claims() -> None:
    token = auth.issue(SETTINGS, "acme", "alice", ("admin",))
    claims = auth.verify(SETTINGS, token)
    assert (claims.tenant, claims.user, claims.roles) == ("acme", "alice", ("admin",))
    assert claims.expires_at > time.time()


def test_expired_token_is_refused() -> None:
    token = auth.issue(SETTINGS, "acme", "alice", ttl_seconds=-10)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.verify(SETTINGS, token)


def test_token_signed_with_another_secret_is_refused() -> None:
    other = AuthSettings(env="test", jwt_secret="some-other-secret-0123456789abcdef")
    with pytest.raises(Unauthenticated, match="invalid token"):
        auth.verify(SETTINGS, auth.issue(other, "acme", "alice"))


def test_token_from_another_issuer_is_refused() -> None:
    other = AuthSettings(env="test", jwt_secret=SETTINGS.jwt_secret, jwt_issuer="someone-else")
    with pytest.raises(Unauthenticated):
        auth.verify(SETTINGS, auth.issue(other, "acme", "alice"))


def test_token_without_tenant_is_refused() -> None:
    token = jwt.encode(
        {"sub": "alice", "iss": SETTINGS.jwt_issuer, "exp": int(time.time()) + 60}, SETTINGS.jwt_secret, "HS256"
    )
    with pytest.raises(Unauthenticated):
        auth.verify(SETTINGS, token)


def test_unsigned_token_is_refused() -> None:
    token = jwt.encode(
        {"tenant": "acme", "sub": "alice", "iss": SETTINGS.jwt_issuer, "exp": int(time.time()) + 60},
        key=None,
        algorithm="none",
    )
    with pytest.raises(Unauthenticated):
        auth.verify(SETTINGS, token)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Token abc"])
def test_malformed_authorization_header_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        auth.bearer_token(header)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert auth.bearer_token("bearer abc.def") == "abc.def"


def test_dev_secret_is_refused_outside_dev() -> None:
    with pytest.raises(ValueError, match="PDFCHAT_JWT_SECRET"):
        AuthSettings(env="prod")
