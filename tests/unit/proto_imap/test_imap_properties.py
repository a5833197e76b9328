"""Properties of the sans-IO IMAP layer, checked with hypothesis.

- any bytes, in any chunking, give events or a clean fatal error, never an exception;
- the events do not depend on the chunking (whole, byte by byte, random splits);
- buffered data stays within the configured limits;
- parsing never raises; rendered strings parse back; modified UTF-7 and sequence sets round-trip.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.proto.imap import utf7
from carteiro.proto.imap.commands import Login, Search
from carteiro.proto.imap.parser import ParseError, parse_command, parse_wire
from carteiro.proto.imap.receiver import NEED_DATA, Command, Event, ProtocolError, Receiver
from carteiro.proto.imap.responses import encode
from carteiro.proto.imap.search import SearchText
from carteiro.proto.imap.sets import SequenceSet, render_numbers

MAX_LINE = 64
MAX_LITERAL = 40
MAX_COMMAND = 160

FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"a1 ",
    b"+x ",
    b"NOOP",
    b"LOGIN ",
    b"APPEND box ",
    b"AUTHENTICATE PLAIN",
    b"IDLE",
    b"DONE",
    b"*",
    b"{3}\r\n",
    b"{0}\r\n",
    b"{5+}\r\n",
    b"~{2}\r\n",
    b"~{4+}\r\n",
    b"{41}\r\n",
    b"{41+}\r\n",
    b"{4097+}\r\n",
    b"{99999999999999999999999+}\r\n",
    b"}",
    b"{",
    b'"q\\"',
    b"x" * 70,
]

wire = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)),
    max_size=40,
).map(b"".join)


def run(chunks: list[bytes]) -> list[Event]:
    """A minimal session: accept every literal, switch modes after AUTHENTICATE / IDLE."""
    r = Receiver(max_line=MAX_LINE, max_literal=MAX_LITERAL, max_command=MAX_COMMAND)
    events: list[Event] = []
    for chunk in chunks:
        r.feed(chunk)
        while True:
            ev = r.next_event()
            if ev is NEED_DATA:
                break
            events.append(ev)
            if isinstance(ev, ProtocolError) and ev.fatal:
                assert r.closed
                return events
            if isinstance(ev, Command):
                if ev.name == "AUTHENTICATE":
                    r.expect_auth_response()
                elif ev.name == "IDLE":
                    r.expect_idle_done()
        # bounded memory: one command's worth plus a partial line
        assert r.buffered <= MAX_COMMAND + MAX_LINE + 2
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_events_do_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    whole = run([data])
    assert run([data[i : i + 1] for i in range(len(data))]) == whole
    assert run(split(data, cuts)) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    for ev in run([data]):
        if isinstance(ev, Command):
            result = parse_command(ev)
            assert result is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=30))
def test_buffer_bounded_with_large_feeds(chunks: list[bytes]) -> None:
    run(chunks)


TOKENS = [
    "FETCH",
    "UID",
    "SEARCH",
    "STORE",
    "APPEND",
    "LIST",
    "STATUS",
    "SELECT",
    "CREATE",
    "LOGIN",
    "ID",
    "ENABLE",
    "AUTHENTICATE",
    "COPY",
    "MOVE",
    "EXPUNGE",
    "1:*",
    "$",
    "4:2,7",
    "0",
    "*",
    "(",
    ")",
    "[",
    "]",
    "<0.10>",
    "BODY",
    "BODY.PEEK",
    "BINARY",
    "HEADER.FIELDS",
    "(FROM",
    "TEXT",
    "MIME",
    "1.2",
    "FLAGS",
    "+FLAGS.SILENT",
    "\\Seen",
    "\\Recent",
    "$Junk",
    "NOT",
    "OR",
    "SINCE",
    "1-Feb-1994",
    "CHARSET",
    "UTF-8",
    "RETURN",
    "(MIN",
    "COUNT)",
    "MODSEQ",
    '"/flags/\\\\seen"',
    "all",
    "(CHANGEDSINCE",
    "VANISHED)",
    "(UNCHANGEDSINCE",
    "5)",
    "INBOX",
    '""',
    '"a b"',
    "&AOk-",
    "&Jjo",
    "NIL",
    "(QRESYNC",
    "(1",
    "CONDSTORE",
    "USE",
    "(\\Drafts)",
    "=",
    "AGZvbwBiYXI=",
    '"17-Jul-1996 02:44:25 -0700"',
    "CATENATE",
    "URL",
    "UTF8",
    "~{1+}\r\nx",
    "{2+}\r\nab",
]


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(
        sorted(
            {
                "FETCH",
                "UID",
                "SEARCH",
                "STORE",
                "APPEND",
                "LIST",
                "STATUS",
                "SELECT",
                "ID",
                "CREATE",
            }
        )
    ),
    st.lists(st.sampled_from(TOKENS), max_size=14),
    st.lists(st.sampled_from(["", " "]), max_size=14),
    st.booleans(),
)
def test_parser_never_raises_on_token_soup(
    name: str, tokens: list[str], seps: list[str], utf8: bool
) -> None:
    text = "t " + name
    for i, tok in enumerate(tokens):
        text += (seps[i] if i < len(seps) else " ") + tok
    r = Receiver()
    r.feed(text.encode() + b"\r\n")
    while (ev := r.next_event()) is not NEED_DATA:
        if isinstance(ev, Command):
            result = parse_command(ev, utf8=utf8)
            if isinstance(result, ParseError):
                assert result.tag == "t" and result.reason and "\n" not in result.reason


text_no_nul = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(text_no_nul, text_no_nul)
def test_encoded_strings_parse_back(user: str, password: str) -> None:
    for utf8 in (False, True):
        data = b"a LOGIN " + encode(user, utf8=utf8) + b" " + encode(password, utf8=utf8) + b"\r\n"
        assert parse_wire(data) == Login(user, password)


@settings(max_examples=200, deadline=None)
@given(text_no_nul)
def test_search_strings_parse_back(value: str) -> None:
    assert parse_wire(b"a SEARCH TEXT " + encode(value) + b"\r\n") == Search(SearchText(value))


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=30))
def test_utf7_round_trip(name: str) -> None:
    wire_name = utf7.encode(name)
    assert wire_name.isascii()
    assert utf7.decode(wire_name) == name


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="&-ABCDEFGHIJKabcdefg0123456789+,/ =", max_size=20))
def test_utf7_decode_is_canonical(wire_name: str) -> None:
    try:
        name = utf7.decode(wire_name)
    except utf7.UTF7Error:
        return
    # Anything accepted is the one encoding of its name.
    assert utf7.encode(name) == wire_name


numbers = st.integers(min_value=1, max_value=4294967295)
seq_item = st.one_of(numbers, st.just(0)).map(lambda n: "*" if n == 0 else str(n))
seq_text = st.lists(
    st.one_of(seq_item, st.tuples(seq_item, seq_item).map(":".join)), min_size=1, max_size=8
).map(",".join)


@settings(max_examples=200, deadline=None)
@given(seq_text)
def test_sequence_set_text_round_trip(text: str) -> None:
    s = SequenceSet.parse(text)
    assert SequenceSet.parse(str(s)) == s
    if not any(
        a == b and ":" in item for (a, b), item in zip(s.ranges, text.split(","), strict=True)
    ):
        assert str(s) == text  # "5:5" renders as "5"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300), max_size=60))
def test_render_numbers_round_trip(nums: list[int]) -> None:
    text = render_numbers(nums)
    if not nums:
        assert text == ""
        return
    assert SequenceSet.parse(text).filter(sorted(set(nums))) == sorted(set(nums))
    assert list(SequenceSet.parse(text).iter_numbers(300)) == sorted(set(nums))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=60), max_size=40),
)
def test_filter_matches_naive_expansion(ranges: list[tuple[int, int]], uids: list[int]) -> None:
    s = SequenceSet(ranges)  # 0 is "*"
    values = sorted(set(uids))
    if not values:
        assert s.filter(values) == []
        return
    largest = values[-1]
    wanted = set()
    for a, b in ranges:
        a = largest if a == 0 else a
        b = largest if b == 0 else b
        wanted.update(range(min(a, b), max(a, b) + 1))
    assert s.filter(values) == [v for v in values if v in wanted]
    assert [values[i] for i in s.indices(values)] == s.filter(values)
    assert all(s.contains(v, largest) == (v in wanted) for v in range(1, 61))
