"""Unit tests of reciprocal rank fusion."""

from __future__ import annotations

import pytest

from pdfchat.vector_index.fusion import reciprocal_rank_fusion


def test_item_found_by_both_retrievers_beats_items_found_by_one() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["x", "c", "y"]])
    assert fused[0].item == "c"


def test_score_is_sum_of_reciprocal_ranks() -> None:
    fused = {f.item: f.score for f in reciprocal_rank_fusion([["a", "b"], ["b"]], k=60)}
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)


def test_ties_keep_the_order_in_which_items_were_first_met() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["x", "y"]])
    assert [f.item for f in fused] == ["a", "x", "b", "y"]


def test_an_item_repeated_in_one_ranking_counts_once_at_its_best_rank() -> None:
    fused = {f.item: f.score for f in reciprocal_rank_fusion([["a", "a"]], k=60)}
    assert fused["a"] == pytest.approx(1 / 61)


def test_empty_rankings_fuse_to_nothing() -> None:
    assert reciprocal_rank_fusion([[], []]) == []


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([["a"]], k=0)
