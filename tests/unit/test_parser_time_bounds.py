"""No input can freeze a parser (issue 10.5): hostile input costs time linear in its size.

One unauthenticated IMAP line of 40 octets once sent a regex into exponential backtracking and
stalled every listener of the process. Here every sans-IO parser (IMAP receiver and parser, SMTP
commands, POP3 commands, SASL, MIME headers, addresses, dates, bodies) gets long unterminated
quoted strings, literals, atoms, brackets and nested comments of 1k, 10k and 100k octets.

The work runs in a forked child so a regression fails the test instead of hanging the suite.
Bounds are relative, since the machine is shared and noisy: each 100k input must take at most a
generous multiple of a linear baseline measured in the same child (a Python loop over the same
number of octets), and at most ~30x its 10k input (linear is 10x, quadratic 100x).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.core.address import AddressError, parse_address
from carteiro.mime import bodystructure, dates, sections
from carteiro.mime.address import parse_address_list
from carteiro.mime.encoded_words import decode_words
from carteiro.mime.header import decode_header, decode_params
from carteiro.mime.parse import parse
from carteiro.mime.rfc822 import parse_content_type, parse_disposition
from carteiro.mime.searchtext import message_texts
from carteiro.proto import sasl
from carteiro.proto.imap.client import ResponseReader
from carteiro.proto.imap.parser import parse_command
from carteiro.proto.imap.receiver import NEED_DATA, Command, Receiver
from carteiro.proto.pop3.commands import parse_command as pop3_parse
from carteiro.proto.pop3.machine import Pop3Machine
from carteiro.proto.smtp import commands as smtp
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp import server as smtp_server

SIZES = (1_000, 10_000, 100_000)
GROWTH = 30.0  # t(100k) / t(10k): linear is 10
BASELINE_FACTOR = 1000.0  # t(100k) / (a bare Python loop over 100k octets, ~1 ms): ~1 s
SLACK = 0.05  # seconds, for timer noise on tiny figures
DEADLINE = 60.0  # seconds for one family in the child (~3 s when linear): exponential never ends


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], object]  # size -> input
    run: Callable[[object], object]


# -- IMAP ----------------------------------------------------------------------------------------


def _imap(line_of: Callable[[int], bytes]) -> tuple[Callable[[int], object], Callable[..., object]]:
    def make(n: int) -> bytes:
        return line_of(n) + b"\r\n"

    def run(data: bytes) -> object:
        # framing and parsing as a session does them, with a line limit the input fits in
        r = Receiver(max_line=len(data) + 64, max_literal=len(data) + 64)
        r.feed(data)
        out = []
        while (event := r.next_event()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, Command):
                out.append(parse_command(event))
        # and with the default limits: an over-long line is refused, not parsed
        d = Receiver()
        d.feed(data)
        while d.next_event() is not NEED_DATA:
            pass
        return out

    return make, run


def _a(n: int) -> bytes:
    return b"a" * n


IMAP_LINES: dict[str, Callable[[int], bytes]] = {
    "LOGIN unterminated quote": lambda n: b'a LOGIN "' + _a(n),
    "LOGIN escapes, unterminated": lambda n: b'a LOGIN "' + b'\\"' * (n // 2),
    "LOGIN bad escape at the end": lambda n: b'a LOGIN "' + _a(n) + b'\\x"',
    "LOGIN long atoms": lambda n: b"a LOGIN " + _a(n) + b" " + _a(n),
    "LOGIN literal announcement": lambda n: b"a LOGIN {" + b"9" * n,
    "SELECT unterminated quote": lambda n: b'a SELECT "' + b"a " * (n // 2),
    "SELECT modified UTF-7": lambda n: b"a SELECT &" + b"A" * n,
    "SELECT utf-7 shifts": lambda n: b"a SELECT " + b"&AGE-" * (n // 5),
    "LIST wildcards": lambda n: b'a LIST "" ' + b"*%" * (n // 2) + b"x",
    "LIST unterminated pattern": lambda n: b'a LIST "" "' + b"*a" * (n // 2),
    "LIST nested parens": lambda n: b"a LIST (" + b"(" * n,
    "SEARCH unterminated quote": lambda n: b'a SEARCH SUBJECT "' + _a(n),
    "SEARCH nested parens": lambda n: b"a SEARCH " + b"(" * n,
    "SEARCH NOT chain": lambda n: b"a SEARCH " + b"NOT " * (n // 4),
    "SEARCH OR chain": lambda n: b"a SEARCH " + b"OR ALL " * (n // 7),
    "SEARCH RETURN SAVE": lambda n: b"a SEARCH RETURN (" + b"S" * n,
    "SEARCH long set": lambda n: b"a SEARCH " + b"1:2," * (n // 4) + b"x",
    "SEARCH date": lambda n: b'a SEARCH SINCE "' + b"1-" * (n // 2),
    "FETCH long set": lambda n: b"a FETCH " + b"1," * (n // 2) + b"x (FLAGS)",
    "FETCH section parts": lambda n: b"a FETCH 1 BODY[" + b"1." * (n // 2),
    "FETCH header fields": lambda n: b"a FETCH 1 BODY[HEADER.FIELDS (" + b"a " * (n // 2),
    "FETCH partial": lambda n: b"a FETCH 1 BODY[]<" + b"1" * n,
    "FETCH nested parens": lambda n: b"a FETCH 1 " + b"(" * n,
    "STORE flags": lambda n: b"a STORE 1 +FLAGS (" + b"\\a " * (n // 3),
    "STORE flag atom": lambda n: b"a STORE 1 +FLAGS \\" + _a(n),
    "APPEND unterminated quote": lambda n: b'a APPEND "' + _a(n),
    "APPEND flags and date": lambda n: b'a APPEND x (\\Seen) "' + b" " * n,
    "APPEND literal announcement": lambda n: b"a APPEND x {" + b"1" * n,
    "AUTHENTICATE long response": lambda n: b"a AUTHENTICATE PLAIN " + b"A" * n,
    "AUTHENTICATE bad base64": lambda n: b"a AUTHENTICATE PLAIN " + b"A" * n + b"=x",
    "ID unterminated": lambda n: b'a ID ("' + _a(n),
    "tag only": lambda n: _a(n),
    "tag and 8-bit": lambda n: b"a " + b"\xc3\xa9" * (n // 2),
}


def _imap_literal_case(n: int) -> bytes:
    # a literal of n octets, then a line that ends in an unterminated quote
    return b"a LOGIN {%d+}\r\n" % n + _a(n) + b' "' + _a(n) + b"\r\n"


def _run_imap_raw(data: bytes) -> object:
    r = Receiver(max_line=len(data) + 64, max_literal=len(data) + 64)
    r.feed(data)
    out = []
    while (event := r.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, Command):
            out.append(parse_command(event))
    return out


def _run_imap_client(data: bytes) -> object:
    # the webmail's side: a server response, framed and tokenised (proto.imap.client)
    r = ResponseReader(max_line=len(data) + 64, max_literal=len(data) + 64)
    r.feed(data)
    out = []
    while (resp := r.next()) is not None:
        out.append(resp.values())
        out.append(resp.status())
    return out


IMAP_CASES = [Case(name, *_imap(line)) for name, line in IMAP_LINES.items()] + [
    Case("LOGIN literal then unterminated quote", _imap_literal_case, _run_imap_raw),  # type: ignore[arg-type]
    Case(
        "response: unterminated quote",
        lambda n: b'* 1 FETCH (ENVELOPE ("' + b"\\a" * (n // 3) + b"\r\n",
        _run_imap_client,  # type: ignore[arg-type]
    ),
    Case(
        "response: open brackets and parens",
        lambda n: b"* OK " + b"[(" * (n // 2) + b"\r\n",
        _run_imap_client,  # type: ignore[arg-type]
    ),
    Case(
        "response: literal markers",
        lambda n: b"* 1 FETCH (" + b"{1}" * (n // 3) + b" {3}\r\nabc)\r\n",
        _run_imap_client,  # type: ignore[arg-type]
    ),
]

# -- SMTP ----------------------------------------------------------------------------------------


def _smtp_run(line: object) -> object:
    assert isinstance(line, str)
    return smtp.parse(line, True), smtp.parse(line, False)


SMTP_LINES: dict[str, Callable[[int], str]] = {
    "MAIL unterminated quote": lambda n: 'MAIL FROM:<"' + "a" * n,
    "MAIL quote, no angle": lambda n: 'MAIL FROM:<"' + "a" * n + '"@x',
    "MAIL escapes": lambda n: 'MAIL FROM:<"' + "\\a" * (n // 2) + ">",
    "MAIL no closing angle": lambda n: "MAIL FROM:<" + "a" * n,
    "MAIL dotted local": lambda n: "MAIL FROM:<" + "a." * (n // 2) + "@x>",
    "MAIL dotted domain": lambda n: "MAIL FROM:<a@" + "a." * (n // 2) + "!>",
    "MAIL hyphen domain": lambda n: "MAIL FROM:<a@" + "a-" * (n // 2) + ">",
    "MAIL source route": lambda n: "MAIL FROM:<" + "@a," * (n // 3) + ">",
    "MAIL address literal": lambda n: "MAIL FROM:<a@[" + "1." * (n // 2) + ">",
    "MAIL general literal": lambda n: "MAIL FROM:<a@[a" + "-" * n + "a:" + "!" * 5 + "]>",
    "MAIL long params": lambda n: "MAIL FROM:<a@b> " + "X-P=v " * (n // 6),
    "MAIL long ENVID xtext": lambda n: "MAIL FROM:<a@b> ENVID=" + "+4" * (n // 2) + "x",
    "RCPT unterminated quote": lambda n: 'RCPT TO:<"' + "a" * n,
    "RCPT no closing angle": lambda n: "RCPT TO:<" + "a" * n,
    "RCPT ORCPT": lambda n: "RCPT TO:<a@b> ORCPT=rfc822;" + "a+2B" * (n // 4),
    "RCPT NOTIFY": lambda n: "RCPT TO:<a@b> NOTIFY=" + "SUCCESS," * (n // 8),
    "EHLO long": lambda n: "EHLO " + "a-" * (n // 2),
    "EHLO literal": lambda n: "EHLO [" + "1." * (n // 2),
    "AUTH long": lambda n: "AUTH PLAIN " + "A" * n,
    "VRFY quote": lambda n: 'VRFY "' + "a" * n,
}
SMTP_CASES = [Case(name, line, _smtp_run) for name, line in SMTP_LINES.items()]


def _address_run(path: object) -> object:
    assert isinstance(path, str)
    try:
        parse_address(path)
    except AddressError:
        pass
    return smtp.valid_address(path)


SMTP_CASES += [
    Case("address quoted local", lambda n: '"' + "\\a" * (n // 2) + "@x", _address_run),
    Case("address dot-atom", lambda n: "a." * (n // 2) + "@x", _address_run),
    Case("address domain labels", lambda n: "a@" + "a." * (n // 2) + "-", _address_run),
]

# -- POP3 ----------------------------------------------------------------------------------------

POP3_LINES: dict[str, Callable[[int], bytes]] = {
    "USER long": lambda n: b"USER " + _a(n),
    "PASS spaces": lambda n: b"PASS " + b"a " * (n // 2),
    "APOP long": lambda n: b"APOP " + _a(n) + b" " + b"f" * n,
    "RETR huge number": lambda n: b"RETR " + b"9" * n,
    "TOP numbers": lambda n: b"TOP 1 " + b"1" * n,
    "UIDL control at the end": lambda n: b"UIDL " + b"1" * n + b"\x01",
    "AUTH long": lambda n: b"AUTH PLAIN " + b"A" * n,
    "verb long": lambda n: b"X" * n,
}
POP3_CASES = [Case(name, line, pop3_parse) for name, line in POP3_LINES.items()]  # type: ignore[arg-type]

# -- SASL ----------------------------------------------------------------------------------------


def _sasl_run(token: object) -> object:
    assert isinstance(token, bytes)
    out = []
    for mech in ("PLAIN", "LOGIN"):
        s = sasl.server(mech)
        assert s is not None
        out.append(s.start_wire(token))
        s = sasl.server(mech)
        assert s is not None
        s.start(None)
        out.append(s.respond(token))
    return out


SASL_CASES = [
    Case("base64 long", lambda n: b"QUFB" * (n // 4), _sasl_run),
    Case("base64 bad padding", lambda n: b"A" * n + b"===", _sasl_run),
    Case("base64 junk at the end", lambda n: b"A" * n + b"!", _sasl_run),
    Case("blanks", lambda n: b" " * n + b"x", _sasl_run),
]

# -- MIME ----------------------------------------------------------------------------------------


def _message(header: bytes, body: bytes = b"body\r\n") -> bytes:
    return header + b"\r\n" + body


def _mime_run(raw: object) -> object:
    """Everything a FETCH or SEARCH reads from a stored message."""
    assert isinstance(raw, bytes)
    msg = parse(raw)
    out: list[object] = [
        bodystructure.envelope(msg),
        bodystructure.body_structure(msg),
        message_texts(msg),
    ]
    for part in msg.root.walk():
        out.append(sections.decode_body(msg, part))
    return out


def _header_run(value: object) -> object:
    assert isinstance(value, bytes)
    return (
        decode_header(value),
        decode_words(value),
        parse_address_list(value),
        parse_content_type(value),
        parse_disposition(value),
        dates.parse_date(value),
    )


HEADER_VALUES: dict[str, Callable[[int], bytes]] = {
    "encoded words unterminated": lambda n: b"=?utf-8?q?" + _a(n),
    "encoded words many": lambda n: b"=?utf-8?q?a?= " * (n // 14),
    "encoded words broken": lambda n: b"=?" * (n // 2),
    "encoded word charset": lambda n: b"=?" + _a(n) + b"?q?a?=",
    "address unterminated quote": lambda n: b'"' + _a(n),
    "address unterminated comment": lambda n: b"(" + _a(n),
    "address nested comments": lambda n: b"(" * (n // 2) + b")" * (n // 2),
    "address nested comments open": lambda n: b"(" * n,
    "address open angle": lambda n: b"a <" + _a(n),
    "address many angles": lambda n: b"<" * n,
    "address escapes": lambda n: b'"' + b"\\" * n,
    "address dots": lambda n: b"a" + b"." * n + b"@",
    "address list commas": lambda n: b"a@b, " * (n // 6),
    "address group": lambda n: b"g: " + b"a@b, " * (n // 6),
    "address route": lambda n: b"<" + b"@a," * (n // 3) + b":a@b>",
    "address domain literal": lambda n: b"a@[" + _a(n),
    "content-type params": lambda n: b"text/plain; " + b"a=b; " * (n // 6),
    "RFC 2231 continuations": lambda n: (
        b"text/plain; " + b"".join(b"name*%d*=%%41; " % i for i in range(n // 14))
    ),
    "RFC 2231 unterminated": lambda n: b"text/plain; name*=utf-8''" + b"%4" * (n // 2),
    "content-type quoted unterminated": lambda n: b'text/plain; name="' + _a(n),
    "blanks": lambda n: b" " * n + b"x",
    "date blank runs": lambda n: b"Mon" + b" " * (n // 3) + b"1" + b" " * (n // 3) + b"Jan x",
    "date blanks and dashes": lambda n: b"1" + b" -" * (n // 2),
    "date comments": lambda n: b"(" * (n // 2) + b"1 Jan 2000" + b")" * (n // 2),
}

MIME_CASES = [Case(name, value, _header_run) for name, value in HEADER_VALUES.items()] + [
    Case(
        "message: long From",
        lambda n: _message(b"From: " + b'"' + _a(n) + b"\r\n"),
        _mime_run,
    ),
    Case(
        "message: folded Subject",
        lambda n: _message(b"Subject: " + b"=?utf-8?q?a?=\r\n " * (n // 16) + b"\r\n"),
        _mime_run,
    ),
    Case(
        "message: long Date",
        lambda n: _message(b"Date: Mon" + b" " * (n // 3) + b"1" + b" " * (n // 3) + b"Jan x\r\n"),
        _mime_run,
    ),
    Case(
        "message: quoted-printable blank run",
        lambda n: _message(
            b"Content-Transfer-Encoding: quoted-printable\r\n", b" \t" * (n // 2) + b"x\r\n"
        ),
        _mime_run,
    ),
    Case(
        "message: base64 junk",
        lambda n: _message(b"Content-Transfer-Encoding: base64\r\n", b"=!" * (n // 2)),
        _mime_run,
    ),
    Case(
        "message: boundary never closed",
        lambda n: _message(
            b'Content-Type: multipart/mixed; boundary="b"\r\n', b"--b\r\n\r\n" * (n // 7)
        ),
        _mime_run,
    ),
    Case(
        "message: nested multiparts",
        lambda n: b"".join(
            b'Content-Type: multipart/mixed; boundary="%d"\r\n\r\n--%d\r\n' % (i, i)
            for i in range(n // 60)
        ),
        _mime_run,
    ),
    Case(
        "message: header without colon",
        lambda n: _message(_a(n) + b"\r\n"),
        _mime_run,
    ),
    Case(
        "message: RFC 2231 filename",
        lambda n: _message(
            b"Content-Disposition: attachment; filename*=utf-8''" + b"%41" * (n // 3) + b"\r\n"
        ),
        lambda raw: [decode_params(p.params) for p in parse(raw).root.walk()],  # type: ignore[arg-type]
    ),
    Case(
        "section spec",
        lambda n: "1." * (n // 2) + "TEXT (" + "a " * 10,
        lambda spec: sections.parse_section(spec),  # type: ignore[arg-type]
    ),
]


# -- the harness ---------------------------------------------------------------------------------


def _baseline(n: int) -> float:
    data = b"a" * n
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _octet in data:
            pass
        best = min(best, time.perf_counter() - t)
    return best


def _child(
    cases: list[Case], sizes: tuple[int, ...], conn: multiprocessing.connection.Connection
) -> None:
    conn.send(("baseline", _baseline(SIZES[-1])))
    for case in cases:
        for n in sizes:
            data = case.make(n)
            conn.send(("start", case.name, n))
            best = float("inf")
            for _ in range(2):  # the better of two runs: noise only ever adds time
                t = time.perf_counter()
                case.run(data)
                best = min(best, time.perf_counter() - t)
            conn.send(("done", case.name, n, best))
    conn.send(("end",))


def _timings(
    cases: list[Case], sizes: tuple[int, ...] = SIZES
) -> tuple[float, dict[tuple[str, int], float]]:
    """(baseline for 100k octets, {(case, size): seconds}), measured in a forked child that is
    killed at the deadline."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(cases, sizes, child), daemon=True)
    proc.start()
    child.close()
    deadline = time.monotonic() + DEADLINE
    baseline = 0.0
    timings: dict[tuple[str, int], float] = {}
    current: tuple[str, int] | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not parent.poll(left):
                pytest.fail(f"parser still busy after {DEADLINE:.0f} s on {current}")
            try:
                msg = parent.recv()
            except EOFError:
                proc.join(5)
                pytest.fail(f"child died (exit {proc.exitcode}) on {current}")
            if msg[0] == "baseline":
                baseline = msg[1]
            elif msg[0] == "start":
                current = (msg[1], msg[2])
            elif msg[0] == "done":
                timings[(msg[1], msg[2])] = msg[3]
            else:
                return baseline, timings
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()


