"""The gateway in front of the real services (started as processes by `stack_factory`).

Ingestion alone covers the document routes; the full suite covers watching a document to READY and
asking over REST, SSE and the WebSocket with citations that point at a page of the document.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pdfchat.gateway import auth
from pdfchat.gateway.app import create_app
from pdfchat.gateway.settings import GatewaySettings
from pdfchat_tools import devstack

pytestmark = pytest.mark.integration

GRPC_NAMES = ("ingestion", "worker_pdf", "embedding", "vector_index", "orchestrator", "chat")


def gateway_settings(stack: devstack.Stack, **overrides: Any) -> GatewaySettings:
    env = stack.config.env
    addresses = {f"{name}_addr": env[f"PDFCHAT_{name.upper()}_ADDR"] for name in GRPC_NAMES}
    return GatewaySettings(
        env="test",
        redis_url=env["PDFCHAT_REDIS_URL"],
        **addresses,  # type: ignore[arg-type]
        **overrides,
    )


def bearer(settings: GatewaySettings, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.issue(settings, tenant, 'tester')}"}


def upload_pdf(client: TestClient, headers: dict[str, str], path: Path) -> Any:
    with path.open("rb") as pdf:
        return client.post("/v1/documents", headers=headers, files={"file": (path.name, pdf, "application/pdf")})


@pytest.fixture(scope="module")
def ingestion_stack(stack_factory: Callable[..., devstack.Stack]) -> devstack.Stack:
    return stack_factory(("ingestion",))


@pytest.fixture
def ingestion_client(ingestion_stack: devstack.Stack) -> Iterator[tuple[TestClient, GatewaySettings]]:
    settings = gateway_settings(ingestion_stack)
    with TestClient(create_app(settings)) as client:
        yield client, settings


@pytest.fixture(scope="module")
def sample_pdf(shared_data: Path) -> Path:
    return shared_data / "qa" / "xquad" / "en" / "docs" / "xquad_00_Super_Bowl_50.pdf"


def test_upload_get_list_and_delete_through_real_ingestion(
    ingestion_client: tuple[TestClient, GatewaySettings], sample_pdf: Path, run_id: str
) -> None:
    client, settings = ingestion_client
    headers = bearer(settings, f"gw-a-{run_id}")
    created = upload_pdf(client, headers, sample_pdf)
    assert created.status_code == 202, created.text
    doc = created.json()
    assert doc["filename"] == sample_pdf.name
    assert doc["status"] in {"QUEUED", "PARSING", "EMBEDDING", "READY", "FAILED"}
    assert doc["size_bytes"] == sample_pdf.stat().st_size

    fetched = client.get(f"/v1/documents/{doc['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == doc["id"]
    listed = client.get("/v1/documents", headers=headers).json()["documents"]
    assert doc["id"] in [item["id"] for item in listed]

    assert client.delete(f"/v1/documents/{doc['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/documents/{doc['id']}", headers=headers).status_code == 404


def test_another_tenants_document_is_404_through_real_ingestion(
    ingestion_client: tuple[TestClient, GatewaySettings], sample_pdf: Path, run_id: str
) -> None:
    client, settings = ingestion_client
    doc = upload_pdf(client, bearer(settings, f"gw-b-{run_id}"), sample_pdf).json()
    stranger = bearer(settings, f"gw-c-{run_id}")
    assert client.get(f"/v1/documents/{doc['id']}", headers=stranger).status_code == 404
    assert client.delete(f"/v1/documents/{doc['id']}", headers=stranger).status_code == 404
    assert doc["id"] not in [d["id"] for d in client.get("/v1/documents", headers=stranger).json()["documents"]]


def test_repeated_upload_with_idempotency_key_returns_the_same_document(
    ingestion_client: tuple[TestClient, GatewaySettings], sample_pdf: Path, run_id: str
) -> None:
    client, settings = ingestion_client
    headers = {**bearer(settings, f"gw-d-{run_id}"), "Idempotency-Key": f"key-{run_id}"}
    first = upload_pdf(client, headers, sample_pdf)
    again = upload_pdf(client, headers, sample_pdf)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]


def test_ingestion_limit_is_413_through_real_ingestion(
    stack_factory: Callable[..., devstack.Stack], tmp_path: Path, run_id: str
) -> None:
    # The gateway's own limit is high here, so the 413 must come from ingestion's PayloadTooLarge.
    stack = stack_factory(("ingestion",), extra_env={"PDFCHAT_MAX_UPLOAD_BYTES": "1000"})
    settings = gateway_settings(stack, max_upload_bytes=10_000_000)
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * 5000)
    with TestClient(create_app(settings)) as client:
        response = upload_pdf(client, bearer(settings, f"gw-e-{run_id}"), big)
    assert response.status_code == 413, response.text


@pytest.fixture(scope="module")
def full_stack(stack_factory: Callable[..., devstack.Stack]) -> devstack.Stack:
    return stack_factory(devstack.GRPC_SERVICES)


@pytest.fixture(scope="module")
def ready_document(full_stack: devstack.Stack, sample_pdf: Path, run_id: str) -> tuple[str, str]:
    """A document of tenant `gw-full-<run>` watched over the WebSocket until READY."""
    settings = gateway_settings(full_stack)
    tenant = f"gw-full-{run_id}"
    with TestClient(create_app(settings)) as client:
        doc = upload_pdf(client, bearer(settings, tenant), sample_pdf).json()
        token = auth.issue(settings, tenant, "tester")
        with client.websocket_connect(f"/v1/ws?token={token}") as ws:
            assert ws.receive_json()["type"] == "authenticated"
            ws.send_json({"type": "watch", "document_id": doc["id"]})
            deadline = time.monotonic() + 300
            status = doc["status"]
            while status not in {"READY", "FAILED"} and time.monotonic() < deadline:
                event = ws.receive_json()
                assert event["type"] == "document", event
                status = event["document"]["status"]
    assert status == "READY", f"document ended {status}"
    return tenant, doc["id"]


def test_readyz_is_200_when_the_whole_suite_serves(full_stack: devstack.Stack) -> None:
    with TestClient(create_app(gateway_settings(full_stack))) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text


def test_answer_cites_a_page_of_the_document_over_rest_sse_and_websocket(
    full_stack: devstack.Stack, ready_document: tuple[str, str]
) -> None:
    tenant, doc_id = ready_document
    settings = gateway_settings(full_stack)
    headers = bearer(settings, tenant)
    question = "How many points did the Panthers defense surrender?"
    with TestClient(create_app(settings)) as client:
        session = client.post("/v1/chat/sessions", headers=headers, json={"document_ids": [doc_id]})
        assert session.status_code == 201, session.text
        session_id = session.json()["id"]

        answer = client.post(f"/v1/chat/sessions/{session_id}/messages", headers=headers, json={"content": question})
        assert answer.status_code == 200, answer.text
        assert answer.json()["answer"]
        assert {(c["document_id"], c["page"]) for c in answer.json()["citations"]} == {(doc_id, 1)}

        streamed = client.post(
            f"/v1/chat/sessions/{session_id}/messages",
            headers={**headers, "Accept": "text/event-stream"},
            json={"content": question},
        )
        names = [line.removeprefix("event: ") for line in streamed.text.splitlines() if line.startswith("event: ")]
        assert names[-1] == "end", streamed.text[-500:]
        assert "token" in names

        with client.websocket_connect(f"/v1/ws?token={auth.issue(settings, tenant, 'tester')}") as ws:
            ws.receive_json()
            ws.send_json({"type": "ask", "session_id": session_id, "content": question})
            events = []
            while not events or events[-1]["type"] not in {"end", "error"}:
                events.append(ws.receive_json())
        assert events[-1]["type"] == "end", json.dumps(events[-1])
        seqs = [event["seq"] for event in events]
        assert seqs == sorted(seqs)
        assert any(c["page"] == 1 for c in events[-1]["citations"])


def test_session_over_another_tenants_document_is_404(
    full_stack: devstack.Stack, ready_document: tuple[str, str], run_id: str
) -> None:
    _, doc_id = ready_document
    settings = gateway_settings(full_stack)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/chat/sessions", headers=bearer(settings, f"gw-other-{run_id}"), json={"document_ids": [doc_id]}
        )
    assert response.status_code == 404
