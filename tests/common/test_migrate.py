"""Migrations: applied once, idempotent, safe when several runners start together."""

import asyncio

import asyncpg
import pytest

from services.common import migrate


async def versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


async def test_applies_every_migration_once_and_second_run_does_nothing(empty_db):
    expected = [m.version for m in migrate.discover()]
    assert await migrate.apply(empty_db) == expected
    assert await migrate.apply(empty_db) == []
    assert await versions(empty_db) == expected


async def test_concurrent_runners_apply_each_migration_exactly_once(empty_db):
    results = await asyncio.gather(*(migrate.apply(empty_db) for _ in range(4)))
    expected = [m.version for m in migrate.discover()]
    assert sorted(v for r in results for v in r) == expected  # each version applied by exactly one runner
    assert await versions(empty_db) == expected


async def test_changed_applied_migration_is_refused(empty_db, tmp_path):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (id int);")
    assert await migrate.apply(empty_db, tmp_path) == [1]
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (id bigint);")
    with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
        await migrate.apply(empty_db, tmp_path)


async def test_failed_migration_leaves_nothing_half_applied(empty_db, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE b (id int); SELECT * FROM no_such_table;")
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate.apply(empty_db, tmp_path)
    assert await versions(empty_db) == [1]
    conn = await asyncpg.connect(empty_db)
    try:
        assert await conn.fetchval("SELECT to_regclass('b')") is None
    finally:
        await conn.close()


def test_bad_file_name_is_refused(tmp_path):
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(migrate.MigrationError, match="0001_what.sql"):
        migrate.discover(tmp_path)
