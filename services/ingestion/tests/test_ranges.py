"""Unit tests of page-range coverage (no network)."""

from __future__ import annotations

import pytest

from pdfchat.common.errors import InvalidArgument
from pdfchat.ingestion.ranges import Coverage, PageRange, coverage


def test_no_ranges_cover_nothing() -> None:
    assert coverage([], 5) == Coverage(pages_done=0, complete=False, segments=0)


def test_ranges_in_any_order_cover_the_union_of_their_pages() -> None:
    shuffled = [PageRange(9, 12, 1), PageRange(1, 4, 3), PageRange(5, 8, 2)]
    assert coverage(shuffled, 12) == Coverage(pages_done=12, complete=True, segments=6)


def test_a_gap_keeps_parsing_incomplete() -> None:
    assert coverage([PageRange(1, 4, 3), PageRange(9, 12, 1)], 12) == Coverage(8, False, 4)


def test_overlapping_ranges_count_each_page_once() -> None:
    assert coverage([PageRange(1, 6, 0), PageRange(4, 10, 0)], 10).pages_done == 10


def test_pages_beyond_the_page_count_are_not_counted() -> None:
    assert coverage([PageRange(1, 20, 5)], 10) == Coverage(10, True, 5)


def test_without_a_page_count_parsing_is_never_complete() -> None:
    assert coverage([PageRange(1, 3, 1)], 0) == Coverage(3, False, 1)


@pytest.mark.parametrize("bad", [PageRange(0, 3, 1), PageRange(5, 4, 1), PageRange(1, 1, -1)])
def test_impossible_ranges_are_invalid(bad: PageRange) -> None:
    with pytest.raises(InvalidArgument):
        bad.check()
