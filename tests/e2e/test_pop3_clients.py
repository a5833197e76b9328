"""POP3 end to end: a real `carteiro serve` (SQLite + Maildir store) driven by real clients:
Python's poplib, Debian's fetchmail (keep and delete modes) and getmail6."""

from __future__ import annotations

import asyncio
import os
import poplib
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.store.api import SEEN
from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pop3-e2e")]

USERS = {
    f"{name}@example.test": f"{name}-password"
    for name in ("poplib", "stls", "lock", "fetchkeep", "fetchdel", "getkeep", "getdel")
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("pop3e2e"), users=USERS, services=("pop3", "pop3s")
    ) as s:
        yield s


def message(n: int, extra: bytes = b"") -> bytes:
    return (
        f"From: sender@example.org\r\nTo: x@example.test\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\nBody of message {n}.\r\n".encode()
        + b".a dotted line\r\n"
        + extra
    )


def store_call(srv: ServerProcess, fn):  # type: ignore[no-untyped-def]
    """Run `fn(store)` against the server's data dir from this process (as `carteiro deliver`
    would): the store supports several processes."""

    async def go():  # type: ignore[no-untyped-def]
        store = SqliteMaildirStore(srv.data)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def deliver(srv: ServerProcess, account: str, messages: list[bytes]) -> list[int]:
    async def fn(store):  # type: ignore[no-untyped-def]
        acct = await store.account(account)
        return [(await acct.append("INBOX", m)).uid for m in messages]

    result: list[int] = store_call(srv, fn)
    return result


def inbox(srv: ServerProcess, account: str) -> list[tuple[int, frozenset[str]]]:
    async def fn(store):  # type: ignore[no-untyped-def]
        acct = await store.account(account)
        mbox = await acct.get_mailbox("INBOX")
        return [(m.uid, m.flags) for m in await acct.list_messages(mbox.id)]

    result: list[tuple[int, frozenset[str]]] = store_call(srv, fn)
    return result


def tls_context(srv: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))


# ---- poplib ---------------------------------------------------------------------------------------


def test_poplib_over_pop3s(srv: ServerProcess) -> None:
    user = "poplib@example.test"
    msgs = [message(1), message(2, (b"x" * 900 + b"\r\n") * 6), message(3)]
    uids = deliver(srv, user, msgs)
    p = poplib.POP3_SSL("127.0.0.1", srv.ports["pop3s"], context=tls_context(srv), timeout=30)
    try:
        caps = p.capa()
        assert {"TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES"} <= caps.keys()
        assert caps["SASL"] == ["PLAIN", "LOGIN"] and "STLS" not in caps
        p.user(user)
        p.pass_(USERS[user])
        assert p.stat() == (3, sum(len(m) for m in msgs))
        _, listing, _ = p.list()
        assert listing == [f"{i} {len(m)}".encode() for i, m in enumerate(msgs, 1)]
        _, lines, _ = p.retr(2)
        # poplib undoes the dot-stuffing; the message comes back byte for byte.
        assert b"\r\n".join(lines) + b"\r\n" == msgs[1]
        _, top, _ = p.top(1, 0)
        assert top[-1] == b"" and top[2] == b"Subject: message 1"
        _, uidl, _ = p.uidl()
        assert [u.split()[1].decode().split(".")[1] for u in uidl] == [str(u) for u in uids]
        p.dele(1)
        p.dele(3)
        with pytest.raises(poplib.error_proto, match="already deleted"):
            p.retr(1)
        p.rset()
        p.dele(3)
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    left = inbox(srv, user)
    assert [u for u, _ in left] == uids[:2]
    assert SEEN in dict(left)[uids[1]] and SEEN not in dict(left)[uids[0]]


def test_poplib_stls(srv: ServerProcess) -> None:
    user = "stls@example.test"
    deliver(srv, user, [message(1)])
    p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=30)
    try:
        assert "STLS" in p.capa() and "USER" not in p.capa()
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Plaintext authentication"):
            p.user(user)
        p.stls(tls_context(srv))
        assert "USER" in p.capa()
        p.user(user)
        p.pass_(USERS[user])
        assert p.stat()[0] == 1
        p.quit()
    finally:
        p.close()


