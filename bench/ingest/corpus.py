"""The fixed corpus: the question-answering PDFs in ../shared/data/qa plus generated, deterministic PDFs.

Generated PDFs depend only on their page count and seed, so every run parses, chunks and embeds the
same text and the figures of two runs are comparable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pymupdf

SHARED_QA = Path(__file__).resolve().parents[3] / "shared" / "data" / "qa"
LONG_PDF_PAGES = 300
QUICK_LONG_PDF_PAGES = 30
QUICK_QA_FILES = 6

_WORDS = [
    "ingestion",
    "pipeline",
    "segment",
    "vector",
    "embedding",
    "worker",
    "replica",
    "stream",
    "durable",
    "consumer",
    "acknowledge",
    "page",
    "range",
    "chunk",
    "heading",
    "paragraph",
    "table",
    "retrieval",
    "citation",
    "tenant",
    "gateway",
    "ledger",
    "budget",
    "provider",
    "fallback",
    "cache",
    "latency",
    "throughput",
    "document",
    "version",
    "reprocess",
    "delete",
    "watcher",
    "progress",
]


@dataclass(frozen=True)
class CorpusPdf:
    name: str
    data: bytes
    pages: int


def generated_pdf(pages: int, *, seed: int, paragraphs: int = 3) -> bytes:
    """A text PDF of `pages` pages: a heading and `paragraphs` paragraphs of ~90 words on each page."""
    rng = random.Random(seed)
    document = pymupdf.open()
    for number in range(1, pages + 1):
        page = document.new_page()
        page.insert_text((72, 60), f"Chapter {number // 10 + 1}, section {number}", fontsize=14)
        top = 80.0
        for paragraph in range(paragraphs):
            words = " ".join(rng.choice(_WORDS) for _ in range(90))
            text = f"Page {number}, paragraph {paragraph + 1}. {words.capitalize()}."
            page.insert_textbox(pymupdf.Rect(72, top, 540, top + 150), text, fontsize=10)
            top += 160
    data: bytes = document.tobytes(garbage=3, deflate=True)
    document.close()
    return data


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
