"""Page-anchored chunking: turns extracted pages into the segments that are embedded and cited.

Promises:
- A chunk never spans pages, so a citation names exactly one page.
- Consecutive blocks on a page are packed into one chunk up to the target size; a block longer than the
  target is split at sentence ends (Chinese 。！？； and English . ! ?), and a sentence longer than the
  target at a space or, for text without spaces, at the target length.
- Each chunk keeps the boxes of the blocks (or, for a split block, of the lines) it came from.
- Ordinals count chunks through the whole document, and a segment's id is derived from
  (document, version, ordinal) only, so parsing the same version again yields the same ids and a
  redelivered job overwrites its segments instead of duplicating them.

Text is normalised: ligatures expanded, zero-width characters dropped, runs of whitespace collapsed,
lines joined with a space except between CJK characters (Chinese has no spaces to restore), and an
English word hyphenated across a line break joined again.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pdfchat.worker_pdf.layout import Box, PageText, TextBlock, union

SEGMENT_NAMESPACE = uuid.UUID("7d9a8adb-9217-5ebe-81e4-5531efac6764")
"""uuid5(NAMESPACE_URL, "https://pdfchat.invalid/segments"); changing it would re-key every segment."""

DEFAULT_TARGET_CHARS = 900

BLOCK_SEPARATOR = "\n"


def segment_id(document_id: str, version: int, ordinal: int) -> str:
    """The segment's id: the same for the same document version and position, whoever computes it."""
    return str(uuid.uuid5(SEGMENT_NAMESPACE, f"{document_id}:{version}:{ordinal}"))


@dataclass(frozen=True)
class Chunk:
    page: int
    """1-based page the text is on."""
    ordinal: int
    """Position in the document, from 0."""
    text: str
    boxes: tuple[Box, ...]
    """Where the text is on the page, one box per block or part of a block, in reading order."""


