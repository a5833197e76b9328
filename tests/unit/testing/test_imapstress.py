"""The stress checker's own rules (carteiro/testing/imapstress.py): each is fed responses that
break it, and a correct sequence that does not, so that a clean run against a server means
something."""

from __future__ import annotations

import random

from carteiro.proto.imap.client import ResponseReader
from carteiro.testing.imapstress import Client, Shared


def client(shared: Shared | None = None, n: int = 0, mode: str = "plain") -> Client:
    c = Client(n, "127.0.0.1", 0, "u", "p", "box", shared or Shared(), random.Random(0))
    c.session = 1
    c.mode = mode
    c.model.defined = frozenset({"\\Seen", "\\Deleted", "$Own0", "$Own1"})
    return c


def feed(c: Client, *lines: bytes) -> list[str]:
    reader = ResponseReader()
    reader.feed(b"".join(line + b"\r\n" for line in lines))
    while (r := reader.next()) is not None:
        c.untagged(r)
    return c.shared.errors


def test_a_correct_session_has_no_finding() -> None:
    c = client(mode="qresync")
    errors = feed(
        c,
        b"* 3 EXISTS",
        b"* 1 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (7))",
        b"* 2 FETCH (UID 6 FLAGS () MODSEQ (8))",
        b"* 3 FETCH (UID 9 FLAGS ($Own0) MODSEQ (9))",
        b"* 2 FETCH (UID 6 FLAGS (\\Deleted) MODSEQ (10))",
        b"* VANISHED 6",
        b"* 3 EXISTS",
        b"* 3 FETCH (UID 11 FLAGS (\\Recent) MODSEQ (12))",
    )
    assert errors == []
    assert c.known() == [4, 9, 11]


def test_exists_never_shrinks() -> None:
    c = client()
    assert any("EXISTS 2 below" in e for e in feed(c, b"* 3 EXISTS", b"* 2 EXISTS"))


def test_expunge_out_of_range_and_during_fetch() -> None:
    c = client()
    c.verb = "FETCH"
    errors = feed(c, b"* 2 EXISTS", b"* 1 EXPUNGE", b"* 5 EXPUNGE")
    assert any("EXPUNGE during FETCH" in e for e in errors)
    assert any("EXPUNGE 5 of 1" in e for e in errors)
    ok = client()
    ok.verb = "UID"  # UID FETCH/STORE/SEARCH may carry it (RFC 9051 7.5.1)
    assert feed(ok, b"* 2 EXISTS", b"* 1 EXPUNGE") == []


def test_a_sequence_number_keeps_its_uid_and_uids_ascend() -> None:
    c = client()
    errors = feed(
        c,
        b"* 3 EXISTS",
        b"* 1 FETCH (UID 10)",
        b"* 3 FETCH (UID 12)",
        b"* 1 FETCH (UID 11)",  # changed
        b"* 2 FETCH (UID 13)",  # above the one after it
    )
    assert any("message 1 was UID 10" in e for e in errors)
    assert any("UID 13 at 2 breaks" in e for e in errors)


def test_a_new_message_has_a_uid_above_all_seen() -> None:
    c = client()
    errors = feed(
        c,
        b"* 1 EXISTS",
        b"* 1 FETCH (UID 20)",
        b"* 1 EXPUNGE",
        b"* 1 EXISTS",
        b"* 1 FETCH (UID 15)",
    )
    assert any("new message 1 has UID 15, not above 20" in e for e in errors)


def test_keywords_are_announced_in_flags() -> None:
    errors = feed(client(), b"* 1 EXISTS", b"* 1 FETCH (UID 1 FLAGS ($Unannounced))")
    assert any("keyword $Unannounced" in e for e in errors)


def test_recent_in_one_session_only() -> None:
    shared = Shared()
    a, b = client(shared, 0), client(shared, 1)
    feed(a, b"* 1 EXISTS", b"* 1 FETCH (UID 1 FLAGS (\\Recent))")
    feed(a, b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen))")  # the same session again: fine
    assert shared.errors == []
    feed(b, b"* 1 EXISTS", b"* 1 FETCH (UID 1 FLAGS (\\Recent))")
    assert any("\\Recent in two sessions" in e for e in shared.errors)


def test_own_keyword_reads_back_as_stored() -> None:
    c = client()
    feed(c, b"* 1 EXISTS", b"* 1 FETCH (UID 1 FLAGS ($Own0))")
    assert c.shared.errors == []
    errors = feed(c, b"* 1 FETCH (UID 1 FLAGS ())")
    assert any("own keyword read back False, stored True" in e for e in errors)


def test_modseq_never_goes_down_and_moves_with_a_change() -> None:
    c = client(mode="condstore")
    errors = feed(
        c,
        b"* 1 EXISTS",
        b"* 1 FETCH (UID 1 FLAGS () MODSEQ (5))",
        b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (5))",  # other flags, same MODSEQ
        b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (4))",  # down
        b"* 1 FETCH (UID 1 FLAGS (\\Seen))",  # a change reported without MODSEQ
    )
    assert any("other flags at MODSEQ 5" in e for e in errors)
    assert any("MODSEQ 5 then 4" in e for e in errors)
    assert any("without MODSEQ" in e for e in errors)


def test_qresync_sessions_get_vanished_not_expunge() -> None:
    c = client(mode="qresync")
    assert any("EXPUNGE after ENABLE QRESYNC" in e for e in feed(c, b"* 1 EXISTS", b"* 1 EXPUNGE"))
    plain = client()
    assert any("unexpected" in e for e in feed(plain, b"* 1 EXISTS", b"* VANISHED 1"))


def test_vanished_of_a_uid_never_fetched_takes_its_place() -> None:
    c = client(mode="qresync")
    feed(c, b"* 4 EXISTS", b"* 1 FETCH (UID 5)", b"* 4 FETCH (UID 20)", b"* VANISHED 7")
    assert c.model.uids == [5, None, 20]
    feed(c, b"* 2 FETCH (UID 8)")
    assert c.shared.errors == []


def test_a_uid_keeps_its_octets() -> None:
    shared = Shared()
    shared.octets("a", ("box", 1), "d1", "APPENDUID")
    shared.octets("b", ("box", 1), "d1", "BODY[]")
    assert shared.errors == []
    shared.octets("b", ("box", 1), "d2", "BODY[]")
    assert any("other octets" in e for e in shared.errors)
