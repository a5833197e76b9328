"""The SQLite index of the default store: its schema, its connections, and what opening it checks.

The index is the truth for UIDs, flags and MODSEQs; the Maildir files carry enough to rebuild it
(maintenance.reindex). So an index that is missing or empty beside existing mail is rebuilt from
the files, never taken for a new store, and a corrupt one stops the store with one sentence that
names the repair. Knows no protocol and no file layout beyond DATA/index.sqlite and DATA/mail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carteiro.store.api import AppendResult, StorageFull, StoreError

log = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite"
# 2: messages.emailid and messages.savedate; 3: `changes` without AUTOINCREMENT; 4:
# messages.internaldate_tz and listings.zones (migrate())
SCHEMA_VERSION = 4
# UIDs/MODSEQs are leased in blocks recorded in each folder's metadata file, so a reindex from the
# files alone can restart above anything ever handed out (RFC 3501 2.3.1.1, RFC 7162 3.1.1).
UID_LEASE = 10_000
MODSEQ_LEASE = 1_000_000
SQLITE_FULL = 13

# The FTS5 table of the search index (search_index.py). detail=column: the index keeps which
# column of which message holds a term, not where in it: SEARCH asks FTS only for terms and term
# prefixes (instr() on the stored text decides), and positions were a third of the CPU of
# indexing a text (docs/search-index.md).
SEARCH_TEXT = "body, head, tokenize = 'unicode61 remove_diacritics 2', detail = column"
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dir TEXT NOT NULL,                         -- "<domain>/<local>" under DATA/mail
    deleted INTEGER NOT NULL DEFAULT 0,
    last_uidvalidity INTEGER NOT NULL DEFAULT 0,
    keywords TEXT NOT NULL DEFAULT ''          -- space-separated; position n -> Maildir letter a+n
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,      -- never reused: event consumers key on it
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    dir TEXT NOT NULL,                         -- Maildir++ folder ("" for INBOX)
    guid TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    special_use TEXT,
    selectable INTEGER NOT NULL DEFAULT 1,
    uid_lease INTEGER NOT NULL,
    modseq_lease INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    account_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags INTEGER NOT NULL,                    -- system flags bitmask (flags.BITS)
    keywords TEXT NOT NULL,                    -- sorted, space-separated
    internaldate REAL NOT NULL,
    size INTEGER NOT NULL,
    base TEXT NOT NULL,                        -- file name before ":2,"
    info TEXT NOT NULL,                        -- info letters of the file name on disk
    emailid TEXT,                              -- RFC 8474 EMAILID (kept by COPY and MOVE)
    savedate REAL,                             -- RFC 8514 SAVEDATE (NULL: not known)
    -- INTERNALDATE's zone, minutes east of UTC: an APPEND date-time's, else the server's local
    -- zone then (0 for rows older than schema 4: they show in UTC, as before)
    internaldate_tz INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox_id, modseq);
-- The messages marked Deleted (flags bit 8): EXPUNGE's question "any to remove?" is one seek
-- instead of a scan of the mailbox (2,000 messages: ~160 us -> ~1 us). Queries name it (INDEXED
-- BY): without statistics the planner prefers the primary key.
CREATE INDEX IF NOT EXISTS messages_deleted ON messages (mailbox_id) WHERE (flags & 8) != 0;
CREATE TABLE IF NOT EXISTS expunged (          -- for QRESYNC VANISHED (RFC 7162 3.2.10)
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS listings (          -- per-mailbox snapshot of the listing (listing.py)
    mailbox_id INTEGER PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    modseq INTEGER NOT NULL,                   -- the HIGHESTMODSEQ it reflects
    count INTEGER NOT NULL,
    uids BLOB NOT NULL,                        -- uint32 little-endian, ascending
    codes BLOB NOT NULL,                       -- a byte each: system-flag bits | 0x80 keywords
    modseqs BLOB NOT NULL,                     -- uint64 little-endian
    keywords TEXT NOT NULL,                    -- JSON {uid: "kw ..."} or ""
    dates BLOB NOT NULL,                       -- float64 little-endian (INTERNALDATE)
    sizes BLOB NOT NULL,                       -- uint64 little-endian
    zones BLOB                                 -- int16 little-endian (NULL: every zone is 0)
);
-- The change log that other processes' feeds read past the last id they saw. Its ids ascend
-- without AUTOINCREMENT (max + 1): the newest rows are never deleted (housekeeping keeps the last
-- CHANGES_KEEP), so no id is handed out twice, and no write transaction updates sqlite_sequence
-- (one page fewer per COMMIT: each append, STORE and EXPUNGE logs here).
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY, origin TEXT NOT NULL, account TEXT NOT NULL, event TEXT NOT NULL
);
-- Per folder: the mtimes (ns) of new/ and cur/ when its files were last compared with its rows
-- (maildir_sync.py), when that was, the mailbox's HIGHESTMODSEQ then, and whether that stamp
-- can be trusted for good (settled) or calls for one more look once the clock has moved on.
CREATE TABLE IF NOT EXISTS maildir_sync (
    mailbox_id INTEGER PRIMARY KEY, new_mtime INTEGER NOT NULL, cur_mtime INTEGER NOT NULL,
    checked INTEGER NOT NULL, modseq INTEGER NOT NULL, settled INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_unlink (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty_files (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
-- The expunge history of a mailbox is kept back to `modseq` (older rows pruned: docs/store.md).
CREATE TABLE IF NOT EXISTS expunge_horizon (
    mailbox_id INTEGER PRIMARY KEY, modseq INTEGER NOT NULL
);
-- Delivery ids committed recently (api.DELIVERY_ID_KEEP): a retried delivery is a no-op that
-- returns the first one's results (JSON [[account, mailbox id, uidvalidity, uid, modseq], ...]).
-- Keyed by day first, so that forgetting old ids is a range delete, never a scan.
CREATE TABLE IF NOT EXISTS delivery_ids (
    day INTEGER NOT NULL, id TEXT NOT NULL, results TEXT NOT NULL, PRIMARY KEY (day, id)
) WITHOUT ROWID;
-- Recent flag (RFC 3501 2.3.2): the highest UID of each mailbox handed out as recent to a session.
CREATE TABLE IF NOT EXISTS recent (mailbox_id INTEGER PRIMARY KEY, uid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS writers (token TEXT PRIMARY KEY, pid INTEGER NOT NULL, started REAL NOT NULL);
-- Messages whose file is not fsynced yet: their bytes are kept here until it is (written by the
-- process `token`); recovery rewrites their files from these bytes. `unsynced` names every
-- message row (copies included) whose file is a link to such a body. Both stay small (bounded
-- by the flusher's backlog): no index beyond the keys, one page less to write per COMMIT.
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY, token TEXT NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS unsynced (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, body_id INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
-- Mail quotas (quota.py): NULL takes the configured default, 0 is no limit; `warned`: the owner
-- was told the account is above 90 % of a limit (reset when it is below again).
CREATE TABLE IF NOT EXISTS quotas (
    account_id INTEGER PRIMARY KEY, storage INTEGER, messages INTEGER, warned INTEGER NOT NULL
);
-- The search index (search_index.py): a cache of what SEARCH compares, rebuilt at will.
-- SEARCH texts (mime.searchtext), case-folded; several values joined by LF; NULL: no such field.
-- state: 0 complete, 1 body/head text cut at MAX_TEXT, 2 message unreadable (no FTS row).
CREATE TABLE IF NOT EXISTS search_fields (
    mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, state INTEGER NOT NULL,
    subject TEXT, from_ TEXT, to_ TEXT, cc TEXT, bcc TEXT,
    message_id TEXT, in_reply_to TEXT, refs TEXT,
    sent_day INTEGER,                          -- date ordinal of Date:, else of INTERNALDATE (its zone)
    -- SORT and THREAD (mime.sortkeys.SortFields): base subject, reply flag, first From/To/Cc
    -- mailbox, RFC 5957 display names, Date: as a UTC timestamp, Message-ID, References chain
    sort_subject TEXT, reply INTEGER, sort_from TEXT, sort_to TEXT, sort_cc TEXT,
    display_from TEXT, display_to TEXT, sent_ts REAL, msgid TEXT, parents TEXT,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
-- rowid: mailbox_id << 32 | uid. body: text/* and message/* bodies; head: every header block.
-- SEARCH_TEXT defines it (search_index.ensure_format rebuilds an index defined otherwise).
CREATE VIRTUAL TABLE IF NOT EXISTS search_text USING fts5("""
    + SEARCH_TEXT
    + """);
-- The distinct terms of search_text: a needle inside words (BODY "umbrel") finds its terms here.
CREATE VIRTUAL TABLE IF NOT EXISTS search_vocab USING fts5vocab(search_text, 'row');
-- Every UID of the mailbox up to `uid` has its row (or had none to have: expunged before).
CREATE TABLE IF NOT EXISTS search_progress (mailbox_id INTEGER PRIMARY KEY, uid INTEGER NOT NULL);
"""
)