_LIGATURES = str.maketrans(
    {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"}
)
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_WHITESPACE = re.compile(r"\s+")
_SOFT_HYPHEN = "\u00ad"
# Scripts written without spaces between words: a line break between two of their characters is not a space.
_NO_SPACE_SCRIPT = re.compile(
    r"[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
)
_HYPHENATED_END = re.compile(r"[A-Za-z\u00c0-\u024f][-\u00ad]$")
# A sentence ends after CJK or ASCII ! ? (and ；), or after a period followed by whitespace or the end;
# closing quotes and brackets stay with their sentence.
_SENTENCE_END = re.compile(r"(?:[。！？；!?]+|\.(?=[\"'”’)\]」』）]*(?:\s|$)))[\"'”’)\]」』）]*")


def normalise_line(text: str) -> str:
    """One line's text with ligatures expanded, invisible characters dropped and whitespace collapsed."""
    return _WHITESPACE.sub(" ", _INVISIBLE.sub("", text.translate(_LIGATURES))).strip()


def _joiner(left: str, right: str) -> tuple[str, str]:
    """How two consecutive lines are joined: (left, possibly without its hyphen, separator)."""
    if _HYPHENATED_END.search(left) and right[:1].islower():
        return left[:-1], ""
    if left.endswith(_SOFT_HYPHEN):
        return left[:-1], ""
    if _NO_SPACE_SCRIPT.match(left[-1]) or _NO_SPACE_SCRIPT.match(right[0]):
        return left, ""
    return left, " "


@dataclass(frozen=True)
class _BlockText:
    text: str
    line_spans: tuple[tuple[int, int, Box], ...]
    """(start, end, box) of each line's text in `text`."""
    box: Box

    def boxes_between(self, start: int, end: int) -> Box:
        """The box of the lines that hold text[start:end]."""
        covered = [box for line_start, line_end, box in self.line_spans if line_start < end and line_end > start]
        return union(covered) if covered else self.box


def _block_text(block: TextBlock) -> _BlockText | None:
    lines = [(_without_inner_soft_hyphens(normalise_line(line.text)), line.box) for line in block.lines]
    lines = [(text, box) for text, box in lines if text]
    if not lines:
        return None
    text = ""
    spans: list[tuple[int, int, Box]] = []
    for line_text, box in lines:
        if text:
            kept, separator = _joiner(text, line_text)
            if len(kept) < len(text) and spans:  # the hyphen went: the previous line ends one earlier
                start, _, previous_box = spans[-1]
                spans[-1] = (start, len(kept), previous_box)
            text = kept + separator
        spans.append((len(text), len(text) + len(line_text), box))
        text += line_text
    return _BlockText(text=text.rstrip(_SOFT_HYPHEN), line_spans=tuple(spans), box=block.box)


def _without_inner_soft_hyphens(line: str) -> str:
    """Drops soft hyphens except one at the end, which marks a word broken across lines."""
    return line[:-1].replace(_SOFT_HYPHEN, "") + line[-1:]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `text`, whitespace between sentences left out."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for span_start, span_end in spans:
        while span_start < span_end and text[span_start].isspace():
            span_start += 1
        while span_end > span_start and text[span_end - 1].isspace():
            span_end -= 1
        if span_start < span_end:
            trimmed.append((span_start, span_end))
    return trimmed


def _hard_split(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Splits text[start:end] into pieces of at most `limit`, at a space when there is one late enough."""
    pieces = []
    while end - start > limit:
        cut = text.rfind(" ", start + limit // 2, start + limit + 1)
        if cut <= start:
            cut = start + limit
        pieces.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def _split_block(block: _BlockText, target: int) -> list[tuple[str, Box]]:
    """A block as pieces of about `target` characters (balanced, so no tiny remainder), with their boxes."""
    if len(block.text) <= target:
        return [(block.text, block.box)]
    balanced = math.ceil(len(block.text) / math.ceil(len(block.text) / target))
    sentences: list[tuple[int, int]] = []
    for start, end in sentence_spans(block.text):
        sentences.extend(_hard_split(block.text, start, end, target))
    pieces: list[tuple[str, Box]] = []
    first = last = -1
    for start, end in sentences:
        if first >= 0 and (end - first > target or last - first >= balanced):
            pieces.append((block.text[first:last], block.boxes_between(first, last)))
            first = -1
        if first < 0:
            first = start
        last = end
    if first >= 0:
        pieces.append((block.text[first:last], block.boxes_between(first, last)))
    return pieces


def chunk_pages(
    pages: Iterable[PageText], target_chars: int = DEFAULT_TARGET_CHARS, first_ordinal: int = 0
) -> list[Chunk]:
    """Chunks of `pages` in reading order, numbered from `first_ordinal`.

    Chunking a document page range by page range, passing on the next ordinal, gives the same chunks
    as chunking it whole.
    """
    chunks: list[Chunk] = []
    for page in pages:
        chunks.extend(_chunk_page(page, target_chars, first_ordinal + len(chunks)))
    return chunks


def _chunk_page(page: PageText, target_chars: int, first_ordinal: int) -> list[Chunk]:
    packed: list[tuple[list[str], list[Box]]] = [([], [])]
    size = 0
    for block in page.blocks:
        block_text = _block_text(block)
        if block_text is None:
            continue
        for piece, box in _split_block(block_text, target_chars):
            texts, boxes = packed[-1]
            if texts and size + len(BLOCK_SEPARATOR) + len(piece) > target_chars:
                texts, boxes = [], []
                packed.append((texts, boxes))
            size = len(piece) if not texts else size + len(BLOCK_SEPARATOR) + len(piece)
            texts.append(piece)
            boxes.append(box)
    chunks: list[Chunk] = []
    for texts, boxes in packed:
        text = BLOCK_SEPARATOR.join(texts).strip()
        if text:
            chunks.append(Chunk(page=page.number, ordinal=first_ordinal + len(chunks), text=text, boxes=tuple(boxes)))
    return chunks
