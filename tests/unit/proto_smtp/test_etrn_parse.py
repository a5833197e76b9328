"""ETRN (RFC 1985) and TURN parsing, and ETRN's place in the command sequence."""

from __future__ import annotations

from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp.replies import Reply
from carteiro.proto.smtp.server import Invalid, ServerMachine


def test_etrn_forms() -> None:
    assert C.parse("ETRN branch.test", True) == C.Etrn("branch.test")
    assert C.parse("etrn @Branch.Test.", True) == C.Etrn("branch.test", True)
    bad = C.parse("ETRN", True)
    assert isinstance(bad, Reply) and bad.code == 501
    bad = C.parse("ETRN a..b", True)
    assert isinstance(bad, Reply) and bad.code == 501
    queue = C.parse("ETRN #queue1", True)
    assert isinstance(queue, Reply) and queue.code == 458
    turn = C.parse("TURN", True)
    assert isinstance(turn, C.Unsupported) and turn.reply.code == 502
    assert "unsafe" in turn.reply.text


def test_etrn_needs_helo_and_no_transaction() -> None:
    m = ServerMachine()
    m.receive_data(b"ETRN a.test\r\n")
    ev = m.next_event()
    assert isinstance(ev, Invalid) and ev.reply.code == 503
    m.send(ev.reply)
    m.receive_data(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nETRN a.test\r\n")
    ev = m.next_event()
    m.send(Reply(250, "", "ok"))
    ev = m.next_event()
    m.send(Reply(250, "2.1.0", "ok"))
    ev = m.next_event()
    assert isinstance(ev, Invalid) and ev.reply.code == 503


def test_atrn_forms() -> None:
    assert C.parse("ATRN", True) == C.Atrn()
    assert C.parse("ATRN a.test,B.test", True) == C.Atrn(("a.test", "b.test"))
    bad = C.parse("ATRN a.test,,b", True)
    assert isinstance(bad, Reply) and bad.code == 501