# -- byte at a time: framing must not rescan what it has already seen -----------------------------


def _smtp_fed_bytewise(prelude: bytes) -> Callable[[object], object]:
    def run(payload: object) -> object:
        assert isinstance(payload, bytes)
        m = smtp_server.ServerMachine()
        events: list[object] = []

        def pump() -> None:
            while not isinstance(ev := m.next_event(), smtp_server.NeedData):
                events.append(ev)
                if m.awaiting is not None:
                    m.send(R.R_354_DATA if isinstance(ev, smtp.Data) else R.R_250_OK)

        m.receive_data(prelude)
        pump()
        for i in range(len(payload)):
            m.receive_data(payload[i : i + 1])
            pump()
        return events

    return run


def _imap_fed_bytewise(payload: object) -> object:
    assert isinstance(payload, bytes)
    r = Receiver(max_line=200_000)
    for i in range(len(payload)):
        r.feed(payload[i : i + 1])
        while r.next_event() is not NEED_DATA:
            pass
    return r


def _pop3_fed_bytewise(payload: object) -> object:
    assert isinstance(payload, bytes)
    p = Pop3Machine()
    for i in range(len(payload)):
        p.receive_data(payload[i : i + 1])
        p.next_event()
    return p


_ENVELOPE = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
BYTEWISE_CASES = [
    Case("SMTP command line, no LF", _a, _smtp_fed_bytewise(b"EHLO x\r\n")),
    Case("SMTP DATA, no LF", _a, _smtp_fed_bytewise(_ENVELOPE)),
    Case("SMTP DATA, CRs", lambda n: b"\r" * n, _smtp_fed_bytewise(_ENVELOPE)),
    Case("IMAP unterminated quote", lambda n: b'a LOGIN "' + _a(n), _imap_fed_bytewise),
    Case("IMAP literal", lambda n: b"a LOGIN {%d}\r\n" % n + _a(n), _imap_fed_bytewise),
    Case("POP3 line, no LF", _a, _pop3_fed_bytewise),
]

