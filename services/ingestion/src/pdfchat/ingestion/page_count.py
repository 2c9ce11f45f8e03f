"""Counting an upload's pages before it is stored, so an over-long PDF is refused (413) up front.

MuPDF runs in one long-lived child process, not in the service: a hostile file can crash or hang that
child, never the ingestion service. A child that dies or overruns the time limit is killed and started
again for the next upload. When the count cannot be had (broken, encrypted, too slow) the upload goes
ahead and worker_pdf gives the precise verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

COUNT_TIMEOUT_SECONDS = 10.0
_CHILD = """
import sys, pymupdf
pymupdf.TOOLS.mupdf_display_errors(False)
for line in sys.stdin:
    try:
        with pymupdf.open(line.rstrip("\\n")) as document:
            print(document.page_count, flush=True)
    except Exception:
        print("?", flush=True)
"""


class PageCounter:
    """Counts pages in the child process, one file at a time (each count takes milliseconds)."""

    def __init__(self, limit_seconds: float = COUNT_TIMEOUT_SECONDS) -> None:
        self._limit = limit_seconds
        self._child: asyncio.subprocess.Process | None = None
        self._turn = asyncio.Lock()

    async def count(self, path: Path) -> int | None:
        """The PDF's page count, or None when MuPDF cannot tell within the time limit."""
        async with self._turn:
            try:
                child = await self._running_child()
                if child.stdin is None or child.stdout is None:
                    raise OSError("the page-counting child has no pipes")
                child.stdin.write(f"{path}\n".encode())
                await child.stdin.drain()
                line = await asyncio.wait_for(child.stdout.readline(), self._limit)
            except (TimeoutError, OSError) as exc:
                log.warning("page counting failed (%r); the child is restarted, worker_pdf will decide", exc)
                await self._stop_child()
                return None
            if not line:  # the child died on this file
                await self._stop_child()
                return None
            text = line.decode(errors="replace").strip()
            return int(text) if text.isdigit() else None

    async def close(self) -> None:
        async with self._turn:
            await self._stop_child()

    async def _running_child(self) -> asyncio.subprocess.Process:
        if self._child is None or self._child.returncode is not None:
            self._child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        return self._child

    async def _stop_child(self) -> None:
        if self._child is not None and self._child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
            await self._child.wait()
        self._child = None
