"""One way to open Redis, with timeouts that keep a dead Redis from hanging a request."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)


async def check(client: Redis) -> None:
    """Dependency check for health: raises unless Redis answers."""
    await client.ping()
