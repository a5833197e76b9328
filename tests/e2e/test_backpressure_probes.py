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

import httpx
import pytest

from carteiro.testing.probes import GreetingWatch, connect, read_until, rss_kib
from carteiro.testing.server import ALL_SERVICES, ServerProcess
from carteiro.testing.webmail import login

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backpressure-e2e")]

USER, PASSWORD = "alice@example.test", "alice-password"
ALL = tuple(s for s in ALL_SERVICES if s != "metrics")  # every listener but /metrics
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
    s = ServerProcess(
        tmp_path_factory.mktemp("backpressure"),
        users={USER: PASSWORD},
        services=ALL,
        extra_config=PLAINTEXT,
    )
    s.init()
    # [smtp] max_junk_commands would end the SMTP floods after a hundred commands: what they
    # test is a session that goes on (the limit's own tests: tests/protocol/smtp)
    cfg = s.data / "carteiro.toml"
    cfg.write_text(cfg.read_text().replace("[smtp]\n", "[smtp]\nmax_junk_commands = 0\n", 1))
    with s:
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


def _nothing(s: socket.socket) -> None:
    pass


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
    ("web", _nothing, b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n" * 200, "imap"),
    ("web", _nothing, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n" * 200, "imap"),
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
        "web-static",
        "web-login",
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
    pipelined GETMETADATA of a 60 KB value grew the IMAP session's output by 130 MB, and the
    webmail read 120 MB of pipelined GETs of a static file (tests/web/test_web_guard.py)."""
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


# ---- many idle connections: caps and timeouts ---------------------------------------------------

CAP = 3
CAPS = f"""
[imap]
allow_plaintext_auth = true
max_connections_per_ip = {CAP}
[pop3]
allow_plaintext_auth = true
max_connections_per_ip = {CAP}
[sieve]
allow_plaintext_auth = true
max_connections_per_ip = {CAP}
[web]
max_connections_per_ip = {CAP}
"""
SMTP_CAPS = f"[smtp]\nmax_connections_per_ip = {CAP}\nmax_connections = {2 * CAP}\n"
REFUSALS = {
    "smtp": b"421 4.7.0 ",
    "submission": b"421 4.7.0 ",
    "odmr": b"421 4.7.0 ",
    "lmtp": b"421 4.7.0 ",  # one local MTA may open many: only [smtp] max_connections caps it
    "imap": b"* BYE ",
    "pop3": b"-ERR [SYS/TEMP] ",
    "sieve": b'BYE (TRYLATER) "',
    "web": b"HTTP/1.1 503 ",  # (over TLS: the guard counts a connection once it is made)
    # implicit TLS: refused at accept, before a handshake (which would cost the server more)
    "submissions": b"",
    "imaps": b"",
    "pop3s": b"",
}
LOGINS: dict[str, Callable[[socket.socket], None]] = {
    "imap": _imap_login,
    "imaps": _imap_login,
    "pop3": _pop3_login,
    "pop3s": _pop3_login,
    "sieve": _sieve_login,
}

LEAVE_CAP = (
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "sieve",
)  # a logged-in session leaves the address's cap


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path_factory.mktemp("capped"), users={USER: PASSWORD}, services=ALL, extra_config=CAPS
    )
    s.init()
    cfg = s.data / "carteiro.toml"
    cfg.write_text(cfg.read_text().replace("[smtp]\n", SMTP_CAPS, 1))  # (init wrote an [smtp])
    with s:
        yield s
        assert "Traceback" not in s.log()


def _first_words(s: socket.socket) -> bytes:
    try:
        return read_until(s, b"\r\n", 5)
    except (OSError, ssl.SSLError):
        return b""  # (TLS: the server closed before the handshake)


@pytest.mark.parametrize("service", list(REFUSALS))
def test_idle_connections_meet_the_cap_and_its_refusal(capped: ServerProcess, service: str) -> None:
    """As many idle connections as the cap allows (the first logged in where the protocol has
    a login), then one more: refused with the protocol's own reply, and a slot freed is
    taken again. IMAP, POP3 and ManageSieve count the connections not logged in: a logged-in
    session is counted per account instead (docs/configuration.md), so there it is one more."""
    limit = 2 * CAP if service == "lmtp" else CAP
    if service in LEAVE_CAP:
        limit += 1
    held: list[socket.socket] = []
    try:
        for i in range(limit):
            s = connect(capped, service)
            held.append(s)
            login = LOGINS.get(service)
            if i == 0 and login is not None:
                login(s)
            elif service != "web":  # (HTTP has no greeting: the client speaks first)
                assert _first_words(s), f"connection {i + 1} got no greeting"
        try:
            extra = connect(capped, service, timeout=5)
        except (OSError, ssl.SSLError):
            assert REFUSALS[service] == b""  # a TLS client sees the close in its handshake
        else:
            with extra:
                said = _first_words(extra)
            assert said.startswith(REFUSALS[service]) if REFUSALS[service] else not said, said
        held.pop().close()
        deadline = time.monotonic() + 10
        while not _greeted(capped, service):  # the server notices the close soon, not at once
            assert time.monotonic() < deadline, "the freed slot was not given again"
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()


def test_webmail_connections_with_a_session_leave_the_address_cap(capped: ServerProcess) -> None:
    """The webmail's requests that carry a valid session take their connection out of the
    address's cap (into the account's: [web] max_userip_connections): CAP browsers' connections
    of a logged-in user, and the address can still open CAP more."""
    web = f"https://127.0.0.1:{capped.ports['web']}"
    with httpx.Client(base_url=web, verify=False, timeout=30) as c:
        assert login(c, USER, PASSWORD).status_code == 303
        cookie = f"carteiro_session={c.cookies['carteiro_session']}".encode()
    held: list[socket.socket] = []
    try:
        for _ in range(CAP):
            s = connect(capped, "web")
            held.append(s)
            s.sendall(b"GET /box HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + b"\r\n\r\n")
            assert read_until(s, b"\r\n").startswith(b"HTTP/1.1 200 ")
        for i in range(CAP):  # no session: these count in the address's cap, as before
            s = connect(capped, "web")
            held.append(s)
            s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until(s, b"\r\n").startswith(b"HTTP/1.1 200 "), i
        with connect(capped, "web") as extra:
            assert _first_words(extra).startswith(REFUSALS["web"])
    finally:
        for s in held:
            s.close()


def _greeted(srv: ServerProcess, service: str) -> bool:
    try:
        with connect(srv, service, timeout=5) as s:
            if service == "web":
                s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            said = _first_words(s)
    except (OSError, ssl.SSLError):
        return False
    return bool(said) and not (REFUSALS[service] and said.startswith(REFUSALS[service]))


IMPATIENT = """
[imap]
login_timeout = 1
[sieve]
allow_plaintext_auth = true
login_timeout = 1
idle_timeout = 1
"""


def _smtp_auth(s: socket.socket) -> None:
    _ehlo(s)
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    s.sendall(b"AUTH PLAIN " + plain + b"\r\n")
    assert read_until(s, b"\r\n").startswith(b"235")


def _greeting(s: socket.socket) -> None:
    assert read_until(s, b"\r\n")


def test_idle_connections_time_out_with_the_protocols_reply(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Idle before and after login, every listener with a timeout short enough to see here
    (POP3's and IMAP's logged-in ones have RFC minimums of 10 and 30 minutes: their
    timeouts are tested in tests/protocol)."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("impatient"),
        users={USER: PASSWORD},
        services=("smtp", "submission", "submissions", "lmtp", "odmr", "imap", "imaps", "sieve"),
        extra_config=IMPATIENT,
    )
    srv.init()
    cfg = srv.data / "carteiro.toml"
    cfg.write_text(cfg.read_text().replace("[smtp]\n", "[smtp]\nidle_timeout = 1\n", 1))
    timeout_421 = b"421 4.4.2 "
    cases: list[tuple[str, Callable[[socket.socket], None], bytes]] = [
        ("smtp", _greeting, timeout_421),
        ("submission", _ehlo, timeout_421),
        ("submissions", _smtp_auth, timeout_421),
        ("lmtp", _lhlo, timeout_421),
        ("odmr", _greeting, timeout_421),
        ("imap", _greeting, b"* BYE Autologout"),
        ("imaps", _greeting, b"* BYE Autologout"),
        ("sieve", _greeting, b'BYE "Disconnected for inactivity."'),
        ("sieve", _sieve_login, b'BYE "Disconnected for inactivity."'),
    ]
    with srv:
        opened = []
        for service, start, _ in cases:
            s = connect(srv, service)
            start(s)
            opened.append(s)
        try:
            for (service, start, last), s in zip(cases, opened, strict=True):
                said = read_until(s, b"\r\n", 10)
                assert said.startswith(last), (service, start.__name__, said)
                assert read_until(s, b"\r\n", 10) == b"", (service, "not closed")
        finally:
            for s in opened:
                s.close()
        assert "Traceback" not in srv.log()
