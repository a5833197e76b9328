"""METADATA (RFC 5464) entries: server entries of an account and entries of its mailboxes.

Our own small SQLite file, DATA/metadata.sqlite (the store's index belongs to the store): rows
keyed by account, the mailbox's id (0: the server) and the entry name. Mailbox ids are the store's
stable ids, so entries follow a RENAME; the IMAP DELETE drops them, and `forget_missing()` drops
those of mailboxes another process deleted. Every write is one transaction committed with
synchronous=FULL (fsynced) before it returns, as the store's writes are before their OK.
Blocking: call from a thread. Nothing here knows IMAP syntax; limits are checked here, in the same
transaction as the write, so two sessions cannot both pass a limit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SERVER = 0  # the mailbox id of server entries
METADATA_FILE = "metadata.sqlite"  # in the data dir (carteiro backup copies it)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    account TEXT NOT NULL, mailbox_id INTEGER NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (account, mailbox_id, name)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class MetadataLimits:
    value_size: int = 64 * 1024  # octets in one value (RFC 5464 [METADATA MAXSIZE n])
    per_mailbox: int = 100  # entries of one mailbox, or of the server ([METADATA TOOMANY])
    per_account: int = 1000  # entries of an account, its mailboxes and server entries together
    account_size: int = 1024 * 1024  # octets of names and values of an account together


class TooLarge(Exception):
    """A value above MetadataLimits.value_size: RFC 5464 4.3 NO [METADATA MAXSIZE n]."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class TooMany(Exception):
    """Past the count or total-size limit: RFC 5464 4.3 NO [METADATA TOOMANY]."""


Listener = Callable[[str, int, tuple[str, ...]], None]
"""Told (account, mailbox id or SERVER, entry names) after a committed change; in this process
only (other processes' sessions do not hear it: docs/imap.md)."""


class MetadataStore:
    def __init__(self, path: Path, limits: MetadataLimits | None = None) -> None:
        self.path = path
        self.limits = limits or MetadataLimits()
        self._conn: sqlite3.Connection | None = None  # opened on first use
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Listener]] = {}

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # WAL commits fsynced before OK
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(_SCHEMA)
            self._conn = db
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- change listeners (NOTIFY MailboxMetadataChange / ServerMetadataChange) ----

    def listen(self, account: str, fn: Listener) -> None:
        self._listeners.setdefault(account, set()).add(fn)

    def unlisten(self, account: str, fn: Listener) -> None:
        fns = self._listeners.get(account)
        if fns is not None:
            fns.discard(fn)
            if not fns:
                del self._listeners[account]

    def announce(self, account: str, mailbox_id: int, names: tuple[str, ...]) -> None:
        """Tell this account's listeners (call on the event loop, after set() returned)."""
        for fn in list(self._listeners.get(account, ())):
            fn(account, mailbox_id, names)

    # ---- reads and writes (blocking) ----

    def get(
        self, account: str, mailbox_id: int, names: Sequence[str], depth: int
    ) -> list[tuple[str, bytes | None]]:
        """Each requested entry (None when it has no value) followed, for depth 1 or -1
        (infinity), by its existing descendants, in name order (RFC 5464 4.2.2)."""
        out: list[tuple[str, bytes | None]] = []
        seen: set[str] = set()
        with self._lock:
            db = self._db
            for name in names:
                row = db.execute(
                    "SELECT value FROM entries WHERE account = ? AND mailbox_id = ? AND name = ?",
                    (account, mailbox_id, name),
                ).fetchone()
                if name not in seen and (row is not None or name.count("/") > 1):
                    seen.add(name)
                    out.append((name, bytes(row[0]) if row is not None else None))
                if depth == 0:
                    continue
                prefix = name + "/"
                rows = db.execute(
                    "SELECT name, value FROM entries WHERE account = ? AND mailbox_id = ?"
                    " AND substr(name, 1, ?) = ? ORDER BY name",
                    (account, mailbox_id, len(prefix), prefix),
                ).fetchall()
                for child, value in rows:
                    if depth == 1 and "/" in child[len(prefix) :]:
                        continue
                    if child not in seen:
                        seen.add(child)
                        out.append((child, bytes(value)))
        return out

    def set(
        self, account: str, mailbox_id: int, values: Iterable[tuple[str, bytes | None]]
    ) -> tuple[str, ...]:
        """Set (None: remove) entries, all or none; returns the names that changed. Raises
        TooLarge or TooMany, leaving everything as it was."""
        values = list(values)
        lim = self.limits
        for _, value in values:
            if value is not None and len(value) > lim.value_size:
                raise TooLarge(lim.value_size)
        changed: list[str] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for name, value in values:
                    key = (account, mailbox_id, name)
                    old = db.execute(
                        "SELECT value FROM entries WHERE account = ? AND mailbox_id = ?"
                        " AND name = ?",
                        key,
                    ).fetchone()
                    if value is None:
                        if old is not None:
                            db.execute(
                                "DELETE FROM entries WHERE account = ? AND mailbox_id = ?"
                                " AND name = ?",
                                key,
                            )
                            changed.append(name)
                    elif old is None or bytes(old[0]) != value:
                        db.execute(
                            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", (*key, value)
                        )
                        changed.append(name)
                if changed:
                    n_box = db.execute(
                        "SELECT count(*) FROM entries WHERE account = ? AND mailbox_id = ?",
                        (account, mailbox_id),
                    ).fetchone()[0]
                    n_all, size = db.execute(
                        "SELECT count(*), coalesce(sum(length(name) + length(value)), 0)"
                        " FROM entries WHERE account = ?",
                        (account,),
                    ).fetchone()
                    if (
                        n_box > lim.per_mailbox
                        or n_all > lim.per_account
                        or size > lim.account_size
                    ):
                        raise TooMany()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return tuple(changed)

    def drop_mailbox(self, account: str, mailbox_id: int) -> None:
        """A deleted mailbox's entries go with it (RFC 5464 3.2: they belong to the mailbox)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM entries WHERE account = ? AND mailbox_id = ?", (account, mailbox_id)
            )

    def forget_missing(self, account: str, live: Iterable[int]) -> None:
        """Drop the entries of every mailbox of `account` whose id is not in `live` (deleted,
        maybe by another process): the limits count only what a client can still reach."""
        keep = set(live)
        with self._lock:
            db = self._db
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT mailbox_id FROM entries WHERE account = ? AND mailbox_id != 0",
                    (account,),
                )
            ]
            gone = [i for i in ids if i not in keep]
            if gone:
                db.executemany(
                    "DELETE FROM entries WHERE account = ? AND mailbox_id = ?",
                    [(account, i) for i in gone],
                )