def connect_index(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the index with the pragmas every user needs (WAL, busy timeout)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA busy_timeout=60000")
    # WAL commits are durable only with synchronous=FULL (NORMAL defers the fsync to checkpoints)
    conn.execute("PRAGMA synchronous=FULL")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


def init_index(path: Path, fault_hook: Callable[[str], None] | None = None) -> None:
    """Create the index, or bring an older one up to SCHEMA_VERSION (in the same transaction:
    a crash leaves the old schema whole, and the next open migrates again)."""
    conn = connect_index(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA)  # the transaction stays open
        try:
            migrate(conn, fault_hook)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection, fault_hook: Callable[[str], None] | None = None) -> None:
    """Bring an older schema up to SCHEMA_VERSION, inside the caller's transaction."""
    _migrate_emailid(conn, fault_hook)
    _migrate_changes(conn, fault_hook)
    _migrate_zones(conn, fault_hook)


def _migrate_zones(
    conn: sqlite3.Connection, fault_hook: Callable[[str], None] | None = None
) -> None:
    """Schema 3 -> 4: messages gain `internaldate_tz` (0 for every old row: it shows in UTC, as
    it did) and listing snapshots `zones` (NULL: all 0, true of every snapshot taken before).
    Two ALTERs that only rewrite the schema, not the rows: instant on any index."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    if "internaldate_tz" not in cols:
        conn.execute("ALTER TABLE messages ADD COLUMN internaldate_tz INTEGER NOT NULL DEFAULT 0")
        if fault_hook is not None:
            fault_hook("migrate_zones_messages")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(listings)")}
    if "zones" not in cols:
        conn.execute("ALTER TABLE listings ADD COLUMN zones BLOB")
        if fault_hook is not None:
            fault_hook("migrate_zones_listings")


def _migrate_changes(
    conn: sqlite3.Connection, fault_hook: Callable[[str], None] | None = None
) -> None:
    """Schema 2 -> 3: `changes` without AUTOINCREMENT, its rows (and so their ids) kept. Were
    the newest ids ever deleted, a placeholder row (for no account) at the highest id handed
    out keeps the next one above it."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'changes'").fetchone()
    if row is None or "AUTOINCREMENT" not in str(row[0]).upper():
        return
    conn.execute("ALTER TABLE changes RENAME TO changes_2")
    conn.execute(
        "CREATE TABLE changes (id INTEGER PRIMARY KEY, origin TEXT NOT NULL,"
        " account TEXT NOT NULL, event TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO changes SELECT id, origin, account, event FROM changes_2")
    if fault_hook is not None:
        fault_hook("migrate_changes")
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes_2'").fetchone()
    top = conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]
    if seq is not None and int(seq[0]) > int(top):
        conn.execute(
            "INSERT INTO changes (id, origin, account, event) VALUES (?, 'migrate', '', ?)",
            (int(seq[0]), '{"t":"r","m":null}'),
        )
    conn.execute("DROP TABLE changes_2")  # (its sqlite_sequence row goes with it)


