"""The fixed corpus: the question-answering PDFs in ../shared/data/qa plus generated, deterministic PDFs.

Generated PDFs depend only on their page count and seed, so every run parses, chunks and embeds the
same text and the figures of two runs are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pymupdf

from pdfchat_tools.sample_pdfs import generated_pdf

SHARED_QA = Path(__file__).resolve().parents[3] / "shared" / "data" / "qa"
LONG_PDF_PAGES = 300
QUICK_LONG_PDF_PAGES = 30
QUICK_QA_FILES = 6


@dataclass(frozen=True)
class CorpusPdf:
    name: str
    data: bytes
    pages: int


def page_count(data: bytes) -> int:
    with pymupdf.open(stream=data, filetype="pdf") as document:
        return int(document.page_count)


def qa_pdfs(root: Path = SHARED_QA) -> list[Path]:
    """xquad en and zh documents and the cmrc2018 documents, in a fixed order."""
    pdfs = sorted(root.glob("xquad/*/docs/*.pdf")) + sorted(root.glob("cmrc2018/docs/*.pdf"))
    if not pdfs:
        raise SystemExit(f"no PDFs under {root}: the shared QA data is missing")
    return pdfs


def load(*, quick: bool) -> list[CorpusPdf]:
    paths = qa_pdfs()
    if quick:
        paths = paths[: QUICK_QA_FILES // 2] + paths[-(QUICK_QA_FILES // 2) :]
    corpus = []
    for path in paths:
        data = path.read_bytes()
        corpus.append(CorpusPdf(f"{path.parent.parent.name}-{path.name}", data, page_count(data)))
    pages = QUICK_LONG_PDF_PAGES if quick else LONG_PDF_PAGES
    long_pdf = generated_pdf(pages, seed=300)
    corpus.append(CorpusPdf(f"generated-{pages}-pages.pdf", long_pdf, pages))
    return corpus
