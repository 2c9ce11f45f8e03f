"""Reciprocal rank fusion: one ranking out of several, using only the ranks.

Cosine similarities and `ts_rank_cd` values live on unrelated scales, so they are not added; each list
contributes `1 / (k + rank)` (rank 1-based) for every item in it (Cormack et al., 2009). An item found by
both retrievers beats one found by a single retriever at a similar rank; `k` (60 by convention) damps the
advantage of the very first places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_K = 60


@dataclass(frozen=True)
class FusedRank:
    item: str
    score: float
    """Sum of 1 / (k + rank) over the rankings that contain the item; higher is better."""


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = DEFAULT_K) -> list[FusedRank]:
    """Fuses rankings (best first) into one list, best first.

    Ties keep the order in which items were first met, rankings taken in the order given, so the result is
    deterministic. An item repeated within one ranking counts only at its best rank.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: position for position, item in enumerate(scores)}
    fused = sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))
    return [FusedRank(item, score) for item, score in fused]
