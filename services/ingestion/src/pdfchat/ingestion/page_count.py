"""Counting an upload's pages before it is stored, so an over-long PDF is refused (413) up front.

MuPDF runs in a short-lived child process with a time limit: a hostile file can crash or hang that
child, never the ingestion service. When the count cannot be had (broken, encrypted, too slow) the upload
goes ahead and worker_pdf gives the precise verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

COUNT_TIMEOUT_SECONDS = 10.0
_SCRIPT = "import sys, pymupdf\nwith pymupdf.open(sys.argv[1]) as doc:\n    print(doc.page_count)\n"


async def count_pages(path: Path, limit_seconds: float = COUNT_TIMEOUT_SECONDS) -> int | None:
    """The PDF's page count, or None when MuPDF cannot tell within `limit_seconds`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SCRIPT,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), limit_seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        log.warning("counting the pages of an upload took over %.0fs; worker_pdf will decide", limit_seconds)
        return None
    text = out.decode(errors="replace").strip()
    if process.returncode != 0 or not text.isdigit():
        return None
    return int(text)
