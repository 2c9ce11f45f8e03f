import asyncio
from pathlib import Path

import pytest

from pdfchat.common import db

pytestmark = pytest.mark.integration


async def test_migrations_apply_once_even_when_replicas_race(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    (tmp_path / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")
    pool = await db.create_pool(database_url, max_size=4)
    try:
        results = await asyncio.gather(*(db.migrate(pool, "migtest", tmp_path) for _ in range(3)))
        assert sorted(name for applied in results for name in applied) == ["0001_things.sql", "0002_more.sql"]
        assert await db.migrate(pool, "migtest", tmp_path) == []
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO migtest.things (id, name) VALUES (1, 'a')")
            assert await conn.fetchval("SELECT name FROM migtest.things") == "a"
        await db.check(pool)
    finally:
        await pool.close()


async def test_failed_migration_is_not_recorded(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE ok_table (id int); SELECT no_such_function();")
    pool = await db.create_pool(database_url, max_size=2)
    try:
        with pytest.raises(Exception, match="no_such_function"):
            await db.migrate(pool, "brokenmig", tmp_path)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('brokenmig.ok_table')") is None
            assert await conn.fetchval("SELECT count(*) FROM brokenmig.schema_migrations") == 0
    finally:
        await pool.close()
