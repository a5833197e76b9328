"""carteiro's IMAP answers against Dovecot's on the same mailbox: the MIME corpus of tests/data/mime
plus messages with the usual traps and a thread, with the same flags, keywords and internal
dates, in a private Dovecot and in carteiro.
- FETCH, item for item (ENVELOPE, BODY, sections, partials, BINARY).
- SEARCH: hypothesis writes random programs (every key RFC 3501 6.4.4 lists that both servers
  evaluate alike by definition, nested in OR, NOT and parentheses, with sequence sets); carteiro's
  answer must be what boolean logic makes of Dovecot's answers to each key (Dovecot's own answer
  to a combined program is not always that: see `trees`). SENT* keys on the dated messages.
- SORT with random criteria and THREAD with both algorithms, over one key's messages.

Left out on purpose: RECENT/NEW/OLD (which session saw a message first differs by design); the
differences listed where they are met (KNOWN, the group sort key, Dovecot's epoch for a missing
Date:); messages whose BODYSTRUCTURE the servers read differently (broken MIME: see Pair)."""

from __future__ import annotations

import contextlib
import email.utils
import imaplib
import os
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from carteiro.testing import dovecot
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dovecot-e2e")]

CORPUS = Path(__file__).parents[1] / "data" / "mime"
EXTRA = [
    b"From: Joe Bloggs <Joe+Lists@Example.COM>\r\nTo: Alice <alice@example.test>, bob@example.org\r\n"
    b"Cc: carol@example.net\r\nSubject: [acme-users] =?utf-8?q?Vers=C3=A3o?= 1.0 is\r\n out\r\n"
    b"Date: Mon, 7 Dec 2026 23:30:00 -0300\r\nMessage-ID: <1234@example.com>\r\n\r\n"
    b"Hello Alice,\r\nthe new MAKE MONEY FAST release is out.\r\n",
    b"From: news@shop.example\r\nTo: alice@example.test\r\nSubject: Weekly: 50% off\r\n"
    b"Date: Tue, 1 Dec 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    b"\r\nTo unsubscribe, click here. Pre=C3=A7o baixo.\r\n--b1\r\n"
    b"Content-Type: text/html; charset=iso-8859-1\r\n\r\n<p>Newsletter: pre\xe7o</p>\r\n--b1--\r\n",
    b"From: =?iso-8859-1?q?Andr=E9?= <andre@b\xc3\xa9b\xc3\xa9.example>\r\n"
    b'To: team: dave@example.test, "Eve Q." <eve@sub.example.test>;\r\nSubject: re: Lunch\r\n'
    b"Date: 6 Dec 2026 12:00 +0100\r\nX-Count: 7\r\n\r\nlunch at noon?\r\n",
    # a thread: a root, replies (one whose parent is missing), a forward, a duplicate id
    b"From: a@example.org\r\nSubject: Plans\r\nMessage-ID: <t1@example.org>\r\n"
    b"Date: Wed, 2 Dec 2026 09:00:00 +0000\r\n\r\nroot\r\n",
    b"From: b@example.org\r\nSubject: Re: Plans\r\nMessage-ID: <t2@example.org>\r\n"
    b"In-Reply-To: <t1@example.org>\r\nReferences: <t1@example.org>\r\n"
    b"Date: Wed, 2 Dec 2026 10:00:00 +0000\r\n\r\nreply\r\n",
    b"From: c@example.org\r\nSubject: RE: [list] Plans\r\nMessage-ID: <t3@example.org>\r\n"
    b"References: <t1@example.org> <t-missing@example.org>\r\n"
    b"Date: Wed, 2 Dec 2026 08:00:00 +0000\r\n\r\nreply to a missing one\r\n",
    b"From: d@example.org\r\nSubject: Fwd: Plans\r\nMessage-ID: <t4@example.org>\r\n"
    b"Date: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\nforward\r\n",
    b"From: e@example.org\r\nSubject: Re: Re: Plans\r\nMessage-ID: <t2@example.org>\r\n"
    b"References: <t1@example.org> <t2@example.org>\r\n"
    b"Date: Thu, 3 Dec 2026 11:00:00 +0000\r\n\r\nsame id as another\r\n",
    b"From: f@example.org\r\nSubject: Plans\r\nMessage-ID: <t6@example.org>\r\n"
    b"In-Reply-To: <t4@example.org>\r\n"
    b"Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n\r\nreply to the forward\r\n",
]
FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Label1", "junk"]
# In UTC: Dovecot compares an internal date's day in the server's zone, carteiro in the zone the
# APPEND gave (what imaptest's search-intdate asks); with +0000 and a UTC server both agree.
DATES = [
    "01-Dec-2026 00:30:00 +0000",
    "05-Dec-2026 23:30:00 +0000",
    "06-Dec-2026 00:00:00 +0000",
    "07-Dec-2026 01:00:00 +0000",
]


