"""The queue's local hand-off (DSNs to local senders, local alias targets) done by the mail layer's
delivery, as app.py wires it: replies the queue can record, remote alias targets requeued."""

from __future__ import annotations

from pathlib import Path

from carteiro.app import QueueHandoff, make_queue_service, open_local_delivery
from carteiro.config import loads
from carteiro.directory.accounts import Directory
from carteiro.queue.api import Envelope
from carteiro.store.api import MessageSource
from carteiro.store.memory import MemoryMailStore

DATA = b"Subject: report\r\n\r\nbody\r\n"
CONFIG = 'hostname = "mx.a.test"\ndomains = ["a.test"]\n[smtp]\nmbox_lock_timeout = 7.0\n'


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
    d.add_alias("out@a.test", "dave@d.test")
    await store.create_account("alice@a.test")
    return store, d


async def inbox(store: MemoryMailStore, account: str) -> list[bytes]:
    acct = await store.account(account)
    mbox = await acct.get_mailbox("INBOX")
    return [await acct.read_message(mbox.id, m.uid) for m in await acct.list_messages(mbox.id)]


async def test_mail_layer_delivery(tmp_path: Path) -> None:
    store, d = await setup(tmp_path)
    cfg = loads(CONFIG, data_dir=tmp_path)
    requeue = Requeue()
    local = QueueHandoff(open_local_delivery(cfg, store, d), requeue)
    reply = await local.deliver("", "alice@a.test", DATA)
    assert reply.ok
    assert await inbox(store, "alice@a.test") == [b"Return-Path: <>\r\n" + DATA]
    assert (await local.deliver("x@b.test", "team@a.test", DATA)).ok
    ((env, data),) = requeue.calls
    assert env.mail_from == "x@b.test" and data == DATA
    assert [r.address for r in env.recipients] == ["carol@c.test"]
    assert len(await inbox(store, "alice@a.test")) == 2
    reply = await local.deliver("", "nobody@a.test", DATA)
    assert reply.permanent and reply.status == "5.1.1"


async def test_alias_targets_without_a_queue_are_retried(tmp_path: Path) -> None:
    store, d = await setup(tmp_path)
    local = QueueHandoff(open_local_delivery(loads(CONFIG, data_dir=tmp_path), store, d), None)
    reply = await local.deliver("x@b.test", "out@a.test", DATA)
    assert (reply.code, reply.status) == (451, "4.3.0")
    reply = await local.deliver("x@b.test", "team@a.test", DATA)
    assert reply.code == 451 and await inbox(store, "alice@a.test") == []


async def test_the_queue_delivers_as_configured(tmp_path: Path) -> None:
    """The queue files mail through the same delivery as SMTP and `carteiro deliver`, with the
    same [smtp] settings (it used to ignore mbox_lock_timeout)."""
    store, d = await setup(tmp_path)
    svc = make_queue_service(loads(CONFIG, data_dir=tmp_path), store, d)
    local = svc.worker.local
    assert isinstance(local, QueueHandoff)
    assert local.delivery.mbox.lock_timeout == 7.0
