"""The search index of the durable store: never out of step with the messages (a crash at each
step of the indexer, expunge/copy/move/delete), built for an index that predates it, and rebuilt
by `store reindex`."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from carteiro.mime import searchtext
from carteiro.store import search_index
from carteiro.store.api import DELETED, FlagOp, IndexTerm
from carteiro.store.index import SEARCH_TEXT
from carteiro.store.maintenance import check, reindex
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, hold_flusher, index_then_crash, make_message, open_then_crash

SPAWN = multiprocessing.get_context("spawn")


def run_child(target: object, *args: object, timeout: float = 60) -> int:
    proc = SPAWN.Process(target=target, args=args)  # type: ignore[attr-defined]
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError("child did not finish")
    return proc.exitcode or 0


def rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(data / "index.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def subject_hits(store: SqliteMaildirStore, mailbox: str, needle: str) -> set[int]:
    acct = await store.account(ACCOUNT)
    box = await acct.get_mailbox(mailbox)
    # the server folds needles as the index folds texts (i;unicode-casemap)
    term = IndexTerm("header", "subject", searchtext.fold(needle))
    [hits] = await acct.search_index(box.id, [term])
    assert hits is not None
    return set(hits.hits)


@pytest.mark.parametrize("point", ["parsed", "search_rows", "search_text", "indexed"])
async def test_crash_at_each_step_of_the_indexer(tmp_path: Path, point: str) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    assert run_child(index_then_crash, str(data), point) == 86
    report = check(data)
    assert report.ok, report  # the rows and the mark went together, or neither
    # the first round died: before its COMMIT nothing of it is there, after it all of it is
    assert bool(rows(data, "SELECT uid FROM search_progress")) == (point == "indexed")
    store = SqliteMaildirStore(data)
    try:
        assert store.wait_search_indexed(30)
        assert check(data).ok
        assert await subject_hits(store, "INBOX", "indexed 3") == {4}
        assert len(rows(data, "SELECT * FROM search_fields")) == 5
    finally:
        await store.close()


@pytest.mark.parametrize("indexer", [True, "process"], ids=["thread", "process"])
async def test_expunge_copy_move_and_delete_keep_the_index_in_step(
    tmp_path: Path, indexer: bool | str
) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data, search_indexer=indexer)
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(6):
            await acct.append("INBOX", make_message(f"msg {i}"))
        assert store.wait_search_indexed(30)
        parsed = rows(data, "SELECT count(*) FROM search_fields")[0][0]
        assert parsed == 6
        inbox = await acct.get_mailbox("INBOX")
        await acct.copy(inbox.id, [1, 2], "Archive")
        await acct.move(inbox.id, [3], "Trash")
        await acct.set_flags(inbox.id, [4], FlagOp.ADD, [DELETED])
        await acct.expunge(inbox.id)
        assert check(data).ok
        # the copies carry their rows (nothing to parse again), the expunged one's are gone
        assert rows(data, "SELECT count(*) FROM search_fields")[0][0] == 6 + 2 - 1
        assert store.wait_search_indexed(30)
        assert await subject_hits(store, "Archive", "msg 1") == {2}
        assert await subject_hits(store, "Trash", "msg 2") == {1}
        assert await subject_hits(store, "INBOX", "msg") == {1, 2, 5, 6}
        await acct.create_mailbox("Doomed")
        await acct.copy(inbox.id, [5], "Doomed")
        await acct.delete_mailbox("Doomed")
        assert check(data).ok
        assert rows(data, "SELECT count(*) FROM search_fields")[0][0] == 7  # Doomed's went
        # the text rows of expunged messages are left for the indexer to purge (an expunge on
        # a full disk cannot afford FTS deletions); it does when it next runs
        assert store.wait_search_indexed(30)
        assert rows(data, "SELECT count(*) FROM search_text_docsize")[0][0] == 7
    finally:
        await store.close()


async def test_an_index_from_before_the_search_index_is_filled_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data, search_indexer=False)
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    for i in range(3):
        await acct.append("INBOX", make_message(f"old {i}"))
    await store.close()
    conn = sqlite3.connect(data / "index.sqlite")
    for table in ("search_fields", "search_text", "search_progress"):
        conn.execute(f"DROP TABLE {table}")
    conn.close()
    store = SqliteMaildirStore(data)
    try:
        assert store.wait_search_indexed(30)
        assert await subject_hits(store, "INBOX", "old 2") == {3}
    finally:
        await store.close()


async def test_reindex_rebuilds_the_search_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    for i in range(4):
        await acct.append("INBOX", make_message(f"again {i}"))
    assert store.wait_search_indexed(30)
    await store.close()
    conn = sqlite3.connect(data / "index.sqlite")
    conn.execute("DELETE FROM search_fields WHERE uid = 2")  # damaged: check says so
    conn.commit()
    conn.close()
    assert check(data).search_index
    report = reindex(data)
    assert report.searchable == 4
    assert check(data).ok
    store = SqliteMaildirStore(data, search_indexer=False)
    try:
        assert await subject_hits(store, "INBOX", "again 1") == {2}
    finally:
        await store.close()


def test_fts_query_is_a_superset_of_the_substring() -> None:
    q = search_index.fts_query
    assert q("umbrella") is None  # could be the middle of any token
    assert q("number 99999") == '"99999" *'
    assert q("r 99 x") == '"99" "x" *'
    assert q("- café") == '"café" *'
    assert q("a -- --") is None
    # one token per item (the table keeps no positions): a run is cut where unicode61 may split
    # it, what follows the cut may be the tail of a token
    assert q("x CAFE\u0301S Y") == '"CAFE\u0301S" "Y" *'  # NFKD accents continue the token
    assert q("x FOO\u2014BAR Y") == '"FOO" * "Y" *'
    assert q("x \u65e5\u672c Y") == '"Y" *'
    assert q("x AB\u65e5 Y") == '"AB" * "Y" *'
    assert q("A \u0301") is None  # an accent alone is no token (FTS5 would match nothing)
    assert q("A \u0301E Y") == '"\u0301E" "Y" *'


def test_the_characters_fts_query_keeps_in_a_token_are_token_characters() -> None:
    """fts_query's items are single tokens only if unicode61 keeps every character it treats as
    certain inside a token: checked against SQLite itself, character by character (a phrase of
    two tokens would be an error on a table without positions)."""
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5({SEARCH_TEXT})")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    kept = [chr(c) for c in range(0x80, 0x3000) if search_index._token_char(chr(c))]
    assert len(kept) > 400
    conn.executemany(
        "INSERT INTO t (rowid, body) VALUES (?, ?)", [(ord(c), f"Q{c}Q") for c in kept]
    )
    terms = conn.execute("SELECT doc, count(*), min(term) FROM v GROUP BY doc").fetchall()
    assert len(terms) == len(kept)
    # one term per text, the whole of it: "Q", the character (or nothing: a dropped accent), "Q"
    assert [chr(d) for d, n, term in terms if n != 1 or len(term) < 2] == []
    for c in kept:  # and each is a one-token query (no error, no phrase)
        conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (f'"x{c}" *',)).fetchall()


async def test_an_index_folded_otherwise_is_built_again_once(tmp_path: Path) -> None:
    """Older versions stored Python's casefold; the evaluator now folds with i;unicode-casemap
    (I18NLEVEL=1), so an index of the old fold would answer differently: dropped once at open,
    built again, and not dropped at the next open."""
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(3):
            await acct.append("INBOX", make_message(f"Grüße {i}"))
        assert store.wait_search_indexed(30)
    finally:
        await store.close()
    conn = sqlite3.connect(data / "index.sqlite")
    with conn:  # what an older version left: casefolded texts, no fold recorded
        conn.execute("UPDATE search_fields SET subject = lower(subject)")
        conn.execute("DELETE FROM meta WHERE key = 'search_fold'")
    conn.close()
    store = SqliteMaildirStore(data)
    try:
        assert rows(data, "SELECT value FROM meta WHERE key = 'search_fold'") == [
            (search_index.FOLD,)
        ]
        assert store.wait_search_indexed(30)
        assert await subject_hits(store, "INBOX", "grüße 1") == {2}
        assert await subject_hits(store, "INBOX", "GRÜSSE") == set()  # ß is not "SS" here
    finally:
        await store.close()
    before = rows(data, "SELECT uid FROM search_progress")
    store = SqliteMaildirStore(data, search_indexer=False)
    await store.close()
    assert rows(data, "SELECT uid FROM search_progress") == before  # not dropped again


async def test_sort_index_above_a_uid_gives_only_the_later_messages(tmp_path: Path) -> None:
    store = SqliteMaildirStore(tmp_path / "data")
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(5):
            await acct.append("INBOX", make_message(f"m{i}"), (), 1_700_000_000 + i)
        assert store.wait_search_indexed(30)
        box = await acct.get_mailbox("INBOX")
        mark, everything = await acct.sort_index(box.id)
        assert mark == 5 and sorted(everything) == [1, 2, 3, 4, 5]
        mark, later = await acct.sort_index(box.id, above=3)
        assert mark == 5 and sorted(later) == [4, 5]
        assert later[4] == everything[4]
    finally:
        await store.close()


OLD_SEARCH_TEXT = "body, head, tokenize = 'unicode61 remove_diacritics 2'"  # positions kept


def make_old_format(data: Path) -> None:
    """What an older version left: the same texts in an FTS table with positions (detail=full)
    and FTS5's default merging."""
    conn = sqlite3.connect(data / "index.sqlite")
    with conn:
        texts = conn.execute("SELECT rowid, body, head FROM search_text").fetchall()
        conn.execute("DROP TABLE search_vocab")
        conn.execute("DROP TABLE search_text")
        conn.execute(f"CREATE VIRTUAL TABLE search_text USING fts5({OLD_SEARCH_TEXT})")
        conn.execute("CREATE VIRTUAL TABLE search_vocab USING fts5vocab(search_text, 'row')")
        conn.executemany("INSERT INTO search_text (rowid, body, head) VALUES (?, ?, ?)", texts)
    conn.close()


