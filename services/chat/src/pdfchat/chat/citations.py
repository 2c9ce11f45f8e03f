"""Retrieved passages and the citations built from them.

An answer numbers its passages [1]..[n] in retrieval order; that numbering is the contract between the
prompt, the streamed tokens and the citations event (citation n is `citations[n - 1]`). The stored
message keeps every passage in that order, each marked with whether the answer cites it, so a reloaded
answer still resolves its [n] to the right page and box.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pdfchat.v1 import common_pb2

QUOTE_LIMIT = 400
"""Characters of a passage shown as a citation's quote."""

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in PDF points, origin top-left."""


@dataclass(frozen=True)
class Passage:
    """A segment retrieved for a question."""

    segment_id: str
    document_id: str
    page: int
    """1-based."""
    text: str
    score: float
    version: int = 0
    boxes: tuple[Box, ...] = field(default_factory=tuple)


_SENTENCE_END_CJK = "。！？；"
_SENTENCE_END_LATIN = ".!?;"
_CLAUSE_BREAK_CJK = "，、：,"
_CJK = r"\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
# A line break inside CJK text is layout, not a space: drop it rather than insert one.
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Collapses PDF layout whitespace: runs become one space, and none between CJK characters."""
    return _SPACE.sub(" ", _CJK_GAP.sub("", text)).strip()


def trim_quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """The passage shortened to about `limit` characters without cutting a sentence or word in half.

    Prefers the last sentence end in the second half of the window; else the last clause break or space
    (then an ellipsis marks the cut); Chinese text without either is cut at the limit.
    """
    text = normalize_text(text)
    if len(text) <= limit:
        return text
    window = text[:limit]
    floor = limit // 2
    for index in range(len(window) - 1, floor - 1, -1):
        char = window[index]
        if char in _SENTENCE_END_CJK:
            return window[: index + 1]
        # "3.5" and "e.g.x" are not sentence ends: a Latin end needs a space after it.
        if char in _SENTENCE_END_LATIN and text[index + 1 : index + 2] == " ":
            return window[: index + 1]
    for index in range(len(window) - 1, floor - 1, -1):
        char = window[index]
        if char in _CLAUSE_BREAK_CJK:
            return window[: index + 1] + "…"
        if char == " ":
            return window[:index].rstrip() + "…"
    return window + "…"


def build_citations(passages: Sequence[Passage]) -> list[common_pb2.Citation]:
    """One citation per passage, in the passages' order (citation n is passage n of the prompt)."""
    return [
        common_pb2.Citation(
            document_id=passage.document_id,
            page=passage.page,
            quote=trim_quote(passage.text),
            score=passage.score,
            segment_id=passage.segment_id,
            boxes=[common_pb2.BoundingBox(x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for b in passage.boxes],
        )
        for passage in passages
    ]


_MARKER = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")


def cited_numbers(answer: str, count: int) -> list[int]:
    """The passage numbers (1-based, within 1..count) the answer cites as [n], [n, m] or 【n】, in order of
    first mention."""
    seen: list[int] = []
    for match in _MARKER.finditer(answer):
        for number in re.split(r"[,，、]", match.group(1)):
            value = int(number)
            if 1 <= value <= count and value not in seen:
                seen.append(value)
    return seen


def cited_citations(answer: str, citations: Sequence[common_pb2.Citation]) -> list[common_pb2.Citation]:
    """The citations the answer refers to, in order of first mention; all of them when it cites none."""
    numbers = cited_numbers(answer, len(citations))
    if not numbers:
        return list(citations)
    return [citations[number - 1] for number in numbers]


def to_records(citations: Sequence[common_pb2.Citation], cited: Sequence[int]) -> list[dict[str, Any]]:
    """JSON records of all citations in order; "cited" is the rank of its first mention in the answer
    (1 for the first cited), 0 when the answer does not cite it."""
    rank = {number: position for position, number in enumerate(cited, start=1)}
    return [
        {
            "document_id": citation.document_id,
            "page": citation.page,
            "quote": citation.quote,
            "score": citation.score,
            "segment_id": citation.segment_id,
            "boxes": [[box.x0, box.y0, box.x1, box.y1] for box in citation.boxes],
            "cited": rank.get(number, 0),
        }
        for number, citation in enumerate(citations, start=1)
    ]


def from_records(records: Iterable[dict[str, Any]]) -> list[common_pb2.Citation]:
    return [
        common_pb2.Citation(
            document_id=record.get("document_id", ""),
            page=int(record.get("page", 0)),
            quote=record.get("quote", ""),
            score=float(record.get("score", 0.0)),
            segment_id=record.get("segment_id", ""),
            boxes=[common_pb2.BoundingBox(x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for b in record.get("boxes", [])],
        )
        for record in records
    ]


def cited_from_records(records: Sequence[dict[str, Any]]) -> list[common_pb2.Citation]:
    """A stored message's citations as its end event listed them: the cited ones in order of first mention,
    or all of them when the answer cites none."""
    marked = sorted((record for record in records if record.get("cited")), key=lambda record: int(record["cited"]))
    return from_records(marked or records)


def select_passages(candidates: Sequence[Passage], top_k: int) -> list[Passage]:
    """The `top_k` best passages, best first, without repeats: a segment, or the same text on the same
    page (a document indexed twice), counts once."""
    chosen: list[Passage] = []
    seen: set[tuple[str, ...]] = set()
    for passage in sorted(candidates, key=lambda p: p.score, reverse=True):
        keys = {("segment", passage.segment_id), ("text", str(passage.page), normalize_text(passage.text))}
        if keys & seen:
            continue
        seen |= keys
        chosen.append(passage)
        if len(chosen) == top_k:
            break
    return chosen
