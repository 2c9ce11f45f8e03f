"""The text layout of a PDF as extraction sees it: pages of blocks of lines, each with its box.

Coordinates are PDF points with the origin at the top-left of the page (PyMuPDF's convention, and the
one `pdfchat.v1.BoundingBox` documents). Pages are numbered from 1.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]
"""(x0, y0, x1, y1)"""


@dataclass(frozen=True)
class TextLine:
    text: str
    box: Box


@dataclass(frozen=True)
class TextBlock:
    """A block of text as the PDF lays it out: usually a paragraph, a heading or a table cell."""

    lines: tuple[TextLine, ...]
    box: Box


@dataclass(frozen=True)
class PageText:
    number: int
    """1-based page number."""
    blocks: tuple[TextBlock, ...]
    """In reading order."""


def union(boxes: list[Box]) -> Box:
    """The smallest box that holds all of `boxes` (which must not be empty)."""
    return (
        min(box[0] for box in boxes),
        min(box[1] for box in boxes),
        max(box[2] for box in boxes),
        max(box[3] for box in boxes),
    )
