"""The usage route against the in-process fake orchestrator (see conftest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


def test_usage_comes_from_the_orchestrator(client: TestClient, token_for: Headers, fakes: Any) -> None:
    response = client.get("/v1/usage?start=2024-01-01T00:00:00Z", headers=token_for("acme"))
    assert response.status_code == 200
    assert response.json()["requests"] == 3
    assert response.json()["usage"]["input_tokens"] == 100
    assert fakes.recorder.calls[-1][1]["x-pdfchat-tenant"] == "acme"
