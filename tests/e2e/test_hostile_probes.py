"""Hostile protocol probes against a real `carteiro serve`: deep nesting, huge numbers, odd
encodings, AUTH abuse, floods. Each must get the protocol's error reply, leave the server serving
others, keep its memory bounded and log no traceback."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator

import pytest

from carteiro.testing import probes
from carteiro.testing.probes import read_until
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hostile-e2e")]

USER, PASSWORD = "alice@example.test", "alice-password"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("hostile"), users={USER: PASSWORD}) as s:
        yield s
        assert "Traceback" not in s.log()


def connect(srv: ServerProcess, service: str) -> socket.socket:
    return probes.connect(srv, service)


def rss_kib(srv: ServerProcess) -> int:
    assert srv.proc is not None
    return probes.rss_kib(srv.proc.pid)


def assert_serving(srv: ServerProcess) -> None:
    for service, greeting in (("smtp", b"220 "), ("imap", b"* OK"), ("pop3", b"+OK")):
        with connect(srv, service) as s:
            assert read_until(s, b"\r\n").startswith(greeting)


def imap_login(srv: ServerProcess) -> socket.socket:
    s = connect(srv, "imaps")
    read_until(s, b"\r\n")
    s.sendall(f"l LOGIN {USER} {PASSWORD}\r\n".encode())
    assert b"l OK" in read_until(s, b"l ")
    return s


def imap(s: socket.socket, tag: bytes, command: bytes, timeout: float = 10.0) -> bytes:
    """Send a command; read up to and including its tagged reply line."""
    s.sendall(tag + b" " + command + b"\r\n")
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.startswith(tag + b" ") or b"\r\n" + tag + b" " in out:
            start = 0 if out.startswith(tag + b" ") else out.index(b"\r\n" + tag + b" ") + 2
            if out.find(b"\r\n", start) >= 0:
                return out
        data = s.recv(65536)
        if not data:
            break
        out += data
    raise AssertionError(f"no tagged reply to {command[:60]!r}: {out[-200:]!r}")


def tagged(out: bytes, tag: bytes) -> bytes:
    for line in out.split(b"\r\n"):
        if line.startswith(tag + b" "):
            return line
    raise AssertionError(out)


# ---- IMAP ----------------------------------------------------------------------------------------


def test_imap_list_pathological_pattern_does_not_stall_the_server(srv: ServerProcess) -> None:
    """A LIST pattern of many wildcards used to make the matcher backtrack exponentially: one
    CPU for minutes, every session of every protocol stalled."""
    s = imap_login(srv)
    t0 = time.monotonic()
    out = imap(s, b"p1", b'LIST "" "' + b"*%" * 40 + b'x"', timeout=5)
    assert tagged(out, b"p1").startswith(b"p1 OK")
    out = imap(s, b"p2", b'LSUB "" "' + b"%*" * 40 + b'x"', timeout=5)
    assert tagged(out, b"p2").startswith(b"p2 OK")
    assert time.monotonic() - t0 < 5
    # a long name of the user's own and separated wildcards: polynomial for a regex (13 s
    # measured with 4 wildcards), linear for the matcher
    long = b"a" * 240
    out = imap(s, b"p3", b"CREATE " + long, timeout=5)
    assert tagged(out, b"p3").startswith(b"p3 OK")
    t0 = time.monotonic()
    out = imap(s, b"p4", b'LIST "" "' + b"*a" * 30 + b'*b"', timeout=5)
    assert tagged(out, b"p4").startswith(b"p4 OK") and long not in out
    out = imap(s, b"p5", b'LIST "" "' + b"*a" * 30 + b'*"', timeout=5)
    assert long in out
    assert time.monotonic() - t0 < 5
    s.close()
    assert_serving(srv)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"SEARCH " + b"(" * 5000 + b"ALL" + b")" * 5000, b"BAD"),
        (b"SEARCH " + b"NOT " * 5000 + b"ALL", b"BAD"),
        (b"SEARCH " + b"OR ALL " * 3000 + b"ALL", b"BAD"),
        (b"FETCH 1 (" + b"(" * 5000 + b"FLAGS" + b")" * 5001, b"BAD"),
        (b"FETCH 1 BODY[HEADER.FIELDS (" + b"(" * 5000 + b"A" + b")" * 5001 + b"]", b"BAD"),
        (b"ID " + b"(" * 5000 + b")" * 5000, b"BAD"),
        (b"FETCH 1:4294967296 FLAGS", b"BAD"),
        (b"FETCH 0 FLAGS", b"BAD"),
        (b"UID FETCH 1:99999999999999999999 FLAGS", b"BAD"),
        (b"UID SEARCH UID 1:18446744073709551616", b"BAD"),
        (b"FETCH 1 BODY[]<0.99999999999999999999>", b"BAD"),
        (b"SEARCH MODSEQ 99999999999999999999999", b"BAD"),
        (b"SEARCH LARGER 99999999999999999999999", b"BAD"),
        (b"FETCH *:* FLAGS", b"BAD"),  # the mailbox is empty: no message "*"
        (b"UID FETCH 4294967295:1 FLAGS", b"OK"),
        (b"APPEND INBOX {99999999999}", b"NO [TOOBIG]"),
        (b'LOGIN "x\x00" y', b"BAD"),
        (b"NOOP\xff\xfe", b"BAD"),
    ],
)
def test_imap_hostile_commands_get_tagged_errors(
    srv: ServerProcess, command: bytes, reply: bytes
) -> None:
    s = imap_login(srv)
    assert tagged(imap(s, b"s", b"SELECT INBOX"), b"s").startswith(b"s OK")
    out = imap(s, b"h", command)
    assert tagged(out, b"h").startswith(b"h " + reply), out[-300:]
    assert tagged(imap(s, b"n", b"NOOP"), b"n").startswith(b"n OK")  # the session lives on
    s.close()


def test_imap_oversize_non_synchronising_literal_is_fatal(srv: ServerProcess) -> None:
    s = imap_login(srv)
    s.sendall(b"a APPEND INBOX {99999999999+}\r\n")
    out = read_until(s, b"* BYE")
    assert b"a BAD [TOOBIG]" in out
    s.close()
    assert_serving(srv)


# ---- SMTP ----------------------------------------------------------------------------------------


def smtp(srv: ServerProcess, service: str = "smtp") -> socket.socket:
    s = connect(srv, service)
    assert read_until(s, b"\r\n").startswith(b"220")
    s.sendall(b"EHLO client.example\r\n")
    assert b"250 " in read_until(s, b"250 ")
    return s


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL FROM:<a@example.org> SIZE=99999999999999999999", b"552 5.3.4"),
        (b"MAIL FROM:<a@example.org> SIZE=-1", b"501 5.5.4"),
        (b"BDAT 99999999999999999999", b"501 5.5.4"),
        (b"BDAT -1", b"501 5.5.4"),
        (b"MAIL\x00 FROM:<a@example.org>", b"501 5.5.4"),
        (b"MAIL FROM:<\xff\xfe@example.org>", b"500 5.5.2"),
        (b"NOOP\rNOOP", b"501 5.5.4"),
        (b"X" * 5000, b"500 5.5.2"),
    ],
)
def test_smtp_hostile_lines_get_enhanced_codes(
    srv: ServerProcess, line: bytes, reply: bytes
) -> None:
    s = smtp(srv)
    s.sendall(line + b"\r\n")
    assert read_until(s, b"\r\n").startswith(reply)
    s.sendall(b"NOOP\r\n")
    assert read_until(s, b"\r\n").startswith(b"250 2.0.0")
    s.close()


def test_smtp_bare_lf_and_bytewise_commands(srv: ServerProcess) -> None:
    s = smtp(srv)
    s.sendall(b"NOOP\n")
    assert read_until(s, b"\r\n").startswith(b"500 5.5.2")
    for byte in b"NOOP\r\n":
        s.sendall(bytes([byte]))
        time.sleep(0.001)
    assert read_until(s, b"\r\n").startswith(b"250 2.0.0")
    s.close()


def test_smtp_auth_abuse(srv: ServerProcess) -> None:
    s = smtp(srv, "submission")
    s.sendall(b"AUTH PLAIN AGFsaWNlAHg=\r\n")
    assert read_until(s, b"\r\n").startswith(b"538 5.7.11")  # before STARTTLS
    s.close()
    s = smtp(srv, "submissions")
    for line, reply in (
        (b"AUTH PLAIN !!!notbase64", b"501 5.5.2"),
        (b"AUTH PLAIN", b"334"),
        (b"*", b"501 5.0.0"),
        (b"AUTH LOGIN", b"334"),
        (b"=" + b"A" * 20000, b"500 5.5.6"),
        (b"AUTH XOAUTH2 abc", b"504 5.5.4"),
    ):
        s.sendall(line + b"\r\n")
        assert read_until(s, b"\r\n").startswith(reply), line[:40]
    s.close()


# ---- POP3 ----------------------------------------------------------------------------------------


def test_pop3_hostile_numbers_and_bytes(srv: ServerProcess) -> None:
    s = connect(srv, "pop3s")
    read_until(s, b"\r\n")
    s.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    assert read_until(s, b"Logged in").count(b"+OK") == 2
    for line in (
        b"RETR 99999999999999999999",
        b"RETR -1",
        b"TOP 1 -5",
        b"UIDL 4294967296",
        b"DELE 1\x00",
        b"X" * 3000,
    ):
        s.sendall(line + b"\r\n")
        assert read_until(s, b"\r\n").startswith(b"-ERR"), line[:40]
    s.sendall(b"NOOP\r\n")
    assert read_until(s, b"\r\n").startswith(b"+OK")
    s.close()


def test_pop3_sasl_abuse(srv: ServerProcess) -> None:
    s = connect(srv, "pop3s")
    read_until(s, b"\r\n")
    for line, reply in (
        (b"AUTH PLAIN", b"+ "),
        (b"!!!!", b"-ERR"),
        (b"AUTH PLAIN", b"+ "),
        (b"*", b"-ERR"),
        (b"AUTH PLAIN " + b"A" * 20000, b"-ERR"),
        (b"AUTH PLAIN " + base64.b64encode(b"\0\0\0"), b"-ERR"),
    ):
        s.sendall(line + b"\r\n")
        assert read_until(s, b"\r\n").startswith(reply), line[:40]
    s.close()


# ---- floods and TLS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "first", "command"),
    [
        ("smtp", b"EHLO x\r\n", b"NOOP\r\n"),
        ("pop3", b"", b"CAPA\r\n"),
        ("imap", b"", b"a CAPABILITY\r\n"),
    ],
)
def test_pipelined_flood_without_reading_keeps_memory_bounded(
    srv: ServerProcess, service: str, first: bytes, command: bytes
) -> None:
    before = rss_kib(srv)
    s = connect(srv, service)
    s.sendall(first)
    s.settimeout(0.5)
    blob = command * 2000
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 8 and sent < 200 * 1024 * 1024:
        try:
            sent += s.send(blob)
        except TimeoutError:
            break  # the server stopped reading: what we want
        except ConnectionError:
            # or closed: SMTP after [smtp] max_junk_commands NOOPs (and max_errors), as Postfix
            assert service == "smtp"
            break
    assert sent < 200 * 1024 * 1024
    assert rss_kib(srv) - before < 64 * 1024
    s.close()
    assert_serving(srv)


def test_tls_garbage_and_half_open_handshakes(srv: ServerProcess) -> None:
    half = []
    for service in ("submissions", "imaps", "pop3s"):
        with socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
            assert read_until(s, b"\r\n", 5) == b""  # closed, no plaintext reply
        h = socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=5)
        h.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello cut short
        half.append(h)
    for service, command in (("smtp", b"STARTTLS"), ("imap", b"a STARTTLS"), ("pop3", b"STLS")):
        s = smtp(srv) if service == "smtp" else connect(srv, service)
        if service != "smtp":
            read_until(s, b"\r\n")
        s.sendall(command + b"\r\n")
        read_until(s, b"\r\n")
        s.sendall(b"garbage garbage\r\n" * 5)
        assert b"garbage" not in read_until(s, b"\r\n", 5)
        s.close()
    assert_serving(srv)
    for h in half:
        h.close()
