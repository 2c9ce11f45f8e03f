"""The WebSocket protocol against the in-process fakes (see conftest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pdfchat.gateway import auth
from pdfchat.gateway.app import create_app
from pdfchat.gateway.settings import GatewaySettings

Headers = Callable[..., dict[str, str]]


def token(settings: GatewaySettings, tenant: str = "acme") -> str:
    return auth.issue(settings, tenant, "alice")


def receive_until(ws: Any, kinds: set[str]) -> list[dict[str, Any]]:
    events = []
    while True:
        event = ws.receive_json()
        events.append(event)
        if event["type"] in kinds:
            return events


def test_ask_streams_citations_tokens_and_end(client: TestClient, fake_settings: GatewaySettings) -> None:
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings)}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "ask", "session_id": "s1", "content": "why?", "ref": 7})
        events = receive_until(ws, {"end", "error"})
    assert [event["type"] for event in events] == ["citations", "queued", "token", "token", "end"]
    assert [event["seq"] for event in events] == [1, 2, 3, 4, 5]
    assert {event["message_id"] for event in events} == {"msg-1"}
    assert {event["ref"] for event in events} == {7}
    assert events[0]["citations"][0]["page"] == 2
    assert "".join(event["text"] for event in events if event["type"] == "token") == "Hello world"


def test_first_message_can_authenticate(client: TestClient, fake_settings: GatewaySettings, fakes: Any) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": token(fake_settings, "globex")})
        assert ws.receive_json() == {"type": "authenticated", "tenant": "globex", "user": "alice"}
        ws.send_json({"type": "ask", "session_id": "s1", "content": "why?"})
        receive_until(ws, {"end"})
    assert fakes.recorder.calls[-1][1]["x-pdfchat-tenant"] == "globex"


def test_unauthenticated_ask_is_an_error_event_and_the_socket_stays_open(
    client: TestClient, fake_settings: GatewaySettings
) -> None:
    with client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"type": "ask", "session_id": "s1", "content": "why?"})
        error = ws.receive_json()
        assert (error["type"], error["status"], error["title"]) == ("error", 401, "Unauthorized")
        ws.send_json({"type": "auth", "token": "not-a-token"})
        assert ws.receive_json()["status"] == 401
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_downstream_error_is_an_error_event_and_the_socket_stays_open(
    client: TestClient, fake_settings: GatewaySettings
) -> None:
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings)}") as ws:
        ws.receive_json()
        ws.send_json({"type": "ask", "session_id": "missing", "content": "q"})
        error = ws.receive_json()
        assert error["type"] == "error"
        assert error["status"] == 404
        assert error["detail"] == "session not found"
        assert error["session_id"] == "missing"
        ws.send_json({"type": "ask", "session_id": "s1", "content": "q"})
        assert receive_until(ws, {"end", "error"})[-1]["type"] == "end"


def test_cut_stream_ends_with_an_error_event(client: TestClient, fake_settings: GatewaySettings) -> None:
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings)}") as ws:
        ws.receive_json()
        ws.send_json({"type": "ask", "session_id": "cut", "content": "q"})
        events = receive_until(ws, {"end", "error"})
    assert events[-1]["type"] == "error"
    assert events[-1]["status"] == 502
    assert events[-1]["message_id"] == "msg-1"


def test_resume_replays_after_last_seq(client: TestClient, fake_settings: GatewaySettings) -> None:
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings)}") as ws:
        ws.receive_json()
        ws.send_json({"type": "resume", "session_id": "s1", "message_id": "msg-9", "last_seq": 3})
        events = receive_until(ws, {"end", "error"})
    assert [event["seq"] for event in events] == [4, 5]
    assert events[-1]["type"] == "end"


def test_watch_streams_document_states(client: TestClient, fake_settings: GatewaySettings) -> None:
    headers = {"Authorization": f"Bearer {token(fake_settings)}"}
    doc = client.post("/v1/documents", headers=headers, files={"file": ("a.pdf", b"%PDF", "application/pdf")})
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings)}") as ws:
        ws.receive_json()
        ws.send_json({"type": "watch", "document_id": doc.json()["id"]})
        states = [ws.receive_json() for _ in range(3)]
    assert [state["type"] for state in states] == ["document"] * 3
    assert [state["document"]["status"] for state in states] == ["PARSING", "EMBEDDING", "READY"]
    assert states[-1]["document"]["pages"] == 3


def test_watching_another_tenants_document_is_404(client: TestClient, fake_settings: GatewaySettings) -> None:
    headers = {"Authorization": f"Bearer {token(fake_settings, 'acme')}"}
    doc = client.post("/v1/documents", headers=headers, files={"file": ("a.pdf", b"%PDF", "application/pdf")})
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings, 'globex')}") as ws:
        ws.receive_json()
        ws.send_json({"type": "watch", "document_id": doc.json()["id"]})
        error = ws.receive_json()
    assert (error["type"], error["status"], error["document_id"]) == ("error", 404, doc.json()["id"])


@pytest.mark.parametrize(
    "message",
    ["not json", '["a list"]', '{"type": "dance"}', '{"type": "ask", "session_id": "s1"}'],
)
def test_bad_messages_are_400_error_events(client: TestClient, fake_settings: GatewaySettings, message: str) -> None:
    with client.websocket_connect(f"/v1/ws?token={token(fake_settings)}") as ws:
        ws.receive_json()
        ws.send_text(message)
        error = ws.receive_json()
        assert (error["type"], error["status"]) == ("error", 400)
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"


def test_socket_that_never_authenticates_is_closed(settings_factory: Callable[..., GatewaySettings]) -> None:
    with (
        TestClient(create_app(settings_factory(ws_auth_timeout_seconds=0.2))) as client,
        client.websocket_connect("/v1/ws") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_json()
    assert closed.value.code == 4401
