"""`carteiro deliver` handing alias targets in other domains to the outbound queue: through the
running server's control socket (its worker sends at once) or, with no server, straight into the
spool under its lock (the next start sends). The request is checked: a name in incoming/ only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from queue_fakes import MESSAGE, FakeLocal, FakeResolver, FakeTransport, until

from carteiro.app import make_queue_service
from carteiro.cli_deliver import QueueHandoffError, hand_to_queue
from carteiro.config import loads
from carteiro.directory.accounts import Directory
from carteiro.mailauth.dkim import ensure_dkim_key
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.service import INCOMING, QueueService, envelope_from_wire, envelope_to_wire

RP = b"Return-Path: <alice@a.test>\r\n"
ENV = Envelope(
    "alice@a.test", (QueuedRecipient("bob@b.test", (), "rfc822;fwd@a.test"),), envid="E1"
)


def service(tmp_path: Path, transport: FakeTransport) -> QueueService:
    cfg = loads(
        'hostname = "mx.a.test"\ndomains = ["a.test"]\n[queue]\nretry_schedule = [60.0]\n',
        data_dir=tmp_path,
    )
    resolver = FakeResolver()
    resolver.mx_for("b.test", (10, "mx.b.test"))
    resolver.host("mx.b.test", "127.0.0.3")
    directory = Directory(tmp_path / "directory.sqlite", static_domains=cfg.domains)
    return make_queue_service(cfg, None, directory, transport, resolver, local=FakeLocal())


def lda_file(tmp_path: Path, data: bytes = RP + MESSAGE) -> Path:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    path = tmp_path / "tmp" / "lda-test"
    path.write_bytes(data)
    return path


def test_envelope_wire_round_trip_drops_trust() -> None:
    env = Envelope(
        "a@a.test", (QueuedRecipient("b@b.test", ("SUCCESS",), "rfc822;x@a.test"),), "HDRS", "id1"
    )
    assert envelope_from_wire(envelope_to_wire(env)) == env
    signed = Envelope("a@a.test", env.recipients, auth_user="a@a.test", trusted=True)
    back = envelope_from_wire(envelope_to_wire(signed))
    assert back.auth_user is None and not back.trusted


async def test_running_server_takes_it_and_sends_at_once(tmp_path: Path) -> None:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")  # a stranger's message is never signed
    transport = FakeTransport()
    svc = service(tmp_path, transport)
    await svc.start()
    try:
        src = lda_file(tmp_path)
        qid = await hand_to_queue(tmp_path / "queue", ENV, src, len(RP))
        await until(lambda: len(transport.calls) == 1 and qid not in svc.spool.messages)
        txn = transport.calls[0][1]
        assert txn.message == MESSAGE  # no Return-Path, no DKIM-Signature
        assert txn.mail_from == "alice@a.test"
        assert [(r.address, r.orcpt) for r in txn.recipients] == [
            ("bob@b.test", "rfc822;fwd@a.test")
        ]
        assert src.exists()  # the caller's file is the caller's
        assert os.listdir(tmp_path / "queue" / INCOMING) == []  # the hand-over copy is gone
    finally:
        await svc.stop()


async def test_no_server_writes_the_spool_and_the_next_start_sends(tmp_path: Path) -> None:
    src = lda_file(tmp_path, b"x" * 300_000)  # big: linked into msg/, not inline
    qid = await hand_to_queue(tmp_path / "queue", ENV, src, 0)
    assert (tmp_path / "queue" / "msg" / qid).read_bytes() == b"x" * 300_000
    transport = FakeTransport()
    svc = service(tmp_path, transport)
    await svc.start()
    try:
        await until(lambda: transport.recipients_sent() == ["bob@b.test"])
        assert transport.calls[0][1].message == b"x" * 300_000
    finally:
        await svc.stop()


async def test_a_refusal_is_an_error_for_the_lda(tmp_path: Path) -> None:
    transport = FakeTransport()
    svc = service(tmp_path, transport)
    await svc.start()
    try:

        async def broken(envelope: Envelope, source: Any) -> str:
            raise OSError(28, "No space left on device")

        svc.spool.enqueue = broken  # type: ignore[method-assign]
        src = lda_file(tmp_path)
        try:
            await hand_to_queue(tmp_path / "queue", ENV, src, len(RP))
        except QueueHandoffError as e:
            assert "No space left" in str(e)
        else:
            raise AssertionError("the refusal was not reported")
        assert os.listdir(tmp_path / "queue" / INCOMING) == []
    finally:
        await svc.stop()


async def test_enqueue_requests_are_checked(tmp_path: Path) -> None:
    transport = FakeTransport()
    svc = service(tmp_path, transport)
    await svc.start()
    try:
        incoming = tmp_path / "queue" / INCOMING
        incoming.mkdir()
        (incoming / "m1").write_bytes(MESSAGE)
        wire = envelope_to_wire(ENV)
        for request, error in [
            ({"file": "../queue.sqlite", "envelope": wire}, "file must be a name"),
            ({"file": "/etc/passwd", "envelope": wire}, "file must be a name"),
            ({"file": "nosuch", "envelope": wire}, "no file nosuch"),
            ({"file": "m1", "envelope": {"mail_from": "a@a.test"}}, "recipients"),
            ({"file": "m1", "envelope": {**wire, "body": "HUGE"}}, "body"),
            ({"file": "m1", "envelope": {**wire, "mail_from": "a\r\nRCPT"}}, "mail_from"),
        ]:
            answer = await svc.handle({"op": "enqueue", **request})
            assert not answer["ok"] and error in answer["error"], (request, answer)
        assert not svc.spool.messages
        answer = await svc.handle({"op": "enqueue", "file": "m1", "envelope": wire})
        assert answer["ok"] and answer["id"]
        await until(lambda: transport.recipients_sent() == ["bob@b.test"])
    finally:
        await svc.stop()
