"""Text extraction with PyMuPDF: text blocks with their boxes, page by page, in reading order.

Reading order is the order of the page's content stream, not PyMuPDF's `sort=True`: that sort orders
blocks by their top edge, which interleaves the columns of a two-column paper (see the multicolumn test),
while producers of born-digital PDFs (LaTeX, Word, browsers) write text in reading order.

MuPDF is not thread-safe, so every PyMuPDF call in this process runs on one dedicated thread
(`_MUPDF_THREAD`): parsing stays off the event loop (heartbeats, progress reports and other jobs' I/O go
on), and concurrent jobs take turns on the parser. More parsing throughput comes from more replicas.

Input that can never be parsed raises `UnreadablePdf` with a reason a user can read; nothing else is
caught here, so a bug is not mistaken for a bad file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pymupdf

from pdfchat.worker_pdf.layout import PageText, TextBlock, TextLine, union

PASSWORD_REQUIRED = "password required"
NO_PAGES = "the PDF has no pages"
NOT_READABLE = "the file is not a readable PDF"

# Ligatures come out expanded ("fi", not U+FB01) so text matches what people type; images are left out.
_TEXT_FLAGS = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_LIGATURES & ~pymupdf.TEXT_PRESERVE_IMAGES

# What MuPDF raises for damaged input: FileDataError is a RuntimeError; FzErrorBase (e.g. "cycle in page
# tree" on page access) is not.
_MUPDF_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)

_MUPDF_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mupdf")

# MuPDF prints its errors and warnings to stderr; they arrive as exceptions or are irrelevant here.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

T = TypeVar("T")


class UnreadablePdf(Exception):
    """The file can never be parsed; `reason` says why in words a user understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _on_mupdf_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_MUPDF_THREAD, function, *args)


def _describe(exc: BaseException) -> str:
    """MuPDF's message without its error-code prefix, e.g. 'cycle in page tree'."""
    message = re.sub(r"^code=\d+:\s*", "", str(exc).strip()) or type(exc).__name__
    return message[:1].lower() + message[1:]


def _unreadable(exc: BaseException) -> UnreadablePdf:
    return UnreadablePdf(f"{NOT_READABLE}: {_describe(exc)}")


class PdfFile:
    """An opened PDF. Use it from one task at a time and `close()` it when done."""

    def __init__(self, document: pymupdf.Document) -> None:
        self._document = document
        self.page_count: int = document.page_count

    async def extract_pages(self, first: int, last: int) -> list[PageText]:
        """Text of pages `first`..`last` (1-based, inclusive)."""
        if not 1 <= first <= last <= self.page_count:
            raise ValueError(f"page range {first}-{last} outside 1-{self.page_count}")
        return await _on_mupdf_thread(self._extract_pages, first, last)

    def _extract_pages(self, first: int, last: int) -> list[PageText]:
        try:
            return [_page_text(self._document[number - 1], number) for number in range(first, last + 1)]
        except _MUPDF_ERRORS as exc:
            raise _unreadable(exc) from exc

    async def close(self) -> None:
        await _on_mupdf_thread(self._document.close)


async def open_pdf(data: bytes) -> PdfFile:
    """Opens a PDF from its bytes; raises UnreadablePdf for encrypted, broken or empty files."""
    return PdfFile(await _on_mupdf_thread(_open, data))


def _open(data: bytes) -> pymupdf.Document:
    if not data:
        raise UnreadablePdf(f"{NOT_READABLE}: the file is empty")
    try:
        document = pymupdf.open(stream=data, filetype="pdf")
    except _MUPDF_ERRORS as exc:
        raise _unreadable(exc) from exc
    # needs_pass stays true only when the empty user password does not open the file.
    if document.needs_pass:
        document.close()
        raise UnreadablePdf(PASSWORD_REQUIRED)
    try:
        pages = document.page_count
    except _MUPDF_ERRORS as exc:
        document.close()
        raise _unreadable(exc) from exc
    if pages == 0:
        document.close()
        raise UnreadablePdf(NO_PAGES)
    return document


def _page_text(page: pymupdf.Page, number: int) -> PageText:
    layout = page.get_text("dict", flags=_TEXT_FLAGS)
    blocks: list[TextBlock] = []
    for block in layout.get("blocks", ()):
        if block.get("type") != 0:  # 1 is an image block
            continue
        lines = []
        for line in block.get("lines", ()):
            text = "".join(span.get("text", "") for span in line.get("spans", ()))
            if text.strip():
                x0, y0, x1, y1 = line["bbox"]
                lines.append(TextLine(text=text, box=(float(x0), float(y0), float(x1), float(y1))))
        if lines:
            blocks.append(TextBlock(lines=tuple(lines), box=union([line.box for line in lines])))
    return PageText(number=number, blocks=tuple(blocks))


async def extract_text(data: bytes) -> list[PageText]:
    """Every page's text; a convenience for callers that need no progress between page ranges."""
    pdf = await open_pdf(data)
    try:
        return await pdf.extract_pages(1, pdf.page_count) if pdf.page_count else []
    finally:
        await pdf.close()
