"""What the fetcher remembers, durably (DATA/fetch.sqlite, WAL, synchronous=FULL): the messages of
each remote mailbox already delivered (POP3 UIDL, or IMAP UIDVALIDITY:UID), and each entry's status
for `carteiro fetch status`. A message is marked only after its delivery committed, and deleted on
the server only after the mark committed: a crash anywhere delivers it once and loses none.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    entry TEXT NOT NULL,      -- account|protocol|server|user|folder
    uid TEXT NOT NULL,        -- UIDL, or UIDVALIDITY:UID
    at REAL NOT NULL,
    PRIMARY KEY (entry, uid)
);
CREATE TABLE IF NOT EXISTS status (
    entry TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    server TEXT NOT NULL,
    protocol TEXT NOT NULL,
    last_poll REAL,
    last_ok REAL,
    last_error TEXT NOT NULL DEFAULT '',
    failures INTEGER NOT NULL DEFAULT 0,
    next_poll REAL,
    fetched INTEGER NOT NULL DEFAULT 0,
    idle INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass
class EntryStatus:
    entry: str
    account: str
    server: str
    protocol: str
    last_poll: float | None
    last_ok: float | None
    last_error: str
    failures: int
    next_poll: float | None
    fetched: int
    idle: bool


class FetchState:
    """Thread-safe (one connection per thread): the fetcher's blocking steps run in threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def seen(self, entry: str) -> set[str]:
        return {r[0] for r in self._db().execute("SELECT uid FROM seen WHERE entry = ?", (entry,))}

    def mark(self, entry: str, uid: str) -> None:
        """Durable when it returns (its own transaction, synchronous=FULL)."""
        db = self._db()
        db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (entry, uid, time.time()))
        db.execute("UPDATE status SET fetched = fetched + 1 WHERE entry = ?", (entry,))

    def retain(self, entry: str, present: Iterable[str]) -> None:
        """Forget uids the server no longer has (they cannot come back: UIDLs and UIDs are
        never reused), so the table does not grow for ever."""
        keep = set(present)
        db = self._db()
        gone = [u for u in self.seen(entry) if u not in keep]
        db.executemany("DELETE FROM seen WHERE entry = ? AND uid = ?", [(entry, u) for u in gone])

    def register(self, entry: str, account: str, server: str, protocol: str) -> None:
        self._db().execute(
            "INSERT OR IGNORE INTO status (entry, account, server, protocol) VALUES (?, ?, ?, ?)",
            (entry, account, server, protocol),
        )

    def polled(
        self, entry: str, *, ok: bool, error: str, failures: int, next_poll: float, idle: bool
    ) -> None:
        now = time.time()
        self._db().execute(
            "UPDATE status SET last_poll = ?, last_ok = CASE WHEN ? THEN ? ELSE last_ok END, "
            "last_error = ?, failures = ?, next_poll = ?, idle = ? WHERE entry = ?",
            (now, ok, now, error, failures, next_poll, int(idle), entry),
        )

    def statuses(self) -> list[EntryStatus]:
        rows = self._db().execute(
            "SELECT entry, account, server, protocol, last_poll, last_ok, last_error, failures, "
            "next_poll, fetched, idle FROM status ORDER BY account, server"
        )
        return [
            EntryStatus(
                entry=r[0],
                account=r[1],
                server=r[2],
                protocol=r[3],
                last_poll=r[4],
                last_ok=r[5],
                last_error=r[6],
                failures=r[7],
                next_poll=r[8],
                fetched=r[9],
                idle=bool(r[10]),
            )
            for r in rows
        ]
