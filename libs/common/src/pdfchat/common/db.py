"""asyncpg pools and per-service SQL migrations.

Each service owns one Postgres schema and keeps its migrations as `NNNN_name.sql` files in its
`migrations/` directory. `migrate()` applies the ones not yet recorded in `<schema>.schema_migrations`,
each in its own transaction, under an advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

ConnectionInit = Callable[[asyncpg.Connection], Awaitable[None]]


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, init: ConnectionInit | None = None
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init, command_timeout=60)  # type: ignore[arg-type]
    if pool is None:  # pragma: no cover - asyncpg returns None only for a pool that is not awaited
        raise RuntimeError("could not create database pool")
    return pool


async def migrate(pool: asyncpg.Pool, schema: str, migrations_dir: Path) -> list[str]:
    """Applies pending migrations for `schema`; returns the names applied."""
    files = sorted(path for path in migrations_dir.glob("*.sql"))
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"pdfchat-migrate-{schema}")
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')}
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(f'INSERT INTO "{schema}".schema_migrations (name) VALUES ($1)', path.name)
                log.info("applied migration %s.%s", schema, path.name)
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"pdfchat-migrate-{schema}")
    return applied


async def check(pool: asyncpg.Pool) -> None:
    """Dependency check for health: raises unless the database answers."""
    async with pool.acquire(timeout=2) as conn:
        await conn.fetchval("SELECT 1")