async def body_hits(store: SqliteMaildirStore, needle: str) -> set[int] | None:
    acct = await store.account(ACCOUNT)
    box = await acct.get_mailbox("INBOX")
    [hits] = await acct.search_index(box.id, [IndexTerm("body", "", searchtext.fold(needle))])
    return None if hits is None else set(hits.hits)


async def test_an_index_of_an_older_format_is_built_again_once(tmp_path: Path) -> None:
    """An FTS table defined otherwise than SEARCH_TEXT (positions kept) is dropped once at open,
    with the rows it goes with, and built again; a crash in the middle leaves the old one whole."""
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(3):
            text = f"Subject: format {i}\r\n\r\nneedle{i} text—dash\r\n"
            await acct.append("INBOX", text.encode())
        assert store.wait_search_indexed(30)
    finally:
        await store.close()
    make_old_format(data)
    assert check(data).ok
    assert run_child(open_then_crash, str(data), "search_format") == 86
    assert check(data).ok  # rolled back: the old table, its rows and the marks, all there
    assert (
        OLD_SEARCH_TEXT
        in rows(data, "SELECT sql FROM sqlite_master WHERE name = 'search_text'")[0][0]
    )
    store = SqliteMaildirStore(data)
    try:
        sql = rows(data, "SELECT sql FROM sqlite_master WHERE name = 'search_text'")[0][0]
        assert f"fts5({SEARCH_TEXT})" in str(sql)
        merge = rows(data, "SELECT v FROM search_text_config WHERE k = 'automerge'")
        assert merge == [(search_index.AUTOMERGE,)]
        assert store.wait_search_indexed(30)
        assert check(data).ok
        assert await subject_hits(store, "INBOX", "format 2") == {3}
        assert await body_hits(store, "dle1 text—d") == {2}  # "text" *, then instr()
        assert await body_hits(store, "eedle2") == {3}  # the terms holding it, then instr()
        assert await body_hits(store, "needle2 dash") == set()
    finally:
        await store.close()
    before = rows(data, "SELECT count(*) FROM search_text_docsize")
    assert before == [(3,)]
    store = SqliteMaildirStore(data, search_indexer=False)
    await store.close()
    assert rows(data, "SELECT count(*) FROM search_text_docsize") == before  # not dropped again
    assert rows(data, "SELECT uid FROM search_progress") == [(3,)]


