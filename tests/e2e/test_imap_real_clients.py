"""IMAP end to end: a real `carteiro serve` (SQLite + Maildir store) driven by real clients:
Python's imaplib (STARTTLS, implicit TLS), Debian's mbsync (isync) and offlineimap3, each doing a
two-way sync of an account with several folders."""

from __future__ import annotations

import imaplib
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("imap-e2e")]

USERS = {f"{n}@example.test": f"{n}-password" for n in ("imaplib", "mbsync", "offline", "sorter")}
FOLDERS = ("INBOX", "Work", "Work/Reports", "Lists")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("imape2e"), users=USERS, services=("imap", "imaps")
    ) as s:
        yield s


def tls_ctx(srv: ServerProcess) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.data / "tls" / "cert.pem"))
    ctx.check_hostname = False
    return ctx


def connect(srv: ServerProcess, user: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_ctx(srv))
    m.login(user, USERS[user])
    return m


def message(n: int, folder: str) -> bytes:
    return (
        f"From: sender@example.org\r\nTo: x@example.test\r\nSubject: {folder} message {n}\r\n"
        f"Message-ID: <m{n}.{folder.replace('/', '.')}@example.org>\r\n"
        f"Date: Tue, 1 Oct 2024 10:0{n}:00 +0000\r\n\r\nBody {n} of {folder}.\r\n"
    ).encode()


def populate(srv: ServerProcess, user: str) -> None:
    m = connect(srv, user)
    for folder in FOLDERS:
        if folder != "INBOX":
            assert m.create(folder)[0] == "OK"
        for n in range(3):
            flags = r"(\Seen)" if n == 0 else None
            assert m.append(folder, flags, None, message(n, folder))[0] == "OK"
    m.logout()


def server_state(srv: ServerProcess, user: str) -> dict[str, dict[str, str]]:
    """folder -> {subject: flags}."""
    m = connect(srv, user)
    out: dict[str, dict[str, str]] = {}
    for folder in FOLDERS:
        typ, _ = m.select(folder)
        assert typ == "OK"
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects: dict[str, str] = {}
        for item in data:
            if isinstance(item, tuple):
                head = item[0].decode()
                subj = item[1].decode().strip().removeprefix("Subject: ")
                subjects[subj] = head[head.index("FLAGS (") + 7 : head.index(")")]
        out[folder] = subjects
    m.logout()
    return out


def test_starttls_and_logindisabled(srv: ServerProcess) -> None:
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        m.login("imaplib@example.test", USERS["imaplib@example.test"])
    m.starttls(ssl_context=tls_ctx(srv))
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
    assert m.login("imaplib@example.test", USERS["imaplib@example.test"])[0] == "OK"
    _typ, data = m.list()
    names = b"\n".join(data)
    for special in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"):
        assert special in names
    m.logout()


