"""Receiving an upload: the bytes stream into a temporary file while their SHA-256 is computed.

Nothing is held in memory beyond one chunk, the size limit is enforced as the bytes arrive (a client
cannot make the service spool more than the limit), and the temporary file is removed when the
`receive()` block ends, whatever happens. The checks here are what can be decided from the bytes alone:
not empty, not too large, looks like a PDF.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from pdfchat.common.errors import InvalidArgument, PayloadTooLarge

PDF_MAGIC = b"%PDF-"
HEADER_WINDOW = 1024
"""PDF readers (Acrobat, PyMuPDF) accept a header anywhere in the first 1024 bytes, after whatever junk."""
DEFAULT_FILENAME = "document.pdf"
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class ReceivedFile:
    """An upload spooled to disk; valid only inside its `receive()` block."""

    path: Path
    size_bytes: int
    sha256: str


def looks_like_pdf(head: bytes) -> bool:
    """True when `%PDF-` starts within the first HEADER_WINDOW bytes of the file."""
    position = head.find(PDF_MAGIC, 0, HEADER_WINDOW + len(PDF_MAGIC) - 1)
    return 0 <= position < HEADER_WINDOW


def clean_filename(filename: str) -> str:
    """The name to show for an upload: its last path component, trimmed; a default when none is given."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:MAX_FILENAME_CHARS] or DEFAULT_FILENAME


@asynccontextmanager
async def receive(
    chunks: AsyncIterable[bytes], *, max_bytes: int, temp_dir: str | None = None
) -> AsyncIterator[ReceivedFile]:
    """Spools `chunks` to a temporary file and yields it once the stream ends and the bytes pass the checks.

    Raises:
        PayloadTooLarge: the stream went over `max_bytes` (reading stops right there).
        InvalidArgument: the file is empty, or it is not a PDF.
    """
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".pdf", dir=temp_dir)
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        head = b""
        with os.fdopen(fd, "wb") as spool:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"file is larger than the limit of {max_bytes} bytes")
                if len(head) < HEADER_WINDOW + len(PDF_MAGIC):
                    head += chunk[: HEADER_WINDOW + len(PDF_MAGIC) - len(head)]
                digest.update(chunk)
                await asyncio.to_thread(spool.write, chunk)
        if size == 0:
            raise InvalidArgument("file is empty")
        if not looks_like_pdf(head):
            raise InvalidArgument("not a PDF")
        yield ReceivedFile(path=path, size_bytes=size, sha256=digest.hexdigest())
    finally:
        with suppress(FileNotFoundError):
            path.unlink()
