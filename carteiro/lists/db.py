"""The lists' durable state in DATA/lists/lists.sqlite (WAL, synchronous=FULL): lists and their
settings, members, pending confirmations and held posts (by token), bounce scores, digests.

Synchronous; the engine runs it on one thread, the CLI calls it directly (SQLite's locking lets a
running server and the CLI share the file). Knows no mail format and sends nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from carteiro.lists.model import MailingList, Member, Settings

DB_DIR = "lists"
DB_NAME = "lists.sqlite"
# A stat of the WAL file stands for the data_version query only once its mtime is this much older
# than the look (file times come from a coarse clock: two commits within one tick can leave the
# same mtime; a commit after a look made this long after the last write cannot).
WAL_QUIET = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lists (
    address TEXT PRIMARY KEY,
    owners TEXT NOT NULL,
    settings TEXT NOT NULL,
    created REAL NOT NULL,
    last_digest REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (
    list TEXT NOT NULL REFERENCES lists(address) ON DELETE CASCADE,
    address TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    delivery TEXT NOT NULL DEFAULT 'regular',
    status TEXT NOT NULL DEFAULT 'enabled',
    since REAL NOT NULL,
    bounce_score REAL NOT NULL DEFAULT 0,
    last_bounce REAL NOT NULL DEFAULT 0,
    warnings INTEGER NOT NULL DEFAULT 0,
    last_warning REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (list, address)
) WITHOUT ROWID;
-- confirmations (subscribe, unsubscribe), requests for a moderator (subscription, post) and
-- bounce probes, each named by a secret token that comes back in an address or a command
CREATE TABLE IF NOT EXISTS pending (
    token TEXT PRIMARY KEY,
    list TEXT NOT NULL REFERENCES lists(address) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    message BLOB,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'waiting'
);
CREATE INDEX IF NOT EXISTS pending_expires ON pending (expires);
CREATE INDEX IF NOT EXISTS pending_state ON pending (state);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digest (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list TEXT NOT NULL REFERENCES lists(address) ON DELETE CASCADE,
    message BLOB NOT NULL,
    at REAL NOT NULL
);
"""

KINDS = ("subscribe", "unsubscribe", "approve-subscription", "post", "probe")


class ListError(Exception):
    """A request the lists cannot do (no such list, already a member...): a message for people."""


@dataclass
class Pending:
    token: str
    list: str
    kind: str
    address: str
    reason: str
    subject: str
    message: bytes | None
    created: float
    expires: float
    state: str


def db_path(data_dir: Path) -> Path:
    return data_dir / DB_DIR / DB_NAME


class ListDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a confirmed subscription survives a crash
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._commits = 0  # this connection's own commits (PRAGMA data_version ignores them)
        self._wal = f"{path}-wal"
        # (WAL's inode, size, mtime) at the last data_version query, when that mtime was older
        # than WAL_QUIET, with the version it gave: an equal stat means nothing committed since
        self._quiet: tuple[tuple[int, int, int], tuple[int, int]] | None = None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._commits += 1

    def secret(self) -> bytes:
        """The key of the one-click unsubscribe links (made once, kept)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if row is not None:
                return bytes(row[0])
            key = secrets.token_bytes(32)
            db.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (key,))
            return key

    # ---- lists --------------------------------------------------------------------------------

    def create(self, ml: MailingList) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM lists WHERE address = ?", (ml.address,)).fetchone():
                raise ListError(f"{ml.address} exists")
            db.execute(
                "INSERT INTO lists (address, owners, settings, created) VALUES (?,?,?,?)",
                (ml.address, json.dumps(ml.owners), json.dumps(ml.settings.to_json()), ml.created),
            )

    def delete(self, address: str) -> None:
        with self._tx() as db:
            if not db.execute("DELETE FROM lists WHERE address = ?", (address,)).rowcount:
                raise ListError(f"no list {address}")

    def save(self, ml: MailingList) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE lists SET owners = ?, settings = ?, last_digest = ? WHERE address = ?",
                (
                    json.dumps(ml.owners),
                    json.dumps(ml.settings.to_json()),
                    ml.last_digest,
                    ml.address,
                ),
            )

    def get(self, address: str) -> MailingList | None:
        with self._lock:
            row = self._db.execute(
                "SELECT address, owners, settings, created, last_digest FROM lists"
                " WHERE address = ?",
                (address.lower(),),
            ).fetchone()
        return None if row is None else _list(row)

    def all(self) -> list[MailingList]:
        with self._lock:
            rows = self._db.execute(
                "SELECT address, owners, settings, created, last_digest FROM lists ORDER BY address"
            ).fetchall()
        return [_list(r) for r in rows]

    def version(self) -> tuple[int, int]:
        """Changes whenever any connection (another process's CLI included) committed since the
        last call: SQLite's data_version for the others, a counter for this connection's own.

        Asked at every RCPT: when the WAL file (every commit in WAL mode writes it) has the
        inode, size and mtime of the last query, and that mtime was already WAL_QUIET old then,
        nothing committed since and one stat answers (docs/smtp.md); else the query runs."""
        now = time.time()
        try:
            st = os.stat(self._wal)
            key: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        quiet = self._quiet
        if quiet is not None and quiet[0] == key and quiet[1][1] == self._commits:
            return quiet[1]
        with self._lock:
            row = self._db.execute("PRAGMA data_version").fetchone()
            version = int(row[0]), self._commits
        if key is not None and key[2] < (now - WAL_QUIET) * 1e9:
            self._quiet = key, version
        else:
            self._quiet = None
        return version

    def addresses(self) -> set[str]:
        with self._lock:
            return {str(r[0]) for r in self._db.execute("SELECT address FROM lists")}

    # ---- members ------------------------------------------------------------------------------

    def add_member(self, list_address: str, member: Member) -> bool:
        """False when already a member."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO members (list, address, name, delivery, status, since)"
                " VALUES (?,?,?,?,?,?)",
                (
                    list_address,
                    member.address,
                    member.name,
                    member.delivery,
                    member.status,
                    member.since,
                ),
            )
            return bool(cur.rowcount)

    def add_members(self, list_address: str, members: list[Member]) -> int:
        with self._tx() as db:
            cur = db.executemany(
                "INSERT OR IGNORE INTO members (list, address, name, delivery, status, since)"
                " VALUES (?,?,?,?,?,?)",
                [(list_address, m.address, m.name, m.delivery, m.status, m.since) for m in members],
            )
            return cur.rowcount

    def remove_member(self, list_address: str, address: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM members WHERE list = ? AND address = ?", (list_address, address)
            )
            return bool(cur.rowcount)

    def member(self, list_address: str, address: str) -> Member | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_MEMBER_COLS} FROM members WHERE list = ? AND address = ?",
                (list_address, address),
            ).fetchone()
        return None if row is None else Member(*row)

    def members(self, list_address: str) -> list[Member]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_MEMBER_COLS} FROM members WHERE list = ? ORDER BY address",
                (list_address,),
            ).fetchall()
        return [Member(*r) for r in rows]

    def update_member(self, list_address: str, m: Member) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE members SET name = ?, delivery = ?, status = ?, bounce_score = ?,"
                " last_bounce = ?, warnings = ?, last_warning = ? WHERE list = ? AND address = ?",
                (
                    m.name,
                    m.delivery,
                    m.status,
                    m.bounce_score,
                    m.last_bounce,
                    m.warnings,
                    m.last_warning,
                    list_address,
                    m.address,
                ),
            )

    # ---- pending requests -----------------------------------------------------------------------

    def add_pending(self, p: Pending) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO pending (token, list, kind, address, reason, subject, message,"
                " created, expires, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    p.token,
                    p.list,
                    p.kind,
                    p.address,
                    p.reason,
                    p.subject,
                    p.message,
                    p.created,
                    p.expires,
                    p.state,
                ),
            )

    def pending(self, token: str) -> Pending | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_PENDING_COLS} FROM pending WHERE token = ?", (token,)
            ).fetchone()
        return None if row is None else Pending(*row)

    def pending_of(self, list_address: str, kind: str | None = None) -> list[Pending]:
        q = f"SELECT {_PENDING_COLS} FROM pending WHERE list = ?"
        args: tuple[str, ...] = (list_address,)
        if kind is not None:
            q += " AND kind = ?"
            args += (kind,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY created", args).fetchall()
        return [Pending(*r) for r in rows]

    def take_pending(self, token: str) -> Pending | None:
        """Remove and return a request (a token works once)."""
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_PENDING_COLS} FROM pending WHERE token = ?", (token,)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM pending WHERE token = ?", (token,))
        return Pending(*row)

    def set_pending_state(self, token: str, state: str, reason: str | None = None) -> bool:
        """A decision taken outside the server (the CLI): the server carries it out."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE pending SET state = ?, reason = coalesce(?, reason)"
                " WHERE token = ? AND state = 'waiting'",
                (state, reason, token),
            )
            return bool(cur.rowcount)

    def by_state(self, state: str) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_PENDING_COLS} FROM pending WHERE state = ? ORDER BY created", (state,)
            ).fetchall()
        return [Pending(*r) for r in rows]

    def expired(self, now: float) -> list[Pending]:
        with self._lock:  # the usual answer is none: no write transaction for it
            if not self._db.execute(
                "SELECT 1 FROM pending WHERE expires <= ? AND state = 'waiting' LIMIT 1", (now,)
            ).fetchone():
                return []
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_PENDING_COLS} FROM pending WHERE expires <= ? AND state = 'waiting'",
                (now,),
            ).fetchall()
            db.execute("DELETE FROM pending WHERE expires <= ? AND state = 'waiting'", (now,))
        return [Pending(*r) for r in rows]

    # ---- posts seen (a retried hand-over is processed once), digests ---------------------------

    def first_time(self, key: str, now: float, keep: float = 7 * 86400.0) -> bool:
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO seen (key, at) VALUES (?, ?)", (key, now))
            if key.endswith("0"):
                db.execute("DELETE FROM seen WHERE at < ?", (now - keep,))
            return bool(cur.rowcount)

    def forget(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM seen WHERE key = ?", (key,))

    def add_digest(self, list_address: str, message: bytes, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO digest (list, message, at) VALUES (?,?,?)",
                (list_address, message, now),
            )

    def digest_posts(self, list_address: str) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, message FROM digest WHERE list = ? ORDER BY id", (list_address,)
            ).fetchall()
        return [(int(i), bytes(m)) for i, m in rows]

    def drop_digest(self, list_address: str, up_to: int, now: float) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM digest WHERE list = ? AND id <= ?", (list_address, up_to))
            db.execute("UPDATE lists SET last_digest = ? WHERE address = ?", (now, list_address))


_MEMBER_COLS = (
    "address, name, delivery, status, since, bounce_score, last_bounce, warnings, last_warning"
)
_PENDING_COLS = "token, list, kind, address, reason, subject, message, created, expires, state"


def _list(row: tuple[object, ...]) -> MailingList:
    address, owners, settings, created, last_digest = row
    return MailingList(
        address=str(address),
        owners=list(json.loads(str(owners))),
        settings=Settings.from_json(json.loads(str(settings))),
        created=float(created),  # type: ignore[arg-type]
        last_digest=float(last_digest),  # type: ignore[arg-type]
    )
