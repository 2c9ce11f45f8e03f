"""The text layout of a PDF as extraction sees it: pages of blocks of lines, each with its box.

Coordinates are PDF points with the origin at the top-left of the page (PyMuPDF's convention, and the
one `pdfchat.v1.BoundingBox` documents). Pages are numbered from 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Box = tuple[float, float, float, float]
"""(x0, y0, x1, y1)"""

BlockKind = Literal["text", "heading", "table"]


@dataclass(frozen=True)
class TextLine:
    text: str
    box: Box


@dataclass(frozen=True)
class TextBlock:
    """A block of text as the PDF lays it out: usually a paragraph, a heading or a table.

    A table block has one line per row, its cells joined with " | ".
    """

    lines: tuple[TextLine, ...]
    box: Box
    kind: BlockKind = "text"


@dataclass(frozen=True)
class PageText:
    number: int
    """1-based page number."""
    blocks: tuple[TextBlock, ...]
    """In reading order."""
    ocr: bool = False
    """The text was recognised from the page's images (Tesseract), not read from a text layer."""


def union(boxes: list[Box]) -> Box:
    """The smallest box that holds all of `boxes` (which must not be empty)."""
    return (
        min(box[0] for box in boxes),
        min(box[1] for box in boxes),
        max(box[2] for box in boxes),
        max(box[3] for box in boxes),
    )