async def test_a_message_the_indexer_cannot_read_is_searched_in_its_file(tmp_path: Path) -> None:
    """A file not where `pending` said (its folder renamed in between, or lost) must not leave a
    hole below the mark: the message gets a row that sends SEARCH to the message itself."""
    data = tmp_path / "data"
    store = SqliteMaildirStore(data, search_indexer=False)
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for i in range(3):
            await acct.append("INBOX", make_message(f"unread {i}"))
        await store.flush_files()
        reader = search_index.file_reader(store.folder)

        def racing(conn: sqlite3.Connection, mailbox_id: int, uid: int, *rest: Any) -> Any:
            return None if uid == 2 else reader(conn, mailbox_id, uid, *rest)

        conn = sqlite3.connect(data / "index.sqlite", isolation_level=None)
        try:
            assert search_index.build(conn, racing) == 3
        finally:
            conn.close()
        assert check(data).ok
        assert rows(data, "SELECT uid, state FROM search_fields ORDER BY uid") == [
            (1, 0),
            (2, 2),
            (3, 0),
        ]
        acct = await store.account(ACCOUNT)
        box = await acct.get_mailbox("INBOX")
        [hits] = await acct.search_index(
            box.id, [IndexTerm("header", "subject", searchtext.fold("unread"))]
        )
        assert hits is not None and set(hits.hits) == {1, 3} and 2 in hits.unsure
    finally:
        await store.close()


