import asyncio

import pytest

from pdfchat.common.redis_client import check, create_redis

pytestmark = pytest.mark.integration


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(redis_url: str) -> None:
    client = create_redis(redis_url, max_connections=4)
    try:
        await check(client)
        key = "pdfchat-test:redis-burst"
        await client.delete(key)
        # BLPOP holds a connection while it waits, so 50 of them need the pool to queue callers.
        results = await asyncio.gather(*(client.blpop([f"{key}:{i}"], timeout=0.05) for i in range(50)))
        assert results == [None] * 50
    finally:
        await client.aclose()
