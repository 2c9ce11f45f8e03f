"""A worker_pdf killed with SIGKILL in the middle of a document: the job is redelivered to the replica that
replaces it, the document still reaches READY, and vector_index holds each segment exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

PAGES = 200

# Short AckWait so the killed worker's unacked job comes back within seconds, not the default minute;
# small page ranges (one job each) so the document is parsed in many steps and has a "middle" to kill in.
CRASH_ENV = {
    "PDFCHAT_WORKER_PDF_ACK_WAIT_SECONDS": "6",
    "PDFCHAT_WORKER_PDF_RANGE_PAGES": "8",
    "PDFCHAT_WORKER_PDF_CONCURRENCY": "1",
}


async def _wait_mid_parse(suite: Any, document_id: str, within: float = 60.0) -> dict[str, Any]:
    """Polls ingestion's row until some, but not all, pages are parsed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await suite.document_row(document_id)
        if row["status"] == "PARSING" and 0 < row["pages_done"] < PAGES:
            return row
        assert row["status"] in ("QUEUED", "PARSING"), f"document left parsing before the kill: {row['status']}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"document {document_id} never got into the middle of parsing")


async def test_worker_killed_mid_document_is_replaced_and_the_document_is_ready_without_duplicates(
    suite_factory: Callable[..., Any],
    http: Callable[[Any], httpx.AsyncClient],
    make_pdf: Callable[..., bytes],
    kill: Callable[[Any], None],
) -> None:
    suite = suite_factory(extra_env=CRASH_ENV)
    client = http(suite)
    headers = await suite.token(client, "crash")
    document_id = await suite.upload(client, headers, "crash.pdf", make_pdf(PAGES, seed=11))

    at_kill = await _wait_mid_parse(suite, document_id)
    kill(suite.stack.processes["worker_pdf"].process)
    killed_at = time.monotonic()

    suite.start_services(("worker_pdf",))  # the replacement replica (same durable consumer)
    document = (await suite.wait_final(client, headers, [document_id]))[document_id]
    recovered_in = time.monotonic() - killed_at

    assert document["status"] == "READY", document
    assert document["pages"] == PAGES
    counts = await suite.segment_counts(document_id)
    chunks_total = document["progress"]["chunks_total"]
    assert chunks_total > 0
    # every segment once: as many rows as positions and as distinct (page, text), all embedded, one version
    assert counts == {
        "rows": chunks_total,
        "positions": chunks_total,
        "texts": chunks_total,
        "vectors": chunks_total,
        "versions": 1,
    }, (counts, document, f"killed at {at_kill['pages_done']}/{PAGES} pages")
    assert document["progress"]["chunks_done"] == chunks_total
    assert recovered_in < 120
