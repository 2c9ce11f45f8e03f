"""Document routes against the in-process fake ingestion (see conftest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


def upload(client: TestClient, headers: dict[str, str], data: bytes = b"%PDF-1.7 test", **extra: Any) -> Any:
    return client.post(
        "/v1/documents",
        headers=headers,
        files={"file": ("paper.pdf", data, "application/pdf")},
        **extra,
    )


def test_upload_returns_202_with_the_document(client: TestClient, token_for: Headers, fakes: Any) -> None:
    response = upload(client, token_for(), data=b"%PDF" + b"x" * 600_000)
    assert response.status_code == 202
    body = response.json()
    assert body["id"] == "doc-1"
    assert body["status"] == "QUEUED"
    assert body["filename"] == "paper.pdf"
    assert body["created"] is True
    assert body["size_bytes"] == 600_004
    assert body["created_at"] == "2023-11-14T22:13:20Z"
    sent = fakes.recorder.uploads[0]
    assert sent["tenant"] == "acme"
    assert sent["chunk_sizes"][:2] == [256 * 1024, 256 * 1024]


def test_upload_passes_identity_as_metadata(client: TestClient, token_for: Headers, fakes: Any) -> None:
    upload(client, {**token_for("acme", "bob"), "X-Request-ID": "trace-me"})
    _, metadata = fakes.recorder.calls[0]
    assert metadata["x-pdfchat-tenant"] == "acme"
    assert metadata["x-pdfchat-user"] == "bob"
    assert metadata["x-request-id"] == "trace-me"


def test_repeated_upload_with_idempotency_key_is_200_with_the_same_document(
    client: TestClient, token_for: Headers
) -> None:
    headers = {**token_for(), "Idempotency-Key": "k-1"}
    first = upload(client, headers)
    again = upload(client, headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["created"] is False


def test_form_fields_before_the_file_reach_ingestion(client: TestClient, token_for: Headers, fakes: Any) -> None:
    response = client.post(
        "/v1/documents",
        headers=token_for(),
        data={"callback_url": "http://hook.example/done", "password": "s3cret"},
        files={"file": ("locked.pdf", b"%PDF", "application/pdf")},
    )
    assert response.status_code == 202
    sent = fakes.recorder.uploads[0]
    assert (sent["callback_url"], sent["password"]) == ("http://hook.example/done", "s3cret")


def test_ingestion_refusing_a_large_file_is_413(client: TestClient, token_for: Headers) -> None:
    response = upload(client, token_for(), data=b"x" * (6 * 1024 * 1024))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_upload_without_file_is_400(client: TestClient, token_for: Headers) -> None:
    response = client.post("/v1/documents", headers=token_for(), data={"password": "x"})
    assert response.status_code == 400


def test_get_shows_status_without_prefix_and_progress(client: TestClient, token_for: Headers) -> None:
    doc_id = upload(client, token_for()).json()["id"]
    response = client.get(f"/v1/documents/{doc_id}", headers=token_for())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "QUEUED"
    assert body["error"] is None
    assert body["progress"] == {"pages_total": 0, "pages_done": 0, "chunks_total": 0, "chunks_done": 0}
    assert set(body) >= {"id", "filename", "pages", "version", "sha256", "updated_at", "failed_stage"}


def test_another_tenants_document_is_404(client: TestClient, token_for: Headers) -> None:
    doc_id = upload(client, token_for("acme")).json()["id"]
    response = client.get(f"/v1/documents/{doc_id}", headers=token_for("globex"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_list_shows_only_the_tenants_documents(client: TestClient, token_for: Headers) -> None:
    upload(client, token_for("acme"))
    upload(client, token_for("globex"))
    response = client.get("/v1/documents?page_size=10", headers=token_for("acme"))
    assert response.status_code == 200
    assert [doc["id"] for doc in response.json()["documents"]] == ["doc-1"]


def test_delete_is_204_and_then_404(client: TestClient, token_for: Headers) -> None:
    doc_id = upload(client, token_for()).json()["id"]
    assert client.delete(f"/v1/documents/{doc_id}", headers=token_for()).status_code == 204
    assert client.get(f"/v1/documents/{doc_id}", headers=token_for()).status_code == 404


def test_reprocess_uses_the_colon_path_and_is_202(client: TestClient, token_for: Headers) -> None:
    doc_id = upload(client, token_for()).json()["id"]
    response = client.post(f"/v1/documents/{doc_id}:reprocess", headers=token_for())
    assert response.status_code == 202
    assert response.json()["version"] == 2
