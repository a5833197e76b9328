"""[canonical] address rewriting: full addresses before domains, header fields edited in place
(display names, encoded words and other bytes kept), no partial matches, and only our users'
mail rewritten when queued."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.rewrite import AddressMap
from carteiro.queue.spool import FileSpool

MAP = AddressMap(
    {
        "alice@host.internal": "alice.smith@example.test",
        "@host.internal": "@example.test",
    }
)


def test_map() -> None:
    assert MAP.map("alice@host.internal") == "alice.smith@example.test"
    assert MAP.map("ALICE@Host.Internal") == "alice.smith@example.test"
    assert MAP.map("bob@host.internal") == "bob@example.test"
    assert MAP.map("bob@other.test") == "bob@other.test"
    assert MAP.map("") == "" and MAP.map("postmaster") == "postmaster"
    assert not AddressMap({})


def test_headers_in_place() -> None:
    head = (
        b"From: =?utf-8?q?Al=C3=ADce?= <alice@host.internal>\r\n"
        b'To: bob@host.internal, "Carol (x)" <carol@other.test>,\r\n'
        b"\txbob@host.internal.evil\r\n"
        b"Subject: alice@host.internal stays in the subject\r\n"
        b"Reply-To: team@host.internal"
    )
    out = MAP.header_section(head)
    assert out == (
        b"From: =?utf-8?q?Al=C3=ADce?= <alice.smith@example.test>\r\n"
        b'To: bob@example.test, "Carol (x)" <carol@other.test>,\r\n'
        b"\txbob@host.internal.evil\r\n"
        b"Subject: alice@host.internal stays in the subject\r\n"
        b"Reply-To: team@example.test"
    )
    msg = head + b"\r\n\r\nbody mentions alice@host.internal\r\n"
    assert MAP.message(msg).endswith(b"\r\n\r\nbody mentions alice@host.internal\r\n")


@given(st.binary(max_size=300))
def test_never_crashes(data: bytes) -> None:
    MAP.message(data.replace(b"\n", b"\r\n") + b"\r\n\r\n")


async def test_spool_rewrites_only_trusted_mail(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path / "q", rewriter=MAP)
    await spool.open()
    try:
        msg = b"From: alice@host.internal\r\nTo: x@remote.test\r\n\r\nhi\r\n"
        ours = Envelope(
            "alice@host.internal", (QueuedRecipient("bob@host.internal"),), trusted=True
        )
        theirs = Envelope("alice@host.internal", (QueuedRecipient("x@remote.test"),))
        big = tmp_path / "big.eml"
        big.write_bytes(msg + b"x" * 300_000 + b"\r\n")
        a = spool.messages[await spool.enqueue(ours, msg)]
        b = spool.messages[await spool.enqueue(theirs, msg)]
        c = spool.messages[await spool.enqueue(ours, big)]
        assert a.mail_from == "alice.smith@example.test"
        assert [r.address for r in a.recipients] == ["bob@example.test"]
        assert (await spool.content(a)).startswith(b"From: alice.smith@example.test\r\n")
        assert b.mail_from == "alice@host.internal" and await spool.content(b) == msg
        assert (await spool.content(c)).startswith(b"From: alice.smith@example.test\r\n")
        assert not list((tmp_path / "q" / "incoming").glob("rewrite-*"))
    finally:
        await spool.close()
