"""Outcome callbacks against a real local HTTP server and real Postgres: signed, retried with backoff,
every attempt recorded, and durable (a delivery is in the outbox before anything is sent)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from ingestion_support import CallbackReceiver, Harness, tiny_pdf

from pdfchat.common.errors import InvalidArgument
from pdfchat.common.identity import Identity
from pdfchat.ingestion.callbacks import (
    CallbackOutbox,
    CallbackSender,
    RetryPolicy,
    WebhookSecrets,
    check_callback_url,
    signature,
)
from pdfchat.ingestion.documents import Document, DocumentStatus, Progress, ProgressReport
from pdfchat.ingestion.library import UploadRequest
from pdfchat.ingestion.ranges import PageRange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

S = DocumentStatus


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def finish(harness: Harness, document: Document, *, fail: bool = False) -> Document:
    tenant = document.tenant_id
    await harness.library.report_progress(tenant, document.id, ProgressReport(1, S.PARSING, Progress(pages_total=1)))
    if fail:
        report = ProgressReport(1, S.FAILED, error="page 1 cannot be decoded", failed_stage="parse")
    else:
        report = ProgressReport(1, S.PARSING, range_result=PageRange(1, 1, 0))
    return await harness.library.report_progress(tenant, document.id, report)


async def attempts_of(pool: asyncpg.Pool, document_id: str) -> list[tuple[int | None, str]]:
    rows = await pool.fetch(
        """
        SELECT a.status_code, a.error FROM ingestion.callback_attempts a
        JOIN ingestion.callback_deliveries d ON d.id = a.delivery_id
        WHERE d.document_id = $1 ORDER BY a.attempt
        """,
        document_id,
    )
    return [(row["status_code"], row["error"]) for row in rows]


async def send_until(sender: CallbackSender, done: object, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not done():  # type: ignore[operator]
            await sender.send_due()
            await asyncio.sleep(0.05)


async def test_only_absolute_http_urls_are_accepted_as_callbacks() -> None:
    assert check_callback_url("  https://example.test/hook ") == "https://example.test/hook"
    assert check_callback_url("") == ""
    for bad in ("ftp://example.test/x", "/relative", "https://", "javascript:alert(1)"):
        with pytest.raises(InvalidArgument):
            check_callback_url(bad)


async def test_ready_outcome_is_posted_signed_with_the_tenant_secret_and_retried_until_accepted(
    harness: Harness, pool: asyncpg.Pool, tenant: str
) -> None:
    receiver = CallbackReceiver([500, 502, 204])
    try:
        caller = Identity(tenant_id=tenant)
        upload = UploadRequest("a.pdf", callback_url=receiver.url)
        document = (await harness.library.upload(caller, upload, stream(tiny_pdf()))).document
        ready = await finish(harness, document)
        assert ready.status == S.READY
        assert receiver.requests == [], "nothing is sent by the transition itself: the outbox holds it"

        secrets = WebhookSecrets(default="global-secret", by_tenant={tenant: "tenant-secret"})
        async with httpx.AsyncClient() as client:
            sender = CallbackSender(CallbackOutbox(pool), secrets, RetryPolicy(backoff_seconds=0.2), client)
            started = asyncio.get_running_loop().time()
            await send_until(sender, lambda: len(receiver.requests) >= 3)
            elapsed = asyncio.get_running_loop().time() - started
            await sender.send_due()
    finally:
        receiver.close()

    assert len(receiver.requests) == 3, "delivered once accepted, never again"
    assert elapsed >= 0.2 + 0.4 - 0.05, "retries back off (0.2 s, then 0.4 s)"
    bodies = {request.body for request in receiver.requests}
    assert len(bodies) == 1, "every retry sends the same bytes"
    body = receiver.requests[0].body
    expected = "sha256=" + hmac.new(b"tenant-secret", body, hashlib.sha256).hexdigest()
    assert all(request.headers["x-pdfchat-signature"] == expected for request in receiver.requests)
    assert receiver.requests[0].path == "/hooks/pdfchat"
    outcome = json.loads(body)
    assert (outcome["event"], outcome["document_id"], outcome["version"], outcome["status"]) == (
        "document.ready",
        document.id,
        1,
        "READY",
    )
    assert await attempts_of(pool, document.id) == [(500, "HTTP 500"), (502, "HTTP 502"), (204, "")]
    state = await pool.fetchval("SELECT state FROM ingestion.callback_deliveries WHERE document_id = $1", document.id)
    assert state == "delivered"


async def test_failed_outcome_gives_up_after_the_last_attempt_and_records_each_one(
    harness: Harness, pool: asyncpg.Pool, tenant: str
) -> None:
    receiver = CallbackReceiver([503])
    try:
        upload = UploadRequest("a.pdf", callback_url=receiver.url)
        document = (await harness.library.upload(Identity(tenant_id=tenant), upload, stream(tiny_pdf()))).document
        failed = await finish(harness, document, fail=True)
        assert failed.status == S.FAILED
        async with httpx.AsyncClient() as client:
            policy = RetryPolicy(max_attempts=3, backoff_seconds=0.05)
            sender = CallbackSender(CallbackOutbox(pool), WebhookSecrets("global-secret", {}), policy, client)

            async def state() -> str:
                return str(
                    await pool.fetchval(
                        "SELECT state FROM ingestion.callback_deliveries WHERE document_id = $1", document.id
                    )
                )

            async with asyncio.timeout(10):
                while await state() == "pending":
                    await sender.send_due()
                    await asyncio.sleep(0.05)
    finally:
        receiver.close()
    assert await state() == "failed"
    assert len(receiver.requests) == 3
    outcome = json.loads(receiver.requests[0].body)
    assert (outcome["status"], outcome["error"], outcome["failed_stage"]) == (
        "FAILED",
        "page 1 cannot be decoded",
        "parse",
    )
    assert receiver.requests[0].headers["x-pdfchat-signature"] == signature("global-secret", receiver.requests[0].body)
    assert await attempts_of(pool, document.id) == [(503, "HTTP 503")] * 3


async def test_unreachable_receiver_is_recorded_as_an_error_without_a_status(
    harness: Harness, pool: asyncpg.Pool, tenant: str
) -> None:
    receiver = CallbackReceiver([200])
    url = receiver.url
    receiver.close()  # nothing listens there any more
    upload = UploadRequest("a.pdf", callback_url=url)
    document = (await harness.library.upload(Identity(tenant_id=tenant), upload, stream(tiny_pdf()))).document
    await finish(harness, document)
    async with httpx.AsyncClient() as client:
        policy = RetryPolicy(max_attempts=1, timeout_seconds=2)
        sender = CallbackSender(CallbackOutbox(pool), WebhookSecrets("s", {}), policy, client)
        await sender.send_due()
    [(status_code, error)] = await attempts_of(pool, document.id)
    assert status_code is None
    assert "Connect" in error


async def test_a_document_without_callback_url_queues_no_delivery(
    harness: Harness, pool: asyncpg.Pool, tenant: str
) -> None:
    document = (
        await harness.library.upload(Identity(tenant_id=tenant), UploadRequest("a.pdf"), stream(tiny_pdf()))
    ).document
    await finish(harness, document)
    count = await pool.fetchval(
        "SELECT count(*) FROM ingestion.callback_deliveries WHERE document_id = $1", document.id
    )
    assert count == 0