def _migrate_emailid(
    conn: sqlite3.Connection, fault_hook: Callable[[str], None] | None = None
) -> None:
    """Schema 1 -> 2: messages gain `emailid` (RFC 8474; old rows get the id their file's unique
    name gives, as `reindex` would) and `savedate` (RFC 8514; NULL for old rows: not known)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    if "emailid" in cols:
        return
    conn.execute("ALTER TABLE messages ADD COLUMN emailid TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN savedate REAL")
    if fault_hook is not None:
        fault_hook("migrate_altered")
    conn.create_function("carteiro_emailid", 1, emailid_of_base, deterministic=True)
    conn.execute("UPDATE messages SET emailid = carteiro_emailid(base)")
    if fault_hook is not None:
        fault_hook("migrate_filled")


def emailid_of(unique: str) -> str:
    """The EMAILID (RFC 8474) of a message first stored under the Maildir unique name `unique`:
    derived from it (not random), so that `reindex` without the old index gives an appended
    message its EMAILID back. Copies carry their source's EMAILID in the index."""
    return "M" + hashlib.sha256(unique.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def mailboxid(guid: str) -> str:
    """RFC 8474 MAILBOXID: the folder's guid (kept in its `carteiro-mailbox` file and moved with
    it by RENAME, so a reindex keeps it too), as an objectid that starts with a letter."""
    return "F" + guid


def emailid_of_base(base: str) -> str:
    return emailid_of(base.split(",", 1)[0])


class IndexCorrupt(StoreError):
    """The index cannot be read as a database: the store will not guess. One sentence for the
    operator, naming the repair."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"the mail index {path} is damaged ({detail}); stop carteiro and run"
            f" `carteiro store reindex --data {path.parent}` to rebuild it from the mail files"
        )


def has_mail(data_dir: Path) -> bool:
    """Is there any account's Maildir under DATA/mail?"""
    root = data_dir / "mail"
    try:
        domains = os.listdir(root)
    except FileNotFoundError:
        return False
    for domain in domains:
        try:
            locals_ = os.listdir(root / domain)
        except (NotADirectoryError, FileNotFoundError):
            continue
        for local in locals_:
            if (root / domain / local / "Maildir" / "cur").is_dir():
                return True
    return False


def index_state(data_dir: Path) -> str:
    """ "ok", "new" (no index and no mail), "lost" (no index, or an empty one, beside existing
    mail: rebuild it from the files). Raises IndexCorrupt for a file that is not a database."""
    path = data_dir / INDEX_NAME
    wal = Path(f"{path}-wal")
    empty = not path.exists() or (
        path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)
    )
    if not empty:
        try:
            conn = sqlite3.connect(path, timeout=60)
            try:
                found = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'accounts'"
                ).fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise IndexCorrupt(path, str(e)) from None
        if found:
            return "ok"
    return "lost" if has_mail(data_dir) else "new"


