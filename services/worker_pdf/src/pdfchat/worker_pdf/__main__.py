"""Starts worker_pdf: gRPC health on the port of PDFCHAT_WORKER_PDF_ADDR, and the parse job consumer."""

from __future__ import annotations

import asyncio

from pdfchat.common.grpc_server import serve
from pdfchat.common.logs import configure_logging
from pdfchat.worker_pdf.server import SERVICE, build_spec
from pdfchat.worker_pdf.settings import WorkerPdfSettings


async def main() -> None:
    settings = WorkerPdfSettings()
    configure_logging(SERVICE, settings.log_level)
    await serve(build_spec(settings), settings)


if __name__ == "__main__":
    asyncio.run(main())