def messages() -> list[bytes]:
    return [
        p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        for p in sorted(CORPUS.glob("*.eml"))
    ] + EXTRA


WORDS = [
    "alice",
    "ALICE",
    "example",
    "Example.COM",
    "joe",
    "Bloggs",
    "vers\u00e3o",
    "VERS\u00c3O",
    "acme",
    "lunch",
    "money fast",
    "pre\u00e7o",
    "unsubscribe",
    "newsletter",
    "boundary",
    "text/plain",
    "attachment",
    "=?",
    "re:",
    "1234@example.com",
    "andr\u00e9",
    "eve q.",
    "team",
    "",
    " ",
    "is out",
]
HEADERS = ["subject", "from", "to", "cc", "message-id", "x-count", "content-type", "date", "x-nope"]
DAYS = ["30-Nov-2026", "1-Dec-2026", "05-Dec-2026", "6-Dec-2026", "07-Dec-2026", "31-Dec-2026"]


def q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


text_key = st.builds(
    lambda k, w: f"{k} {q(w)}",
    st.sampled_from(["SUBJECT", "FROM", "TO", "CC", "BCC", "BODY", "TEXT"]),
    st.sampled_from(WORDS),
)
simple = st.one_of(
    text_key,
    st.builds(lambda h, w: f"HEADER {h} {q(w)}", st.sampled_from(HEADERS), st.sampled_from(WORDS)),
    st.builds(
        lambda k, d: f"{k} {d}", st.sampled_from(["BEFORE", "ON", "SINCE"]), st.sampled_from(DAYS)
    ),
    st.builds(
        lambda k, n: f"{k} {n}", st.sampled_from(["LARGER", "SMALLER"]), st.integers(0, 4000)
    ),
    st.sampled_from(
        [
            "ALL",
            "SEEN",
            "UNSEEN",
            "ANSWERED",
            "UNANSWERED",
            "FLAGGED",
            "UNFLAGGED",
            "DELETED",
            "UNDELETED",
            "DRAFT",
            "UNDRAFT",
            "KEYWORD $Label1",
            "UNKEYWORD junk",
            "KEYWORD nothing",
        ]
    ),
    st.builds(
        lambda a, b: f"{a}:{b}", st.sampled_from(["1", "2", "5", "*"]), st.sampled_from(["3", "*"])
    ),
    st.builds(lambda a, b: f"UID {a}:{b}", st.integers(1, 25), st.sampled_from(["4", "*"])),
)

# A program is a tree: ("key", text) | ("not", t) | ("or", a, b) | ("and", [t, ...]). carteiro's
# answer to the whole program must be what boolean logic makes of Dovecot's answers to each key:
# Dovecot 2.3.19's own answer to a combined program is not always that (its optimiser answers
# `NOT OR LARGER 5 LARGER 37`, `NOT OR BEFORE d1 BEFORE d2` and `OR NOT DELETED NOT (UNDELETED)`
# as if a key were missing).
Tree = tuple[Any, ...]
trees = st.recursive(
    simple.map(lambda k: ("key", k)),
    lambda inner: st.one_of(
        inner.map(lambda t: ("not", t)),
        st.tuples(st.just("or"), inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: ("and", ts)),
    ),
    max_leaves=6,
)


