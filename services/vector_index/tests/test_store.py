"""Integration tests of SegmentStore against real PostgreSQL with pgvector."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from pdfchat.common.errors import InvalidArgument
from pdfchat.vector_index.store import SegmentStore, SegmentVector

from .conftest import acting_as, make_segment, unit_vector

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def document() -> str:
    return f"doc-{uuid.uuid4().hex[:8]}"


async def test_redelivered_segments_create_no_duplicates(store: SegmentStore, tenant: str) -> None:
    doc = document()
    segments = [make_segment(doc, i, f"passage {i}") for i in range(5)]
    with acting_as(tenant):
        assert await store.upsert_segments(segments) == 5
        assert await store.upsert_segments(segments) == 5
        stats = await store.stats(doc, 1)
    assert stats.segments == 5


async def test_redelivery_with_the_same_text_keeps_the_embedding_and_new_text_clears_it(
    store: SegmentStore, tenant: str
) -> None:
    doc = document()
    first, second = make_segment(doc, 0, "same text"), make_segment(doc, 1, "old text")
    with acting_as(tenant):
        await store.upsert_segments([first, second])
        await store.upsert_vectors(
            [SegmentVector(first.id, unit_vector(1)), SegmentVector(second.id, unit_vector(2))], "m"
        )
        await store.upsert_segments([first, dataclasses.replace(second, text="new text")])
        stats = await store.stats(doc, 1)
        [stored] = await store.get_segments([second.id])
    assert stats.embedded == 1
    assert stored.text == "new text"


async def test_segment_id_of_another_document_is_refused_and_nothing_is_written(
    store: SegmentStore, tenant: str
) -> None:
    doc, other = document(), document()
    taken = make_segment(doc, 0, "first owner")
    with acting_as(tenant):
        await store.upsert_segments([taken])
        clash = dataclasses.replace(taken, document_id=other, text="second owner")
        with pytest.raises(InvalidArgument, match="already used"):
            await store.upsert_segments([make_segment(other, 1, "innocent"), clash])
        assert (await store.stats(other, 1)).segments == 0
        [kept] = await store.get_segments([taken.id])
    assert kept.text == "first owner"


async def test_another_tenant_can_neither_read_nor_overwrite_nor_embed_a_segment(store: SegmentStore) -> None:
    doc = document()
    owned = make_segment(doc, 0, "tenant a's secret")
    with acting_as(f"a-{doc}"):
        await store.upsert_segments([owned])
    with acting_as(f"b-{doc}"):
        assert await store.get_segments([owned.id]) == []
        with pytest.raises(InvalidArgument):
            await store.upsert_segments([dataclasses.replace(owned, text="overwritten")])
        assert await store.upsert_vectors([SegmentVector(owned.id, unit_vector(3))], "m") == 0
        assert await store.delete_document(doc) == 0
        assert (await store.stats(doc, 1)).segments == 0
    with acting_as(f"a-{doc}"):
        [still] = await store.get_segments([owned.id])
        stats = await store.stats(doc, 1)
    assert still.text == "tenant a's secret"
    assert stats.embedded == 0


async def test_get_segments_answers_in_requested_order_and_leaves_out_missing_ids(
    store: SegmentStore, tenant: str
) -> None:
    doc = document()
    segments = [make_segment(doc, i, f"passage {i}", page=i + 1) for i in range(3)]
    missing = str(uuid.uuid4())
    with acting_as(tenant):
        await store.upsert_segments(segments)
        found = await store.get_segments([segments[2].id, missing, segments[0].id.upper(), segments[2].id])
    assert [s.ordinal for s in found] == [2, 0]
    assert found[0].page == 3
    assert found[0].boxes == segments[2].boxes


async def test_nul_characters_are_dropped_from_text(store: SegmentStore, tenant: str) -> None:
    segment = make_segment(document(), 0, "broken\x00 text")
    with acting_as(tenant):
        await store.upsert_segments([segment])
        [stored] = await store.get_segments([segment.id])
    assert stored.text == "broken text"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.1] * 10, "has 10 dimensions; this index stores 384"),
        ([0.0] * 384, "all zeros"),
        ([float("nan")] + [0.1] * 383, "NaN"),
    ],
)
async def test_unusable_vectors_are_invalid_arguments(
    store: SegmentStore, tenant: str, values: list[float], message: str
) -> None:
    segment = make_segment(document(), 0, "text")
    with acting_as(tenant):
        await store.upsert_segments([segment])
        with pytest.raises(InvalidArgument, match=message):
            await store.upsert_vectors([SegmentVector(segment.id, values)], "m")


async def test_bad_requests_are_invalid_arguments(store: SegmentStore, tenant: str) -> None:
    doc = document()
    with acting_as(tenant):
        with pytest.raises(InvalidArgument, match="no segments given"):
            await store.upsert_segments([])
        with pytest.raises(InvalidArgument, match="not a UUID"):
            await store.get_segments(["segment-1"])
        with pytest.raises(InvalidArgument, match="page is 1-based"):
            await store.upsert_segments([make_segment(doc, 0, "x", page=0)])
        with pytest.raises(InvalidArgument, match="unique"):
            await store.upsert_segments([make_segment(doc, 0, "x"), make_segment(doc, 0, "x")])
        with pytest.raises(InvalidArgument, match="model is required"):
            await store.upsert_vectors([SegmentVector(str(uuid.uuid4()), unit_vector(1))], "")
        with pytest.raises(InvalidArgument, match="document_id is required"):
            await store.delete_document("")


async def test_vectors_for_deleted_segments_are_skipped(store: SegmentStore, tenant: str) -> None:
    with acting_as(tenant):
        assert await store.upsert_vectors([SegmentVector(str(uuid.uuid4()), unit_vector(1))], "m") == 0


async def test_delete_with_keep_version_deletes_only_the_other_versions(store: SegmentStore, tenant: str) -> None:
    doc = document()
    with acting_as(tenant):
        for version in (1, 2, 3):
            await store.upsert_segments([make_segment(doc, i, f"v{version} {i}", version=version) for i in range(2)])
        assert await store.delete_document(doc, keep_version=2) == 4
        assert (await store.stats(doc, 2)).segments == 2
        assert (await store.stats(doc, 1)).segments == 0
        assert await store.delete_document(doc) == 2
        assert (await store.stats(doc, 2)).segments == 0


async def test_stats_count_segments_and_embedded_segments_of_one_version(store: SegmentStore, tenant: str) -> None:
    doc = document()
    segments = [make_segment(doc, i, f"passage {i}") for i in range(4)]
    with acting_as(tenant):
        await store.upsert_segments(segments)
        await store.upsert_segments([make_segment(doc, 0, "other version", version=2)])
        await store.upsert_vectors([SegmentVector(s.id, unit_vector(i)) for i, s in enumerate(segments[:3])], "m")
        stats = await store.stats(doc, 1)
    assert (stats.segments, stats.embedded) == (4, 3)
