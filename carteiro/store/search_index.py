"""The search index of the default store: the decoded header fields and text that IMAP SEARCH
compares (RFC 3501 6.4.4), one row per message, and an FTS5 table over its body and header text.

It is a cache the store can always do without: a mailbox's rows cover the UIDs up to its mark in
`search_progress`, filled after COMMIT by a background indexer (messages above the mark are the
journal: nothing to lose), and anything it cannot decide is handed back as "unsure", so SEARCH
gives the same answer with or without it. Never imports a protocol.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carteiro.mime import searchtext
from carteiro.mime.parse import parse
from carteiro.mime.sortkeys import SortFields, sort_fields
from carteiro.store import maildir
from carteiro.store.api import IndexTerm, TermHits
from carteiro.store.index import SEARCH_TEXT, json_ints

log = logging.getLogger(__name__)


MAX_TEXT = 1 << 20  # characters of body (and of head) text kept per message
BATCH = 200  # messages per indexer transaction
BATCH_OCTETS = 8 << 20  # ... and message octets (see pending)
SEP = "\n"  # joins a message's texts: a needle without it never matches across two of them

# SEARCH HEADER field -> column (FROM/TO/CC/BCC and SUBJECT keys are HEADER keys of these fields)
HEADER_COLUMNS = {
    "subject": "subject",
    "from": "from_",
    "to": "to_",
    "cc": "cc",
    "bcc": "bcc",
    "message-id": "message_id",
    "in-reply-to": "in_reply_to",
    "references": "refs",
}
_COLUMNS = (
    "mailbox_id, uid, state, subject, from_, to_, cc, bcc, message_id, in_reply_to, refs, sent_day,"
    " sort_subject, reply, sort_from, sort_to, sort_cc, display_from, display_to, sent_ts, msgid,"
    " parents"
)
_SORT_COLUMNS = (
    "uid, sort_subject, reply, sort_from, sort_to, sort_cc, display_from, display_to, sent_ts,"
    " msgid, parents"
)


def rowid(mailbox_id: int, uid: int) -> int:
    return mailbox_id << 32 | uid


@dataclass(slots=True)
class Extracted:
    uid: int
    state: int
    fields: tuple[Any, ...]  # subject .. sent_day, in _COLUMNS order
    body: str
    head: str


def _sort_values(f: SortFields) -> tuple[Any, ...]:
    return (
        f.subject,
        int(f.reply),
        f.from_,
        f.to,
        f.cc,
        f.display_from,
        f.display_to,
        f.date,
        f.message_id,
        " ".join(f.references),
    )


def sort_rows(
    conn: sqlite3.Connection, mailbox_id: int, above: int = 0
) -> tuple[int, dict[int, SortFields]]:
    """The SORT/THREAD fields of the mailbox's indexed messages with a UID over `above`: (the
    mark, uid -> fields); a message above the mark or unreadable at indexing is not in it."""
    row = conn.execute(
        "SELECT uid FROM search_progress WHERE mailbox_id = ?", (mailbox_id,)
    ).fetchone()
    out: dict[int, SortFields] = {}
    if row is None:
        return 0, out
    for uid, subj, reply, fr, to, cc, dfr, dto, ts, mid, parents in conn.execute(
        f"SELECT {_SORT_COLUMNS} FROM search_fields"
        " WHERE mailbox_id = ? AND uid > ? AND state != 2",
        (mailbox_id, above),
    ):
        out[uid] = SortFields(
            subj,
            bool(reply),
            fr,
            to,
            cc,
            dfr,
            dto,
            ts,
            mid,
            tuple(parents.split()) if parents else (),
        )
    return row[0], out


def _joined(texts: list[str]) -> str | None:
    return SEP.join(searchtext.fold(t) for t in texts) if texts else None


def _bounded(texts: list[str]) -> tuple[str, bool]:
    text = SEP.join(searchtext.fold(t) for t in texts)
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT], True
    return text, False


def extract(uid: int, data: bytes, internaldate: float, crlf: bool = False) -> Extracted:
    """The index row of one message: exactly the texts the SEARCH evaluator compares. `crlf`:
    `data` is known to have no bare LF (see Reader). `internaldate`: shifted into its zone (its
    UTC date is the date INTERNALDATE shows, what SENT* take without a Date:)."""
    try:
        msg = parse(data, crlf=crlf)
        day = searchtext.sent_date(msg)
        if day is None:
            day = dt.datetime.fromtimestamp(internaldate, dt.UTC).date()
        fields = (
            _joined(searchtext.subject_texts(msg)),
            *(_joined(searchtext.address_texts(msg, f)) for f in ("from", "to", "cc", "bcc")),
            *(
                _joined(searchtext.header_texts(msg, f))
                for f in ("message-id", "in-reply-to", "references")
            ),
            day.toordinal(),
            *_sort_values(sort_fields(msg)),
        )
        body, cut_body = _bounded(searchtext.body_texts(msg))
        head, cut_head = _bounded(searchtext.header_blocks(msg))
    except Exception:  # a bug on a hostile message: that message goes the slow way, always
        log.exception("search index: message UID %d not indexed", uid)
        return Extracted(uid, 2, (None,) * 19, "", "")
    return Extracted(uid, 1 if cut_body or cut_head else 0, fields, body, head)


# ---- writing ----


def write_rows(
    conn: sqlite3.Connection,
    mailbox_id: int,
    rows: list[Extracted],
    upto: int,
    hook: Callable[[str], None] = lambda _p: None,
) -> None:
    """Store rows of messages that still exist and move the mailbox's mark to `upto` (in the
    caller's transaction, so rows and mark are committed or lost together)."""
    if rows:
        alive = {
            r[0]
            for r in conn.execute(
                "SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN"
                " (SELECT value FROM json_each(?))",
                (mailbox_id, json_ints(r.uid for r in rows)),
            )
        }
        keep = [r for r in rows if r.uid in alive]
        conn.executemany(
            f"INSERT OR REPLACE INTO search_fields ({_COLUMNS}) VALUES ({', '.join('?' * 22)})",
            [(mailbox_id, r.uid, r.state, *r.fields) for r in keep],
        )
        # A text row already there is one a cleared mailbox left (clear keeps them, as forget
        # does): one look for them all, rather than a DELETE per message, which reads the
        # content table for each.
        old = conn.execute(
            "SELECT id FROM search_text_docsize WHERE id IN (SELECT value FROM json_each(?))",
            (json_ints(rowid(mailbox_id, r.uid) for r in keep),),
        ).fetchall()
        conn.executemany("DELETE FROM search_text WHERE rowid = ?", old)
        conn.executemany(
            "INSERT INTO search_text (rowid, body, head) VALUES (?, ?, ?)",
            [(rowid(mailbox_id, r.uid), r.body, r.head) for r in keep if r.state != 2],
        )
        hook("search_text")  # crash tests: the text rows written, the mark not moved yet
    conn.execute(
        "INSERT INTO search_progress (mailbox_id, uid) VALUES (?, ?) ON CONFLICT (mailbox_id)"
        " DO UPDATE SET uid = max(uid, excluded.uid)",
        (mailbox_id, upto),
    )


