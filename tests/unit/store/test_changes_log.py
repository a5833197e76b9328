"""The change log without AUTOINCREMENT (schema 3): no write updates sqlite_sequence, ids keep
ascending across the migration of an older index, and a crash during it leaves the old table."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from carteiro.store.api import Delivery
from carteiro.store.index import INDEX_NAME, SCHEMA_VERSION
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import die_opening

ACCOUNT = "log@example.test"
MSG = b"Subject: log\r\n\r\nbody\r\n"


def _sql(data: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(data / INDEX_NAME)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _make_schema_2(data: Path, seq: int) -> list[tuple[object, ...]]:
    """Turn `changes` back into its AUTOINCREMENT form (schema 2), its sequence at `seq`."""
    conn = sqlite3.connect(data / INDEX_NAME)
    try:
        rows = conn.execute("SELECT id, origin, account, event FROM changes").fetchall()
        conn.execute("DROP TABLE changes")
        conn.execute(
            "CREATE TABLE changes (id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL,"
            " account TEXT NOT NULL, event TEXT NOT NULL)"
        )
        conn.executemany("INSERT INTO changes VALUES (?, ?, ?, ?)", rows)
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'changes'", (seq,))
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
        conn.commit()
    finally:
        conn.close()
    return rows


async def _filled(data: Path) -> int:
    s = SqliteMaildirStore(data, search_indexer=False)
    try:
        await s.create_account(ACCOUNT)
        for _ in range(3):
            await s.deliver([Delivery(ACCOUNT, "INBOX", frozenset(), time.time())], MSG)
    finally:
        await s.close()
    [(top,)] = _sql(data, "SELECT max(id) FROM changes")
    assert isinstance(top, int)
    return top


async def test_a_delivery_leaves_sqlite_sequence_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    top = await _filled(data)
    assert top >= 3
    assert "AUTOINCREMENT" not in str(
        _sql(data, "SELECT sql FROM sqlite_master WHERE name = 'changes'")
    )
    assert _sql(data, "SELECT seq FROM sqlite_sequence WHERE name = 'changes'") == []


@pytest.mark.parametrize("gap", [0, 50])  # the newest ids deleted before the migration, or not
async def test_migration_keeps_the_ids_ascending(tmp_path: Path, gap: int) -> None:
    data = tmp_path / "data"
    top = await _filled(data)
    rows = _make_schema_2(data, top + gap)
    s = SqliteMaildirStore(data, search_indexer=False)
    try:
        await s.deliver([Delivery(ACCOUNT, "INBOX", frozenset(), time.time())], MSG)
    finally:
        await s.close()
    assert _sql(data, "SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)]
    assert "AUTOINCREMENT" not in str(
        _sql(data, "SELECT sql FROM sqlite_master WHERE name = 'changes'")
    )
    after = _sql(data, "SELECT id, origin, account, event FROM changes ORDER BY id")
    assert after[: len(rows)] == rows  # kept as they were
    new = [r for r in after if r[0] > top]
    assert new and min(r[0] for r in new if r[1] != "migrate") > top + gap
    assert _sql(data, "SELECT name FROM sqlite_master WHERE name = 'changes_2'") == []


async def test_a_crash_during_the_migration_leaves_the_old_table(tmp_path: Path) -> None:

    data = tmp_path / "data"
    top = await _filled(data)
    rows = _make_schema_2(data, top)
    die_opening(data, "migrate_changes")
    assert "AUTOINCREMENT" in str(
        _sql(data, "SELECT sql FROM sqlite_master WHERE name = 'changes'")
    )
    assert _sql(data, "SELECT id, origin, account, event FROM changes") == rows
    s = SqliteMaildirStore(data, search_indexer=False)  # migrates this time
    await s.close()
    assert _sql(data, "SELECT id, origin, account, event FROM changes ORDER BY id") == rows
