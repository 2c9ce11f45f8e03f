"""Deterministic synthetic PDFs for tests and benchmarks: any number of text pages, same bytes for the same seed."""

from __future__ import annotations

import random

import pymupdf

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
]


def generated_pdf(pages: int, *, seed: int = 7, paragraphs: int = 3, words_per_paragraph: int = 90) -> bytes:
    """A text PDF of `pages` pages: a heading, then `paragraphs` paragraphs that name their page."""
    rng = random.Random(seed)
    document = pymupdf.open()
    for number in range(1, pages + 1):
        page = document.new_page()
        page.insert_text((72, 60), f"Chapter {number // 10 + 1}, section {number}", fontsize=14)
        top = 80.0
        for paragraph in range(paragraphs):
            words = " ".join(rng.choice(_WORDS) for _ in range(words_per_paragraph))
            text = f"Page {number}, paragraph {paragraph + 1}. {words.capitalize()}."
            page.insert_textbox(pymupdf.Rect(72, top, 540, top + 150), text, fontsize=10)
            top += 160
    data: bytes = document.tobytes(garbage=3, deflate=True)
    document.close()
    return data
