"""Two worker_pdf replicas on one durable consumer share the parse jobs: both handle some, every document
is handled, and all reach READY."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

DOCUMENTS = 8


def _documents_in(log: Path, document_ids: list[str]) -> set[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return {document_id for document_id in document_ids if document_id in text}


async def test_two_worker_replicas_share_the_parse_jobs(
    suite_factory: Callable[..., Any],
    http: Callable[[Any], httpx.AsyncClient],
    make_pdf: Callable[..., bytes],
) -> None:
    # one job at a time per replica, so a replica that is busy leaves the next job to the other
    suite = suite_factory(extra_env={"PDFCHAT_WORKER_PDF_CONCURRENCY": "1"})
    suite.start_extra_worker()
    client = http(suite)
    headers = await suite.token(client, "replicas")

    pdfs = [make_pdf(30, paragraphs=1, seed=100 + index) for index in range(DOCUMENTS)]
    document_ids = list(
        await asyncio.gather(
            *(suite.upload(client, headers, f"share-{index}.pdf", pdf) for index, pdf in enumerate(pdfs))
        )
    )
    documents = await suite.wait_final(client, headers, document_ids, within=150)
    assert all(document["status"] == "READY" for document in documents.values()), documents

    handled = [_documents_in(log, document_ids) for log in suite.worker_logs()]
    assert len(handled) == 2
    assert handled[0], f"replica 1 handled no job; replica 2 handled {len(handled[1])}"
    assert handled[1], f"replica 2 handled no job; replica 1 handled {len(handled[0])}"
    assert handled[0] | handled[1] == set(document_ids)
