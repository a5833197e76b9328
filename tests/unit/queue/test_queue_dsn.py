"""RFC 3464 DSN building: structure, fields, RET, ENVID/ORCPT, RFC 6533 international form."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest

from carteiro.queue.dsn import RecipientReport, build_dsn, wanted, xtext_decode, xtext_encode

ORIGINAL = (
    b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hi\r\nMessage-ID: <x@a.test>\r\n\r\n"
    b"Body line\r\n"
)
T = 1_700_000_000.0


def parse(data: bytes) -> tuple[Message, list[Message]]:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    return msg, parts


def failed(address: str = "bob@b.test", **kw: object) -> RecipientReport:
    args: dict[str, object] = {
        "address": address,
        "action": "failed",
        "status": "5.1.1",
        "remote_mta": "mx.b.test",
        "diagnostic": "550 5.1.1 no such user",
        "last_attempt": T,
    }
    args.update(kw)
    return RecipientReport(**args)  # type: ignore[arg-type]


def test_bounce_structure_and_fields() -> None:
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        reports=[failed(orcpt="rfc822;bob+2Bx@b.test"), failed("carol@b.test", status="5.2.2")],
        original=ORIGINAL,
        arrival=T - 60,
        now=T,
        envid="QQ+3D1",
        token="tok",
    )
    assert d.body == "7BIT" and not d.smtputf8
    msg, parts = parse(d.message)
    assert msg["To"] == "<alice@a.test>"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.a.test>"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    text = parts[0].get_payload()
    assert isinstance(text, str)
    assert "<bob@b.test>: host mx.b.test said: 550 5.1.1 no such user" in text
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) == 3
    assert blocks[0]["Reporting-MTA"] == "dns; mx.a.test"
    assert blocks[0]["Original-Envelope-Id"] == "QQ=1"
    assert "Arrival-Date" in blocks[0]
    b = blocks[1]
    assert b["Original-Recipient"] == "rfc822;bob+x@b.test"
    assert b["Final-Recipient"] == "rfc822; bob@b.test"
    assert b["Action"] == "failed" and b["Status"] == "5.1.1"
    assert b["Remote-MTA"] == "dns; mx.b.test"
    assert b["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert "Last-Attempt-Date" in b
    assert blocks[2]["Status"] == "5.2.2"
    returned = parts[2].get_payload()
    assert isinstance(returned, list)
    assert returned[0]["Message-ID"] == "<x@a.test>"
    assert b"Body line" in d.message
    assert all(len(line) <= 998 for line in d.message.split(b"\r\n"))


@pytest.mark.parametrize(
    ("ret", "size", "content_type"),
    [
        ("HDRS", 10, "text/rfc822-headers"),
        ("FULL", 10, "message/rfc822"),
        (None, 10, "message/rfc822"),
        (None, 2 * 1024 * 1024, "text/rfc822-headers"),  # big: headers only unless RET=FULL
        ("FULL", 2 * 1024 * 1024, "message/rfc822"),
    ],
)
def test_ret_decides_what_is_returned(ret: str | None, size: int, content_type: str) -> None:
    original = ORIGINAL + b"x" * size + b"\r\n"
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        reports=[failed()],
        original=original,
        arrival=T,
        now=T,
        ret=ret,
    )
    _, parts = parse(d.message)
    assert parts[2].get_content_type() == content_type
    assert (b"xxxxxxxx" in d.message) == (content_type == "message/rfc822")


def test_delay_notice_returns_headers_only_and_says_until_when() -> None:
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        reports=[
            RecipientReport(
                "bob@b.test",
                "delayed",
                "4.4.1",
                diagnostic="451 4.4.1 connect to mx.b.test: refused",
                diagnostic_is_smtp=False,
                will_retry_until=T + 86400,
            )
        ],
        original=ORIGINAL,
        arrival=T - 4 * 3600,
        now=T,
        ret="FULL",
    )
    msg, parts = parse(d.message)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text = parts[0].get_payload()
    assert isinstance(text, str) and "WARNING ONLY" in text and "4 hour" in text
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    assert blocks[1]["Action"] == "delayed"
    assert blocks[1]["Diagnostic-Code"].startswith("X-Carteiro; 451 4.4.1")
    assert "Will-Retry-Until" in blocks[1]
    assert parts[2].get_content_type() == "text/rfc822-headers"


def test_internationalised_message_uses_rfc6533_types() -> None:
    original = "From: josé@a.test\r\nTo: zoë@b.test\r\nSubject: olá\r\n\r\nçà\r\n".encode()
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="josé@a.test",
        reports=[failed("zoë@b.test")],
        original=original,
        arrival=T,
        now=T,
        utf8=True,
    )
    assert d.smtputf8 and d.body == "8BITMIME"
    msg, parts = parse(d.message)
    assert msg.get_param("report-type") == "global-delivery-status"
    assert [p.get_content_type() for p in parts][1:] == [
        "message/global-delivery-status",
        "message/global",
    ]
    assert "Final-Recipient: utf-8; zoë@b.test".encode() in d.message


def test_8bit_original_makes_an_8bitmime_dsn() -> None:
    original = b"From: a@a.test\r\nSubject: x\r\n\r\ncaf\xc3\xa9\r\n"
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="a@a.test",
        reports=[failed()],
        original=original,
        arrival=T,
        now=T,
    )
    assert d.body == "8BITMIME" and not d.smtputf8
    assert b"Content-Transfer-Encoding: 8bit" in d.message


def test_no_dsn_to_the_null_sender() -> None:
    with pytest.raises(ValueError):
        build_dsn(
            reporting_mta="m", sender="", reports=[failed()], original=ORIGINAL, arrival=T, now=T
        )


def test_notify_rules() -> None:
    # RFC 3461 4.1: default FAILURE (and DELAY); NEVER means none; SUCCESS only when asked
    assert wanted("failed", (), "a@a.test")
    assert wanted("delayed", (), "a@a.test")
    assert not wanted("delivered", (), "a@a.test")
    assert not wanted("failed", ("NEVER",), "a@a.test")
    assert wanted("relayed", ("SUCCESS",), "a@a.test")
    assert not wanted("failed", ("SUCCESS",), "a@a.test")
    assert not wanted("delayed", ("FAILURE",), "a@a.test")
    assert not wanted("failed", ("FAILURE",), "")


def test_xtext_round_trip() -> None:
    for s in ("plain", "a+b=c", "sp ace", "ünï"):
        assert xtext_decode(xtext_encode(s)) == s
    assert xtext_encode("a+b=c") == "a+2Bb+3Dc"
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"


def _status_block(d_message: bytes, index: int = 1) -> Message:
    _, parts = parse(d_message)
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    block = blocks[index]
    assert isinstance(block, Message)
    return block


def test_orcpt_utf8_type_in_global_report_is_written_as_utf8_address() -> None:
    # RFC 6533 3: the SMTP server received ORCPT=utf-8;zo\x{EB}@b.test (utf-8-addr-xtext); a
    # message/global-delivery-status carries the utf-8-address form, i.e. UTF-8 itself.
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="josé@a.test",
        reports=[failed("zoë@b.test", orcpt="utf-8;zo\\x{EB}@b.test")],
        original=ORIGINAL,
        arrival=T,
        now=T,
    )
    assert "Original-Recipient: utf-8;zoë@b.test\r\n".encode() in d.message
    assert "Final-Recipient: utf-8; zoë@b.test\r\n".encode() in d.message
    assert b"\\x{" not in d.message


def test_orcpt_utf8_unitext_in_global_report_is_decoded() -> None:
    # utf-8-addr-unitext: raw UTF-8 with \x{..} only for ASCII specials ("+" here).
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="josé@a.test",
        reports=[failed("zoë+x@b.test", orcpt="utf-8;zoë\\x{2B}x@b.test")],
        original=ORIGINAL,
        arrival=T,
        now=T,
    )
    assert "Original-Recipient: utf-8;zoë+x@b.test\r\n".encode() in d.message


def test_orcpt_utf8_type_in_plain_report_stays_ascii_xtext_form() -> None:
    # RFC 6533 3: outside message/global-delivery-status the utf-8 type is written in its 7-bit
    # utf-8-addr-xtext form; a message/delivery-status is ASCII only (RFC 3464 2.1.1).
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        reports=[failed("bob@b.test", orcpt="utf-8;zoë@b.test")],
        original=ORIGINAL,
        arrival=T,
        now=T,
    )
    msg, _parts = parse(d.message)
    assert msg.get_param("report-type") == "delivery-status"
    assert d.message.isascii() and d.body == "7BIT"
    assert _status_block(d.message)["Original-Recipient"] == "utf-8;zo\\x{EB}@b.test"
    assert _status_block(d.message)["Final-Recipient"] == "rfc822; bob@b.test"


def test_orcpt_utf8_type_ascii_specials_escaped_in_plain_report() -> None:
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        reports=[failed("bob@b.test", orcpt="utf-8;zo\\x{EB}\\x{2B}x=y@b.test")],
        original=ORIGINAL,
        arrival=T,
        now=T,
    )
    # "+" and "=" are not QCHARs (RFC 6533 3): written as \x{2B} and \x{3D}
    assert (
        _status_block(d.message)["Original-Recipient"] == "utf-8;zo\\x{EB}\\x{2B}x\\x{3D}y@b.test"
    )


def test_orcpt_rfc822_xtext_decoded_in_both_report_kinds() -> None:
    # RFC 3461 4.2 / RFC 3464 2.3.1: the report carries the decoded original address.
    for sender, addr in (("alice@a.test", "bob@b.test"), ("josé@a.test", "zoë@b.test")):
        d = build_dsn(
            reporting_mta="mx.a.test",
            sender=sender,
            reports=[failed(addr, orcpt="RFC822;bob+2Bx+3Dy@b.test")],
            original=ORIGINAL,
            arrival=T,
            now=T,
        )
        assert b"Original-Recipient: rfc822;bob+x=y@b.test\r\n" in d.message


def test_orcpt_rfc822_with_non_ascii_xtext_in_plain_report_stays_ascii() -> None:
    # An rfc822 ORCPT spelling UTF-8 octets (+C3+AB): a message/delivery-status must stay ASCII,
    # so it is written as the utf-8 type in its 7-bit form.
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="alice@a.test",
        reports=[failed("bob@b.test", orcpt="rfc822;zo+C3+AB@b.test")],
        original=ORIGINAL,
        arrival=T,
        now=T,
    )
    assert d.message.isascii()
    assert _status_block(d.message)["Original-Recipient"] == "utf-8;zo\\x{EB}@b.test"


def test_orcpt_rfc822_with_non_ascii_in_global_report() -> None:
    d = build_dsn(
        reporting_mta="mx.a.test",
        sender="josé@a.test",
        reports=[failed("zoë@b.test", orcpt="rfc822;zo+C3+AB@b.test")],
        original=ORIGINAL,
        arrival=T,
        now=T,
    )
    assert "Original-Recipient: utf-8;zoë@b.test\r\n".encode() in d.message
