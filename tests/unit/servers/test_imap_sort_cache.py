"""What a server keeps between SORT/THREAD commands (sortfields.SortCache): after a message
arrives only its index row is read, an expunge reads nothing, and every answer is what a fresh
computation from the store gives; the index being rebuilt, another mailbox, a mailbox deleted
and made again never mix with what was kept; memory stays within its bounds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.mail.sorting import Criterion, sort_items
from carteiro.mail.threading import ordered_subject, references
from carteiro.proto.imap import commands as c
from carteiro.proto.imap.parser import parse_wire
from carteiro.servers.imap import sortfields
from carteiro.servers.imap.sort import ResultCache, render
from carteiro.servers.imap.sortfields import SortCache, items, sorted_uids
from carteiro.store.api import AccountStore
from carteiro.store.memory import MemoryMailStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

ACCT = "alice@example.test"
CRITERIA = [
    [Criterion("DATE")],
    [Criterion("SUBJECT"), Criterion("DATE", True)],
    [Criterion("FROM", True)],
    [Criterion("SIZE")],
]


def message(i: int) -> bytes:
    refs = f"References: <m{i // 3}@x>\r\n" if i % 3 else ""
    subject = ("Re: " if i % 3 else "") + f"topic {i % 7}"
    return (
        f"From: sender{i % 5}@example.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, {1 + i % 28} Jan 2024 10:00:00 +0000\r\nMessage-ID: <m{i}@x>\r\n{refs}"
        f"\r\nbody {'x' * (i % 11)}\r\n"
    ).encode()


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mailboxes of a few dozen messages take the paths of big ones."""
    monkeypatch.setattr(sortfields, "KEEP_MIN", 5)
    monkeypatch.setattr(sortfields, "READ_MAX", 4)


class Reads:
    """Wraps an account's sort_index: (above, rows returned) of each call."""

    def __init__(self, acct: AccountStore) -> None:
        self.calls: list[tuple[int, int]] = []
        inner = acct.sort_index

        async def sort_index(mailbox_id: int, above: int = 0) -> Any:
            mark, rows = await inner(mailbox_id, above)
            self.calls.append((above, len(rows)))
            return mark, rows

        acct.sort_index = sort_index  # type: ignore[method-assign]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data")
    await s.create_account(ACCT)
    yield s
    await s.close()


