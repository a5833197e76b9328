"""INTERNALDATE's zone in the store (RFC 3501 2.3.3): kept as given (ZonedDate), the local zone
for a bare instant, kept by COPY, MOVE, flag changes, restarts, listing snapshots and a reindex
from a readable index; and the schema 3 -> 4 migration (old rows show in UTC; a kill at each of
its steps leaves schema 3 whole)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from carteiro.store.api import Delivery, FlagOp, MailStore, ZonedDate, local_zone
from carteiro.store.flags import FlagCodec
from carteiro.store.index import INDEX_NAME, SCHEMA_VERSION
from carteiro.store.listing import Listing
from carteiro.store.maintenance import check, reindex
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, die_opening, make_message

T = 1_174_775_400.0  # 25-Mar-2007 01:30:00 +0300


def test_local_zone_follows_tz(kolkata: None) -> None:
    assert local_zone(T) == 330


async def test_zones_kept_by_every_write(store: MailStore, kolkata: None) -> None:
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    await acct.create_mailbox("Other")
    await acct.append("INBOX", make_message("a", 300), (), ZonedDate(T, 180))
    await acct.append("INBOX", make_message("b", 300), (), T)  # a bare instant: local zone
    await acct.append("INBOX", make_message("c", 300))  # now, local zone
    await acct.append_many(
        "INBOX",
        [(make_message("d", 300), (), ZonedDate(T, -510)), (make_message("e", 300), (), None)],
    )
    await store.deliver(
        [Delivery(ACCOUNT, "INBOX", internaldate=ZonedDate(T, 840))], b"x: y\r\n\r\n"
    )
    await store.deliver([Delivery(ACCOUNT, "INBOX")], b"x: z\r\n\r\n")
    inbox = await acct.get_mailbox("INBOX")
    zones = [m.internaldate_tz for m in await acct.list_messages(inbox.id)]
    assert zones == [180, 330, 330, -510, 330, 840, 330]
    assert (await acct.list_messages(inbox.id))[0].internaldate == T
    r = await acct.replace(inbox.id, 7, "INBOX", (make_message("f", 300), (), ZonedDate(T, -60)))
    changed, _ = await acct.set_flags(inbox.id, [1, 4], FlagOp.ADD, ["\\Seen"])
    assert [(m.uid, m.internaldate_tz) for m in changed] == [(1, 180), (4, -510)]
    assert [m.internaldate_tz for m in await acct.changed_since(inbox.id, 0)][-1] == -60
    await acct.copy(inbox.id, [1, 4, r.uid], "Other")
    await acct.move(inbox.id, [6], "Other")
    other = await acct.get_mailbox("Other")
    assert [m.internaldate_tz for m in await acct.list_messages(other.id)] == [180, -510, -60, 840]


async def test_zones_survive_a_restart_and_a_reindex(tmp_path: Path, kolkata: None) -> None:
    data = tmp_path / "data"
    s = SqliteMaildirStore(data, search_indexer=False)
    try:
        await s.create_account(ACCOUNT)
        acct = await s.account(ACCOUNT)
        for i, tz in enumerate((180, -510, 0, 845)):
            await acct.append(
                "INBOX", make_message(str(i), 100_000 if i % 2 else 300), (), ZonedDate(T + i, tz)
            )
        await s.flush_files()
    finally:
        await s.close()

    async def zones() -> list[int]:
        s = SqliteMaildirStore(data, search_indexer=False)
        try:
            acct = await s.account(ACCOUNT)
            return [
                m.internaldate_tz
                for m in await acct.list_messages((await acct.get_mailbox("INBOX")).id)
            ]
        finally:
            await s.close()

    assert await zones() == [180, -510, 0, 845]
    reindex(data)  # the index is readable: the zones are kept from it
    assert await zones() == [180, -510, 0, 845]
    assert check(data).ok
    for suffix in ("", "-wal", "-shm"):  # lost: the files' mtimes have no zone, the local one
        Path(f"{data / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    reindex(data)
    assert await zones() == [330] * 4


def test_listing_snapshot_keeps_zones() -> None:
    codec = FlagCodec()
    rows = [(1, 0, "", 5, T, 10, 180), (2, 1, "", 6, T + 1, 11, -510), (3, 0, "", 7, T + 2, 12, 0)]
    listing = Listing.from_rows(9, 7, rows)
    snap = listing.to_snapshot()
    back = Listing.from_snapshot(snap)
    assert back is not None
    assert [m.internaldate_tz for m in back.metas_list(codec)] == [180, -510, 0]
    # a snapshot whose zones are all 0 is stored without them (NULL), as one from schema 3 is
    utc = Listing.from_rows(9, 7, [(*r[:6], 0) for r in rows]).to_snapshot()
    assert utc[-1] is None
    old = Listing.from_snapshot(utc)
    assert old is not None and [m.internaldate_tz for m in old.metas_list(codec)] == [0, 0, 0]
    # a new message and a changed one
    assert back.apply([(2, 8, "", 8, T + 1, 11, -510), (4, 0, "", 8, T + 3, 13, 60)], {1}, 8, codec)
    assert [m.internaldate_tz for m in back.metas_list(codec)] == [-510, 0, 60]
    again = Listing.from_snapshot(back.to_snapshot())
    assert again is not None and list(again.zones) == [-510, 0, 60]


# ---- schema 3 -> 4 ----------------------------------------------------------------------------


def _make_schema_3(data: Path) -> None:
    """Turn the index back into schema 3 (no messages.internaldate_tz, no listings.zones)."""
    conn = sqlite3.connect(data / INDEX_NAME)
    try:
        conn.execute("ALTER TABLE messages DROP COLUMN internaldate_tz")
        conn.execute("ALTER TABLE listings DROP COLUMN zones")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
        conn.commit()
    finally:
        conn.close()


def _columns(data: Path, table: str) -> set[str]:
    conn = sqlite3.connect(data / INDEX_NAME)
    try:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


@pytest.mark.parametrize("point", ["migrate_zones_messages", "migrate_zones_listings", None])
async def test_migration_from_schema_3(tmp_path: Path, point: str | None) -> None:

    data = tmp_path / "data"
    s = SqliteMaildirStore(data, search_indexer=False)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    bodies = [make_message(str(i), 100_000 if i % 2 else 300) for i in range(4)]
    for b in bodies:
        await acct.append("INBOX", b, (), T)
    await s.flush_files()
    await s.close()
    _make_schema_3(data)
    if point is not None:
        die_opening(data, point)
        # rolled back whole: schema 3 as it was
        assert "internaldate_tz" not in _columns(data, "messages")
        assert "zones" not in _columns(data, "listings")
        conn = sqlite3.connect(data / INDEX_NAME)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
        conn.close()
    s = SqliteMaildirStore(data, search_indexer=False)
    try:
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        old = await acct.list_messages(inbox.id)
        assert [(m.internaldate, m.internaldate_tz) for m in old] == [(T, 0)] * 4  # UTC, as before
        for m, b in zip(old, bodies, strict=True):
            assert await acct.read_message(inbox.id, m.uid) == b
        await acct.append("INBOX", make_message("n", 300), (), ZonedDate(T, -180))
        await acct.copy(inbox.id, [old[0].uid], "INBOX")
        metas = await acct.list_messages(inbox.id)
        assert [m.internaldate_tz for m in metas[4:]] == [-180, 0]
    finally:
        await s.close()
    conn = sqlite3.connect(data / INDEX_NAME)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    conn.close()
    assert check(data).ok
