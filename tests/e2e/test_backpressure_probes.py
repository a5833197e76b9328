"""Output back-pressure and pipelining floods against a real `carteiro serve`, on every listener:
a client that pipelines commands with large (or many small) answers and never reads them, or
reads them slowly, must not grow the server's memory without bound (the server stops reading
it), nor keep the loop from the other clients (their greeting comes within a second); many
idle connections meet each protocol's connection caps and timeouts, with its own refusal."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import pytest

from carteiro.testing.probes import GreetingWatch, connect, read_until, rss_kib
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backpressure-e2e")]

USER, PASSWORD = "alice@example.test", "alice-password"
ALL = (
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "lmtp",
    "odmr",
    "sieve",
)
PLAINTEXT = """
[imap]
allow_plaintext_auth = true
[pop3]
allow_plaintext_auth = true
[sieve]
allow_plaintext_auth = true
"""
MESSAGES = 20
BODY = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 100  # 100 KB
SCRIPT = b"# a comment line\r\n" * 3000  # 54 KB
METADATA = b"v" * 60000
FLOOD_SECONDS = 2.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("backpressure"),
        users={USER: PASSWORD},
        services=ALL,
        extra_config=PLAINTEXT,
    ) as s:
        _seed(s)
        yield s
        assert "Traceback" not in s.log()


def _seed(srv: ServerProcess) -> None:
    with connect(srv, "imap") as s:
        read_until(s, b"\r\n")
        s.sendall(f"l LOGIN {USER} {PASSWORD}\r\n".encode())
        assert b"l OK" in read_until(s, b"l ")
        for i in range(MESSAGES):
            s.sendall(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(BODY)) + BODY + b"\r\n")
        s.sendall(b"".join(b"c%d CREATE folder%03d\r\n" % (i, i) for i in range(300)))
        s.sendall(b"m SETMETADATA INBOX (/private/comment {%d+}\r\n" % len(METADATA) + METADATA)
        s.sendall(b")\r\ndone NOOP\r\n")
        out = read_until(s, b"done OK", 60)
        assert out.count(b" OK [APPENDUID") == MESSAGES and b"m OK" in out, out[-300:]
    with connect(srv, "sieve") as s:
        _sieve_login(s)
        s.sendall(b'PUTSCRIPT "big" {%d+}\r\n' % len(SCRIPT) + SCRIPT + b"\r\n")
        assert read_until(s, b"\r\n").startswith(b"OK")


# ---- logins (each leaves the session ready for the flood) ---------------------------------------


def _imap_login(s: socket.socket) -> None:
    read_until(s, b"\r\n")
    s.sendall(f"l LOGIN {USER} {PASSWORD}\r\nsel SELECT INBOX\r\n".encode())
    assert b"sel OK" in read_until(s, b"sel OK")


def _pop3_login(s: socket.socket) -> None:
    read_until(s, b"\r\n")
    s.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    assert b"Logged in" in read_until(s, b"Logged in")


def _ehlo(s: socket.socket) -> None:
    assert read_until(s, b"\r\n").startswith(b"220")
    s.sendall(b"EHLO client.example\r\n")
    assert b"250 " in read_until(s, b"250 ")


def _lhlo(s: socket.socket) -> None:
    assert read_until(s, b"\r\n").startswith(b"220")
    s.sendall(b"LHLO client.example\r\n")
    assert b"250 " in read_until(s, b"250 ")


def _sieve_login(s: socket.socket) -> None:
    assert b'OK "' in read_until(s, b'OK "')
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    s.sendall(b'AUTHENTICATE "PLAIN" "' + plain + b'"\r\n')
    assert read_until(s, b"\r\n").startswith(b"OK")


def _retrs() -> bytes:
    return b"".join(b"RETR %d\r\nLIST\r\nUIDL\r\n" % (i % MESSAGES + 1) for i in range(500))


SMTP_JUNK = b"NOOP\r\nRSET\r\nEHLO client.example\r\nHELP\r\nVRFY alice\r\n" * 500
FLOODS: list[tuple[str, Callable[[socket.socket], None], bytes, str]] = [
    # (listener, login, what is pipelined again and again, listener the watcher greets on)
    ("imap", _imap_login, b"n NOOP\r\n" * 4000, "smtp"),
    ("imap", _imap_login, b"g GETMETADATA INBOX /private/comment\r\n" * 500, "smtp"),
    ("imap", _imap_login, b"f FETCH 1:* BODY.PEEK[]\r\n" * 100, "smtp"),
    ("imaps", _imap_login, b'l LIST "" *\r\ns SEARCH ALL\r\n' * 200, "smtp"),
    ("pop3", _pop3_login, _retrs(), "smtp"),
    ("pop3s", _pop3_login, b"NOOP\r\nSTAT\r\nLIST 1\r\n" * 2000, "smtp"),
    ("smtp", _ehlo, SMTP_JUNK, "imap"),
    ("submission", _ehlo, SMTP_JUNK, "imap"),
    ("submissions", _ehlo, SMTP_JUNK, "imap"),
    ("lmtp", _lhlo, b"NOOP\r\nRSET\r\nLHLO client.example\r\n" * 1000, "imap"),
    ("odmr", _ehlo, b"NOOP\r\nRSET\r\nEHLO client.example\r\n" * 1000, "imap"),
    ("sieve", _sieve_login, b"NOOP\r\n" * 5000, "imap"),
    ("sieve", _sieve_login, b'GETSCRIPT "big"\r\nLISTSCRIPTS\r\n' * 500, "imap"),
]


def _flood(s: socket.socket, blob: bytes, read_slowly: bool, pid: int) -> tuple[int, int]:
    """Send `blob` again and again for FLOOD_SECONDS; never read, or read 4 KB now and then.
    Returns (octets sent, the server's highest resident size seen meanwhile in KiB): memory
    that a session holds for a moment and frees shows only there."""
    s.settimeout(0.02)
    sent = peak = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < FLOOD_SECONDS:
        peak = max(peak, rss_kib(pid))
        try:
            sent += s.send(blob)
        except (TimeoutError, ssl.SSLWantWriteError):
            pass  # the server stopped reading us: what we want
        if read_slowly:
            try:
                s.recv(4096)
            except (TimeoutError, ssl.SSLWantReadError):
                pass
    return sent, max(peak, rss_kib(pid))


@pytest.mark.parametrize("read_slowly", [False, True], ids=["deaf", "slow"])
@pytest.mark.parametrize(
    ("service", "login", "blob", "watched"),
    FLOODS,
    ids=[
        "imap-noop",
        "imap-getmetadata",
        "imap-fetch",
        "imaps-list-search",
        "pop3-retr",
        "pop3s-noop",
        "smtp",
        "submission",
        "submissions",
        "lmtp",
        "odmr",
        "sieve-noop",
        "sieve-getscript",
    ],
)
def test_pipelined_flood_keeps_memory_bounded_and_others_served(
    srv: ServerProcess,
    service: str,
    login: Callable[[socket.socket], None],
    blob: bytes,
    watched: str,
    read_slowly: bool,
) -> None:
    """Before: thousands of pipelined IMAP NOOPs or ManageSieve NOOPs kept the loop for 2.5-3.5 s
    (nobody got a greeting meanwhile; the ManageSieve one also grew 100 MB of spent timers),
    and pipelined GETMETADATA of a 60 KB value grew the IMAP session's output by 130 MB."""
    assert srv.proc is not None
    before = rss_kib(srv.proc.pid)
    s = connect(srv, service, rcvbuf=4096)
    try:
        login(s)
        with GreetingWatch(srv, watched) as watch:
            sent, peak = _flood(s, blob, read_slowly, srv.proc.pid)
        grown = (peak - before) // 1024
    finally:
        s.close()
    assert grown < 64, f"the server grew by {grown} MiB"
    # the server stopped reading: what it holds (kernel buffers, the 2 MB stream limit) is
    # small beside what a loopback client could push in two seconds
    assert sent < 64 * MIB, f"{sent >> 20} MiB sent"
    assert watch.delays and watch.worst < 1.0, f"a greeting took {watch.worst:.2f} s"
    with connect(srv, watched) as other:  # and the server serves on
        assert read_until(other, b"\r\n")