async def test_needles_cut_where_unicode61_may_split_find_their_texts(tmp_path: Path) -> None:
    """The table keeps no positions, so fts_query asks single tokens only: accents (NFKD),
    characters unicode61 may or may not split at, and a lone accent (no token at all)."""
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for text in ("a lone \u0301 accent", "naïve—résumé «quoted» e\u0305x", "other words"):
            body = f"Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            await acct.append("INBOX", body.encode())
        assert store.wait_search_indexed(30)
        for needle, want in (
            ("lone \u0301", {1}),
            ("a lone \u0301 a", {1}),
            ("\u0301 accent", {1}),
            ("ve—résumé «q", {2}),
            ("é «quoted» e", {2}),
            ("» e\u0305x", {2}),
            ("résumé «quoted» ex", set()),
            ("naive", set()),  # NFKD: "NAI\u0308VE" does not hold it
        ):
            assert await body_hits(store, needle) == want, needle
    finally:
        await store.close()


async def test_a_message_not_in_its_file_yet_is_indexed_from_its_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer may come before the flusher: it reads the body kept in the index (found by
    its batch's query), and indexes it exactly as it would from the file."""
    gate = hold_flusher(monkeypatch)
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    texts = [
        b"Subject: crlf\r\n\r\nline one\r\nline two\r\n",
        b"Subject: bare\n\nbare LF line\nand a CR\r alone\n",  # kept as sent: no LF form
    ]
    try:
        await store.create_account(ACCOUNT)
        acct = await store.account(ACCOUNT)
        for t in texts:
            await acct.append("INBOX", t)
        assert rows(data, "SELECT count(*) FROM unsynced") == [(2,)]
        assert store.wait_search_indexed(30)
        early = rows(data, "SELECT * FROM search_fields ORDER BY uid")
        early_texts = rows(data, "SELECT rowid, body, head FROM search_text ORDER BY rowid")
        gate.set()
        await store.flush_files()
        assert rows(data, "SELECT count(*) FROM unsynced") == [(0,)]
        assert await body_hits(store, "line one\r\nline") is None  # (LF: read, not indexed)
        assert await body_hits(store, "e two") == {1}
        assert await body_hits(store, "cr\r alo") == {2}
    finally:
        gate.set()
        await store.close()
    conn = sqlite3.connect(data / "index.sqlite")
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'search_fold'")  # rebuilt from the files
    conn.close()
    store = SqliteMaildirStore(data)
    try:
        assert store.wait_search_indexed(30)
        assert rows(data, "SELECT * FROM search_fields ORDER BY uid") == early
        texts_now = rows(data, "SELECT rowid, body, head FROM search_text ORDER BY rowid")
        assert texts_now == early_texts and len(early_texts) == 2
        assert check(data).ok
    finally:
        await store.close()
