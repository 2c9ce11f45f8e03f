"""Jobs that can never succeed do not block anything: a garbage original fails its document with a reason,
a job that fails on every delivery is dead-lettered after MaxDeliver with its document FAILED, a message
that is not a job at all is dead-lettered at once, and the other documents finish meanwhile."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from pdfchat.v1 import common_pb2

pytestmark = pytest.mark.integration

MAX_DELIVER = 3
POISON_ENV = {
    "PDFCHAT_WORKER_PDF_MAX_DELIVER": str(MAX_DELIVER),
    "PDFCHAT_WORKER_PDF_ACK_WAIT_SECONDS": "10",
}
NOT_A_JOB = b"\xff\xff\xff\xff not a ParseJob"


async def _dead_letters(url: str, namespace: str) -> list[tuple[bytes, dict[str, str]]]:
    """Every message in the namespace's dead-letter stream: (data, headers)."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        stream = f"{namespace.upper()}_DLQ"
        state = (await js.stream_info(stream)).state
        letters = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            message = await js.get_msg(stream, sequence)
            letters.append((message.data or b"", dict(message.headers or {})))
        return letters
    finally:
        await client.close()


async def _publish_raw(url: str, subject: str, data: bytes) -> None:
    client = await nats.connect(url)
    try:
        await client.jetstream().publish(subject, data, timeout=5)
    finally:
        await client.close()


async def _wait_dead_letters(url: str, namespace: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    letters: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(120):
        letters = await _dead_letters(url, namespace)
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.5)
    return letters


async def test_poison_jobs_fail_their_documents_and_dead_letter_while_others_finish(
    suite_factory: Callable[..., Any],
    http: Callable[[Any], httpx.AsyncClient],
    make_pdf: Callable[..., bytes],
    shared_data: Path,
) -> None:
    suite = suite_factory(extra_env=POISON_ENV)
    client = http(suite)
    headers = await suite.token(client, "poison")
    suite.stack.processes["worker_pdf"].stop()  # jobs queue up while the originals are spoiled

    garbage = await suite.upload(client, headers, "garbage.pdf", make_pdf(3, seed=31))
    unreadable = await suite.upload(client, headers, "unreadable.pdf", make_pdf(3, seed=32))
    xquad = sorted((shared_data / "qa" / "xquad" / "en" / "docs").glob("*.pdf"))[:2]
    healthy = [await suite.upload(client, headers, pdf.name, pdf.read_bytes()) for pdf in xquad]

    # garbage: the stored original is no PDF at all (input that can never parse)
    (await _object(suite, garbage)).write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 64)
    # unreadable: reading the original fails on every delivery (a directory where the file should be)
    path = await _object(suite, unreadable)
    path.unlink()
    path.mkdir()
    (path / "keep").write_text("reading this object always fails")
    await _publish_raw(suite.nats.url, f"{suite.namespace}.jobs.parse", NOT_A_JOB)

    suite.start_services(("worker_pdf",))
    documents = await suite.wait_final(client, headers, [garbage, unreadable, *healthy], within=110)

    for document_id in healthy:
        assert documents[document_id]["status"] == "READY", documents[document_id]
    assert documents[garbage]["status"] == "FAILED"
    assert documents[garbage]["error"], documents[garbage]
    assert "pdf" in documents[garbage]["error"].lower(), documents[garbage]["error"]
    assert documents[unreadable]["status"] == "FAILED"
    assert documents[unreadable]["error"], documents[unreadable]
    assert documents[unreadable]["failed_stage"] == "parse"

    letters = await _wait_dead_letters(suite.nats.url, suite.namespace, 2)
    reasons = {_dead_document(data): headers.get("Pdfchat-Dlq-Reason", "") for data, headers in letters}
    assert unreadable in reasons, letters
    assert "max deliveries" in reasons[unreadable], reasons
    assert any(data == NOT_A_JOB and "permanent" in h.get("Pdfchat-Dlq-Reason", "") for data, h in letters), letters
    # the healthy documents' jobs never went to the dead-letter stream
    assert not set(healthy) & set(reasons)
    shutil.rmtree(path)


async def _object(suite: Any, document_id: str) -> Path:
    row = await suite.document_row(document_id)
    path: Path = suite.object_path(row["object_key"])
    assert path.is_file(), path
    return path


def _dead_document(data: bytes) -> str:
    job = common_pb2.ParseJob()
    try:
        job.ParseFromString(data)
    except Exception:  # the not-a-job message
        return ""
    return job.document_id
