"""NOTIFY and METADATA end to end: a real `carteiro serve` (SQLite + Maildir store). A session
with NOTIFY SET (SELECTED (MessageNew ...)) (PERSONAL (MessageNew MessageExpunge MailboxName))
sees, without sending a command, a delivery by `carteiro deliver` (another process) into another
folder within a second, and the CREATE and RENAME of another session. Python's imaplib drives
METADATA with raw commands."""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("imap-e2e")]

ALICE = "alice@example.test"
PASSWORD = "alice-password"
WITHIN = 1.0  # seconds from the LDA's exit to the STATUS line


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path_factory.mktemp("notifye2e"), users={ALICE: PASSWORD}, services=("imaps",)
    )
    s.init()
    cfg = s.data / "carteiro.toml"
    text = cfg.read_text()
    # alice+Lists@ files into Lists (the LDA reads the same setting)
    cfg.write_text(text.replace("[smtp]\n", "[smtp]\nplus_folder_delivery = true\n", 1))
    with s:
        yield s


def tls_ctx(srv: ServerProcess) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
    ctx.check_hostname = False
    return ctx


class Lines:
    """A blocking IMAP line reader on a TLS socket, with a deadline per line."""

    def __init__(self, srv: ServerProcess) -> None:
        raw = socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=10)
        self.sock = tls_ctx(srv).wrap_socket(raw, server_hostname="mail.example.test")
        self.buf = b""

    def line(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(self.buf)
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def cmd(self, tag: str, text: str) -> list[str]:
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        out = [self.line()]
        while not out[-1].startswith(tag + " "):
            out.append(self.line())
        return out

    def until(self, pattern: str, timeout: float) -> tuple[str, float]:
        start = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - start)
            got = self.line(max(left, 0.001))
            if re.fullmatch(pattern, got):
                return got, time.monotonic() - start


def deliver(srv: ServerProcess, to: str, subject: str) -> None:
    msg = f"From: x@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    r = subprocess.run(
        [sys.executable, "-m", "carteiro", "deliver", "--to", to, "--data", str(srv.data)],
        input=msg,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_notify_sees_other_process_and_other_session(srv: ServerProcess) -> None:
    other = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_ctx(srv))
    other.login(ALICE, PASSWORD)
    assert other.create("Lists")[0] == "OK"

    c = Lines(srv)
    assert c.line().startswith("* OK")
    assert c.cmd("a1", f'LOGIN {ALICE} "{PASSWORD}"')[-1].startswith("a1 OK")
    caps = c.cmd("a2", "CAPABILITY")[0].split()
    assert {"NOTIFY", "METADATA", "METADATA-SERVER"} <= set(caps)
    assert c.cmd("a3", "SELECT INBOX")[-1].startswith("a3 OK")
    lines = c.cmd(
        "a4",
        "NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge))"
        " (PERSONAL (MessageNew MessageExpunge MailboxName))",
    )
    assert lines == ["a4 OK NOTIFY completed."], lines

    # another process (the LDA) delivers into another folder: STATUS within a second
    for i in range(3):
        deliver(srv, "alice+Lists@example.test", f"list {i}")
        got, took = c.until(r"\* STATUS Lists \(.*\)", 10.0)
        assert f"MESSAGES {i + 1} " in got, got
        assert took < WITHIN, f"STATUS after {took:.2f}s: {got}"

    # and into the selected INBOX: EXISTS and the FETCH, at once
    deliver(srv, ALICE, "inbox")
    got, took = c.until(r"\* 1 EXISTS", 10.0)
    assert took < WITHIN, took
    c.until(r"\* 1 FETCH \(UID 1 FLAGS \(.*\)\)", 5.0)

    # another session's CREATE and RENAME
    assert other.create("Projects")[0] == "OK"
    got, _ = c.until(r'\* LIST \(.*\) "/" .*', 5.0)
    assert got.endswith('"/" Projects'), got
    assert other.rename("Projects", "Done")[0] == "OK"
    got, _ = c.until(r'\* LIST \(.*\) "/" .*', 5.0)
    assert got.endswith('"/" Done ("OLDNAME" (Projects))'), got
    assert c.cmd("a5", "LOGOUT")[-1].startswith("a5 OK")
    other.logout()


def test_metadata_with_imaplib(srv: ServerProcess) -> None:
    for name in ("GETMETADATA", "SETMETADATA", "NOTIFY"):
        imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_ctx(srv))
    m.login(ALICE, PASSWORD)
    typ, _ = m._simple_command("SETMETADATA", "INBOX", '(/private/comment "from imaplib")')
    assert typ == "OK"
    typ, data = m._simple_command("GETMETADATA", '""', "(/shared/admin /private/comment)")
    assert typ == "OK"
    _, got = m._untagged_response(typ, data, "METADATA")
    assert got == [b'"" (/shared/admin "mailto:postmaster@example.test" /private/comment NIL)']
    typ, data = m._simple_command("GETMETADATA", "INBOX", "/private/comment")
    _, got = m._untagged_response(typ, data, "METADATA")
    assert got == [b'INBOX (/private/comment "from imaplib")'], got
    typ, data = m._simple_command("NOTIFY", "NONE")
    assert typ == "OK"
    m.logout()