def prune_expunged(conn: sqlite3.Connection, keep: int, mailboxes: Iterable[int]) -> None:
    """Bound the expunge history of these mailboxes (those expunged in since the last time): one
    with more than `keep` rows keeps the newest half, and its horizon (the MODSEQ from which its
    history is whole) moves up to the oldest row dropped. Each count reads one mailbox's rows
    (the key's prefix), never the whole table."""
    for mailbox_id in mailboxes:
        n = conn.execute(
            "SELECT count(*) FROM expunged WHERE mailbox_id = ?", (mailbox_id,)
        ).fetchone()[0]
        if n <= keep:
            continue
        cut = conn.execute(
            "SELECT modseq FROM expunged WHERE mailbox_id = ? ORDER BY modseq DESC LIMIT 1"
            " OFFSET ?",
            (mailbox_id, keep // 2),
        ).fetchone()[0]
        conn.execute("DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?", (mailbox_id, cut))
        conn.execute(
            "INSERT INTO expunge_horizon (mailbox_id, modseq) VALUES (?, ?) ON CONFLICT"
            " (mailbox_id) DO UPDATE SET modseq = max(modseq, excluded.modseq)",
            (mailbox_id, cut),
        )


DAY = 86400


def delivery_days(now: float, keep: float) -> list[int]:
    """The day numbers a delivery id committed within `keep` seconds may be filed under."""
    today = int(now // DAY)
    return list(range(today - int(keep // DAY) - 1, today + 1))


def seen_delivery(
    conn: sqlite3.Connection, delivery_id: str, now: float, keep: float
) -> str | None:
    """The results recorded for `delivery_id` (None: not delivered within `keep`): one statement,
    one key lookup per day inside SQLite."""
    days = delivery_days(now, keep)
    row = conn.execute(
        f"SELECT results FROM delivery_ids WHERE day IN ({','.join('?' * len(days))}) AND id = ?",
        (*days, delivery_id),
    ).fetchone()
    return None if row is None else str(row[0])


def record_delivery(conn: sqlite3.Connection, delivery_id: str, results: str, now: float) -> None:
    conn.execute(
        "INSERT INTO delivery_ids (day, id, results) VALUES (?, ?, ?)",
        (int(now // DAY), delivery_id, results),
    )


def forget_deliveries(conn: sqlite3.Connection, now: float, keep: float) -> None:
    conn.execute("DELETE FROM delivery_ids WHERE day < ?", (delivery_days(now, keep)[0],))


# ---- rows and SQL shared by the store's modules ----


@dataclass(slots=True)
class AccountRow:
    id: int
    name: str
    dir: str
    deleted: bool
    last_uidvalidity: int
    keywords: list[str]


@dataclass(slots=True)
class MailboxRow:
    id: int
    account_id: int
    name: str
    dir: str
    guid: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    selectable: bool
    uid_lease: int
    modseq_lease: int


MAILBOX_COLS = (
    "id, account_id, name, dir, guid, uidvalidity, uidnext, highestmodseq, special_use, "
    "selectable, uid_lease, modseq_lease"
)
ACCOUNT_COLS = "id, name, dir, deleted, last_uidvalidity, keywords"


def mailbox_from_row(row: Sequence[Any]) -> MailboxRow:
    return MailboxRow(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        bool(row[9]),
        row[10],
        row[11],
    )


def account_from_row(row: Sequence[Any]) -> AccountRow:
    return AccountRow(
        row[0], row[1], row[2], bool(row[3]), row[4], row[5].split() if row[5] else []
    )


def no_room(exc: BaseException) -> BaseException:
    """A write refused for want of space becomes StorageFull (the protocols answer it with their
    "insufficient storage" codes): a full disk for files (ENOSPC, EDQUOT) or for the index
    (SQLITE_FULL). Anything else is passed on as it is."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
        return StorageFull(f"the mail index cannot grow: {exc}")
    full = StorageFull.from_error(exc)
    return exc if full is None else full


def drop_done(
    conn: sqlite3.Connection,
    pairs: list[tuple[int, int, int]],
    bodies: list[int],
    paths: list[str],
) -> None:
    """Forget the journal rows of file work done: `unsynced` rows of files now fsynced, each body
    no row needs any more (a copy made before its file existed keeps it until the copy's own file
    is fsynced), and pending_unlink entries carried out."""
    if paths:
        conn.executemany("DELETE FROM pending_unlink WHERE path = ?", [(p,) for p in paths])
    if not pairs and not bodies:
        return
    conn.executemany("DELETE FROM unsynced WHERE mailbox_id = ? AND uid = ? AND body_id = ?", pairs)
    conn.execute(
        "DELETE FROM bodies WHERE id IN (SELECT value FROM json_each(?))"
        " AND NOT EXISTS (SELECT 1 FROM unsynced WHERE body_id = bodies.id)",
        (json_ints(bodies),),
    )


def results_to_json(results: list[AppendResult]) -> str:
    """A delivery's results as kept in `deliveries` (a retried delivery gets them back)."""
    return json.dumps(
        [[r.account, r.mailbox_id, r.uidvalidity, r.uid, r.modseq] for r in results],
        separators=(",", ":"),
    )


def results_from_json(text: str) -> list[AppendResult]:
    return [
        AppendResult(str(a), int(m), int(v), int(u), int(s)) for a, m, v, u, s in json.loads(text)
    ]


def json_ints(values: Iterable[int]) -> str:
    """Integers as a JSON array, for `IN (SELECT value FROM json_each(?))` (one parameter)."""
    return "[" + ",".join(str(int(v)) for v in values) + "]"
