"""Text extraction with PyMuPDF in a child process, one page at a time, each page bounded in time.

Reading order is the order of the page's content stream, not PyMuPDF's `sort=True`: that sort orders
blocks by their top edge, which interleaves the columns of a two-column paper (see the multicolumn test),
while producers of born-digital PDFs (LaTeX, Word, browsers) write text in reading order.

Why a child process: MuPDF cannot be interrupted from Python, and a damaged page can make it spin for
minutes (or crash the process). Each opened document lives in its own child process (started from a
forkserver that has PyMuPDF preloaded, so a start costs milliseconds); the parent waits for each page at
most `page_time_limit` seconds. A page that takes longer, makes MuPDF raise, or kills the child is
recorded as failed and has no text; the child is replaced (the document reopened) and the next page is
read. Parsing also stays off the event loop and jobs parse in parallel on separate cores.

Input that can never be parsed raises `UnreadablePdf` with a reason a user can read.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import time
from dataclasses import dataclass, field
from typing import Any

from pdfchat.worker_pdf._page_reader import (
    NO_PAGES,
    NOT_READABLE,
    PASSWORD_REQUIRED,
    WRONG_PASSWORD,
    PageRead,
    ReadOptions,
    UnreadablePdf,
    serve,
)
from pdfchat.worker_pdf.layout import PageText

__all__ = [
    "NOT_READABLE",
    "NO_PAGES",
    "PASSWORD_REQUIRED",
    "WRONG_PASSWORD",
    "ExtractionLimits",
    "PageOutcome",
    "PdfFile",
    "ReadOptions",
    "UnreadablePdf",
    "extract_text",
    "open_pdf",
]

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["pdfchat.worker_pdf._page_reader"])


@dataclass(frozen=True)
class ExtractionLimits:
    page_time_limit: float = 30.0
    """Seconds one page may take (OCR included) before it is given up as having no text."""
    open_time_limit: float = 60.0
    """Seconds opening (and repairing) the file may take."""
    read: ReadOptions = field(default_factory=ReadOptions)


@dataclass(frozen=True)
class PageOutcome:
    page: PageText
    failure: str = ""
    """Why the page has no text although it may have some: MuPDF failed on it or it took too long."""
    ocr_unavailable: bool = False


class _ChildGone(Exception):
    pass


class _TooSlow(Exception):
    """The child did not answer in time and was killed (not TimeoutError: that is an OSError)."""


class _Child:
    """One parser process and the pipe to it; requests are strictly one at a time."""

    def __init__(self) -> None:
        parent, child = _CONTEXT.Pipe()
        self._connection: multiprocessing.connection.Connection = parent
        self._process = _CONTEXT.Process(target=serve, args=(child,), daemon=True, name="pdf-parser")
        self._process.start()
        child.close()

    async def call(self, request: tuple[Any, ...], seconds: float) -> tuple[str, Any]:
        """The child's answer; _TooSlow (the child is killed) or _ChildGone when there is none."""
        return await asyncio.get_running_loop().run_in_executor(None, self._call, request, seconds)

    def _call(self, request: tuple[Any, ...], timeout: float) -> tuple[str, Any]:
        try:
            self._connection.send(request)
            answered = self._connection.poll(timeout)
            if answered:
                reply: tuple[str, Any] = self._connection.recv()
                return reply
        except (EOFError, OSError) as exc:
            self.kill()
            raise _ChildGone(f"the parser process stopped (exit code {self._process.exitcode})") from exc
        self.kill()
        raise _TooSlow

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5)
        self._connection.close()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.kill)


class PdfFile:
    """An opened PDF. Use it from one task at a time and `close()` it when done."""

    def __init__(self, child: _Child, data: bytes, password: str, page_count: int, limits: ExtractionLimits) -> None:
        self._child: _Child | None = child
        self._data = data
        self._password = password
        self._limits = limits
        self.page_count = page_count

    async def extract_pages(self, first: int, last: int, deadline: float | None = None) -> list[PageOutcome]:
        """Pages `first`..`last` (1-based, inclusive); pages not started by `deadline` (monotonic) fail."""
        if not 1 <= first <= last <= self.page_count:
            raise ValueError(f"page range {first}-{last} outside 1-{self.page_count}")
        outcomes = []
        for number in range(first, last + 1):
            if deadline is not None and time.monotonic() >= deadline:
                outcomes.append(PageOutcome(PageText(number, ()), failure="the job's time limit was reached"))
                continue
            outcomes.append(await self._extract_page(number))
        return outcomes

    async def _extract_page(self, number: int) -> PageOutcome:
        failed = PageText(number=number, blocks=())
        try:
            child = await self._running_child()
            kind, value = await child.call(("page", number, self._limits.read), self._limits.page_time_limit)
        except _TooSlow:
            self._child = None
            return PageOutcome(failed, failure=f"took longer than {self._limits.page_time_limit:g} s")
        except _ChildGone as exc:
            self._child = None
            return PageOutcome(failed, failure=str(exc))
        except UnreadablePdf as exc:  # reopening after a failed page failed
            return PageOutcome(failed, failure=exc.reason)
        if kind != "ok":
            return PageOutcome(failed, failure=str(value))
        read: PageRead = value
        return PageOutcome(read.page, ocr_unavailable=read.ocr_unavailable)

    async def _running_child(self) -> _Child:
        if self._child is None:  # the last page killed it: a fresh process with the document opened again
            self._child, _ = await _open_child(self._data, self._password, False, self._limits)
        return self._child

    async def close(self) -> None:
        if self._child is not None:
            child, self._child = self._child, None
            await child.close()


async def _open_child(data: bytes, password: str, probe: bool, limits: ExtractionLimits) -> tuple[_Child, int]:
    """A new child process with the document open in it, and the document's page count."""
    child = await asyncio.get_running_loop().run_in_executor(None, _Child)
    try:
        kind, value = await child.call(("open", data, password, probe), limits.open_time_limit)
    except _TooSlow as exc:
        raise UnreadablePdf(f"{NOT_READABLE}: opening it took longer than {limits.open_time_limit:g} s") from exc
    except _ChildGone as exc:
        raise UnreadablePdf(f"{NOT_READABLE}: {exc}") from exc
    except BaseException:
        await child.close()
        raise
    if kind != "ok":
        await child.close()
        raise UnreadablePdf(str(value) if kind == "unreadable" else f"{NOT_READABLE}: {value}")
    return child, int(value)


async def open_pdf(
    data: bytes, password: str = "", limits: ExtractionLimits | None = None, probe: bool = True
) -> PdfFile:
    """Opens a PDF from its bytes; raises UnreadablePdf for broken, empty, page-less files and for an
    encrypted one without its password (`PASSWORD_REQUIRED`) or with another (`WRONG_PASSWORD`).

    With `probe`, a file none of whose pages can be loaded (e.g. a cycle in the page tree) is unreadable.
    """
    limits = limits or ExtractionLimits()
    if not data:
        raise UnreadablePdf(f"{NOT_READABLE}: the file is empty")
    child, page_count = await _open_child(data, password, probe, limits)
    return PdfFile(child, data, password, page_count, limits)


async def extract_text(data: bytes, password: str = "", limits: ExtractionLimits | None = None) -> list[PageText]:
    """Every page's text; a convenience for callers that need no progress between page ranges."""
    pdf = await open_pdf(data, password, limits)
    try:
        return [outcome.page for outcome in await pdf.extract_pages(1, pdf.page_count)]
    finally:
        await pdf.close()
