"""Building outgoing messages: encodings a recipient's client shows right, threading headers,
address errors, Bcc kept out of the header, forwarding as an attachment."""

from __future__ import annotations

import email
import email.policy

import pytest

from carteiro.web.compose import Attachment, ComposeError, Draft, build, forward, reply, to_bytes
from carteiro.web.message import parse, view


def roundtrip(d: Draft, for_draft: bool = False) -> tuple[email.message.EmailMessage, list[str]]:
    msg, rcpts = build(d, "mail.example.test", for_draft=for_draft)
    data = to_bytes(msg)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))  # RFC 5322 2.1.1
    assert data.isascii()  # 7-bit clean: RFC 2047 headers, QP/base64 bodies
    return parse(data), rcpts


def test_non_ascii_subject_names_body_and_attachment() -> None:
    d = Draft(
        sender="alice@example.test",
        to="Zoë Ålander <zoe@example.org>, bob@example.test",
        cc="Çedilha <c@example.org>",
        bcc="hidden@example.org",
        subject="Relatório — açaí ☕",
        body="Olá,\n" + "palavra " * 200 + "\nfim",
        attachments=[Attachment("relatório 2024.pdf", "application/pdf", b"%PDF\x00\xff")],
    )
    msg, rcpts = roundtrip(d)
    assert str(msg["Subject"]) == "Relatório — açaí ☕"
    assert msg["To"].addresses[0].display_name == "Zoë Ålander"
    assert "Bcc" not in msg
    assert rcpts == ["zoe@example.org", "bob@example.test", "c@example.org", "hidden@example.org"]
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Olá,\npalavra") and text.rstrip().endswith("fim")
    att = next(msg.iter_attachments())
    assert att.get_filename() == "relatório 2024.pdf" and att.get_content() == b"%PDF\x00\xff"
    assert msg["Message-ID"].endswith("@mail.example.test>")


def test_draft_keeps_bcc_and_needs_no_recipient() -> None:
    msg, _ = roundtrip(Draft(sender="a@example.test", bcc="b@example.test"), for_draft=True)
    assert msg["Bcc"] == "b@example.test"
    roundtrip(Draft(sender="a@example.test"), for_draft=True)


@pytest.mark.parametrize(
    "to",
    [
        "not an address",
        "a@",
        "@example.org",
        "a b@example.org",
        "x@exa mple.org",
        "ok@example.org, oops",
    ],
)
def test_bad_addresses_are_named(to: str) -> None:
    with pytest.raises(ComposeError, match=r"To: .* is not a valid address"):
        build(Draft(sender="a@example.test", to=to), "h")


def test_no_recipient() -> None:
    with pytest.raises(ComposeError, match="at least one recipient"):
        build(Draft(sender="a@example.test"), "h")


ORIGINAL = (
    b"From: Bob <bob@example.org>\r\nTo: alice@example.test, Carol <carol@example.org>\r\n"
    b"Cc: dave@example.org\r\nReply-To: list@example.org\r\nSubject: Re: Fwd: plan\r\n"
    b"Message-ID: <m2@example.org>\r\nReferences: <m0@example.org> <m1@example.org>\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n\r\nline one\r\nline two\r\n"
)


def test_reply_threads_and_quotes() -> None:
    v = view(ORIGINAL)
    d = reply(v.msg, v.text, "alice@example.test", reply_all=False)
    assert d.to == "list@example.org"  # Reply-To wins
    assert d.subject == "Re: plan"
    assert d.in_reply_to == "<m2@example.org>"
    assert d.references == "<m0@example.org> <m1@example.org> <m2@example.org>"
    assert "> line one\n> line two" in d.body


def test_reply_all_leaves_me_out() -> None:
    v = view(ORIGINAL)
    d = reply(v.msg, v.text, "Alice@Example.test", reply_all=True)
    assert "alice@example.test" not in d.cc.lower()
    assert "carol@example.org" in d.cc and "dave@example.org" in d.cc


def test_forward_as_attachment_carries_the_original() -> None:
    v = view(ORIGINAL)
    d = forward(v.msg, ORIGINAL, v.text, "alice@example.test", inline=False)
    d.to = "x@example.org"
    msg, _ = roundtrip(d)
    assert msg["Subject"] == "Fwd: plan"
    part = next(p for p in msg.walk() if p.get_content_type() == "message/rfc822")
    inner = part.get_payload()[0]
    assert inner["Message-ID"] == "<m2@example.org>"
    inline = forward(v.msg, ORIGINAL, v.text, "alice@example.test", inline=True)
    assert "line two" in inline.body and "From: Bob <bob@example.org>" in inline.body
