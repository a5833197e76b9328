"""SEARCH evaluation over a mailbox view: every key family, NOT/OR/nesting, and that metadata
searches never read a message."""

from __future__ import annotations

import pytest

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.proto.imap.parser import parse_wire
from carteiro.servers.imap.search_eval import search
from carteiro.store.memory import MemoryMailStore

ACCT = "alice@example.test"
DAY = 86400
T0 = 1_700_000_000  # 14-Nov-2023 22:13:20 UTC

MESSAGES = [
    (
        b"From: Fred Foobar <foobar@example.test>\r\nTo: joe@example.test\r\n"
        b"Subject: afternoon meeting\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n"
        b"Hello Joe, shall we meet at 3:30?\r\n",
        ("\\Seen", "$Work"),
        T0,
    ),
    (
        b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n",
        ("\\Flagged",),
        T0 + DAY,
    ),
    (
        b"From: smith@example.test\r\nSubject: third\r\nX-Tag: blue\r\n\r\n" + b"z" * 500 + b"\r\n",
        ("\\Deleted",),
        T0 + 2 * DAY,
    ),
]


class CountingCache(MessageCache):
    loads = 0

    async def load(self, *a, **kw):  # type: ignore[no-untyped-def]
        CountingCache.loads += 1
        return await super().load(*a, **kw)


@pytest.fixture
async def view():
    store = MemoryMailStore()
    await store.create_account(ACCT)
    a = await store.account(ACCT)
    for data, flags, when in MESSAGES:
        await a.append("INBOX", data, flags, when)
    return await MailboxView.open(a, "INBOX", False)


async def run(view, text: str, saved=()) -> list[int]:  # type: ignore[no-untyped-def]
    req = parse_wire(f"a SEARCH {text}\r\n".encode())
    return [i + 1 for i in await search(view, req.key, CountingCache(1 << 20), list(saved))]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("ALL", [1, 2, 3]),
        ("SEEN", [1]),
        ("UNSEEN", [2, 3]),
        ("FLAGGED DELETED", []),
        ("OR FLAGGED DELETED", [2, 3]),
        ("NOT (OR FLAGGED DELETED)", [1]),
        ("KEYWORD $work", [1]),
        ("UNKEYWORD $Work", [2, 3]),
        ("2:*", [2, 3]),
        ("UID 1,3", [1, 3]),
        ("LARGER 300", [3]),
        ("SMALLER 200", [1]),
        ("BEFORE 15-Nov-2023", [1]),
        ("ON 15-Nov-2023", [2]),
        ("SINCE 16-Nov-2023", [3]),
        ("SENTBEFORE 1-Jan-1995", [1]),
        ("SENTON 7-Feb-1994", [1]),
        ("SENTSINCE 1-Jan-2000", [2, 3]),
        ("FROM foobar", [1]),
        ('FROM "jörg"', [2]),
        ('SUBJECT "GRÜSSE"', []),  # i;unicode-casemap: ß is its own titlecase, not "SS"
        ('SUBJECT "GRÜßE"', [2]),
        ('SUBJECT "grusse"', []),
        ('SUBJECT "gru"', [2]),  # NFKD: "U" is a prefix of "Ü" decomposed
        ('SUBJECT "grüße"', [2]),
        ("TO joe", [1]),
        ('HEADER X-Tag ""', [3]),
        ("HEADER x-tag BLUE", [3]),
        ('BODY "schöne"', [2]),
        ("BODY meeting", []),
        ("TEXT meeting", [1]),
        ("(SEEN (OR KEYWORD $Work FLAGGED)) NOT 2", [1]),
        # the view is the mailbox's first SELECT: every message is \Recent to it (RFC 3501 2.3.2)
        ("RECENT", [1, 2, 3]),
        ("NEW", [2, 3]),
        ("OLD", []),
    ],
)
async def test_keys(view, keys, expected):
    assert await run(view, keys) == expected


async def test_saved_result(view):
    assert await run(view, "$", saved=[3, 99]) == [3]


async def test_metadata_keys_read_no_message(view):
    CountingCache.loads = 0
    await run(view, "OR (FLAGGED SINCE 1-Jan-2020) (NOT SEEN LARGER 10) UID 1:*")
    assert CountingCache.loads == 0
    await run(view, "SEEN SUBJECT meeting")  # only message 1 needs reading
    assert CountingCache.loads == 1
