"""Integration tests of hybrid search against real PostgreSQL with pgvector."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from pdfchat.common.errors import InvalidArgument
from pdfchat.vector_index.search import DEFAULT_TOP_K, HybridSearch, SearchQuery
from pdfchat.vector_index.settings import VectorIndexSettings
from pdfchat.vector_index.store import VECTOR_CANDIDATES_SQL, SegmentStore, SegmentVector, init_connection

from .conftest import acting_as, make_segment, near, unit_vector

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def document() -> str:
    return f"doc-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(loop_scope="session")
async def hnsw_pool(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose planner must use the HNSW index (`pool` has run the migrations)."""
    # A test's table is small enough for exact scans (as is a very selective filter in production, where
    # the planner rightly prefers the btree); make it take the HNSW path that can come back short.
    # Startup settings, not SET: the pool runs RESET ALL whenever a connection is released.
    off = {"enable_seqscan": "off", "enable_bitmapscan": "off", "enable_sort": "off"}
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=2, init=init_connection, server_settings=off)
    yield created
    await created.close()


async def test_selective_filter_still_returns_k_rows_from_hnsw(hnsw_pool: asyncpg.Pool, tenant: str) -> None:
    # ef_search 10 and 400 other segments: a plain HNSW scan would find ~10 neighbours, almost none of them
    # this tenant's, and filter them away. The iterative scan keeps going until 10 of the tenant's are found.
    settings = VectorIndexSettings(hnsw_ef_search=10, search_candidates=10)
    store = SegmentStore(hnsw_pool, dimensions=settings.embedding_dimensions, max_batch=settings.max_batch)
    search = HybridSearch(store, settings)
    crowd, few = document(), document()
    with acting_as(f"crowd-{tenant}"):
        crowd_segments = [make_segment(crowd, i, f"crowd {i}") for i in range(400)]
        await store.upsert_segments(crowd_segments)
        await store.upsert_vectors([SegmentVector(s.id, unit_vector(i)) for i, s in enumerate(crowd_segments)], "m")
        await store.activate_version(crowd, 1)
    with acting_as(tenant):
        own = [make_segment(few, i, f"own {i}") for i in range(12)]
        await store.upsert_segments(own)
        await store.upsert_vectors([SegmentVector(s.id, unit_vector(10_000 + i)) for i, s in enumerate(own)], "m")
        await store.activate_version(few, 1)
        query = unit_vector(99)
        async with hnsw_pool.acquire() as conn:
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {VECTOR_CANDIDATES_SQL}", tenant, query, [], 10))
        hits = await search.search(SearchQuery(vector=query, top_k=10))
    assert "segments_embedding_hnsw" in plan
    assert len(hits) == 10
    assert {hit.segment.document_id for hit in hits} == {few}
    assert [hit.vector_score for hit in hits] == sorted((hit.vector_score for hit in hits), reverse=True)


async def test_chinese_question_finds_the_chinese_passage_by_full_text(
    store: SegmentStore, search: HybridSearch, tenant: str
) -> None:
    doc = document()
    warsaw = make_segment(doc, 0, "华沙是波兰的首都和最大城市，位于维斯瓦河畔。")
    berlin = make_segment(doc, 1, "柏林是德国的首都。")
    other = make_segment(doc, 2, "The Vistula is the longest river in Poland.")
    with acting_as(tenant):
        await store.upsert_segments([warsaw, berlin, other])
        await store.activate_version(doc, 1)
        hits = await search.search(SearchQuery(text="华沙是哪个国家的首都？"))
    assert [hit.segment.id for hit in hits] == [warsaw.id, berlin.id]
    assert hits[0].text_score > hits[1].text_score > 0
    assert hits[0].vector_score == 0


async def test_segment_found_by_vector_and_text_ranks_first_with_both_scores(
    store: SegmentStore, search: HybridSearch, tenant: str
) -> None:
    doc = document()
    both = make_segment(doc, 0, "Warsaw is the capital of Poland.")
    text_only = make_segment(doc, 1, "Poland joined the European Union in 2004.")
    vector_only = make_segment(doc, 2, "The city on the Vistula river.")
    topic = unit_vector(7)
    with acting_as(tenant):
        await store.upsert_segments([both, text_only, vector_only])
        await store.upsert_vectors(
            [
                SegmentVector(both.id, near(topic, 1)),
                SegmentVector(text_only.id, unit_vector(8)),
                SegmentVector(vector_only.id, near(topic, 2, noise=0.5)),
            ],
            "m",
        )
        await store.activate_version(doc, 1)
        hits = await search.search(SearchQuery(text="What is the capital of Poland?", vector=topic))
    assert hits[0].segment.id == both.id
    assert hits[0].vector_score > 0.9
    assert hits[0].text_score > 0
    assert hits[0].score > hits[1].score
    assert {hit.segment.id for hit in hits} == {both.id, text_only.id, vector_only.id}


