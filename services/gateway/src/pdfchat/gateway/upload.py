"""Streams a multipart/form-data upload to ingestion without holding the file in memory.

The body is parsed as it arrives (python-multipart's push parser); the `file` part's bytes are cut into
256 KiB chunks and written to the sink (the client stream of IngestionService.Upload) one at a time, so
at most one HTTP read plus one chunk is in memory. The size limit is enforced on the way: the moment the
file goes over it, the upload is aborted and the caller gets 413. The sink is opened only when the first
chunk is complete, so an oversized first chunk never reaches ingestion.

Because the metadata message goes first, the optional fields (`callback_url`, `password`) must precede
`file` in the form (browsers and curl send fields in the order given); query parameters work too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

import grpc
from python_multipart.multipart import MultipartParser, parse_options_header

from pdfchat.common.errors import InvalidArgument, PayloadTooLarge
from pdfchat.v1 import ingestion_pb2, ingestion_pb2_grpc

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

CHUNK_BYTES = 256 * 1024
MAX_FIELD_BYTES = 16 * 1024
FILE_FIELD = "file"
METADATA_FIELDS = ("callback_url", "password")


class UploadSink(Protocol):
    """Where the file goes: `begin` once, `write` per chunk, then `finish` (or `abort` on failure)."""

    async def begin(self, metadata: ingestion_pb2.UploadMetadata) -> None: ...

    async def write(self, chunk: bytes) -> None: ...

    async def finish(self) -> ingestion_pb2.UploadResponse: ...

    async def abort(self) -> None: ...


class IngestionUpload:
    """The sink that writes to IngestionService.Upload (client stream: metadata, then chunks)."""

    def __init__(
        self,
        stub: ingestion_pb2_grpc.IngestionServiceAsyncStub,
        metadata: tuple[tuple[str, str], ...],
        timeout: float,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._timeout = timeout
        self._call: grpc.aio.StreamUnaryCall | None = None

    async def begin(self, metadata: ingestion_pb2.UploadMetadata) -> None:
        # No request iterator: chunks go through call.write(), which waits for flow control (backpressure).
        self._call = self._stub.Upload(metadata=self._metadata, timeout=self._timeout)  # type: ignore[call-arg]
        await self._send(ingestion_pb2.UploadRequest(metadata=metadata))

    async def write(self, chunk: bytes) -> None:
        await self._send(ingestion_pb2.UploadRequest(chunk=chunk))

    async def finish(self) -> ingestion_pb2.UploadResponse:
        assert self._call is not None
        await self._call.done_writing()
        return await self._call

    async def abort(self) -> None:
        if self._call is not None:
            self._call.cancel()

    async def _send(self, message: ingestion_pb2.UploadRequest) -> None:
        assert self._call is not None
        try:
            await self._call.write(message)
        except asyncio.InvalidStateError:
            # The server already ended the call (it refused the upload): surface its status.
            await self._call
            raise


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    value: bytearray = field(default_factory=bytearray)


@dataclass
class UploadForm:
    """What arrived besides the file, and the file's own description."""

    filename: str = ""
    content_type: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidArgument("expected multipart/form-data with a 'file' field")
    return boundary


