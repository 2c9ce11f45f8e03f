from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pdfchat.common.errors import InvalidArgument, PayloadTooLarge
from pdfchat.gateway import upload
from pdfchat.v1 import ingestion_pb2

BOUNDARY = "----pdfchat-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


class RecordingSink:
    def __init__(self) -> None:
        self.metadata: ingestion_pb2.UploadMetadata | None = None
        self.chunks: list[bytes] = []
        self.finished = False
        self.aborted = False

    async def begin(self, metadata: ingestion_pb2.UploadMetadata) -> None:
        assert self.metadata is None, "begin must be called once"
        self.metadata = metadata

    async def write(self, chunk: bytes) -> None:
        assert self.metadata is not None, "metadata goes first"
        self.chunks.append(chunk)

    async def finish(self) -> ingestion_pb2.UploadResponse:
        self.finished = True
        return ingestion_pb2.UploadResponse(document=ingestion_pb2.Document(id="d1"), created=True)

    async def abort(self) -> None:
        self.aborted = True


def form(*parts: tuple[str, bytes, str | None]) -> bytes:
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            body += b"Content-Type: application/pdf\r\n"
        body += b"\r\n" + value + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


async def pieces(body: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_file_is_forwarded_in_256_kib_chunks_after_the_metadata() -> None:
    data = bytes(range(256)) * 4000  # 1,024,000 bytes
    sink = RecordingSink()
    body = form(("callback_url", b"http://hook", None), ("file", data, "report.pdf"))
    reply = await upload.forward(pieces(body), CONTENT_TYPE, sink, max_bytes=10_000_000, idempotency_key="key-1")
    assert reply.document.id == "d1"
    assert sink.metadata is not None
    assert sink.metadata.filename == "report.pdf"
    assert sink.metadata.content_type == "application/pdf"
    assert sink.metadata.idempotency_key == "key-1"
    assert sink.metadata.callback_url == "http://hook"
    assert b"".join(sink.chunks) == data
    assert [len(chunk) for chunk in sink.chunks[:-1]] == [upload.CHUNK_BYTES] * 3
    assert sink.finished
    assert not sink.aborted


async def test_client_path_in_filename_is_reduced_to_its_name() -> None:
    sink = RecordingSink()
    await upload.forward(pieces(form(("file", b"%PDF", "C:\\Users\\a\\doc.pdf"))), CONTENT_TYPE, sink, max_bytes=100)
    assert sink.metadata is not None
    assert sink.metadata.filename == "doc.pdf"


async def test_query_defaults_fill_metadata() -> None:
    sink = RecordingSink()
    await upload.forward(
        pieces(form(("file", b"%PDF", "a.pdf"))), CONTENT_TYPE, sink, max_bytes=100, defaults={"password": "pw"}
    )
    assert sink.metadata is not None
    assert sink.metadata.password == "pw"


async def test_oversized_first_chunk_never_reaches_the_sink() -> None:
    sink = RecordingSink()
    with pytest.raises(PayloadTooLarge):
        await upload.forward(pieces(form(("file", b"x" * 5000, "a.pdf"))), CONTENT_TYPE, sink, max_bytes=4096)
    assert sink.metadata is None
    assert sink.aborted


async def test_going_over_the_limit_mid_stream_aborts_the_upload() -> None:
    sink = RecordingSink()
    data = b"x" * (3 * upload.CHUNK_BYTES)
    with pytest.raises(PayloadTooLarge):
        await upload.forward(
            pieces(form(("file", data, "a.pdf"))), CONTENT_TYPE, sink, max_bytes=2 * upload.CHUNK_BYTES + 10
        )
    assert sink.chunks, "the upload had started"
    assert sum(len(chunk) for chunk in sink.chunks) <= 2 * upload.CHUNK_BYTES + 10
    assert sink.aborted
    assert not sink.finished


async def test_metadata_field_after_the_file_is_refused() -> None:
    sink = RecordingSink()
    body = form(("file", b"%PDF", "a.pdf"), ("password", b"pw", None))
    with pytest.raises(InvalidArgument, match="before 'file'"):
        await upload.forward(pieces(body), CONTENT_TYPE, sink, max_bytes=100)
    assert sink.aborted


async def test_form_without_file_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'file' is required"):
        await upload.forward(pieces(form(("other", b"1", None))), CONTENT_TYPE, RecordingSink(), max_bytes=100)


async def test_truncated_body_is_refused() -> None:
    body = form(("file", b"%PDF" * 100, "a.pdf"))[:-40]
    sink = RecordingSink()
    with pytest.raises(InvalidArgument):
        await upload.forward(pieces(body), CONTENT_TYPE, sink, max_bytes=10_000)
    assert sink.aborted
    assert not sink.finished


async def test_non_multipart_body_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="multipart/form-data"):
        await upload.forward(pieces(b"{}"), "application/json", RecordingSink(), max_bytes=100)


async def test_empty_file_is_still_sent_to_ingestion_to_judge() -> None:
    sink = RecordingSink()
    await upload.forward(pieces(form(("file", b"", "empty.pdf"))), CONTENT_TYPE, sink, max_bytes=100)
    assert sink.metadata is not None
    assert sink.chunks == []
    assert sink.finished
