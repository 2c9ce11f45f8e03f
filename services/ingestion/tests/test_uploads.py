"""Unit tests of upload spooling and validation (no network)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from pdfchat.common.errors import InvalidArgument, PayloadTooLarge
from pdfchat.ingestion import uploads


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def spooled_files(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"%PDF-1.7\n...", True),
        (b"\r\n \t%PDF-1.4", True),
        (b"x" * 1023 + b"%PDF-1.4", True),
        (b"x" * 1024 + b"%PDF-1.4", False),
        (b"PK\x03\x04 a zip file", False),
        (b"%PDF", False),
        (b"", False),
    ],
)
def test_looks_like_pdf_accepts_a_header_within_the_first_1024_bytes(head: bytes, expected: bool) -> None:
    assert uploads.looks_like_pdf(head) is expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("  ", "document.pdf"),
        ("", "document.pdf"),
        ("a\x00b.pdf", "ab.pdf"),
    ],
)
def test_clean_filename_keeps_only_the_last_printable_component(given: str, expected: str) -> None:
    assert uploads.clean_filename(given) == expected


async def test_receive_spools_the_stream_with_its_size_and_sha256(tmp_path: Path) -> None:
    chunks = [b"garbage\n%PDF-1.5\n", b"x" * 5000, b"%%EOF\n"]
    content = b"".join(chunks)
    async with uploads.receive(stream(chunks), max_bytes=10_000, temp_dir=str(tmp_path)) as received:
        assert received.size_bytes == len(content)
        assert received.sha256 == hashlib.sha256(content).hexdigest()
        assert received.path.read_bytes() == content
    assert spooled_files(tmp_path) == []


async def test_header_split_across_chunks_is_recognised(tmp_path: Path) -> None:
    async with uploads.receive(stream([b"%P", b"DF", b"-1.4\n"]), max_bytes=100, temp_dir=str(tmp_path)) as received:
        assert received.size_bytes == 9


async def test_upload_over_the_limit_is_refused_with_the_limit_in_the_message(tmp_path: Path) -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(1000):
            pulled.append(index)
            yield b"%PDF-" + b"x" * 995

    with pytest.raises(PayloadTooLarge, match="file is larger than the limit of 4096 bytes"):
        async with uploads.receive(endless(), max_bytes=4096, temp_dir=str(tmp_path)):
            pass
    assert len(pulled) == 5, "reading must stop at the first chunk over the limit"
    assert spooled_files(tmp_path) == []


async def test_upload_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    content = b"%PDF-" + b"x" * 95
    async with uploads.receive(stream([content]), max_bytes=100, temp_dir=str(tmp_path)) as received:
        assert received.size_bytes == 100


async def test_empty_upload_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="file is empty"):
        async with uploads.receive(stream([b"", b""]), max_bytes=100, temp_dir=str(tmp_path)):
            pass
    assert spooled_files(tmp_path) == []


async def test_file_without_pdf_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a PDF") as raised:
        async with uploads.receive(stream([b"hello, world"]), max_bytes=100, temp_dir=str(tmp_path)):
            pass
    assert not isinstance(raised.value, PayloadTooLarge)
    assert spooled_files(tmp_path) == []


async def test_spool_file_is_removed_when_the_caller_fails(tmp_path: Path) -> None:
    spooled: list[Path] = []

    async def store_fails() -> None:
        async with uploads.receive(stream([b"%PDF-1.4"]), max_bytes=100, temp_dir=str(tmp_path)) as received:
            spooled.append(received.path)
            raise RuntimeError("store failed")

    with pytest.raises(RuntimeError):
        await store_fails()
    assert spooled
    assert spooled_files(tmp_path) == []