def render(t: Tree, top: bool = True) -> str:
    if t[0] == "key":
        return str(t[1])
    if t[0] == "not":
        return "NOT " + render(t[1], False)
    if t[0] == "or":
        return f"OR {render(t[1], False)} {render(t[2], False)}"
    inner = " ".join(render(x, False) for x in t[1])
    return inner if top else f"({inner})"


def keys_of(t: Tree) -> Iterator[str]:
    if t[0] == "key":
        yield t[1]
    elif t[0] == "and":
        for x in t[1]:
            yield from keys_of(x)
    else:
        for x in t[1:]:
            yield from keys_of(x)


def evaluate(t: Tree, answers: dict[str, set[int]], everything: set[int]) -> set[int]:
    if t[0] == "key":
        return answers[t[1]]
    if t[0] == "not":
        return everything - evaluate(t[1], answers, everything)
    if t[0] == "or":
        return evaluate(t[1], answers, everything) | evaluate(t[2], answers, everything)
    out = set(everything)
    for x in t[1]:
        out &= evaluate(x, answers, everything)
    return out


class Pair:
    def __init__(self, carteiro: imaplib.IMAP4, dovecot: imaplib.IMAP4) -> None:
        self.servers = (carteiro, dovecot)
        # Broken MIME is read differently on purpose (carteiro gives an invalid Content-Type
        # RFC 2045 5.2's text/plain, Dovecot keeps the type it could not read): such messages'
        # texts differ, so answers are compared on the messages whose BODYSTRUCTURE is the same.
        structures = []
        for m in self.servers:
            typ, data = m.fetch("1:*", "(BODYSTRUCTURE)")
            assert typ == "OK"
            structures.append(
                {
                    int(line.split(b" ", 1)[0]): line.split(b"BODYSTRUCTURE ", 1)[1]
                    for line in data
                    if isinstance(line, bytes)
                }
            )
        self.same = {n for n, bs in structures[0].items() if structures[1].get(n) == bs}

        self.answers: dict[str, set[int]] = {}  # Dovecot's answer to one key

    def search_on(self, m: imaplib.IMAP4, prog: str) -> list[int]:
        typ, data = m.search("UTF-8", prog.encode())  # type: ignore[arg-type]
        assert typ == "OK", (prog, data)
        raw = data[0] or b""
        assert isinstance(raw, bytes)
        return sorted(int(n) for n in raw.split() if int(n) in self.same)

    def search(self, prog: str) -> tuple[list[int], list[int]]:
        return self.search_on(self.servers[0], prog), self.search_on(self.servers[1], prog)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    reason = dovecot.available()
    if reason is not None:
        pytest.skip(reason)
    with open_pair(tmp_path_factory.mktemp("search-dovecot")) as p:
        yield p


@contextlib.contextmanager
def both_servers(
    tmp: Path, mail: list[bytes], dressed: bool = True
) -> Iterator[
    tuple[ServerProcess, dovecot.DovecotInstance, ssl.SSLContext, imaplib.IMAP4, imaplib.IMAP4]
]:
    """carteiro and a private Dovecot holding `mail` in INBOX, in order, APPENDed over IMAP as
    given (`dressed`: with flags, keywords and internal dates that vary with the position):
    (carteiro, Dovecot, a TLS context trusting carteiro, an IMAP session on each)."""
    user = "alice@example.test"
    with (
        ServerProcess(tmp / "c", users={user: "pw"}) as srv,
        dovecot.DovecotInstance(tmp, {"alice": "pw"}) as dc,
    ):
        ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
        ctx.check_hostname = False
        c = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx)
        c.login(user, "pw")
        d = imaplib.IMAP4("127.0.0.1", dc.imap_port)
        d.login("alice", "pw")
        for i, data in enumerate(mail):
            flags = date = None
            if dressed:
                flags = "(" + " ".join(f for j, f in enumerate(FLAGS) if (i >> j) % 3 == 0) + ")"
                date = '"' + DATES[i % len(DATES)] + '"'
            for m in (c, d):
                typ, got = m.append("INBOX", flags, date, data)  # type: ignore[arg-type]
                assert typ == "OK", got
        yield srv, dc, ctx, c, d


