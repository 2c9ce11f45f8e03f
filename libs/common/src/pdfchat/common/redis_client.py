"""One way to open Redis, with timeouts that keep a dead Redis from hanging a request.

The pool blocks when all its connections are busy instead of failing: a burst of thousands of concurrent
requests waits a moment for a connection rather than erroring with "Too many connections".
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

DEFAULT_MAX_CONNECTIONS = 64
POOL_WAIT_SECONDS = 10.0


def create_redis(url: str, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


async def check(client: Redis) -> None:
    """Dependency check for health: raises unless Redis answers."""
    await client.ping()