# An expunge deletes the field rows only: deleting an FTS5 document writes as much as indexing
# it did, which a user deleting mail on a full disk cannot afford. A text row without its field
# row is garbage that no answer uses, purged by the indexer when there is room (purge_garbage).


def forget(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]) -> None:
    """Expunged messages' rows (in the expunge's transaction)."""
    conn.executemany(
        "DELETE FROM search_fields WHERE mailbox_id = ? AND uid = ?",
        [(mailbox_id, u) for u in uids],
    )


def forget_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> None:
    conn.execute("DELETE FROM search_fields WHERE mailbox_id = ?", (mailbox_id,))
    conn.execute("DELETE FROM search_progress WHERE mailbox_id = ?", (mailbox_id,))


_GARBAGE = (
    "SELECT d.id FROM search_text_docsize d WHERE NOT EXISTS (SELECT 1 FROM search_fields f"
    " WHERE f.mailbox_id = d.id >> 32 AND f.uid = d.id & 4294967295)"
)


def garbage(conn: sqlite3.Connection, limit: int = 1000) -> list[int]:
    """Text rows whose message was expunged (see forget)."""
    return [r[0] for r in conn.execute(_GARBAGE + " LIMIT ?", (limit,))]


def purge(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Delete these text rows if they are still garbage (in the writer's transaction)."""
    conn.executemany(
        "DELETE FROM search_text WHERE rowid = ? AND NOT EXISTS (SELECT 1 FROM search_fields f"
        " WHERE f.mailbox_id = ? AND f.uid = ?)",
        [(i, i >> 32, i & 0xFFFFFFFF) for i in ids],
    )


def copy_rows(
    conn: sqlite3.Connection, src: int, dst: int, pairs: Sequence[tuple[int, int]]
) -> None:
    """A copy's rows from its source's (in the copy's transaction): the indexer then has nothing
    to parse for it. Sources not indexed yet are indexed in `dst` later."""
    conn.executemany(
        f"INSERT OR REPLACE INTO search_fields ({_COLUMNS}) SELECT ?, ?,"
        f" {_COLUMNS.split(', ', 2)[2]} FROM search_fields WHERE mailbox_id = ? AND uid = ?",
        [(dst, n, src, o) for o, n in pairs],
    )
    conn.executemany(
        "INSERT INTO search_text (rowid, body, head) SELECT ?, body, head FROM search_text"
        " WHERE rowid = ? AND EXISTS (SELECT 1 FROM search_fields WHERE mailbox_id = ?"
        " AND uid = ? AND state != 2)",
        [(rowid(dst, n), rowid(src, o), src, o) for o, n in pairs],
    )


def check(conn: sqlite3.Connection) -> list[str]:
    """What is wrong with the search index (tests, `store check`): a message at or below its
    mailbox's mark without a row, a row without its message, a text row without its fields."""
    problems = []
    for mailbox_id, uid in conn.execute(
        "SELECT m.mailbox_id, m.uid FROM messages m JOIN search_progress p"
        " ON p.mailbox_id = m.mailbox_id WHERE m.uid <= p.uid AND NOT EXISTS"
        " (SELECT 1 FROM search_fields f WHERE f.mailbox_id = m.mailbox_id AND f.uid = m.uid)"
    ):
        problems.append(f"mailbox {mailbox_id} UID {uid} is below the mark but not indexed")
    for mailbox_id, uid in conn.execute(
        "SELECT f.mailbox_id, f.uid FROM search_fields f WHERE NOT EXISTS"
        " (SELECT 1 FROM messages m WHERE m.mailbox_id = f.mailbox_id AND m.uid = f.uid)"
    ):
        problems.append(f"mailbox {mailbox_id} UID {uid} is indexed but gone")
    texts = {r[0] for r in conn.execute("SELECT id FROM search_text_docsize")}
    fields = {
        rowid(m, u)
        for m, u in conn.execute("SELECT mailbox_id, uid FROM search_fields WHERE state != 2")
    }
    if fields - texts:
        problems.append(f"{len(fields - texts)} indexed messages have no text row")
    return problems


# How the stored texts are folded (searchtext.fold): an index folded another way (an older
# version's Python casefold) is dropped once at open and built again by the indexer, since the
# evaluator and the index must compare the same keys. Meanwhile SEARCH reads the messages.
FOLD = "i;unicode-casemap"
# FTS5 merges a batch's segment with others once AUTOMERGE segments of a size are there: 8
# rather than FTS5's 4 rewrites each term fewer times as the index grows (-10% of the CPU of
# indexing a text), a query reading at most 7 segments of each size instead of 3.
AUTOMERGE = 8
_SEARCH_TEXT_SQL = f"CREATE VIRTUAL TABLE search_text USING fts5({SEARCH_TEXT})"


def _current(conn: sqlite3.Connection) -> bool:
    fold = conn.execute("SELECT value FROM meta WHERE key = 'search_fold'").fetchone()
    if fold is None or fold[0] != FOLD:
        return False
    table = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'search_text'"
    ).fetchone()
    if table is None or table[0] != _SEARCH_TEXT_SQL:
        return False
    merge = conn.execute("SELECT v FROM search_text_config WHERE k = 'automerge'").fetchone()
    return merge is not None and merge[0] == AUTOMERGE


def ensure_format(conn: sqlite3.Connection, hook: Callable[[str], None] = lambda _p: None) -> None:
    """Drop the index once if its texts were folded otherwise than FOLD, or its FTS table is not
    SEARCH_TEXT (an older version's, with positions): at open and reindex. The indexer then
    builds it again in the background, SEARCH reading the messages meanwhile."""
    if _current(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _current(conn):
            if conn.execute("SELECT 1 FROM search_progress LIMIT 1").fetchone():
                log.warning("the search index is of an older format; it is built again")
            conn.execute("DROP TABLE IF EXISTS search_vocab")
            conn.execute("DROP TABLE IF EXISTS search_text")
            hook("search_format")  # crash tests: the old table dropped, nothing rebuilt yet
            conn.execute(_SEARCH_TEXT_SQL)
            conn.execute("CREATE VIRTUAL TABLE search_vocab USING fts5vocab(search_text, 'row')")
            conn.execute(
                "INSERT INTO search_text (search_text, rank) VALUES ('automerge', ?)", (AUTOMERGE,)
            )
            clear(conn)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('search_fold', ?)", (FOLD,)
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def clear(conn: sqlite3.Connection, mailbox_ids: Sequence[int] | None = None) -> None:
    """Drop the index of these mailboxes (all: None) so that it is built again."""
    if mailbox_ids is None:
        conn.execute("DELETE FROM search_fields")
        conn.execute("DELETE FROM search_text")
        conn.execute("DELETE FROM search_progress")
        return
    for m in mailbox_ids:
        forget_mailbox(conn, m)


# ---- reading what to index ----

# (conn, mailbox id, uid, base, info, mailbox dir, account dir, id of the body kept in `bodies`
# or None) -> (the message's bytes, whether they are known to have no bare LF) or None: gone.
Reader = Callable[
    [sqlite3.Connection, int, int, str, str, str, str, int | None], tuple[bytes, bool] | None
]


def pending(conn: sqlite3.Connection, limit: int = BATCH) -> tuple[int, int, list[Any]] | None:
    """A mailbox with messages above its mark: (mailbox id, the new mark, rows of messages to
    parse: uid, internaldate (shifted into its zone), base, info, mailbox dir, account dir, the
    id of its body in `bodies` while its file is not written). None when all is indexed."""
    row = conn.execute(
        "SELECT b.id, coalesce(p.uid, 0), b.uidnext FROM mailboxes b"
        " LEFT JOIN search_progress p ON p.mailbox_id = b.id"
        " WHERE b.uidnext - 1 > coalesce(p.uid, 0) LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    mailbox_id, mark, uidnext = row
    rows = conn.execute(
        "SELECT m.uid, m.internaldate + 60 * m.internaldate_tz, m.base, m.info, b.dir, a.dir,"
        " u.body_id, m.size FROM messages m"
        " JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id"
        " LEFT JOIN unsynced u ON u.mailbox_id = m.mailbox_id AND u.uid = m.uid"
        " WHERE m.mailbox_id = ? AND m.uid > ? ORDER BY m.uid LIMIT ?",
        (mailbox_id, mark, limit),
    ).fetchall()
    # at most BATCH_OCTETS of messages (one at least): the transaction that writes their rows
    # holds the index's write lock, which deliveries wait for (200 messages of 10 MB imported
    # at once would hold it for seconds; 8 MiB is some 40 ms of FTS work)
    cut = False
    total = 0
    for i, r in enumerate(rows):
        total += r[7]
        if total > BATCH_OCTETS and i > 0:
            rows, cut = rows[:i], True
            break
    # the whole tail read: nothing at or below uidnext - 1 is left (later UIDs are above it)
    upto = rows[-1][0] if cut or len(rows) == limit else uidnext - 1
    have = {
        r[0]
        for r in conn.execute(
            "SELECT uid FROM search_fields WHERE mailbox_id = ? AND uid > ? AND uid <= ?",
            (mailbox_id, mark, upto),
        )
    }
    return mailbox_id, upto, [r for r in rows if r[0] not in have]


def unindexed(conn: sqlite3.Connection) -> int:
    """Messages above their mailbox's mark: what `build` has left to parse (its progress)."""
    row = conn.execute(
        "SELECT count(*) FROM messages m LEFT JOIN search_progress p"
        " ON p.mailbox_id = m.mailbox_id WHERE m.uid > coalesce(p.uid, 0)"
    ).fetchone()
    return int(row[0])


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def file_reader(folder: Callable[[str, str], Path]) -> Reader:
    """Reads a message's bytes: from `bodies` while its file is not written, else its file."""

    def read(
        conn: sqlite3.Connection,
        mailbox_id: int,
        uid: int,
        base: str,
        info: str,
        mdir: str,
        adir: str,
        body_id: int | None,
    ) -> tuple[bytes, bool] | None:
        if body_id is not None:
            body = conn.execute("SELECT data FROM bodies WHERE id = ?", (body_id,)).fetchone()
            if body is not None:
                # the message as it came; a name in LF form says it has no bare LF (to_disk)
                return bytes(body[0]), maildir.is_lf_form(base)
        where = folder(adir, mdir)
        # the indexed name first (no stat: the open tells), else the name a Maildir client gave it
        data = _read(f"{where}/cur/{maildir.file_name(base, info)}")
        if data is None:
            path = maildir.locate(where, base, info)
            data = None if path is None else _read(str(path))
            if data is None:
                return None
        # An LF form holds the message's CRLFs as LFs: back on the wire it has no bare LF (parse
        # need not look for one: 45 us per 100 KB); another file is taken as it is.
        if maildir.is_lf_form(base):
            return maildir.to_wire(data), True
        return data, False

    return read


def index_batch(
    conn: sqlite3.Connection, reader: Reader
) -> tuple[int, int, list[Extracted]] | None:
    """Read and parse one batch (outside any write transaction); None: nothing to do."""
    conn.execute("BEGIN")
    try:
        todo = pending(conn)
        if todo is None:
            return None
        mailbox_id, upto, rows = todo
        datas = [
            (r[0], r[1], reader(conn, mailbox_id, r[0], r[2], r[3], r[4], r[5], r[6])) for r in rows
        ]
    finally:
        conn.execute("COMMIT")
    out = []
    for uid, when, got in datas:
        if got is None:
            # Expunged (write_rows drops its row), or its folder renamed since `pending` looked,
            # or its file lost (`store check` reports that): the mark passes it all the same,
            # so it gets a row that sends SEARCH to the message itself.
            out.append(Extracted(uid, 2, (None,) * 19, "", ""))
            continue
        out.append(extract(uid, got[0], when, got[1]))
    return mailbox_id, upto, out


def build(
    conn: sqlite3.Connection, reader: Reader, progress: Callable[[int], None] | None = None
) -> int:
    """Index every message not yet indexed, in the caller's connection (`store reindex`, with no
    transaction open). Returns the number of messages parsed; `progress(n)` after each batch."""
    n = 0
    while True:
        got = index_batch(conn, reader)
        if got is None:
            return n
        mailbox_id, upto, rows = got
        conn.execute("BEGIN IMMEDIATE")
        try:
            write_rows(conn, mailbox_id, rows, upto)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        n += len(rows)
        if progress is not None:
            progress(n)


INDEX_GATHER = 0.5  # seconds a woken indexer waits for more deliveries before its round


class Indexer:
    """The background indexer of one store process: woken after appends (and every `poll`
    seconds for other processes' ones), it parses in its own thread and writes through the
    store's writer, one batch at a time. Several processes may run one: rows are idempotent."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        reader: Reader,
        submit: Callable[[Callable[[sqlite3.Connection], None]], threading.Event],
        poll: float = 5.0,
        hook: Callable[[str], None] = lambda _p: None,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self._connect = connect
        self._reader = reader
        self._submit = submit
        self._poll = poll
        self._hook = hook
        self._may_write = may_write
        self._wake = threading.Event()
        self._hurry = threading.Event()  # stop() or wait_idle(): no gathering pause
        self._stop = False
        self.batches = 0
        self._idle = threading.Event()
        self._garbage = True  # expunges may have left text rows (forget): look once at start
        self._thread = threading.Thread(target=self._run, name="carteiro-search-index", daemon=True)
        self._thread.start()

    def note_garbage(self) -> None:
        """Messages were expunged: purge their text rows when next idle."""
        self._garbage = True
        self._wake.set()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._hurry.set()
        self._wake.set()
        self._thread.join()

    def hurry(self) -> None:
        """Index what is there now, without the gathering pause (someone waits for it)."""
        self._hurry.set()
        self.wake()

    def wait_idle(self, timeout: float) -> bool:
        """Until everything committed before the call is indexed (tests, bench)."""
        self.hurry()
        return self._idle.wait(timeout)

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop:
                self._wake.clear()
                try:
                    worked = self._round(conn)
                except Exception:
                    log.exception("search indexer round failed; retrying later")
                    worked = False
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                if not worked:
                    if not self._wake.is_set():
                        self._idle.set()
                    if self._wake.wait(self._poll):
                        # Woken by a delivery: let the next ones gather for a moment, so that
                        # one round (one parse pass, one writer transaction) indexes many. One
                        # round per message was ~30% of a delivered message's CPU; SEARCH reads
                        # what is not indexed yet, so the pause costs no answer.
                        self._hurry.wait(INDEX_GATHER)
                        if not self._stop:
                            self._hurry.clear()
        finally:
            conn.close()

    def _round(self, conn: sqlite3.Connection) -> bool:
        if not self._may_write():
            return False  # short of disk: the room left is for mail (and deleting it) first
        got = index_batch(conn, self._reader)
        if got is None:
            return self._purge(conn)
        mailbox_id, upto, rows = got
        self._hook("parsed")
        if self._stop:
            return False  # closing: the batch is read again by the next indexer

        def job(wconn: sqlite3.Connection) -> None:
            self._hook("search_rows")  # in the writer's transaction, before the rows
            write_rows(wconn, mailbox_id, rows, upto, self._hook)

        return self._wait(self._submit(job))

    def _purge(self, conn: sqlite3.Connection) -> bool:
        if not self._garbage:
            return False
        self._garbage = False
        conn.execute("BEGIN")
        try:
            ids = garbage(conn)
        finally:
            conn.execute("COMMIT")
        if not ids:
            return False
        self._garbage = True  # there may be more
        return self._wait(self._submit(lambda wconn: purge(wconn, ids)))

    def _wait(self, done: threading.Event) -> bool:
        # not done within a minute: the writer is stuck or the job failed (logged by the writer);
        # the batch is read again after the poll interval (its rows are idempotent)
        for _ in range(1200):
            if done.wait(0.05):
                self.batches += 1
                self._hook("indexed")
                return True
            if self._stop:
                break
        return False


# ---- answering SEARCH keys ----


def _is_sep(ch: str) -> bool:
    # unicode61 splits at every ASCII character but letters and digits
    return ch < "\x80" and not ch.isalnum()


# The combining marks unicode61 takes for diacritics: a token goes on through them and
# remove_diacritics 2 drops them (NFKD writes most accents of Latin letters with these; others,
# such as U+0305, end a token). tests/unit/store/test_search_index.py checks them with SQLite.
_DIACRITICS = frozenset(
    [chr(c) for c in (*range(0x300, 0x305), *range(0x306, 0x30D), 0x30F, 0x311, 0x31B)]
    + [chr(c) for c in (*range(0x323, 0x329), 0x32D, 0x32E, 0x330, 0x331)]
)


def _token_char(ch: str) -> bool:
    # a letter or digit unicode61 (Unicode 6.1 tables) certainly keeps in a token, or a
    # diacritic it keeps there
    return (ch.isalnum() and ch < "\u0250") or ch in _DIACRITICS


def fts_query(needle: str) -> str | None:
    """An FTS5 query every text containing `needle` matches (a superset: the caller checks the
    substring), or None when the needle gives no whole token to look for. Runs of the needle
    between ASCII separators are whole tokens when bounded on both sides, token prefixes when
    bounded on the left; the first run may be the tail of a longer token, so it is skipped.
    Each item is one token (the table keeps no positions for phrases): a run holding another
    character, which unicode61 may take for a separator, gives only its part before it, as a
    prefix (what follows it may be the tail of a token)."""
    parts = []
    n = len(needle)
    i = 0
    while i < n:
        if _is_sep(needle[i]):
            i += 1
            continue
        j = i
        while j < n and not _is_sep(needle[j]):
            j += 1
        if i > 0:
            k = i
            while k < j and _token_char(needle[k]):
                k += 1
            run = needle[i:k]
            if any(c.isalnum() for c in run):  # (a lone accent is no token: it matches nothing)
                parts.append(f'"{run}"' if k == j < n else f'"{run}" *')
        i = j
    return " ".join(parts) if parts else None


VOCAB_TERMS = 200  # an infix needle found in more terms than this is looked for by a scan


def _vocab_query(conn: sqlite3.Connection, needle: str) -> str | None:
    """For a needle of ASCII letters and digits only, which may sit inside a word: an FTS query
    for every indexed term containing it ("" when none does), or None when too many do. Every
    text containing the needle holds such a term: the needle's characters are token characters,
    so an occurrence lies inside one token, and folding (case, diacritics) leaves ASCII alone."""
    if not (needle.isascii() and needle.isalnum()):
        return None
    terms = [
        r[0]
        for r in conn.execute(
            "SELECT term FROM search_vocab WHERE instr(term, ?) > 0 LIMIT ?",
            (needle.lower(), VOCAB_TERMS + 1),  # unicode61's terms are lower case
        )
    ]
    if len(terms) > VOCAB_TERMS:
        return None
    return " OR ".join(f'"{term}"' for term in terms if '"' not in term)


def answer(
    conn: sqlite3.Connection, mailbox_id: int, terms: Sequence[IndexTerm]
) -> list[TermHits | None]:
    """Each term's matches among the mailbox's indexed messages (one read snapshot)."""
    row = conn.execute(
        "SELECT uid FROM search_progress WHERE mailbox_id = ?", (mailbox_id,)
    ).fetchone()
    upto = row[0] if row else 0
    if upto == 0:
        return [None] * len(terms)
    unsure_rows = conn.execute(
        "SELECT uid, state FROM search_fields WHERE mailbox_id = ? AND state != 0", (mailbox_id,)
    ).fetchall()
    broken = frozenset(u for u, s in unsure_rows if s == 2)
    cut = frozenset(u for u, _s in unsure_rows)
    lo, hi = rowid(mailbox_id, 0), rowid(mailbox_id, 0xFFFFFFFF)
    out: list[TermHits | None] = []
    for t in terms:
        if t.kind == "sent":
            op = {"before": "<", "on": "=", "since": ">="}[t.op]
            hits = conn.execute(
                f"SELECT uid FROM search_fields WHERE mailbox_id = ? AND state != 2"
                f" AND sent_day {op} ?",
                (mailbox_id, t.day),
            ).fetchall()
            out.append(TermHits(upto, frozenset(r[0] for r in hits), broken))
            continue
        if SEP in t.value or (not t.value and t.kind != "header"):
            # a needle with LF may span two texts; "" in BODY/TEXT depends on a text existing
            out.append(None)
            continue
        if t.kind == "header":
            col = HEADER_COLUMNS.get(t.field)
            if col is None:
                out.append(None)
                continue
            if t.value:
                sql = f"SELECT uid FROM search_fields WHERE mailbox_id = ? AND instr({col}, ?) > 0"
                args: tuple[Any, ...] = (mailbox_id, t.value)
            else:  # RFC 9051 6.4.4: an empty string matches every message with the field
                sql = f"SELECT uid FROM search_fields WHERE mailbox_id = ? AND {col} IS NOT NULL"
                args = (mailbox_id,)
            hits = conn.execute(sql, args).fetchall()
            out.append(TermHits(upto, frozenset(r[0] for r in hits), broken))
            continue
        # body / text: FTS narrows, instr() decides on the stored text
        cols = ["body"] if t.kind == "body" else ["body", "head"]
        test = " OR ".join(f"instr({c}, ?) > 0" for c in cols)
        targs = [t.value] * len(cols)
        q = fts_query(t.value)
        if q is None:
            q = _vocab_query(conn, t.value)
        if q == "":  # no term holds the needle: only texts cut at MAX_TEXT may
            out.append(TermHits(upto, frozenset(), cut))
            continue
        if q is not None:
            match = f"body : ({q})" if t.kind == "body" else q
            ids = conn.execute(
                f"SELECT rowid FROM search_text WHERE search_text MATCH ? AND rowid BETWEEN ? AND ?"
                f" AND ({test})",
                (match, lo, hi, *targs),
            ).fetchall()
        else:
            ids = conn.execute(
                f"SELECT rowid FROM search_text WHERE rowid BETWEEN ? AND ? AND ({test})",
                (lo, hi, *targs),
            ).fetchall()
        found = frozenset(r[0] & 0xFFFFFFFF for r in ids)
        if found:  # garbage of expunged messages (forget) answers nothing
            found = frozenset(
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM search_fields WHERE mailbox_id = ? AND uid IN"
                    " (SELECT value FROM json_each(?))",
                    (mailbox_id, json_ints(found)),
                )
            )
        out.append(TermHits(upto, found, cut - found))
    return out
