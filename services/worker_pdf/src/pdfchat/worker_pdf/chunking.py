"""Page-anchored chunking: turns extracted pages into the segments that are embedded and cited.

Promises:
- A chunk never spans pages, so a citation names exactly one page.
- Consecutive blocks on a page are packed into one chunk up to the target size; a block longer than the
  target is split at sentence ends (Chinese 。！？； and English . ! ?), and a sentence longer than the
  target at a space or, for text without spaces, at the target length.
- Each chunk keeps the boxes of the blocks (or, for a split block, of the lines) it came from.
- Structure: a heading (as extraction marks it) stays with the paragraph after it; a table no longer than
  the target is one piece, kept whole, and a longer one is split between rows; other blocks (paragraphs)
  are packed as above.
- Ordinals are `page * 10000 + index of the chunk on its page`: unique in the document and computable
  from one page alone, so page ranges parsed by different workers never collide. A segment's id is derived
  from (document, version, ordinal) only, so parsing the same version again yields the same ids and a
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

from pdfchat.worker_pdf.layout import BlockKind, Box, PageText, TextBlock, union

SEGMENT_NAMESPACE = uuid.UUID("7d9a8adb-9217-5ebe-81e4-5531efac6764")
"""uuid5(NAMESPACE_URL, "https://pdfchat.invalid/segments"); changing it would re-key every segment."""

DEFAULT_TARGET_CHARS = 900

BLOCK_SEPARATOR = "\n"

ORDINALS_PER_PAGE = 10_000


def segment_id(document_id: str, version: int, ordinal: int) -> str:
    """The segment's id: the same for the same document version and position, whoever computes it."""
    return str(uuid.uuid5(SEGMENT_NAMESPACE, f"{document_id}:{version}:{ordinal}"))


@dataclass(frozen=True)
class Chunk:
    page: int
    """1-based page the text is on."""
    ordinal: int
    """Position in the document: `page * 10000 + index on the page` (ordered, not contiguous)."""
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


def page_ordinal(page: int, index: int) -> int:
    """The ordinal of the `index`-th chunk (from 0) of 1-based `page`: unique in the document and known
    without looking at any other page, so page ranges parsed by different workers never collide."""
    if not 0 <= index < ORDINALS_PER_PAGE:
        raise ValueError(f"page {page} has more than {ORDINALS_PER_PAGE} chunks")
    return page * ORDINALS_PER_PAGE + index


def chunk_pages(pages: Iterable[PageText], target_chars: int = DEFAULT_TARGET_CHARS) -> list[Chunk]:
    """Chunks of `pages` in reading order. A page's chunks are the same whichever range it is parsed in."""
    chunks: list[Chunk] = []
    for page in pages:
        chunks.extend(_chunk_page(page, target_chars))
    return chunks


@dataclass(frozen=True)
class _Piece:
    text: str
    box: Box
    kind: BlockKind


def _pieces(block: TextBlock, target: int) -> list[_Piece]:
    if block.kind == "table":
        return _table_pieces(block, target)
    block_text = _block_text(block)
    if block_text is None:
        return []
    return [_Piece(text, box, block.kind) for text, box in _split_block(block_text, target)]


def _table_pieces(block: TextBlock, target: int) -> list[_Piece]:
    """A table as one piece when it fits the target, else groups of whole rows (a huge row is cut)."""
    rows: list[tuple[str, Box]] = []
    for line in block.lines:
        text = normalise_line(line.text)
        for start, end in _hard_split(text, 0, len(text), target) if text else ():
            rows.append((text[start:end], line.box))
    if not rows:
        return []
    whole = BLOCK_SEPARATOR.join(text for text, _ in rows)
    if len(whole) <= target:
        return [_Piece(whole, union([box for _, box in rows]), "table")]
    pieces: list[_Piece] = []
    group: list[tuple[str, Box]] = []
    size = 0
    for text, box in rows:
        if group and size + len(BLOCK_SEPARATOR) + len(text) > target:
            pieces.append(_Piece(BLOCK_SEPARATOR.join(t for t, _ in group), union([b for _, b in group]), "table"))
            group, size = [], 0
        size = len(text) if not group else size + len(BLOCK_SEPARATOR) + len(text)
        group.append((text, box))
    pieces.append(_Piece(BLOCK_SEPARATOR.join(t for t, _ in group), union([b for _, b in group]), "table"))
    return pieces


def _chunk_page(page: PageText, target_chars: int) -> list[Chunk]:
    pieces = [piece for block in page.blocks for piece in _pieces(block, target_chars)]
    separator = len(BLOCK_SEPARATOR)
    packed: list[list[_Piece]] = [[]]
    size = 0
    for index, piece in enumerate(pieces):
        current = packed[-1]
        start_new = bool(current) and size + separator + len(piece.text) > target_chars
        following = pieces[index + 1] if index + 1 < len(pieces) else None
        if piece.kind == "heading" and current and not start_new and following is not None:
            # a heading goes with the paragraph after it: if both do not fit here, both go to the next chunk
            start_new = size + 2 * separator + len(piece.text) + len(following.text) > target_chars
        if start_new:
            carried: list[_Piece] = []
            while len(current) > 1 and current[-1].kind == "heading":
                carried.insert(0, current.pop())
            if sum(len(p.text) + separator for p in carried) + len(piece.text) > target_chars:
                current.extend(carried)  # the heading cannot join its paragraph anyway: leave it where it is
                carried = []
            current = carried
            packed.append(current)
            size = sum(len(p.text) for p in carried) + separator * max(len(carried) - 1, 0)
        size = len(piece.text) if not current else size + separator + len(piece.text)
        current.append(piece)
    chunks: list[Chunk] = []
    for group in packed:
        text = BLOCK_SEPARATOR.join(piece.text for piece in group).strip()
        if text:
            ordinal = page_ordinal(page.number, len(chunks))
            chunks.append(Chunk(page=page.number, ordinal=ordinal, text=text, boxes=tuple(p.box for p in group)))
    return chunks
