"""The whole suite through the gateway, as a user: upload a PDF, watch it become READY, ask, get cited pages.

Starts the seven services as real processes on free ports (real Postgres+pgvector, NATS JetStream, Redis),
with no LLM configured, so the orchestrator's extractive provider answers from the retrieved passages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from pdfchat_tools.devstack import Stack

pytestmark = pytest.mark.e2e

READY_TIMEOUT_SECONDS = 180


def _question(shared_data: Path, lang: str) -> dict[str, Any]:
    """A core question whose answer is on page 2 of a multi-page document, so the page really matters."""
    with (shared_data / "qa" / "xquad" / f"qa_{lang}.jsonl").open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    multi_page = [r for r in records if r["core"] and r["pdf_pages"] > 1 and r["gold_answer_pdf_page"] == 2]
    return multi_page[0] if multi_page else next(r for r in records if r["core"])


@pytest.fixture
async def client(suite: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=suite.config.gateway_url, timeout=120) as http:
        yield http


async def _token(client: httpx.AsyncClient, tenant: str, user: str = "tester") -> dict[str, str]:
    reply = await client.post("/v1/auth/dev-token", json={"tenant": tenant, "user": user})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


async def _upload(client: httpx.AsyncClient, headers: dict[str, str], pdf: Path) -> dict[str, Any]:
    with pdf.open("rb") as handle:
        reply = await client.post(
            "/v1/documents", headers=headers, files={"file": (pdf.name, handle, "application/pdf")}
        )
    assert reply.status_code in (200, 202), reply.text
    return dict(reply.json())


async def _wait_ready(client: httpx.AsyncClient, headers: dict[str, str], document_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    seen: list[str] = []
    while time.monotonic() < deadline:
        reply = await client.get(f"/v1/documents/{document_id}", headers=headers)
        assert reply.status_code == 200, reply.text
        document = dict(reply.json())
        if not seen or seen[-1] != document["status"]:
            seen.append(document["status"])
        if document["status"] == "READY":
            return document
        assert document["status"] != "FAILED", document
        await asyncio.sleep(0.5)
    raise AssertionError(f"document not READY after {READY_TIMEOUT_SECONDS}s; statuses seen: {seen}")


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_uploaded_pdf_answers_a_question_citing_the_gold_page(
    client: httpx.AsyncClient, shared_data: Path, lang: str
) -> None:
    record = _question(shared_data, lang)
    headers = await _token(client, tenant=f"e2e-{lang}")
    uploaded = await _upload(client, headers, shared_data / "qa" / "xquad" / record["pdf_file"])
    assert uploaded["status"] in ("QUEUED", "PARSING", "EMBEDDING", "READY")

    document = await _wait_ready(client, headers, uploaded["id"])
    assert document["pages"] == record["pdf_pages"]

    session = await client.post("/v1/chat/sessions", headers=headers, json={"document_ids": [uploaded["id"]]})
    assert session.status_code == 201, session.text
    reply = await client.post(
        f"/v1/chat/sessions/{session.json()['id']}/messages", headers=headers, json={"content": record["question"]}
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["answer"]
    cited_pages = [c["page"] for c in answer["citations"] if c["document_id"] == uploaded["id"]]
    assert record["gold_answer_pdf_page"] in cited_pages[:3], (record["question"], answer["citations"])
    notice = answer["answer"].lower()
    assert "no language model" in notice or "no llm" in notice or "语言模型" in notice, answer["answer"]


async def test_answer_streams_over_sse_and_websocket(
    client: httpx.AsyncClient, suite: Stack, shared_data: Path
) -> None:
    record = _question(shared_data, "en")
    headers = await _token(client, tenant="e2e-stream")
    uploaded = await _upload(client, headers, shared_data / "qa" / "xquad" / record["pdf_file"])
    await _wait_ready(client, headers, uploaded["id"])
    session = (await client.post("/v1/chat/sessions", headers=headers, json={"document_ids": [uploaded["id"]]})).json()

    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream(
        "POST",
        f"/v1/chat/sessions/{session['id']}/messages",
        headers={**headers, "Accept": "text/event-stream"},
        json={"content": record["question"]},
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.split(":", 1)[1])))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "citations"
    assert kinds[-1] == "end"
    assert kinds.count("token") >= 2
    seqs = [data["seq"] for _, data in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)

    token = headers["Authorization"].split()[1]
    ws_url = suite.config.gateway_url.replace("http", "ws") + f"/v1/ws?token={token}"
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"type": "ask", "session_id": session["id"], "content": record["question"]}))
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] not in ("end", "error"):
            event = json.loads(await asyncio.wait_for(socket.recv(), timeout=60))
            if event["type"] != "authenticated":
                received.append(event)
    assert received[0]["type"] == "citations"
    assert received[-1]["type"] == "end"
    assert any(event["type"] == "token" for event in received)


async def test_other_tenants_documents_answer_404(client: httpx.AsyncClient, shared_data: Path) -> None:
    owner = await _token(client, tenant="e2e-owner")
    intruder = await _token(client, tenant="e2e-intruder")
    pdf = next((shared_data / "qa" / "xquad" / "en" / "docs").glob("*.pdf"))
    uploaded = await _upload(client, owner, pdf)

    assert (await client.get(f"/v1/documents/{uploaded['id']}", headers=intruder)).status_code == 404
    listed = (await client.get("/v1/documents", headers=intruder)).json()
    assert uploaded["id"] not in [d["id"] for d in listed["documents"]]
    session = await client.post("/v1/chat/sessions", headers=intruder, json={"document_ids": [uploaded["id"]]})
    assert session.status_code == 404
    assert session.headers["content-type"].startswith("application/problem+json")


async def test_requests_without_a_token_are_refused(client: httpx.AsyncClient) -> None:
    reply = await client.get("/v1/documents")
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("application/problem+json")


async def test_gateway_reports_ready_when_every_service_serves(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


GRPCURL_CALLS = {
    "ingestion": ("pdfchat.v1.IngestionService", "ListDocuments", "{}"),
    "embedding": ("pdfchat.v1.EmbeddingService", "Embed", '{"texts": ["hello"], "kind": "EMBED_KIND_QUERY"}'),
    "vector_index": ("pdfchat.v1.VectorIndexService", "GetDocumentIndexStats", '{"document_id": "none", "version": 1}'),
    "orchestrator": ("pdfchat.v1.OrchestratorService", "ListModels", "{}"),
    "chat": ("pdfchat.v1.ChatService", "ListMessages", '{"session_id": "none"}'),
}


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "grpcurl"
    return subprocess.run([str(binary), "-plaintext", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("service", ["ingestion", "worker_pdf", "embedding", "vector_index", "orchestrator", "chat"])
def test_grpcurl_lists_and_calls_every_service_through_reflection(suite: Stack, service: str) -> None:
    address = suite.config.env[f"PDFCHAT_{service.upper()}_ADDR"]
    listed = _grpcurl(address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "grpc.health.v1.Health" in listed.stdout
    health = _grpcurl("-d", "{}", address, "grpc.health.v1.Health/Check")
    assert '"SERVING"' in health.stdout, health.stderr
    if service in GRPCURL_CALLS:
        name, method, body = GRPCURL_CALLS[service]
        assert name in listed.stdout
        called = _grpcurl("-H", "x-pdfchat-tenant: grpcurl", "-d", body, address, f"{name}/{method}")
        # NOT_FOUND is a real answer from the service for the made-up ids; anything else must succeed.
        assert called.returncode == 0 or "NotFound" in called.stderr, called.stderr


async def test_usage_shows_the_tenants_own_requests_only(client: httpx.AsyncClient, shared_data: Path) -> None:
    record = _question(shared_data, "en")
    asker = await _token(client, tenant="e2e-usage")
    bystander = await _token(client, tenant="e2e-usage-other")
    uploaded = await _upload(client, asker, shared_data / "qa" / "xquad" / record["pdf_file"])
    await _wait_ready(client, asker, uploaded["id"])
    session = (await client.post("/v1/chat/sessions", headers=asker, json={"document_ids": [uploaded["id"]]})).json()
    reply = await client.post(
        f"/v1/chat/sessions/{session['id']}/messages", headers=asker, json={"content": record["question"]}
    )
    assert reply.status_code == 200, reply.text

    usage = (await client.get("/v1/usage", headers=asker)).json()
    assert int(usage["requests"]) >= 1, usage
    assert int(usage["usage"]["output_tokens"]) > 0, usage
    other = (await client.get("/v1/usage", headers=bystander)).json()
    assert int(other.get("requests", 0)) == 0, other
