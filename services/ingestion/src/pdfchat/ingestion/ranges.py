"""Page-range accounting: which pages of a document version are parsed, and how many segments they made.

worker_pdf parses a document as page ranges that any replica can take, in any order, each possibly more
than once (JetStream delivers at least once). Each finished range is recorded once per (document, version,
page_start); the document's parse progress is derived from the set of recorded ranges, never counted up
from reports, so duplicates and reordering cannot skew it:

- pages done = the pages covered by the union of the ranges (within 1..pages_total);
- parsing is complete when they cover every page 1..pages_total;
- the document's segment count (chunks_total) is the sum of the ranges' segments once parsing is complete;
  before that, embedding's count of segments stored so far is only a lower bound.

Ranges of one version are assumed not to overlap (the planner splits the page count one way per version);
overlapping ranges still give the right coverage, but their segments would be counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pdfchat.common.errors import InvalidArgument


@dataclass(frozen=True)
class PageRange:
    """A finished page range: 1-based, inclusive, and the segments its pages produced."""

    start: int
    end: int
    segments: int

    def check(self) -> PageRange:
        """The range itself; InvalidArgument when it cannot be a range of pages."""
        if self.start < 1 or self.end < self.start:
            raise InvalidArgument(f"page range {self.start}..{self.end} is not a 1-based range of pages")
        if self.segments < 0:
            raise InvalidArgument("a page range cannot have a negative segment count")
        return self


@dataclass(frozen=True)
class Coverage:
    pages_done: int
    complete: bool
    segments: int


def coverage(ranges: Iterable[PageRange], pages_total: int) -> Coverage:
    """How far the ranges get through a document of `pages_total` pages (0: not known yet, never complete)."""
    finished = list(ranges)
    intervals = sorted((r.start, r.end) for r in finished)
    segments = sum(r.segments for r in finished)
    covered = 0
    reach = 0  # last page counted so far
    for start, end in intervals:
        if pages_total > 0:
            end = min(end, pages_total)
        start = max(start, reach + 1)
        if end >= start:
            covered += end - start + 1
            reach = end
    complete = pages_total > 0 and covered >= pages_total
    return Coverage(pages_done=covered, complete=complete, segments=segments)