async def forward(
    body: AsyncIterator[bytes],
    content_type: str | None,
    sink: UploadSink,
    *,
    max_bytes: int,
    idempotency_key: str = "",
    defaults: dict[str, str] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> ingestion_pb2.UploadResponse:
    """Parses the multipart `body` and streams its `file` part to `sink`; returns ingestion's answer.

    Raises PayloadTooLarge when the file exceeds `max_bytes` and InvalidArgument for a malformed form;
    either way the sink is aborted, so ingestion never keeps a partial upload.
    """
    forwarder = _Forwarder(sink, max_bytes, idempotency_key, dict(defaults or {}), chunk_bytes)
    parser = MultipartParser(boundary_of(content_type), cast("MultipartCallbacks", forwarder.callbacks()))
    try:
        async for data in body:
            parser.write(data)
            await forwarder.drain()
        parser.finalize()
        await forwarder.drain()
        return await forwarder.finish()
    except BaseException:
        await sink.abort()
        raise


class _Forwarder:
    """Turns the parser's synchronous callbacks into queued events, then into awaited sink writes."""

    def __init__(
        self, sink: UploadSink, max_bytes: int, idempotency_key: str, defaults: dict[str, str], chunk_bytes: int
    ) -> None:
        self._sink = sink
        self._max = max_bytes
        self._idempotency_key = idempotency_key
        self._chunk_bytes = chunk_bytes
        self.form = UploadForm(fields=defaults)
        self._events: list[tuple[str, bytes]] = []
        self._part: _Part | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._pending = bytearray()
        self._file_seen = False
        self._file_done = False
        self._begun = False
        self._ended = False

    def callbacks(self) -> dict[str, object]:
        def event(name: str) -> object:
            return lambda: self._events.append((name, b""))

        def data(name: str) -> object:
            return lambda buffer, start, end: self._events.append((name, bytes(buffer[start:end])))

        return {
            "on_part_begin": event("part_begin"),
            "on_header_field": data("header_field"),
            "on_header_value": data("header_value"),
            "on_header_end": event("header_end"),
            "on_headers_finished": event("headers_finished"),
            "on_part_data": data("part_data"),
            "on_part_end": event("part_end"),
            "on_end": event("end"),
        }

    async def drain(self) -> None:
        events, self._events = self._events, []
        for name, payload in events:
            await self._handle(name, payload)

    async def _handle(self, name: str, payload: bytes) -> None:
        if name == "part_begin":
            self._part = _Part()
        elif name == "header_field":
            self._header_field += payload
        elif name == "header_value":
            self._header_value += payload
        elif name == "header_end":
            assert self._part is not None
            key = self._header_field.decode("latin-1").strip().lower()
            self._part.headers[key] = self._header_value.decode("utf-8", "replace").strip()
            self._header_field.clear()
            self._header_value.clear()
        elif name == "headers_finished":
            self._start_part()
        elif name == "part_data":
            await self._part_data(payload)
        elif name == "part_end":
            await self._end_part()
        elif name == "end":
            self._ended = True

    def _start_part(self) -> None:
        part = self._part
        assert part is not None
        _, options = parse_options_header(part.headers.get("content-disposition", ""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        part.filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
        part.content_type = part.headers.get("content-type", "")
        if part.name == FILE_FIELD:
            if self._file_seen:
                raise InvalidArgument("only one 'file' per upload")
            self._file_seen = True
            self.form.filename = _basename(part.filename or "") or "upload.pdf"
            self.form.content_type = part.content_type or "application/pdf"
        elif part.name in METADATA_FIELDS and self._file_seen:
            raise InvalidArgument(f"'{part.name}' must come before 'file' in the form")

    async def _part_data(self, payload: bytes) -> None:
        part = self._part
        assert part is not None
        if part.name != FILE_FIELD:
            if len(part.value) + len(payload) > MAX_FIELD_BYTES:
                raise InvalidArgument(f"form field '{part.name}' is too long")
            part.value += payload
            return
        self.form.size_bytes += len(payload)
        if self.form.size_bytes > self._max:
            raise PayloadTooLarge(f"upload is too large: the limit is {self._max} bytes")
        self._pending += payload
        while len(self._pending) >= self._chunk_bytes:
            chunk = bytes(self._pending[: self._chunk_bytes])
            del self._pending[: self._chunk_bytes]
            await self._write(chunk)

    async def _end_part(self) -> None:
        part = self._part
        assert part is not None
        if part.name == FILE_FIELD:
            if self._pending or not self._begun:
                await self._write(bytes(self._pending))
                self._pending.clear()
            self._file_done = True
        elif part.name in METADATA_FIELDS:
            self.form.fields[part.name] = part.value.decode("utf-8", "replace").strip()
        self._part = None

    async def _write(self, chunk: bytes) -> None:
        if not self._begun:
            self._begun = True
            await self._sink.begin(
                ingestion_pb2.UploadMetadata(
                    filename=self.form.filename,
                    content_type=self.form.content_type,
                    idempotency_key=self._idempotency_key,
                    callback_url=self.form.fields.get("callback_url", ""),
                    password=self.form.fields.get("password", ""),
                )
            )
        if chunk:
            await self._sink.write(chunk)

    async def finish(self) -> ingestion_pb2.UploadResponse:
        if not self._file_done:
            raise InvalidArgument("multipart field 'file' is required")
        if not self._ended:
            raise InvalidArgument("incomplete multipart body")
        return await self._sink.finish()


def _basename(filename: str) -> str:
    # Some browsers send a full client path; keep the last component only.
    return filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
