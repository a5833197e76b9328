"""The queue index: envelopes and per-recipient state in DATA/queue/queue.sqlite (WAL, synchronous).

Synchronous and single-connection: the async spool runs it on one thread; the CLI uses it directly
when no server is running. A row is the commit point of a message: its file is written and synced
first, so a file without a row is garbage from a crash and a row always has its file. Spools made
before `messages` was WITHOUT ROWID keep their rowid table: every statement here works on both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from carteiro.queue.model import QueuedMessage, RecipientState

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    mail_from TEXT NOT NULL,
    ret TEXT,
    envid TEXT,
    body TEXT NOT NULL DEFAULT '7BIT',
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    requiretls INTEGER NOT NULL DEFAULT 0,
    auth_user TEXT,
    size INTEGER NOT NULL,
    arrival REAL NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,
    prefix BLOB NOT NULL DEFAULT x'',
    origin TEXT NOT NULL DEFAULT '',
    inline INTEGER NOT NULL DEFAULT 0,      -- 1: the bytes are in `bodies`, else in msg/ID
    verp INTEGER NOT NULL DEFAULT 0         -- 1: one envelope sender per recipient
) WITHOUT ROWID;  -- one b-tree, not a table and its id index: a page less per enqueue
CREATE TABLE IF NOT EXISTS bodies (id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dedupe (key TEXT PRIMARY KEY, msg_id TEXT NOT NULL, at REAL NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recipients (
    msg_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    notify TEXT NOT NULL DEFAULT '',
    orcpt TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_attempt REAL,
    last_code INTEGER NOT NULL DEFAULT 0,
    last_status TEXT NOT NULL DEFAULT '',
    last_text TEXT NOT NULL DEFAULT '',
    remote_mta TEXT NOT NULL DEFAULT '',
    remote_reply INTEGER NOT NULL DEFAULT 1,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    headers BLOB NOT NULL DEFAULT x'',
    PRIMARY KEY (msg_id, idx)
) WITHOUT ROWID;
"""

_RCPT_COLS = (
    "idx, address, notify, orcpt, state, attempts, next_try, last_attempt, last_code, "
    "last_status, last_text, remote_mta, remote_reply, delay_notified, headers"
)


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so a committed enqueue survives power loss.
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(messages)")}
    if "verp" not in columns:  # a spool made before VERP
        db.execute("ALTER TABLE messages ADD COLUMN verp INTEGER NOT NULL DEFAULT 0")
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(recipients)")}
    if "headers" not in columns:
        db.execute("ALTER TABLE recipients ADD COLUMN headers BLOB NOT NULL DEFAULT x''")
    return db


def _rcpt_row(msg_id: str, r: RecipientState) -> tuple[object, ...]:
    return (
        msg_id,
        r.idx,
        r.address,
        ",".join(r.notify),
        r.orcpt,
        r.state,
        r.attempts,
        r.next_try,
        r.last_attempt,
        r.last_code,
        r.last_status,
        r.last_text,
        r.remote_mta,
        int(r.remote_reply),
        int(r.delay_notified),
        r.headers,
    )


def insert(db: sqlite3.Connection, m: QueuedMessage, data: bytes | None = None) -> None:
    """A new message; `data` (when m.inline) is its content."""
    db.execute(
        "INSERT INTO messages (id, mail_from, ret, envid, body, smtputf8, requiretls, auth_user,"
        " size, arrival, held, prefix, origin, inline, verp)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            m.id,
            m.mail_from,
            m.ret,
            m.envid,
            m.body,
            int(m.smtputf8),
            int(m.requiretls),
            m.auth_user,
            m.size,
            m.arrival,
            int(m.held),
            m.prefix,
            m.origin,
            int(m.inline),
            int(m.verp),
        ),
    )
    if m.inline:
        if data is None:
            raise ValueError("an inline message needs its data")
        db.execute("INSERT INTO bodies (id, data) VALUES (?, ?)", (m.id, data))
    save_recipients(db, m.id, m.recipients)


def load_body(db: sqlite3.Connection, msg_id: str) -> bytes | None:
    row = db.execute("SELECT data FROM bodies WHERE id = ?", (msg_id,)).fetchone()
    return None if row is None else bytes(row[0])