def test_imaps_authenticate_plain(srv: ServerProcess) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_ctx(srv))
    user, pw = "imaplib@example.test", USERS["imaplib@example.test"]
    typ, _ = m.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())
    assert typ == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def _maildir_messages(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for cur in root.rglob("cur"):
        box = cur.parent
        files = [p for sub in ("cur", "new") for p in (box / sub).iterdir() if p.is_file()]
        out[str(box.relative_to(root))] = files
    return out


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) is not installed")
def test_mbsync_two_way(srv: ServerProcess, tmp_path: Path) -> None:
    user = "mbsync@example.test"
    populate(srv, user)
    local = tmp_path / "mail"
    local.mkdir()
    cfg = tmp_path / "mbsyncrc"
    cfg.write_text(
        f"""IMAPAccount carteiro
Host localhost
Port {srv.ports["imaps"]}
User {user}
Pass {USERS[user]}
SSLType IMAPS
CertificateFile {srv.data / "tls" / "cert.pem"}

IMAPStore remote
Account carteiro

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Work Work/Reports Lists
Create Both
Expunge Both
SyncState *
"""
    )
    run = [shutil.which("mbsync") or "mbsync", "-c", str(cfg), "-a"]
    env = {**os.environ, "HOME": str(tmp_path)}
    # -Dn shows the IMAP conversation: isync >= 1.4 turns COMPRESS=DEFLATE (RFC 4978) on itself
    r = subprocess.run([*run, "-Dn"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "COMPRESS DEFLATE" in r.stdout + r.stderr
    assert "OK DEFLATE active" in r.stdout + r.stderr
    boxes = _maildir_messages(local)
    assert sorted(boxes) == ["INBOX", "Lists", "Work", "Work/Reports"]
    assert all(len(files) == 3 for files in boxes.values()), boxes

    # Local changes: a new message, a flag, a deletion (mbsync expunges with Expunge Both).
    (local / "Work" / "new" / "1700000000.local1.host").write_bytes(message(7, "local"))
    work = sorted(boxes["Work"])
    unseen = next(p for p in work if ":2," in p.name and "S" not in p.name.split(":2,")[1])
    unseen.rename(unseen.with_name(unseen.name + "F"))  # flag it
    doomed = next(p for p in sorted(boxes["Lists"]) if p.exists())
    doomed.rename(doomed.with_name(doomed.name.split(":2,")[0] + ":2,ST"))
    # A server-side change travels the other way.
    m = connect(srv, user)
    m.select("INBOX")
    m.store("2", "+FLAGS", r"\Answered")
    m.append("Work/Reports", None, None, message(8, "server"))
    m.logout()

    r = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    state = server_state(srv, user)
    assert "local message 7" in state["Work"]
    assert any("\\Flagged" in f for f in state["Work"].values())
    assert len(state["Lists"]) == 2
    boxes = _maildir_messages(local)
    assert len(boxes["Work/Reports"]) == 4
    assert any(p.name.endswith("RS") or "R" in p.name.split(":2,")[1] for p in boxes["INBOX"])


@pytest.mark.skipif(shutil.which("offlineimap") is None, reason="offlineimap3 is not installed")
def test_offlineimap_two_way(srv: ServerProcess, tmp_path: Path) -> None:
    user = "offline@example.test"
    populate(srv, user)
    local = tmp_path / "mail"
    cfg = tmp_path / "offlineimaprc"
    cfg.write_text(
        f"""[general]
accounts = main
metadata = {tmp_path / "meta"}

[Account main]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}
sep = /

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {srv.ports["imaps"]}
ssl = yes
sslcacertfile = {srv.data / "tls" / "cert.pem"}
remoteuser = {user}
remotepass = {USERS[user]}
folderfilter = lambda f: f in {list(FOLDERS)!r}
"""
    )
    run = [shutil.which("offlineimap") or "offlineimap", "-c", str(cfg), "-o", "-u", "basic"]
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run(run, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    boxes = _maildir_messages(local)
    assert sorted(boxes) == ["INBOX", "Lists", "Work", "Work/Reports"], r.stdout + r.stderr
    assert all(len(files) == 3 for files in boxes.values()), boxes

    (local / "Lists" / "new" / "1700000001.local2.host").write_bytes(message(9, "offline"))
    victim = sorted(boxes["INBOX"])[0]
    victim.unlink()
    flagged = sorted(boxes["Work"])[1]
    base, _, info = flagged.name.partition(":2,")
    flagged.rename(flagged.with_name(base + ":2," + "".join(sorted(info + "F"))))

    r = subprocess.run(run, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    state = server_state(srv, user)
    assert "offline message 9" in state["Lists"]
    assert len(state["INBOX"]) == 2
    assert any("\\Flagged" in f for f in state["Work"].values())


def test_imaplib_search_sort_thread_quota(srv: ServerProcess) -> None:
    """imaplib's search/sort/thread/getquotaroot against the real server: text searches come
    from the search index once it has the messages, and answer the same before."""
    user = "sorter@example.test"
    m = connect(srv, user)
    msgs = [
        b"From: Zed <z@example.org>\r\nSubject: Re: plans\r\nMessage-ID: <b@x>\r\n"
        b"References: <a@x>\r\nDate: Tue, 1 Oct 2024 11:00:00 +0000\r\n\r\ncaf\xc3\xa9 at noon\r\n",
        b"From: Ann <a@example.org>\r\nSubject: plans\r\nMessage-ID: <a@x>\r\n"
        b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n\r\nlunch order 42\r\n",
        b"From: Bob <b@example.org>\r\nSubject: other\r\nDate: Mon, 30 Sep 2024 10:00:00 +0000"
        b"\r\n\r\nnothing\r\n",
    ]
    for data in msgs:
        assert m.append("INBOX", None, None, data)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    for _ in range(2):  # the second time, the index has them (or is about to): same answers
        assert m.search("UTF-8", "BODY", '"order 42"') == ("OK", [b"2"])
        assert m.search(None, "FROM", "zed") == ("OK", [b"1"])
        assert m.sort("(DATE)", "UTF-8", "ALL") == ("OK", [b"3 2 1"])
        assert m.sort("(REVERSE SUBJECT)", "UTF-8", "ALL") == ("OK", [b"1 2 3"])
        assert m.sort("(DISPLAYFROM)", "UTF-8", "ALL") == ("OK", [b"2 3 1"])
        assert m.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(3)(2 1)"])
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b"INBOX"]  # no limits: no quota root
    m.logout()