async def fill(acct: AccountStore, box: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await acct.append(box, message(i), (), 1_700_000_000 + i)


async def answers(
    view: MailboxView, kept: SortCache | None, cache: MessageCache | None = None
) -> list[object]:
    """Every SORT of CRITERIA and both THREADs of the whole mailbox, and a SORT of a search."""
    cache = MessageCache(1 << 20) if cache is None else cache
    everything = list(range(len(view)))
    out: list[object] = []
    for crit in CRITERIA:
        if kept is None:
            found = await items(view, everything, cache)
            out.append([it.uid for it in sort_items(found, crit)])
        else:
            out.append(list(await sorted_uids(view, everything, crit, cache, kept)))
    some = everything[::2]
    if kept is None:
        out.append([it.uid for it in sort_items(await items(view, some, cache), CRITERIA[1])])
    else:
        out.append(list(await sorted_uids(view, some, CRITERIA[1], cache, kept)))
    found = await items(view, everything, cache, kept=kept)
    for algo in (ordered_subject, references):
        out.append("".join("(" + render(r, True) + ")" for r in algo(found)))
    return out


async def check(acct: AccountStore, box: str, kept: SortCache) -> list[tuple[int, int]]:
    """The kept answers are the fresh ones; the index reads the kept ones made, and "read"
    for each message they read and parsed."""
    view = await MailboxView.open(acct, box, True)
    reads = Reads(acct)
    cache = MessageCache(1 << 20)
    got = await answers(view, kept, cache)
    calls = list(reads.calls) + [("read", 0)] * cache.misses  # type: ignore[list-item]
    assert got == await answers(view, None)
    return calls


async def test_a_new_message_reads_only_its_row(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCT)
    await fill(acct, "INBOX", 30)
    assert store.wait_search_indexed(30)
    kept = SortCache()
    assert await check(acct, "INBOX", kept) == [(0, 30)]  # the first SORT reads every row
    await fill(acct, "INBOX", 1, start=30)
    assert store.wait_search_indexed(30)
    assert await check(acct, "INBOX", kept) == [(30, 1)]  # then only the new message's
    view = await MailboxView.open(acct, "INBOX", True)
    assert 31 in (kept.order(view, tuple(CRITERIA[0])) or ()).uids  # placed in the kept order


async def test_a_message_the_index_has_not_reached_is_read_and_kept(tmp_path: Path) -> None:
    store = SqliteMaildirStore(tmp_path / "data", search_indexer=False)
    try:
        await store.create_account(ACCT)
        acct = await store.account(ACCT)
        await fill(acct, "INBOX", 12)
        kept = SortCache()
        await check(acct, "INBOX", kept)  # no index at all: every message parsed
        await fill(acct, "INBOX", 2, start=12)
        # the index (empty) is asked for what came after its mark, the new ones are read
        assert (await check(acct, "INBOX", kept)).count(("read", 0)) == 2
        assert (await check(acct, "INBOX", kept)).count(("read", 0)) == 0  # and kept
        view = await MailboxView.open(acct, "INBOX", True)
        entry = kept.fields(view)
        assert entry is not None and sorted(entry.fields) == list(range(1, 15))
    finally:
        await store.close()


async def test_expunged_messages_leave_the_answers_and_what_is_kept(
    store: SqliteMaildirStore,
) -> None:
    acct = await store.account(ACCT)
    await fill(acct, "INBOX", 30)
    assert store.wait_search_indexed(30)
    kept = SortCache()
    await check(acct, "INBOX", kept)
    box = await acct.get_mailbox("INBOX")
    await acct.set_flags(box.id, [3, 17, 30], "add", ["\\Deleted"])
    assert await acct.expunge(box.id) == [3, 17, 30]
    assert await check(acct, "INBOX", kept) == []  # nothing new: the index is not asked
    view = await MailboxView.open(acct, "INBOX", True)
    for crit in CRITERIA:
        order = kept.order(view, tuple(crit))
        assert order is not None and not {3, 17, 30} & set(order.uids)
    # expunge and arrival together (same size, another last UID)
    await acct.set_flags(box.id, [5], "add", ["\\Deleted"])
    await acct.expunge(box.id)
    await fill(acct, "INBOX", 1, start=30)
    await check(acct, "INBOX", kept)


async def test_the_index_rebuilt_drops_what_was_read_from_it(
    store: SqliteMaildirStore, tmp_path: Path
) -> None:
    acct = await store.account(ACCT)
    await fill(acct, "INBOX", 20)
    assert store.wait_search_indexed(30)
    kept = SortCache()
    await check(acct, "INBOX", kept)
    box = await acct.get_mailbox("INBOX")
    # what `store reindex` does first (search_index.clear): the mailbox's rows and mark go;
    # a row kept here that the index no longer vouches for must not be used
    db = sqlite3.connect(tmp_path / "data" / "index.sqlite")
    with db:
        db.execute("DELETE FROM search_fields WHERE mailbox_id = ?", (box.id,))
        db.execute("DELETE FROM search_progress WHERE mailbox_id = ?", (box.id,))
    db.close()
    view = await MailboxView.open(acct, "INBOX", True)
    entry = kept.fields(view)
    assert entry is not None
    entry.fields[7] = entry.fields[8]  # what a wrong row would have given
    await fill(acct, "INBOX", 1, start=20)  # the next SORT asks the index for what is new
    # the mark went back: everything read again
    assert (await check(acct, "INBOX", kept))[:2] == [(20, 0), (0, 0)]
    view = await MailboxView.open(acct, "INBOX", True)
    entry = kept.fields(view)
    assert entry is not None and entry.fields[7] != entry.fields[8]


async def test_mailboxes_are_kept_apart(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCT)
    await acct.create_mailbox("Other")
    await fill(acct, "INBOX", 20)
    await fill(acct, "Other", 15, start=100)
    assert store.wait_search_indexed(30)
    kept = SortCache()
    await check(acct, "INBOX", kept)
    await check(acct, "Other", kept)
    await check(acct, "INBOX", kept)
    # deleted and made again under the same name: another mailbox (another id)
    await acct.delete_mailbox("Other")
    await acct.create_mailbox("Other")
    await fill(acct, "Other", 15, start=200)
    assert store.wait_search_indexed(30)
    await check(acct, "Other", kept)


async def test_memory_stays_within_bounds(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCT)
    for name in ("A", "B", "C"):
        await acct.create_mailbox(name)
        await fill(acct, name, 10)
    assert store.wait_search_indexed(30)
    kept = SortCache(mailboxes=2, messages=25, orders=3)
    for name in ("A", "B", "C"):
        await check(acct, name, kept)
    views = [await MailboxView.open(acct, n, True) for n in ("A", "B", "C")]
    assert [kept.fields(v) is not None for v in views] == [False, True, True]
    assert sum(kept.order(v, tuple(c)) is not None for v in views for c in CRITERIA) <= 2
    small = SortCache(messages=5)  # a mailbox bigger than the whole budget is not kept
    await check(acct, "A", small)
    assert small.fields(views[0]) is None


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3)),
        st.tuples(st.just("expunge"), st.integers(0, 40)),
        st.tuples(st.just("sort"), st.integers(0, len(CRITERIA) - 1)),
        st.tuples(st.just("stale sort"), st.integers(0, len(CRITERIA) - 1)),
        st.tuples(st.just("search sort"), st.integers(0, len(CRITERIA) - 1)),
    ),
    max_size=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, start=st.integers(0, 12))
