"""NATS restarted (same JetStream store) while documents are being ingested, with uploads during the outage:
nothing is lost, every document reaches READY with each of its segments once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

RESTART_ENV = {
    # a job whose publish failed during the outage is re-published within seconds, not the default half minute
    "PDFCHAT_RECONCILE_AFTER_SECONDS": "3",
    "PDFCHAT_RECONCILE_INTERVAL_SECONDS": "1",
    "PDFCHAT_WORKER_PDF_ACK_WAIT_SECONDS": "10",
    "PDFCHAT_EMBEDDING_JOB_ACK_WAIT_SECONDS": "10",
}
OUTAGE_SECONDS = 4.0


async def _wait_for_work_in_flight(suite: Any, document_ids: list[str]) -> None:
    for _ in range(400):
        rows = [await suite.document_row(document_id) for document_id in document_ids]
        if any(row["status"] in ("PARSING", "EMBEDDING") for row in rows):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no document started parsing")


async def test_nats_restart_during_ingestion_loses_no_document(
    suite_factory: Callable[..., Any],
    http: Callable[[Any], httpx.AsyncClient],
    make_pdf: Callable[..., bytes],
    shared_data: Path,
) -> None:
    suite = suite_factory(extra_env=RESTART_ENV)
    client = http(suite)
    headers = await suite.token(client, "nats-restart")
    xquad = sorted((shared_data / "qa" / "xquad" / "en" / "docs").glob("*.pdf"))[:4]

    before = [await suite.upload(client, headers, "long.pdf", make_pdf(60, seed=21))]
    before += [await suite.upload(client, headers, pdf.name, pdf.read_bytes()) for pdf in xquad[:2]]
    await _wait_for_work_in_flight(suite, before)

    suite.nats.stop()
    # uploads while JetStream is away: the document row commits, the reconciler publishes its job later
    during = [await suite.upload(client, headers, pdf.name, pdf.read_bytes()) for pdf in xquad[2:]]
    during.append(await suite.upload(client, headers, "outage.pdf", make_pdf(5, seed=22)))
    await asyncio.sleep(OUTAGE_SECONDS)
    suite.nats.start()

    documents = await suite.wait_final(client, headers, before + during, within=150)
    not_ready = {
        key: (value["status"], value["error"]) for key, value in documents.items() if value["status"] != "READY"
    }
    assert not not_ready, not_ready
    for document_id, document in documents.items():
        chunks_total = document["progress"]["chunks_total"]
        counts = await suite.segment_counts(document_id)
        assert counts["rows"] == counts["positions"] == counts["vectors"] == chunks_total > 0, (document_id, counts)
