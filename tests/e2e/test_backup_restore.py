"""`carteiro backup` of a server under load, `carteiro restore` into an empty data dir, and every
message compared: bytes, flags, mailbox, UID, UIDVALIDITY."""

from __future__ import annotations

import asyncio
import imaplib
import json
import smtplib
import threading
from pathlib import Path
from typing import Any

import pytest

from carteiro.app import open_store
from carteiro.config import load
from carteiro.mail.metadata_db import METADATA_FILE, MetadataStore
from carteiro.testing.server import ServerProcess, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backup-e2e")]


async def _contents(data: Path) -> dict[tuple[str, str], dict[int, tuple[bytes, frozenset[str]]]]:
    """(account, mailbox) -> uid -> (bytes, flags), with the UIDVALIDITY in the key's mailbox."""
    store = open_store(load(data))
    out: dict[tuple[str, str], dict[int, tuple[bytes, frozenset[str]]]] = {}
    try:
        for account in ("alice@example.test", "bob@example.test"):
            acct = await store.account(account)
            for mb in await acct.list_mailboxes():
                msgs = await acct.list_messages(mb.id)
                out[(account, f"{mb.name}/{mb.uidvalidity}")] = {
                    m.uid: (await acct.read_message(mb.id, m.uid), m.flags) for m in msgs
                }
    finally:
        await store.close()
    return out


async def _metadata(data: Path, mailbox: str) -> list[tuple[str, bytes | None]]:
    """alice's METADATA entry /private/comment of `mailbox`, as a restored server reads it."""
    store = open_store(load(data))
    try:
        box = await (await store.account("alice@example.test")).get_mailbox(mailbox)
    finally:
        await store.close()
    md = MetadataStore(data / METADATA_FILE)
    try:
        return md.get("alice@example.test", box.id, ["/private/comment"], 0)
    finally:
        md.close()


def _send(port: int, n: int, start: int, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for i in range(start, start + n):
            body = f"From: x@ext.test\r\nSubject: m{i}\r\n\r\n" + "line\r\n" * (i % 50)
            # a few big ones: the store writes their files before COMMIT
            if i % 10 == 0:
                body += "x" * 100_000 + "\r\n"
            s.sendmail("x@ext.test", [rcpt], body.encode())


def test_online_backup_restores_every_message(tmp_path: Path) -> None:
    srv = ServerProcess(
        tmp_path,
        services=("smtp", "imap"),
        users={"alice@example.test": "pw", "bob@example.test": "pw"},
        extra_config='[imap]\nallow_plaintext_auth = true\n[transport]\n"far.test" = "127.0.0.1:9"\n',
    )
    srv.init()
    srv.cli(
        "user", "add", "spool@example.test", "--password-stdin", "--delivery", "mbox", stdin="p\n"
    )
    srv.cli("alias", "add", "fwd@example.test", "r@far.test")
    backup = tmp_path / "backup"
    with srv:
        port = srv.ports["smtp"]
        _send(port, 30, 0, "alice@example.test")
        _send(port, 5, 100, "bob@example.test")
        _send(port, 2, 200, "spool@example.test")
        with smtplib.SMTP("127.0.0.1", port) as s:  # stays queued: nothing listens on port 9
            s.sendmail("x@ext.test", ["fwd@example.test"], b"Subject: queued\r\n\r\nq\r\n")
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        imap.login("alice@example.test", "pw")
        imap.create("Archive")
        imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
        typ, _ = imap._simple_command("SETMETADATA", "Archive", '(/private/comment "kept")')
        assert typ == "OK"  # RFC 5464 entries live in DATA/metadata.sqlite: backed up too
        imap.select("INBOX")
        imap.store("1:5", "+FLAGS", r"(\Seen \Flagged)")
        imap.copy("6:10", "Archive")
        imap.store("11", "+FLAGS", r"(\Deleted)")
        imap.expunge()
        imap.logout()
        # deliveries go on while the backup runs: it must cut a consistent instant anyway
        writer = threading.Thread(target=_send, args=(port, 40, 300, "alice@example.test"))
        writer.start()
        r = srv.cli("backup", "--to", str(backup))
        writer.join()
        assert "backed up" in r.stdout and r.stderr == ""
        live_after = srv.cli("status", "--json")
        assert json.loads(live_after.stdout)["running"] is True
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["queued"] == 1
    assert run_cli(tmp_path, "backup", "--verify", str(backup)).returncode == 0

    target = tmp_path / "restored"
    r = run_cli(target, "restore", "--from", str(backup))
    assert r.returncode == 0 and "restored" in r.stdout, r.stderr
    assert run_cli(target, "store", "check").returncode == 0

    source = asyncio.run(_contents(srv.data))
    restored = asyncio.run(_contents(target))
    assert set(restored) == set(source)  # same mailboxes, same UIDVALIDITYs
    counts: dict[str, Any] = manifest["store"]
    for (account, key), msgs in restored.items():
        name = key.rpartition("/")[0]
        assert len(msgs) == counts[account][name]
        # every restored message is the source's message of that UID, byte for byte; the
        # source may hold more (the ones delivered after the cut), never fewer before it
        for uid, (data, flags) in msgs.items():
            assert source[(account, key)][uid][0] == data
            assert source[(account, key)][uid][1] == flags
    inbox = next(
        v for k, v in restored.items() if k[0] == "alice@example.test" and "INBOX/" in k[1]
    )
    before_cut = {
        u
        for u, (d, _f) in inbox.items()
        if b"Subject: m" in d and int(d.split(b"Subject: m")[1].split(b"\r\n")[0]) < 300
    }
    assert len(before_cut) == 29  # 30 delivered, 1 expunged; all before the backup began
    assert all(r"\Seen" in inbox[u][1] for u in range(1, 6))
    archive = next(
        v for k, v in restored.items() if k[0] == "alice@example.test" and "Archive/" in k[1]
    )
    assert len(archive) == 5
    assert asyncio.run(_metadata(target, "Archive")) == [("/private/comment", b"kept")]
    assert (target / "mbox").is_dir() and b"Subject: m200" in next(
        (target / "mbox").iterdir()
    ).read_bytes()
    q = json.loads(run_cli(target, "queue", "list", "--json").stdout)
    assert [m["recipients"][0]["address"] for m in q] == ["r@far.test"]
    # a damaged backup is refused before anything is written
    victim = next(
        p for p in (backup / "mail").rglob("*") if p.is_file() and p.stat().st_size > 1000
    )
    victim.write_bytes(victim.read_bytes()[:-1] + b"!")
    r = run_cli(tmp_path / "again", "restore", "--from", str(backup), check=False)
    assert r.returncode == 65 and "changed since the backup" in r.stderr
    assert not (tmp_path / "again").exists()