@example(ops=[("expunge", 3), ("sort", 1), ("stale sort", 1), ("append", 1), ("sort", 1)], start=8)
def test_kept_orders_answer_like_a_fresh_sort_whatever_happens(
    ops: list[tuple[str, int]], start: int
) -> None:
    """Arrivals, expunges, and sessions whose view is behind the store's (a stale view still
    numbers messages expunged since, and lacks new ones), in any order: each SORT from what is
    kept gives a fresh SORT's order of the messages the store still has (an expunged message
    the view still shows sorts by its fields or as empty: either is its own place only), and
    each THREAD of an up-to-date view a fresh THREAD."""

    async def run() -> None:
        store = MemoryMailStore()
        await store.create_account(ACCT)
        acct = await store.account(ACCT)
        await fill(acct, "INBOX", start)
        box = await acct.get_mailbox("INBOX")
        kept = SortCache()
        stale = await MailboxView.open(acct, "INBOX", True)
        n = start
        for op, arg in ops:
            if op == "append":
                await fill(acct, "INBOX", arg, start=n)
                n += arg
                continue
            if op == "expunge":
                uids = [m.uid for m in await acct.list_messages(box.id)]
                if uids:
                    uid = uids[arg % len(uids)]
                    await acct.set_flags(box.id, [uid], "add", ["\\Deleted"])
                    await acct.expunge(box.id)
                continue
            view = stale if op == "stale sort" else await MailboxView.open(acct, "INBOX", True)
            idx = list(range(len(view)))[:: 2 if op == "search sort" else 1]
            crit = CRITERIA[arg]
            cache = MessageCache(1 << 20)
            got = list(await sorted_uids(view, idx, crit, cache, kept))
            want = [it.uid for it in sort_items(await items(view, idx, cache), crit)]
            alive = {m.uid for m in await acct.list_messages(box.id)}
            assert sorted(got) == sorted(want)
            assert [u for u in got if u in alive] == [u for u in want if u in alive]
            if op == "sort":  # a view up to date: THREAD from the kept Items as well
                every = list(range(len(view)))
                for algo in (references, ordered_subject):
                    a, b = (
                        "".join("(" + render(r, False) + ")" for r in algo(its))
                        for its in (
                            await items(view, every, cache, kept=kept),
                            await items(view, every, cache),
                        )
                    )
                    assert a == b
        await store.close()

    asyncio.run(run())


async def test_a_whole_mailbox_answer_is_kept_across_flag_changes_not_arrivals() -> None:
    """The answer cache is keyed by the messages a view holds (UIDVALIDITY, size, last UID):
    reading a message (\\Seen) keeps it; an arrival, an expunge, or both, do not."""
    store = MemoryMailStore()
    await store.create_account(ACCT)
    acct = await store.account(ACCT)
    await fill(acct, "INBOX", 6)
    box = await acct.get_mailbox("INBOX")
    answers = ResultCache()
    req = parse_wire(b"a THREAD REFERENCES UTF-8 ALL\r\n")
    assert isinstance(req, c.Thread)

    async def key() -> object:
        return answers.key(await MailboxView.open(acct, "INBOX", False), req)

    first = await key()
    await acct.set_flags(box.id, [2], "add", ["\\Seen"])
    assert await key() == first
    await fill(acct, "INBOX", 1, start=6)
    arrived = await key()
    assert arrived != first
    await acct.set_flags(box.id, [1], "add", ["\\Deleted"])
    await acct.expunge(box.id)
    assert await key() not in (first, arrived)
    await store.close()
