"""Local delivery of queued mail (DSNs to local senders, local alias targets) into the store."""

from __future__ import annotations

from pathlib import Path

from carteiro.app import MailLocalDelivery
from carteiro.directory.accounts import Directory
from carteiro.mail.deliver import LocalDelivery as MailDelivery
from carteiro.queue.api import Envelope
from carteiro.queue.local import StoreDelivery
from carteiro.store.api import MessageSource
from carteiro.store.memory import MemoryMailStore

DATA = b"Subject: report\r\n\r\nbody\r\n"


class Requeue:
    def __init__(self) -> None:
        self.calls: list[tuple[Envelope, bytes]] = []

    async def __call__(self, env: Envelope, source: MessageSource) -> str:
        assert isinstance(source, bytes)
        self.calls.append((env, source))
        return "QID"


async def setup(tmp_path: Path) -> tuple[MemoryMailStore, Directory]:
    store = MemoryMailStore()
    d = Directory(tmp_path / "directory.sqlite", static_domains=["a.test"])
    d.add_user("alice@a.test", "pw")
    d.add_alias("team@a.test", "alice@a.test")
    d.add_alias("team@a.test", "carol@c.test")
    await store.create_account("alice@a.test")
    return store, d


async def inbox(store: MemoryMailStore, account: str) -> list[bytes]:
    acct = await store.account(account)
    mbox = await acct.get_mailbox("INBOX")
    return [await acct.read_message(mbox.id, m.uid) for m in await acct.list_messages(mbox.id)]


async def test_store_delivery(tmp_path: Path) -> None:
    store, d = await setup(tmp_path)
    requeue = Requeue()
    local = StoreDelivery(store, d, requeue)
    reply = await local.deliver("", "alice@a.test", DATA)
    assert reply.ok
    assert await inbox(store, "alice@a.test") == [b"Return-Path: <>\r\n" + DATA]
    reply = await local.deliver("bob@b.test", "team@a.test", DATA)
    assert reply.ok and len(await inbox(store, "alice@a.test")) == 2
    ((env, data),) = requeue.calls
    assert [r.address for r in env.recipients] == ["carol@c.test"] and data == DATA
    reply = await local.deliver("", "nobody@a.test", DATA)
    assert (reply.code, reply.status) == (550, "5.1.1")


async def test_mail_layer_delivery(tmp_path: Path) -> None:
    store, d = await setup(tmp_path)
    requeue = Requeue()
    local = MailLocalDelivery(MailDelivery(store, d, tmp_path / "mbox"), tmp_path / "tmp", requeue)
    reply = await local.deliver("", "alice@a.test", DATA)
    assert reply.ok
    (got,) = await inbox(store, "alice@a.test")
    assert got.startswith(b"Return-Path: <>\r\n") and got.endswith(DATA)
    assert (await local.deliver("x@b.test", "team@a.test", DATA)).ok
    assert [r.address for r in requeue.calls[0][0].recipients] == ["carol@c.test"]
    reply = await local.deliver("", "nobody@a.test", DATA)
    assert reply.permanent and reply.status == "5.1.1"
    assert list((tmp_path / "tmp").iterdir()) == []  # scratch files are removed