def save_recipients(db: sqlite3.Connection, msg_id: str, rcpts: Iterable[RecipientState]) -> None:
    db.executemany(
        f"INSERT OR REPLACE INTO recipients (msg_id, {_RCPT_COLS}) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [_rcpt_row(msg_id, r) for r in rcpts],
    )


def delete(db: sqlite3.Connection, msg_id: str) -> None:
    db.execute("DELETE FROM recipients WHERE msg_id = ?", (msg_id,))
    db.execute("DELETE FROM bodies WHERE id = ?", (msg_id,))
    db.execute("DELETE FROM messages WHERE id = ?", (msg_id,))


def set_held(db: sqlite3.Connection, msg_id: str, held: bool) -> None:
    db.execute("UPDATE messages SET held = ? WHERE id = ?", (int(held), msg_id))


def _recipient(row: Any) -> RecipientState:
    (
        idx,
        address,
        notify,
        orcpt,
        state,
        attempts,
        next_try,
        last_attempt,
        last_code,
        last_status,
        last_text,
        remote_mta,
        remote_reply,
        delay_notified,
        headers,
    ) = row
    return RecipientState(
        idx=int(idx),
        address=str(address),
        notify=tuple(n for n in str(notify).split(",") if n),
        orcpt=None if orcpt is None else str(orcpt),
        state=state,
        attempts=int(attempts),
        next_try=float(next_try),
        last_attempt=None if last_attempt is None else float(last_attempt),
        last_code=int(last_code),
        last_status=str(last_status),
        last_text=str(last_text),
        remote_mta=str(remote_mta),
        remote_reply=bool(remote_reply),
        delay_notified=bool(delay_notified),
        headers=bytes(headers),
    )


_MSG_COLS = (
    "id, mail_from, ret, envid, body, smtputf8, requiretls, auth_user, size, arrival, held, "
    "prefix, origin, inline, verp"
)


def _message(row: Any, rcpts: list[RecipientState]) -> QueuedMessage:
    (
        mid,
        mail_from,
        ret,
        envid,
        body,
        smtputf8,
        requiretls,
        auth_user,
        size,
        arrival,
        held,
        prefix,
        origin,
        inline,
        verp,
    ) = row
    return QueuedMessage(
        id=str(mid),
        mail_from=str(mail_from),
        recipients=rcpts,
        size=int(size),
        arrival=float(arrival),
        ret=None if ret is None else str(ret),
        envid=None if envid is None else str(envid),
        body=str(body),
        smtputf8=bool(smtputf8),
        requiretls=bool(requiretls),
        auth_user=None if auth_user is None else str(auth_user),
        held=bool(held),
        prefix=bytes(prefix),
        origin=str(origin),
        inline=bool(inline),
        verp=bool(verp),
    )


def load_all(db: sqlite3.Connection) -> list[QueuedMessage]:
    rcpts: dict[str, list[RecipientState]] = {}
    for row in db.execute(f"SELECT msg_id, {_RCPT_COLS} FROM recipients ORDER BY msg_id, idx"):
        rcpts.setdefault(str(row[0]), []).append(_recipient(row[1:]))
    return [
        _message(row, rcpts.get(str(row[0]), []))
        for row in db.execute(f"SELECT {_MSG_COLS} FROM messages ORDER BY arrival, id")
    ]


def load(db: sqlite3.Connection, msg_id: str) -> QueuedMessage | None:
    row = db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (msg_id,)).fetchone()
    if row is None:
        return None
    rcpts = [
        _recipient(r)
        for r in db.execute(
            f"SELECT {_RCPT_COLS} FROM recipients WHERE msg_id = ? ORDER BY idx", (msg_id,)
        )
    ]
    return _message(row, rcpts)


def insert_once(
    db: sqlite3.Connection, m: QueuedMessage, data: bytes | None, key: str, keep: float
) -> str | None:
    """insert() unless `key` was enqueued before (then nothing, and its queue id is returned).
    Keys older than `keep` seconds go now and then."""
    row = db.execute("SELECT msg_id FROM dedupe WHERE key = ?", (key,)).fetchone()
    if row is not None:
        return str(row[0])
    insert(db, m, data)
    db.execute("INSERT INTO dedupe (key, msg_id, at) VALUES (?, ?, ?)", (key, m.id, m.arrival))
    if m.id.endswith("0"):  # now and then (one id in 31 ends so): the table stays small
        db.execute("DELETE FROM dedupe WHERE at < ?", (m.arrival - keep,))
    return None