def test_poplib_in_use_and_dropped_connection(srv: ServerProcess) -> None:
    user = "lock@example.test"
    deliver(srv, user, [message(1), message(2)])
    first = poplib.POP3_SSL("127.0.0.1", srv.ports["pop3s"], context=tls_context(srv))
    first.user(user)
    first.pass_(USERS[user])
    first.dele(1)
    second = poplib.POP3_SSL("127.0.0.1", srv.ports["pop3s"], context=tls_context(srv))
    second.user(user)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(USERS[user])
    first.close()  # dropped without QUIT: nothing deleted, lock released
    for _ in range(100):
        second.user(user)
        try:
            second.pass_(USERS[user])
            break
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0]
    assert second.stat()[0] == 2
    second.quit()


# ---- fetchmail -------------------------------------------------------------------------------------

DELIVER_SCRIPT = """
import os, sys, uuid
out = sys.argv[1]
with open(os.path.join(out, uuid.uuid4().hex + ".eml"), "wb") as f:
    f.write(sys.stdin.buffer.read())
"""


def fetchmail(srv: ServerProcess, tmp: Path, user: str, mode: str, out: Path) -> int:
    """One fetchmail run; `mode` is "keep" (over pop3 + STLS) or "delete" (over pop3s)."""
    home = tmp / "fetchmail-home"
    home.mkdir(exist_ok=True)
    script = tmp / "deliver.py"
    script.write_text(DELIVER_SCRIPT)
    cert = srv.data / "tls" / "cert.pem"
    if mode == "keep":
        port, tls, options = srv.ports["pop3"], 'sslproto "tls1.2+"', "keep"  # STLS
    else:
        port, tls, options = srv.ports["pop3s"], "ssl", "nokeep fetchall"  # implicit TLS
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\nset no bouncemail\n"
        f"poll 127.0.0.1 protocol POP3 port {port} auth password timeout 30\n"
        f'  user "{user}" there with password "{USERS[user]}" is "nobody" here\n'
        f'  {tls} sslcertck sslcertfile "{cert}" sslcommonname "mail.example.test"\n'
        f'  mda "{sys.executable} {script} {out}"\n'
        f"  {options}\n"
    )
    rc.chmod(0o600)
    proc = subprocess.run(
        # Own id and pid files: other fetchmail runs (other tests, other users) must not matter.
        [
            "fetchmail",
            "-f",
            str(rc),
            "-i",
            str(home / "fetchids"),
            "--pidfile",
            str(home / "fetchmail.pid"),
            "--nodetach",
            "-v",
        ],
        env={**os.environ, "FETCHMAILHOME": str(home), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    (tmp / f"fetchmail-{mode}.log").open("a").write(proc.stdout + proc.stderr)
    # 0: mail retrieved; 1: no new mail (fetchmail(1) EXIT CODES)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_keep_mode_uses_uidl(srv: ServerProcess, tmp_path: Path) -> None:
    user = "fetchkeep@example.test"
    out = tmp_path / "out"
    out.mkdir()
    deliver(srv, user, [message(i) for i in range(3)])
    assert fetchmail(srv, tmp_path, user, "keep", out) == 0
    assert len(list(out.iterdir())) == 3
    assert len(inbox(srv, user)) == 3  # kept on the server
    # New mail: only it is fetched, because the UIDLs of the others did not change.
    deliver(srv, user, [message(9)])
    assert fetchmail(srv, tmp_path, user, "keep", out) == 0
    got = sorted(p.read_bytes() for p in out.iterdir())
    assert len(got) == 4
    assert sum(b"Subject: message 9" in g for g in got) == 1
    assert all(b"\n.a dotted line" in g for g in got)  # dot-stuffing undone by the client
    assert fetchmail(srv, tmp_path, user, "keep", out) == 1  # nothing new
    assert len(inbox(srv, user)) == 4


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_delete_mode(srv: ServerProcess, tmp_path: Path) -> None:
    user = "fetchdel@example.test"
    out = tmp_path / "out"
    out.mkdir()
    deliver(srv, user, [message(i, b"line\r\n" * 500) for i in range(5)])
    assert fetchmail(srv, tmp_path, user, "delete", out) == 0
    assert len(list(out.iterdir())) == 5
    assert inbox(srv, user) == []
    assert fetchmail(srv, tmp_path, user, "delete", out) == 1


# ---- getmail6 ---------------------------------------------------------------------------------------


def getmail(srv: ServerProcess, tmp: Path, user: str, delete: bool, out: Path) -> str:
    """One getmail run over pop3s; messages go through an external MDA into `out` (getmail
    refuses Maildir delivery as root, and the tests may run as root)."""
    gdir = tmp / "getmail"
    gdir.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    script = tmp / "deliver.py"
    script.write_text(DELIVER_SCRIPT)
    rc = gdir / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3SSLRetriever\n"
        "server = 127.0.0.1\n"
        f"port = {srv.ports['pop3s']}\n"
        f"username = {user}\n"
        f"password = {USERS[user]}\n"
        f"ca_certs = {srv.data / 'tls' / 'cert.pem'}\n"
        "\n[destination]\ntype = MDA_external\n"
        f"path = {sys.executable}\n"
        f'arguments = ("{script}", "{out}")\n'
        "allow_root_commands = true\n"
        "\n[options]\nverbose = 2\nread_all = false\n"
        f"delete = {'true' if delete else 'false'}\n"
    )
    proc = subprocess.run(
        ["getmail", f"--getmaildir={gdir}", f"--rcfile={rc}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 is not installed")
def test_getmail_keep_mode(srv: ServerProcess, tmp_path: Path) -> None:
    user = "getkeep@example.test"
    out = tmp_path / "out"
    deliver(srv, user, [message(i) for i in range(3)])
    getmail(srv, tmp_path, user, False, out)
    assert len(list(out.iterdir())) == 3
    deliver(srv, user, [message(7)])
    getmail(srv, tmp_path, user, False, out)  # only the new one: UIDLs are stable
    files = [p.read_bytes() for p in out.iterdir()]
    assert len(files) == 4 and sum(b"Subject: message 7" in f for f in files) == 1
    assert len(inbox(srv, user)) == 4


@pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 is not installed")
def test_getmail_delete_mode(srv: ServerProcess, tmp_path: Path) -> None:
    user = "getdel@example.test"
    out = tmp_path / "out"
    msgs = [message(i, b"." * 100 + b"\r\n") for i in range(4)]
    deliver(srv, user, msgs)
    getmail(srv, tmp_path, user, True, out)
    files = sorted(p.read_bytes() for p in out.iterdir())
    assert len(files) == 4
    # getmail stores the message as received (+ its own headers): the body is intact.
    assert all(b"\n" + b"." * 100 + b"\n" in f.replace(b"\r\n", b"\n") for f in files)
    assert inbox(srv, user) == []


# ---- POP3 and IMAP on the same mailbox ----------------------------------------------------------------


def test_imap_session_sees_pop3_deletions_as_expunges(tmp_path: Path) -> None:
    import imaplib

    user, pw = "both@example.test", "both-password"
    with ServerProcess(tmp_path, users={user: pw}, services=("pop3s", "imaps")) as s:
        deliver(s, user, [message(1), message(2), message(3)])
        imap = imaplib.IMAP4_SSL("127.0.0.1", s.ports["imaps"], ssl_context=tls_context(s))
        try:
            imap.login(user, pw)
            typ, data = imap.select("INBOX")
            assert typ == "OK" and data[0] == b"3"
            # IMAP does not hold a POP3 lock: POP3 logs in while IMAP has INBOX selected.
            pop = poplib.POP3_SSL("127.0.0.1", s.ports["pop3s"], context=tls_context(s))
            pop.user(user)
            pop.pass_(pw)
            pop.dele(1)
            pop.dele(3)
            pop.quit()
            imap.noop()
            expunged = [int(x) for x in imap.untagged_responses.get("EXPUNGE", [])]
            # Message 3 then message 1 (or 1 then 2): either order leaves one message.
            assert len(expunged) == 2
            typ, data = imap.search(None, "ALL")
            assert data[0] == b"1"
            typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert b"Subject: message 2" in data[0][1]
        finally:
            imap.logout()