@contextlib.contextmanager
def open_pair(tmp: Path) -> Iterator[Pair]:
    """Both servers with the same messages, INBOX selected (also for a look by hand)."""
    with both_servers(tmp, messages()) as (_srv, _dc, _ctx, c, d):
        for m in (c, d):
            assert m.select("INBOX")[0] == "OK"
        pair = Pair(c, d)
        assert len(pair.same) >= 20, pair.same  # most of the corpus is read alike
        yield pair
        for m in (c, d):
            m.logout()


@settings(
    max_examples=int(os.environ.get("SEARCH_DIFF_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees)
def test_search_answers_as_dovecot(pair: Pair, tree: Tree) -> None:
    carteiro, dc = pair.servers
    answers = {}
    for key in keys_of(tree):
        if key not in pair.answers:
            pair.answers[key] = set(pair.search_on(dc, key))
        answers[key] = pair.answers[key]
    expected = evaluate(tree, answers, pair.same)
    prog = render(tree)
    assert set(pair.search_on(carteiro, prog)) == expected, prog


def dated() -> set[int]:
    """Sequence numbers of the messages with a Date: field a parser can read."""
    out = set()
    for n, data in enumerate(messages(), 1):
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        m = re.search(r"^Date:(.*(?:\r\n[ \t].*)*)", head, re.M | re.I)
        try:
            if m is not None and email.utils.parsedate_to_datetime(m.group(1).strip()):
                out.add(n)
        except (TypeError, ValueError):
            pass
    return out


def test_sent_dates_as_dovecot(pair: Pair) -> None:
    # Without a readable Date: field, Dovecot takes the epoch (always SENTBEFORE), carteiro
    # INTERNALDATE (as RFC 5256 does for SORT): compared on the dated messages only
    known = dated()
    assert len(known) >= 5
    for k in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        for d in DAYS:
            ours, theirs = pair.search(f"{k} {d}")
            assert set(ours) & known == set(theirs) & known, f"{k} {d}"


ITEMS = [
    "ENVELOPE",
    "BODY",
    "RFC822.SIZE",
    "INTERNALDATE",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[1.1]",
    "BODY.PEEK[2.1.MIME]",
    "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM X-NOPE)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT DATE)]",
    "BODY.PEEK[]<5.10>",
    "BODY.PEEK[1]<0.3>",
    "BODY.PEEK[TEXT]<100.1000>",
    "RFC822.HEADER",
    "BINARY.PEEK[1]",
    "BINARY.SIZE[1]",
    "BINARY.PEEK[2]",
]


# Where Dovecot 2.3.19 leaves the RFCs, carteiro does not follow it (message file, item): why.
KNOWN = {
    # BINARY of a multipart: Dovecot decodes every part inside and rewrites their
    # Content-Transfer-Encoding fields; a multipart has no encoding of its own to remove
    # (RFC 3516 4.2), so carteiro gives its octets
    ("nested-alternative-related", "BINARY.PEEK[1]"),
    ("nested-alternative-related", "BINARY.SIZE[1]"),
    # no MIME-Version: both servers' BODYSTRUCTURE says 7bit (the Content-* fields are not
    # MIME), yet Dovecot's BINARY decodes base64; carteiro's BINARY agrees with its BODYSTRUCTURE
    ("not-mime-content-headers", "BINARY.PEEK[1]"),
    ("not-mime-content-headers", "BINARY.SIZE[1]"),
    # a header with no CRLF at its end and no body: Dovecot adds a CRLF and the blank line that
    # RFC 3501 6.4.5 says a message without one does not get
    ("no-separator", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM X-NOPE)]"),
}


def names() -> list[str]:
    return [p.stem for p in sorted(CORPUS.glob("*.eml"))] + [
        f"extra-{i}" for i in range(len(EXTRA))
    ]


def fetch_values(m: imaplib.IMAP4, n: int, item: str) -> tuple[str, object]:
    """(status, the item's parsed value): quoted strings and literals alike (servers choose)."""
    from carteiro.proto.imap.client import parse_values

    typ, data = m.fetch(str(n), f"({item})")
    if typ != "OK":
        return typ, None
    segments: list[bytes] = []
    for part in data:
        if isinstance(part, tuple):
            # a literal8 (~{n}, RFC 3516) is a literal like any other here
            segments += [
                part[0][:-1].rsplit(b"~{", 1)[0] + b"{" + part[0].rsplit(b"{", 1)[1]
                if part[0].rstrip(b"}").rsplit(b"{", 1)[0].endswith(b"~")
                else part[0],
                part[1],
            ]
        elif isinstance(part, bytes):
            if segments and len(segments) % 2 == 1:
                segments[-1] += part
            else:
                segments.append(part)
    values = parse_values(segments)
    assert values and isinstance(values[-1], list), values
    got = values[-1]
    # (FLAGS may ride along on Dovecot's answers: a \\Seen it set, or \\Recent)
    pairs = {str(got[i]).upper(): got[i + 1] for i in range(0, len(got) - 1, 2)}
    pairs.pop("FLAGS", None)
    return typ, pairs


def test_fetch_answers_as_dovecot(pair: Pair) -> None:
    carteiro, dc = pair.servers
    differ = []
    called = names()
    for n in sorted(pair.same):
        for item in ITEMS:
            if (called[n - 1], item) in KNOWN:
                continue
            ours, theirs = fetch_values(carteiro, n, item), fetch_values(dc, n, item)
            if ours != theirs:
                differ.append((n, item, ours, theirs))
    assert not differ, "\n".join(map(repr, differ[:10]))


# No REVERSE: Dovecot 2.3.19's order for a REVERSEd key with ties changes from run to run on the
# same mailbox (and `ARRIVAL REVERSE ARRIVAL DATE` comes out as if DATE were reversed), so it is
# no reference there; carteiro's REVERSE has its own tests (tests/unit/servers, RFC 5256 3).
sort_keys = st.lists(
    st.sampled_from(
        ["ARRIVAL", "DATE", "SUBJECT", "FROM", "TO", "CC", "SIZE", "DISPLAYFROM", "DISPLAYTO"]
    ),
    min_size=1,
    max_size=3,
    unique=True,
)


@settings(
    max_examples=int(os.environ.get("SEARCH_DIFF_EXAMPLES", "150")) // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(keys=sort_keys, prog=simple)
def test_sort_answers_as_dovecot(pair: Pair, keys: list[str], prog: str) -> None:
    # a group's sort key is its first member here, its name in Dovecot (docs/imap.md): the
    # messages with a group in From/To/Cc are left out of the comparison
    called = names()
    groups = ("groups-and-routes", "nested-alternative-related", "extra-2")
    kept = pair.same - {n for n in pair.same if called[n - 1] in groups}

    def sort(m: imaplib.IMAP4) -> list[int]:
        typ, data = m.sort(f"({' '.join(keys)})", "UTF-8", prog.encode())  # type: ignore[arg-type]
        assert typ == "OK", (keys, prog, data)
        raw = data[0] or b""
        assert isinstance(raw, bytes)
        return [int(n) for n in raw.split() if int(n) in kept]

    carteiro, dc = pair.servers
    ours = sort(carteiro)
    theirs = sort(dc)
    # Dovecot's first answers on new mail can come out in another order than the same SORT a
    # moment later (it fills its sort cache lazily): the reference is its settled answer
    for _ in range(3):
        if ours == theirs:
            break
        time.sleep(1)
        theirs = sort(dc)
    assert ours == theirs, (keys, prog)


@settings(
    max_examples=int(os.environ.get("SEARCH_DIFF_EXAMPLES", "150")) // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(algorithm=st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]), prog=simple)
def test_thread_answers_as_dovecot(pair: Pair, algorithm: str, prog: str) -> None:
    # THREAD answers cannot be cut to the messages both servers read alike: only filters that
    # select the same messages in both are compared
    raw = []
    for m in pair.servers:
        typ, data = m.search("UTF-8", prog.encode())  # type: ignore[arg-type]
        raw.append(data[0])
    assume(raw[0] == raw[1])
    out = []
    for m in pair.servers:
        typ, data = m.thread(algorithm, "UTF-8", prog.encode())  # type: ignore[arg-type]
        assert typ == "OK", (algorithm, prog, data)
        out.append(data[0] or b"")
    assert out[0] == out[1], (algorithm, prog)
