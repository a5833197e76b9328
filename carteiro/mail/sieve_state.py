"""What Sieve must remember between deliveries: who got a vacation reply when (RFC 5230 4.2:
once per sender per period and handle) and which message ids the duplicate test saw (RFC 7352).
Our own small SQLite file, DATA/sieve/state.sqlite; blocking, call from a thread.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vacation (
    account TEXT NOT NULL, handle TEXT NOT NULL, sender TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (account, handle, sender)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duplicate (
    account TEXT NOT NULL, key TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;
"""
PURGE_EVERY = 1000  # writes between sweeps of expired rows


class SieveState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None  # opened on first use: most never need it
        self._lock = threading.Lock()
        self._writes = 0

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            self._conn = db
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def replied(self, account: str, handle: str, sender: str, now: float) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT expires FROM vacation WHERE account = ? AND handle = ? AND sender = ?",
                (account, handle, sender.lower()),
            ).fetchone()
        return row is not None and row[0] > now

    def record_reply(
        self, account: str, handle: str, sender: str, now: float, until: float
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO vacation VALUES (?, ?, ?, ?)",
                (account, handle, sender.lower(), until),
            )
            self._maybe_purge(now)

    def seen(self, account: str, key: str, now: float) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT expires FROM duplicate WHERE account = ? AND key = ?", (account, key)
            ).fetchone()
        return row is not None and row[0] > now

    def record_id(self, account: str, key: str, now: float, until: float, renew: bool) -> None:
        """RFC 7352 3: without :last the first sighting's period stands; with it, renewed."""
        with self._lock:
            if renew:
                self._db.execute(
                    "INSERT OR REPLACE INTO duplicate VALUES (?, ?, ?)", (account, key, until)
                )
            else:
                self._db.execute(
                    "INSERT INTO duplicate VALUES (?, ?, ?) ON CONFLICT (account, key) DO UPDATE"
                    " SET expires = excluded.expires WHERE duplicate.expires <= ?",
                    (account, key, until, now),
                )
            self._maybe_purge(now)

    def _maybe_purge(self, now: float) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self._db.execute("DELETE FROM vacation WHERE expires <= ?", (now,))
            self._db.execute("DELETE FROM duplicate WHERE expires <= ?", (now,))
