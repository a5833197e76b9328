"""VERP in the queue (a list's fan-out): one envelope sender and one transaction per recipient,
each copy with its own header fields, and bounces going to the recipient's own sender."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from queue_fakes import MESSAGE, FakeTransport, make_queue, reply_all, until

from carteiro.core import verp
from carteiro.queue import spool_db
from carteiro.queue.api import Envelope, QueuedRecipient


def test_verp_encode_decode() -> None:
    assert verp.encode("dev-bounces@l.test", "bob@b.test") == "dev-bounces+bob=b.test@l.test"
    assert verp.encode("", "bob@b.test") == ""
    assert verp.decode("bob=b.test") == "bob@b.test"
    assert verp.decode("a=b=c.test") == "a=b@c.test"  # the last "=" splits
    assert verp.decode("probe.x") is None
    assert verp.decode("=b.test") is None


def _verp_env(*rcpts: tuple[str, bytes]) -> Envelope:
    return Envelope(
        "dev-bounces@a.test",
        tuple(QueuedRecipient(r, headers=h) for r, h in rcpts),
        verp=True,
    )


async def test_each_recipient_gets_its_own_sender_and_headers(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    e = _verp_env(("bob@b.test", b"X-Member: bob\r\n"), ("carol@b.test", b"X-Member: carol\r\n"))
    qid = await q.spool.enqueue(e, MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    sent = {t.recipients[0].address: t for _, t in q.transport.calls}
    assert len(q.transport.calls) == 2  # one transaction each, although one destination
    assert sent["bob@b.test"].mail_from == "dev-bounces+bob=b.test@a.test"
    assert sent["carol@b.test"].mail_from == "dev-bounces+carol=b.test@a.test"
    assert sent["bob@b.test"].message == b"X-Member: bob\r\n" + MESSAGE
    assert sent["carol@b.test"].message == b"X-Member: carol\r\n" + MESSAGE
    await q.stop()


async def test_local_copies_get_the_verp_sender(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    qid = await q.spool.enqueue(_verp_env(("dan@a.test", b"X-M: 1\r\n")), MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    assert q.local.delivered == [
        ("dev-bounces+dan=a.test@a.test", "dan@a.test", b"X-M: 1\r\n" + MESSAGE)
    ]
    await q.stop()


async def test_a_failed_copy_bounces_to_its_own_verp_address(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(550, "5.1.1", "no such user"))
    q = await make_queue(tmp_path, transport=transport)
    qid = await q.spool.enqueue(_verp_env(("bob@b.test", b""), ("carol@b.test", b"")), MESSAGE)
    await until(lambda: qid not in q.spool.messages and len(q.local.delivered) == 2)
    to = sorted(rcpt for _, rcpt, _ in q.local.delivered)
    assert to == ["dev-bounces+bob=b.test@a.test", "dev-bounces+carol=b.test@a.test"]
    await q.stop()


async def test_verp_and_headers_survive_a_restart(tmp_path: Path) -> None:
    q = await make_queue(tmp_path, transport=FakeTransport(handler=reply_all(451, "4.0.0")))
    qid = await q.spool.enqueue(_verp_env(("bob@b.test", b"X-M: b\r\n")), MESSAGE)
    await until(lambda: len(q.transport.calls) == 1)
    await q.stop()
    db = spool_db.connect(tmp_path / "queue.sqlite")
    (m,) = spool_db.load_all(db)
    assert m.id == qid and m.verp and m.recipients[0].headers == b"X-M: b\r\n"
    assert m.sender_for("bob@b.test") == "dev-bounces+bob=b.test@a.test"
    db.close()


def test_an_older_spool_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    old = sqlite3.connect(path)
    schema = re.sub(r"0,(\s*--[^\n]*)\n\s*verp INTEGER[^\n]*", r"0\1", spool_db.SCHEMA)
    schema = schema.replace("    headers BLOB NOT NULL DEFAULT x'',\n", "")
    assert "verp" not in schema and "headers" not in schema
    old.executescript(schema)
    old.close()
    db = spool_db.connect(path)
    cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    rcols = {r[1] for r in db.execute("PRAGMA table_info(recipients)")}
    assert "verp" in cols and "headers" in rcols
    db.close()


async def test_a_signed_message_is_signed_again_with_each_copys_headers(tmp_path: Path) -> None:
    q = await make_queue(tmp_path)
    signed: list[bytes] = []

    def signer(content: bytes) -> bytes:
        signed.append(content)
        return b"Sig: %d\r\n" % len(signed)

    q.spool.signer = signer
    e = Envelope(
        "dev-bounces@a.test",
        (QueuedRecipient("bob@b.test", headers=b"List-Unsubscribe: <https://x/1>\r\n"),),
        verp=True,
        trusted=True,
    )
    qid = await q.spool.enqueue(e, MESSAGE)
    await until(lambda: qid not in q.spool.messages)
    ((_, txn),) = q.transport.calls
    # the enqueue-time signature (Sig: 1) is replaced by one over the copy's own header too
    assert signed == [MESSAGE, b"List-Unsubscribe: <https://x/1>\r\n" + MESSAGE]
    assert txn.message == b"Sig: 2\r\nList-Unsubscribe: <https://x/1>\r\n" + MESSAGE
    await q.stop()
