"""SEARCH through the store's search index gives exactly what reading every message gives: random
mailboxes of tricky messages (encoded words, ß, accents, QP/base64, multipart, message/rfc822,
missing fields) and random keys, answered by the SQLite store (index, FTS, slow path for what is
not indexed) and by the memory store (no index: every message read)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.mail.sorting import Criterion, sort_items
from carteiro.mail.threading import ordered_subject, references
from carteiro.proto.imap.parser import parse_wire
from carteiro.servers.imap.search_eval import search
from carteiro.servers.imap.sort import items as sort_items_of
from carteiro.servers.imap.sort import render
from carteiro.store.api import MailStore
from carteiro.store.memory import MemoryMailStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

ACCT = "alice@example.test"

SUBJECTS = [
    None,
    "[fwd: Re: [list] Meeting at the CAFÉ] (fwd)",
    "Fwd: re:meeting at the café",
    "meeting at the Café",
    "Re: Meeting at the café",
    "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_der_Stra=C3=9Fe?=",
    "[list] Fwd: número 99999",
    "",
    "Number  9999   umbrella",
    "=?iso-8859-1?b?Q2Fm6Q==?= und STRASSE",
]
ADDRESSES = [
    None,
    "Fred Foobar <foobar@example.test>",
    "=?utf-8?q?J=C3=B6rg?= <joerg@example.test>",
    "undisclosed-recipients:;",
    'a@example.org, "Ünïcode, Name" <u@exämple.test>',
    "broken <<@@",
]
DATES = [None, "Mon, 7 Feb 1994 21:52:25 -0800", "Tue, 1 Oct 2024 23:30:00 -0300", "garbage"]
TEXTS = [
    "Hello Joe, shall we meet at 3:30?",
    "Schöne Grüße aus der Straße",
    "umbrella number 99999 café-crème",
    "",
    "x" * 300 + " tail-word",
    "ﬁne ligature and STRASSE",
    "naïve—résumé «quoted» 日本語テキスト x-y",
    "a lone \u0301 accent, e\u0301 and e\u0305x",
]


def _body(kind: int, text: str) -> tuple[str, bytes]:
    raw = text.encode()
    if kind == 0:
        return "Content-Type: text/plain; charset=utf-8\r\n", raw + b"\r\n"
    if kind == 1:
        latin = text.encode("latin-1", "replace")
        qp = "".join(chr(c) if 32 <= c < 127 and c != 61 else f"={c:02X}" for c in latin)
        return (
            "Content-Type: text/plain; charset=latin-1\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n",
            qp.encode() + b"\r\n",
        )
    if kind == 2:
        return (
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
            base64.encodebytes(raw).replace(b"\n", b"\r\n"),
        )
    if kind == 3:
        return (
            'Content-Type: multipart/alternative; boundary="b1"\r\n',
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + raw
            + b"\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>"
            + raw
            + b"</p>\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\nzzzz umbrella\r\n"
            b"--b1--\r\n",
        )
    return (
        'Content-Type: multipart/mixed; boundary="b2"\r\n',
        b"--b2\r\n\r\nfirst part\r\n--b2\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner =?utf-8?q?caf=C3=A9?=\r\nFrom: inner@example.test\r\n\r\n"
        + raw
        + b"\r\n--b2--\r\n",
    )


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    head = []
    for name, pool in (
        ("Subject", SUBJECTS),
        ("From", ADDRESSES),
        ("To", ADDRESSES),
        ("Cc", ADDRESSES),
    ):
        v = draw(st.sampled_from(pool))
        if v is not None:
            head.append(f"{name}: {v}\r\n")
    d = draw(st.sampled_from(DATES))
    if d is not None:
        head.append(f"Date: {d}\r\n")
    if draw(st.booleans()):
        head.append("Message-ID: <id-42@example.test>\r\nX-Tag: blue\r\n")
    else:
        head.append(f"Message-ID: <m{draw(st.integers(0, 5))}@x>\r\n")
    refs = draw(st.lists(st.integers(0, 5), max_size=3))
    if refs:
        field = draw(st.sampled_from(["References", "In-Reply-To"]))
        head.append(f"{field}: " + " ".join(f"<m{r}@x>" for r in refs) + "\r\n")
    ctype, body = _body(draw(st.integers(0, 4)), draw(st.sampled_from(TEXTS)))
    return ("".join(head) + "MIME-Version: 1.0\r\n" + ctype + "\r\n").encode() + body


NEEDLES = [
    "", " ", "umb", "umbrella", "number 9999", "r 99999", "99", "café", "cafe", "CAFÉ-CR", "é-c",
    "straße", "STRASSE", "ss", "e gr", "grüße aus", "jörg", "foobar@", "<foobar@example.test>",
    "joe, shall", "3:30", "fine", "ﬁne", "tail-wo", "x tail", "inner", "html", "<p>", "zzzz",
    "id-42", "re: meet", "[list]", "unicode, name", "ü", "\u00e9", "list] fwd",
    "e—r", "ve—résumé «q", "«quoted»", "résumé «quo", "日本", "テキスト x", "ïve—r", "x «quoted",
    "lone \u0301", "\u0301 accent", "e \u0301", "and e\u0305", "e\u0305x", "d é",
]  # fmt: skip
FIELDS = ["SUBJECT", "FROM", "TO", "CC", "BCC", "BODY", "TEXT", "HEADER MESSAGE-ID", "HEADER X-Tag"]
DAYS = ["7-Feb-1994", "8-Feb-1994", "2-Oct-2024", "1-Oct-2024", "14-Nov-2023"]


@st.composite
def queries(draw: st.DrawFn) -> str:
    def one() -> str:
        if draw(st.integers(0, 5)) == 0:
            return f"{draw(st.sampled_from(['SENTBEFORE', 'SENTON', 'SENTSINCE']))} {draw(st.sampled_from(DAYS))}"
        needle = draw(st.sampled_from(NEEDLES)).replace('"', "")
        return f'{draw(st.sampled_from(FIELDS))} "{needle}"'

    shape = draw(st.integers(0, 3))
    if shape == 0:
        return one()
    if shape == 1:
        return f"NOT {one()}"
    if shape == 2:
        return f"OR {one()} {one()}"
    return f"{one()} {one()} SEEN"


async def _fill(store: MailStore, msgs: list[bytes]) -> MailboxView:
    await store.create_account(ACCT)
    a = await store.account(ACCT)
    for i, data in enumerate(msgs):
        await a.append("INBOX", data, ("\\Seen",) if i % 2 else (), 1_700_000_000 + i * 86400)
    return await MailboxView.open(a, "INBOX", True)


SORTS = [["SUBJECT"], ["DATE"], ["FROM", "-SIZE"], ["DISPLAYFROM"], ["TO", "CC", "-ARRIVAL"]]


async def _answers(view: MailboxView, qs: list[str]) -> list[object]:
    out: list[object] = []
    cache = MessageCache(1 << 20)
    for q in qs:
        key = parse_wire(f"a SEARCH {q}\r\n".encode()).key  # type: ignore[attr-defined]
        out.append(await search(view, key, cache))
    # SORT and THREAD of the whole mailbox: fields from the index or from the messages
    found = await sort_items_of(view, list(range(len(view))), cache)
    for crit in SORTS:
        order = sort_items(found, [Criterion(k.lstrip("-"), k.startswith("-")) for k in crit])
        out.append([it.seq for it in order])
    for algo in (ordered_subject, references):
        out.append("".join("(" + render(r, False) + ")" for r in algo(found)))
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    msgs=st.lists(messages(), min_size=1, max_size=12),
    late=st.lists(messages(), max_size=3),
    qs=st.lists(queries(), min_size=1, max_size=12),
)
def test_index_answers_like_reading_every_message(
    tmp_path_factory: pytest.TempPathFactory, msgs: list[bytes], late: list[bytes], qs: list[str]
) -> None:
    async def run() -> tuple[list[object], list[object]]:
        memory = MemoryMailStore()
        sqlite = SqliteMaildirStore(tmp_path_factory.mktemp("search"))
        try:
            slow = await _fill(memory, msgs + late)
            await _fill(sqlite, msgs)
            assert sqlite.wait_search_indexed(30)
            a = await sqlite.account(ACCT)
            for i, data in enumerate(late):  # not indexed yet, or being indexed: read those
                n = len(msgs) + i
                await a.append(
                    "INBOX", data, ("\\Seen",) if n % 2 else (), 1_700_000_000 + n * 86400
                )
            fast = await MailboxView.open(a, "INBOX", True)
            return await _answers(slow, qs), await _answers(fast, qs)
        finally:
            await sqlite.close()
            await memory.close()

    expected, got = asyncio.run(run())
    names = [*qs, *map(str, SORTS), "ORDEREDSUBJECT", "REFERENCES"]
    assert got == expected, [
        (n, e, g) for n, e, g in zip(names, expected, got, strict=True) if e != g
    ]


async def test_indexed_search_reads_no_message(tmp_path: Path) -> None:
    """Header, body and Date: keys on an indexed mailbox are answered from the index alone; a
    message too long to index fully (or not indexed yet) is read."""
    store = SqliteMaildirStore(tmp_path / "d")
    try:
        view = await _fill(
            store,
            [
                b"Subject: hello number 99999\r\nFrom: Fred <fred@example.test>\r\n\r\nbody one\r\n",
                b"Subject: other\r\n\r\nnumber 1 caf\xc3\xa9 body\r\n",
            ],
        )
        assert store.wait_search_indexed(30)
        view = await MailboxView.open(await store.account(ACCT), "INBOX", True)
        cache = CountingCache(1 << 20)
        for q, want in (
            ('SUBJECT "number 99999"', [0]),
            ("FROM fred", [0]),
            ('BODY "CAFÉ"', [1]),
            ('TEXT "r 1 ca"', [1]),
            ("OR BODY one SENTBEFORE 1-Jan-2000", [0]),
        ):
            key = parse_wire(f"a SEARCH {q}\r\n".encode()).key  # type: ignore[attr-defined]
            assert await search(view, key, cache) == want, q
        assert cache.loads == 0
        key = parse_wire(b"a SEARCH HEADER X-Unindexed x\r\n").key  # type: ignore[attr-defined]
        assert await search(view, key, cache) == []
        assert cache.loads == 2  # a field the index does not keep: every message is read
    finally:
        await store.close()


class CountingCache(MessageCache):
    loads = 0

    async def load(self, *a, **kw):  # type: ignore[no-untyped-def]
        self.loads += 1
        return await super().load(*a, **kw)