FAMILIES = {
    "bytewise": BYTEWISE_CASES,
    "imap": IMAP_CASES,
    "smtp": SMTP_CASES,
    "pop3": POP3_CASES,
    "sasl": SASL_CASES,
    "mime": MIME_CASES,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_hostile_input_costs_linear_time(family: str) -> None:
    cases = FAMILIES[family]
    baseline, timings = _timings(cases)
    # one call per octet costs far more than one loop step: only the growth counts there
    budget = BASELINE_FACTOR * baseline * (10 if family == "bytewise" else 1) + SLACK
    slow = []
    for case in cases:
        small, big = timings[(case.name, SIZES[1])], timings[(case.name, SIZES[2])]
        if big > budget or big > GROWTH * small + SLACK:
            slow.append(f"{case.name}: 10k {small * 1e3:.1f} ms, 100k {big * 1e3:.1f} ms")
    assert not slow, f"budget {budget * 1e3:.0f} ms for 100k octets; " + "; ".join(slow)


# -- random shapes -------------------------------------------------------------------------------

_HOSTILE_UNIT = st.sampled_from(
    [b'"', b"\\", b"(", b")", b"<", b">", b"[", b"]", b"{", b"}", b"=?", b"?=", b" ", b"a", b".",
     b"@", b",", b":", b";", b"-", b"%", b"*", b"&", b"\r\n ", b"1"]
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(_HOSTILE_UNIT, min_size=1, max_size=6))
def test_repeated_hostile_units_parse_in_linear_time(units: list[bytes]) -> None:
    # any short pattern repeated to 2k and 20k octets: ten times the input, about ten times the
    # time (a quadratic parser takes 100x, an exponential one never ends: killed in the child)
    unit = b"".join(units)

    def value(n: int) -> bytes:
        return unit * (n // len(unit))

    cases = [
        Case("header", value, _header_run),
        Case("imap", lambda n: b"a LOGIN " + value(n) + b"\r\n", _run_imap_raw),
        Case("smtp", lambda n: "MAIL FROM:<" + value(n).decode("latin-1"), _smtp_run),
        Case("pop3", lambda n: b"USER " + value(n), pop3_parse),  # type: ignore[arg-type]
    ]
    _baseline_100k, timings = _timings(cases, (2_000, 20_000))
    slow = {
        case.name: (timings[(case.name, 2_000)], timings[(case.name, 20_000)])
        for case in cases
        if timings[(case.name, 20_000)] > GROWTH * timings[(case.name, 2_000)] + SLACK
    }
    assert not slow, (unit, slow)


# -- outbound: the BINARYMIME check of the SMTP client -------------------------------------------


def test_binarymime_line_check_reads_each_octet_once() -> None:
    # "[^\r\n]{999}" was tried from every octet: lines of 998 octets cost ~500 steps per octet
    # (4 s of the queue worker per MB). Compare with lines of 8 octets: the same size, so a
    # one-pass check takes about the same time for both.
    from carteiro.net.smtp_client import _BINARY_UNSAFE

    long_lines = (b"a" * 998 + b"\r\n") * 200
    short_lines = (b"a" * 8 + b"\r\n") * (len(long_lines) // 10)

    def best(data: bytes) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            assert _BINARY_UNSAFE.search(data) is None
            times.append(time.perf_counter() - t)
        return min(times)

    assert best(long_lines) < 10 * best(short_lines) + 0.005
    assert _BINARY_UNSAFE.search(b"ok\r\n" + b"a" * 999 + b"\r\n") is not None
    assert _BINARY_UNSAFE.search(b"a" * 999) is not None
    assert _BINARY_UNSAFE.search(b"a" * 998 + b"\r\n" + b"a" * 998) is None
