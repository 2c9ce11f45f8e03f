"""Chat routes against the in-process fakes (see conftest)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


def make_document(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/v1/documents", headers=headers, files={"file": ("a.pdf", b"%PDF", "application/pdf")})
    return str(response.json()["id"])


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_session_is_created_for_the_tenants_documents(client: TestClient, token_for: Headers, fakes: Any) -> None:
    doc_id = make_document(client, token_for())
    response = client.post("/v1/chat/sessions", headers=token_for(), json={"document_ids": [doc_id]})
    assert response.status_code == 201
    assert response.json()["id"] == "sess-1"
    assert response.json()["document_ids"] == [doc_id]
    assert fakes.recorder.methods()[-2:] == ["GetDocument", "CreateSession"]


def test_session_over_another_tenants_document_is_404(client: TestClient, token_for: Headers, fakes: Any) -> None:
    doc_id = make_document(client, token_for("acme"))
    response = client.post("/v1/chat/sessions", headers=token_for("globex"), json={"document_ids": [doc_id]})
    assert response.status_code == 404
    assert "CreateSession" not in fakes.recorder.methods()


def test_message_returns_the_answer_with_1_based_page_citations(client: TestClient, token_for: Headers) -> None:
    response = client.post("/v1/chat/sessions/s1/messages", headers=token_for(), json={"content": "why?"})
    assert response.status_code == 200
    body = response.json()
    assert body["message_id"] == "msg-1"
    assert body["answer"] == "Hello world"
    assert body["citations"] == [
        {
            "document_id": "doc-1",
            "document_name": "",
            "page": 2,
            "quote": "the quoted passage",
            "score": 0.75,
            "segment_id": "seg-1",
            "boxes": [[1.0, 2.0, 3.0, 4.0]],
        }
    ]


def test_message_streams_as_sse_when_asked(client: TestClient, token_for: Headers) -> None:
    headers = {**token_for(), "Accept": "text/event-stream"}
    response = client.post("/v1/chat/sessions/s1/messages", headers=headers, json={"content": "why?"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["citations", "queued", "token", "token", "end"]
    assert [data["seq"] for _, data in events] == [1, 2, 3, 4, 5]
    assert "".join(data["text"] for name, data in events if name == "token") == "Hello world"
    assert events[-1][1]["answer"] == "Hello world"


def test_missing_session_is_404_even_when_streaming(client: TestClient, token_for: Headers) -> None:
    headers = {**token_for(), "Accept": "text/event-stream"}
    response = client.post("/v1/chat/sessions/missing/messages", headers=headers, json={"content": "q"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_provider_limit_is_429_with_retry_after(client: TestClient, token_for: Headers) -> None:
    response = client.post("/v1/chat/sessions/limited/messages", headers=token_for(), json={"content": "q"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"


def test_cut_stream_is_not_reported_as_an_answer(client: TestClient, token_for: Headers) -> None:
    response = client.post("/v1/chat/sessions/cut/messages", headers=token_for(), json={"content": "q"})
    assert response.status_code == 502


def test_cut_sse_stream_ends_with_an_error_event(client: TestClient, token_for: Headers) -> None:
    headers = {**token_for(), "Accept": "text/event-stream"}
    response = client.post("/v1/chat/sessions/cut/messages", headers=headers, json={"content": "q"})
    events = sse_events(response.text)
    assert events[-1][0] == "error"
    assert events[-1][1]["status"] == 502


def test_failure_mid_stream_becomes_an_sse_error_event(client: TestClient, token_for: Headers) -> None:
    headers = {**token_for(), "Accept": "text/event-stream"}
    response = client.post("/v1/chat/sessions/fails/messages", headers=headers, json={"content": "q"})
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["citations", "error"]
    assert events[-1][1]["status"] == 503
    assert events[-1][1]["detail"] == "provider went away"


def test_empty_message_is_400(client: TestClient, token_for: Headers) -> None:
    response = client.post("/v1/chat/sessions/s1/messages", headers=token_for(), json={"content": ""})
    assert response.status_code == 400


def test_history_lists_the_turns(client: TestClient, token_for: Headers) -> None:
    response = client.get("/v1/chat/sessions/s1/messages", headers=token_for())
    assert response.status_code == 200
    assert [turn["role"] for turn in response.json()["messages"]] == ["user", "assistant"]