async def test_a_document_answers_only_once_a_version_is_activated(
    store: SegmentStore, search: HybridSearch, tenant: str
) -> None:
    doc = document()
    segment = make_segment(doc, 0, "Warsaw first parse")
    with acting_as(tenant):
        await store.upsert_segments([segment])
        await store.upsert_vectors([SegmentVector(segment.id, unit_vector(1))], "m")
        assert await search.search(SearchQuery(text="warsaw", vector=unit_vector(1))) == []
        assert await store.activate_version(doc, 1)
        hits = await search.search(SearchQuery(text="warsaw", vector=unit_vector(1)))
    assert [hit.segment.id for hit in hits] == [segment.id]


async def test_only_the_active_version_answers_and_the_swap_is_one_step(
    store: SegmentStore, search: HybridSearch, tenant: str
) -> None:
    doc = document()
    old = [make_segment(doc, i, f"Warsaw old parse {i}", version=1) for i in range(3)]
    new = [make_segment(doc, i, f"Warsaw new parse {i}", version=2) for i in range(4)]
    with acting_as(tenant):
        await store.upsert_segments(old)
        await store.activate_version(doc, 1)
        # the new version is written while the old one answers: searches still see only the old one
        await store.upsert_segments(new)
        before = await search.search(SearchQuery(text="warsaw parse", top_k=20))
        assert await store.activate_version(doc, 2)
        after = await search.search(SearchQuery(text="warsaw parse", top_k=20))
        assert not await store.activate_version(doc, 1), "an older version is never activated again"
        again = await search.search(SearchQuery(text="warsaw parse", top_k=20))
        assert await store.active_version(doc) == 2
    assert {hit.segment.version for hit in before} == {1}
    assert len(before) == 3
    assert {hit.segment.version for hit in after} == {2}
    assert len(after) == 4
    assert {hit.segment.version for hit in again} == {2}


async def test_deleting_a_document_forgets_its_active_version(
    store: SegmentStore, search: HybridSearch, tenant: str
) -> None:
    doc = document()
    with acting_as(tenant):
        await store.upsert_segments([make_segment(doc, 0, "warsaw")])
        await store.activate_version(doc, 1)
        await store.delete_document(doc)
        # a worker racing the delete writes a segment afterwards: it never answers
        await store.upsert_segments([make_segment(doc, 1, "warsaw late")])
        assert await store.active_version(doc) == 0
        assert await search.search(SearchQuery(text="warsaw", document_ids=[doc])) == []


async def test_search_is_limited_to_the_requested_documents_and_to_the_tenant(
    store: SegmentStore, search: HybridSearch, tenant: str
) -> None:
    wanted, unwanted = document(), document()
    with acting_as(tenant):
        await store.upsert_segments([make_segment(wanted, 0, "warsaw"), make_segment(unwanted, 0, "warsaw")])
        await store.activate_version(wanted, 1)
        await store.activate_version(unwanted, 1)
        hits = await search.search(SearchQuery(text="warsaw", document_ids=[wanted]))
    with acting_as(f"other-{tenant}"):
        assert await search.search(SearchQuery(text="warsaw", document_ids=[wanted, unwanted])) == []
    assert [hit.segment.document_id for hit in hits] == [wanted]


async def test_default_top_k_applies_when_none_is_asked(store: SegmentStore, search: HybridSearch, tenant: str) -> None:
    doc = document()
    with acting_as(tenant):
        await store.upsert_segments([make_segment(doc, i, f"warsaw {i}") for i in range(DEFAULT_TOP_K + 3)])
        await store.activate_version(doc, 1)
        hits = await search.search(SearchQuery(text="warsaw"))
    assert len(hits) == DEFAULT_TOP_K


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (SearchQuery(text="warsaw", top_k=51), "top_k must be between 1 and 50"),
        (SearchQuery(text="warsaw", top_k=-1), "top_k must be between"),
        (SearchQuery(text="  "), "needs query_text, query_vector or both"),
        (SearchQuery(vector=[0.5] * 3), "query_vector has 3 dimensions"),
        (SearchQuery(text="warsaw", document_ids=[""]), "empty ids"),
    ],
)
async def test_bad_searches_are_invalid_arguments(
    search: HybridSearch, tenant: str, query: SearchQuery, message: str
) -> None:
    with acting_as(tenant), pytest.raises(InvalidArgument, match=message):
        await search.search(query)
