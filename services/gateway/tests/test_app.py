"""The app without any downstream service: auth, dev-token, problem shape, limits, the page."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from pdfchat.gateway import auth
from pdfchat.gateway.app import create_app
from pdfchat.gateway.settings import GatewaySettings

PROD_SECRET = "prod-secret-for-tests-0123456789abcdef"


def test_v1_route_without_token_is_401_problem_json(settings_factory: Callable[..., GatewaySettings]) -> None:
    with TestClient(create_app(settings_factory())) as client:
        response = client.get("/v1/documents", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"] == "req-123"
    body = response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["type"].startswith("urn:pdfchat:problem:")
    assert body["instance"] == "/v1/documents"
    assert body["request_id"] == "req-123"
    assert body["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/documents/d1"),
        ("DELETE", "/v1/documents/d1"),
        ("POST", "/v1/documents/d1:reprocess"),
        ("POST", "/v1/chat/sessions"),
        ("GET", "/v1/chat/sessions/s1/messages"),
        ("GET", "/v1/usage"),
    ],
)
def test_every_v1_route_needs_a_token(settings_factory: Callable[..., GatewaySettings], method: str, path: str) -> None:
    with TestClient(create_app(settings_factory())) as client:
        assert client.request(method, path).status_code == 401


def test_expired_token_is_401(settings_factory: Callable[..., GatewaySettings]) -> None:
    settings = settings_factory()
    token = auth.issue(settings, "acme", "alice", ttl_seconds=-5)
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/documents", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_dev_token_route_issues_a_working_token_in_dev(settings_factory: Callable[..., GatewaySettings]) -> None:
    settings = settings_factory(env="dev")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/auth/dev-token", json={"tenant": "demo", "user": "demo"})
    assert response.status_code == 200
    claims = auth.verify(settings, response.json()["token"])
    assert (claims.tenant, claims.user) == ("demo", "demo")


def test_dev_token_route_does_not_exist_in_prod(settings_factory: Callable[..., GatewaySettings]) -> None:
    settings = settings_factory(env="prod", jwt_secret=PROD_SECRET)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/auth/dev-token", json={"tenant": "demo", "user": "demo"})
        docs = client.get("/docs")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert docs.status_code == 404


def test_prod_refuses_the_development_jwt_secret(settings_factory: Callable[..., GatewaySettings]) -> None:
    with pytest.raises(ValueError, match="PDFCHAT_JWT_SECRET"):
        settings_factory(env="prod")


def test_healthz_answers_while_services_are_down(settings_factory: Callable[..., GatewaySettings]) -> None:
    with TestClient(create_app(settings_factory())) as client:
        response = client.get("/healthz")
    assert response.status_code == 200


def test_readyz_is_503_naming_the_services_that_are_down(settings_factory: Callable[..., GatewaySettings]) -> None:
    with TestClient(create_app(settings_factory())) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.json()["not_ready"]) == {
        "ingestion",
        "worker_pdf",
        "embedding",
        "vector_index",
        "orchestrator",
        "chat",
    }


def test_declared_oversized_upload_is_413_without_calling_ingestion(
    settings_factory: Callable[..., GatewaySettings],
) -> None:
    # Ingestion's address is a closed port: had the gateway called it, the answer would be 503.
    settings = settings_factory(max_upload_bytes=1024)
    token = auth.issue(settings, "acme", "alice")
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/documents",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": ("big.pdf", b"%PDF" + b"x" * 200_000, "application/pdf")},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_streamed_oversized_upload_is_413_without_calling_ingestion(
    settings_factory: Callable[..., GatewaySettings],
) -> None:
    # No Content-Length (chunked body): the limit is enforced while reading the stream.
    settings = settings_factory(max_upload_bytes=1024)
    token = auth.issue(settings, "acme", "alice")
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n\r\n'.encode()
        + b"x" * 5000
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunked() -> object:
        for start in range(0, len(body), 700):
            yield body[start : start + 700]

    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/documents",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
            content=chunked(),  # type: ignore[arg-type]
        )
    assert response.status_code == 413


def test_malformed_json_body_is_400_problem(settings_factory: Callable[..., GatewaySettings]) -> None:
    settings = settings_factory()
    token = auth.issue(settings, "acme", "alice")
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/chat/sessions", headers={"Authorization": f"Bearer {token}"}, json={"document_ids": []}
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "document_ids" in response.json()["detail"]


def test_service_down_is_503_without_internal_addresses(settings_factory: Callable[..., GatewaySettings]) -> None:
    settings = settings_factory()
    token = auth.issue(settings, "acme", "alice")
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/documents", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert "127.0.0.1" not in response.text


def test_metrics_are_exposed(settings_factory: Callable[..., GatewaySettings]) -> None:
    with TestClient(create_app(settings_factory())) as client:
        client.get("/healthz")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert 'pdfchat_gateway_http_requests_total{method="GET",route="/healthz",status="200"}' in response.text


def test_web_page_is_served(settings_factory: Callable[..., GatewaySettings]) -> None:
    with TestClient(create_app(settings_factory())) as client:
        page = client.get("/")
        script = client.get("/static/app.js")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text
    assert script.status_code == 200
