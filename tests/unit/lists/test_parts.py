"""The lists' pure parts: addresses, raw header edits, handlers, rules, commands, DMARC records,
bounce parsing (RFC 3464 and the common non-standard forms)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.lists import addresses, bounces, commands, handlers, rules
from carteiro.lists.dmarc import DnsPolicy, TxtStatus, organizational_domain, parse_record
from carteiro.lists.message import RawMessage
from carteiro.lists.model import MailingList, Member, SettingError, Settings

LISTS = {"dev@l.test", "my.list@l.test"}


def test_list_addresses() -> None:
    p = lambda a: addresses.parse(a, LISTS.__contains__)  # noqa: E731
    assert p("dev@l.test") == addresses.ListAddress("dev@l.test", "post")
    assert p("DEV@L.TEST") == addresses.ListAddress("dev@l.test", "post")
    assert p("dev-request@l.test") == addresses.ListAddress("dev@l.test", "request")
    assert p("dev-join@l.test").role == "join"  # type: ignore[union-attr]
    assert p("dev-subscribe@l.test").role == "join"  # type: ignore[union-attr]
    assert p("dev-unsubscribe@l.test").role == "leave"  # type: ignore[union-attr]
    assert p("dev-owner@l.test").role == "owner"  # type: ignore[union-attr]
    assert p("dev-bounces+bob=b.test@l.test") == addresses.ListAddress(
        "dev@l.test", "bounces", "bob=b.test"
    )
    assert p("dev-confirm+abc@l.test") == addresses.ListAddress("dev@l.test", "confirm", "abc")
    assert p("my.list-leave@l.test") == addresses.ListAddress("my.list@l.test", "leave")
    for other in (
        "dev-request+x@l.test",
        "dev+x@l.test",
        "dev-foo@l.test",
        "dev@other.test",
        "x-request@l.test",
        "-join@l.test",
        "dev",
    ):
        assert p(other) is None, other


def test_raw_message_edits_keep_the_rest_byte_for_byte() -> None:
    raw = (
        b"Received: from x\r\n\tby y\r\nFrom: A <a@x.test>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
        b"DKIM-Signature: v=1;\r\n b=abc\r\n\r\nbody\r\n.\r\n"
    )
    m = RawMessage.parse(raw)
    assert m.to_bytes() == raw
    assert m.get("Subject") == "café"
    assert m.addresses("From") == [("A", "a@x.test")]
    m.prepend("List-Id", "<dev.l.test>")
    m.replace("Subject", "[dev] café")
    out = m.to_bytes()
    assert out.startswith(b"List-Id: <dev.l.test>\r\nReceived: from x\r\n\tby y\r\n")
    assert b"Subject: =?utf-8?" in out and out.endswith(
        b"DKIM-Signature: v=1;\r\n b=abc\r\n\r\nbody\r\n.\r\n"
    )
    assert RawMessage.parse(out).get("Subject") == "[dev] café"


def _ml(**kw: object) -> MailingList:
    s = Settings()
    for k, v in kw.items():
        setattr(s, k, v)
    return MailingList("dev@l.test", ["owner@l.test"], s)


def _run(raw: bytes, ml: MailingList, strict: bool = False) -> RawMessage:
    m = RawMessage.parse(raw)
    author = m.addresses("From")[0]
    handlers.run(m, handlers.Context(ml, author, strict))
    return m


POST = b"From: Bob <bob@b.test>\r\nTo: dev@l.test\r\nSubject: Re: hi\r\nReturn-Receipt-To: bob@b.test\r\n\r\nHello.\r\n"


def test_pipeline_adds_list_fields_and_leaves_the_body() -> None:
    m = _run(POST, _ml(description="Dev talk"))
    assert m.get("List-Id") == '"Dev talk" <dev.l.test>'
    assert m.get("List-Post") == "<mailto:dev@l.test>"
    assert m.get("List-Help") == "<mailto:dev-request@l.test?subject=help>"
    assert m.get("Precedence") == "list"
    assert m.get("X-BeenThere") == "dev@l.test"
    assert m.get("Return-Receipt-To") is None  # receipts go to the author alone
    assert m.get("From") == "Bob <bob@b.test>" and m.get("Subject") == "Re: hi"
    assert m.body == b"Hello.\r\n"
    assert _run(POST, _ml(posting="announce")).get("List-Post") == "NO"  # RFC 2369 3.4


def test_subject_prefix_once() -> None:
    ml = _ml(subject_prefix="[dev] ")
    assert _run(POST, ml).get("Subject") == "[dev] Re: hi"
    again = POST.replace(b"Re: hi", b"Re: [dev] Re: hi")
    assert _run(again, ml).get("Subject") == "[dev] Re: Re: hi"


def test_footer_plain_and_mixed_others_untouched() -> None:
    ml = _ml(footer="Unsubscribe: dev-leave@l.test")
    assert _run(POST, ml).body == b"Hello.\r\n-- \r\nUnsubscribe: dev-leave@l.test\r\n"
    mixed = (
        b"From: b@b.test\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
        b"Content-Type: text/plain\r\n\r\nhi\r\n--XX--\r\n"
    )
    body = _run(mixed, ml).body
    assert body.endswith(b"Unsubscribe: dev-leave@l.test\r\n--XX--\r\n")
    assert body.count(b"--XX\r\n") == 2
    signed = (
        b"From: b@b.test\r\nContent-Type: multipart/signed; boundary=S\r\n\r\n--S\r\n"
        b"\r\nhi\r\n--S--\r\n"
    )
    assert _run(signed, ml).body == RawMessage.parse(signed).body


def test_dmarc_rewrite_and_reply_to() -> None:
    m = _run(POST, _ml(), strict=True)
    assert m.get("From") == "Bob via dev <dev@l.test>"
    assert m.get("Reply-To") == "Bob <bob@b.test>"
    assert m.get("X-Original-From") == "Bob <bob@b.test>"
    m = _run(POST, _ml(reply_to="list"), strict=True)
    assert m.get("Reply-To") == "dev@l.test" and m.get("Cc") == "bob@b.test"
    assert _run(POST, _ml(reply_to="list")).get("Reply-To") == "dev@l.test"
    assert _run(POST, _ml(dmarc_mitigation=False), strict=True).get("From") == "Bob <bob@b.test>"


def _post(raw: bytes, ml: MailingList, member: bool = False) -> rules.Decision:
    m = RawMessage.parse(raw)
    senders = tuple(a for _, a in m.addresses("From"))
    mem = Member(senders[0]) if member else None
    return rules.run(rules.Post(ml, senders[0], m, len(raw), senders, mem))


def test_chain() -> None:
    assert _post(POST, _ml(), member=True).action == "accept"
    assert _post(POST, _ml()).action == "hold"  # non-member
    assert _post(POST, _ml(posting="anyone")).action == "accept"
    assert _post(POST, _ml(posting="moderated"), member=True).action == "hold"
    assert _post(POST, _ml(posting="announce"), member=True).action == "reject"
    assert _post(POST, _ml(posting="announce", posters=["bob@b.test"])).action == "accept"
    owner = POST.replace(b"bob@b.test", b"owner@l.test")
    assert _post(owner, _ml(posting="moderated")).action == "accept"
    assert _post(POST, _ml(max_size=10), member=True).rule == "max-size"
    assert _post(POST.replace(b"Re: hi", b"unsubscribe"), _ml(), True).rule == "administrivia"
    looped = b"List-Id: Dev <dev.l.test>\r\n" + POST
    assert _post(looped, _ml(posting="anyone")).action == "discard"
    assert _post(b"X-BeenThere: dev@l.test\r\n" + POST, _ml(posting="anyone")).action == "discard"
    assert _post(b"X-Loop: <DEV@l.test>\r\n" + POST, _ml(posting="anyone")).action == "discard"
    assert _post(b"List-Id: <up.x.test>\r\n" + POST, _ml(posting="anyone")).action == "accept"
    bcc = POST.replace(b"To: dev@l.test", b"To: someone@else.test")
    assert _post(bcc, _ml(posting="anyone"), True).rule == "implicit-destination"
    assert _post(bcc, _ml(posting="anyone", aliases=["someone@else.test"]), True).action == "accept"
    assert _post(bcc, _ml(posting="anyone", explicit_destination=False), True).action == "accept"
    vacation = b"Auto-Submitted: auto-replied\r\n" + POST
    assert _post(vacation, _ml(posting="anyone"), True).rule == "automatic"
    m = RawMessage.parse(POST)
    bounce = rules.Post(_ml(), "", m, 10, ("bob@b.test",), Member("bob@b.test"))
    assert rules.run(bounce).rule == "automatic"
    bounce.approved = True  # a moderator's approval (mail_from "") passes
    assert rules.run(bounce).action == "accept"


def test_settings_from_text() -> None:
    s = Settings()
    s.set("posting", "anyone")
    s.set("archive", "alice@l.test:Lists/dev")
    s.set("dmarc_mitigation", "no")
    s.set("moderators", "A@l.test, b@l.test")
    s.set("bounce_threshold", "2.5")
    assert (s.posting, s.dmarc_mitigation, s.moderators, s.bounce_threshold) == (
        "anyone",
        False,
        ["a@l.test", "b@l.test"],
        2.5,
    )
    for key, value in (
        ("posting", "everyone"),
        ("nope", "1"),
        ("max_size", "x"),
        ("digest", "maybe"),
    ):
        try:
            s.set(key, value)
        except SettingError:
            continue
        raise AssertionError(f"{key}={value} accepted")
    assert Settings.from_json({**s.to_json(), "gone": 1}) == s


def test_request_commands() -> None:
    m = RawMessage.parse(
        b"Subject: subscribe\r\n\r\nhelp\r\ndigest on\r\n\r\nend\r\nunsubscribe\r\n"
    )
    assert [c.name for c in commands.parse(m)] == ["subscribe", "help", "digest"]
    m = RawMessage.parse(
        b"Subject: Re: confirm ABC\r\n\r\n> quoted\r\nconfirm ABC\r\n-- \r\nsig\r\n"
    )
    assert commands.parse(m) == [commands.Command("confirm", ("ABC",))]
    assert commands.parse(RawMessage.parse(b"Subject: hello\r\n\r\nhi there\r\n")) == []


def test_dmarc_records_and_lookup() -> None:
    assert parse_record("v=DMARC1; p=reject; sp=none") == {"p": "reject", "sp": "none"}
    assert parse_record("v=spf1 -all") is None
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"

    class Txt:
        def __init__(self, zone: dict[str, list[str]]) -> None:
            self.zone, self.asked = zone, []  # type: list[str]

        async def txt(self, name: str) -> tuple[TxtStatus, list[str]]:
            self.asked.append(name)
            return ("ok", self.zone[name]) if name in self.zone else ("nxdomain", [])

    import asyncio

    zone = {
        "_dmarc.b.test": ["v=DMARC1; p=reject; sp=quarantine"],
        "_dmarc.n.test": ["v=DMARC1; p=none"],
        "_dmarc.two.test": ["v=DMARC1; p=reject"] * 2,
    }
    pol = DnsPolicy(Txt(zone))
    run = asyncio.run
    assert run(pol.policy("b.test")) == "reject"
    assert run(pol.policy("mail.b.test")) == "quarantine"  # RFC 7489 6.6.3: the org's sp=
    assert run(pol.policy("n.test")) == "none"
    assert run(pol.policy("x.test")) is None
    assert run(pol.policy("two.test")) is None  # two records: none applies


DSN = b"""From: MAILER-DAEMON@mx.b.test\r
Subject: Undelivered Mail Returned to Sender\r
Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r
MIME-Version: 1.0\r
\r
--B\r
Content-Type: text/plain\r
\r
I could not deliver it.\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.b.test\r
\r
Final-Recipient: rfc822; bob@b.test\r
Action: failed\r
Status: 5.1.1\r
\r
Final-Recipient: rfc822; carol@b.test\r
Action: delayed\r
Status: 4.4.1\r
\r
Original-Recipient: rfc822;Dan@b.test\r
Final-Recipient: rfc822; dan2@b.test\r
Action: failed\r
Status: 5.2.2\r
--B\r
Content-Type: message/rfc822\r
\r
From: x@l.test\r
\r
To: eve@e.test: 550 no\r
--B--\r
"""


def test_bounce_forms() -> None:
    assert bounces.failed_recipients(DSN) == ["bob@b.test", "dan@b.test"]
    delayed = DSN.replace(b"Action: failed", b"Action: delayed")
    assert bounces.failed_recipients(delayed) == []
    qmail = (
        b"Subject: failure notice\r\n\r\nHi. This is the qmail-send program at x.test.\r\n"
        b"I'm afraid I wasn't able to deliver...\r\n\r\n<bob@x.test>:\r\nSorry, no mailbox\r\n"
    )
    assert bounces.failed_recipients(qmail) == ["bob@x.test"]
    exim = (
        b"Subject: Mail delivery failed\r\n\r\nThis message was created automatically.\r\n"
        b"A message that you sent could not be delivered. The following address(es) failed:"
        b"\r\n\r\n  carol@y.test\r\n    SMTP error: 550 unknown\r\n\r\n------ copy\r\n"
    )
    assert bounces.failed_recipients(exim) == ["carol@y.test"]
    postfix = (
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\n<dave@z.test>: host mx.z.test"
        b" said: 550 5.1.1 User unknown\r\n"
    )
    assert bounces.failed_recipients(postfix) == ["dave@z.test"]
    assert bounces.failed_recipients(b"Subject: lunch?\r\n\r\n<x@y.test>: 550 at noon\r\n") == []


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_bounce_parsing_never_raises(data: bytes) -> None:
    assert isinstance(bounces.failed_recipients(data), list)
    RawMessage.parse(data).to_bytes()


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_address_parsing_never_raises(text: str) -> None:
    addresses.parse(text, LISTS.__contains__)
    commands.parse(RawMessage.parse(text.encode("utf-8", "surrogatepass")))


def test_bounce_scan_is_linear_on_hostile_input() -> None:
    import time

    hostile = b"Subject: undeliverable\r\n\r\n" + b"a" * 200_000 + b"@" + b"b." * 20_000
    t = time.perf_counter()
    bounces.failed_recipients(hostile)
    assert time.perf_counter() - t < 5  # a catastrophic regex would take minutes


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1500), st.booleans())
def test_pipeline_never_raises(data: bytes, strict: bool) -> None:
    ml = _ml(subject_prefix="[dev] ", footer="bye", reply_to="list")
    m = RawMessage.parse(b"From: x@y.test\r\n" + data)
    handlers.run(m, handlers.Context(ml, ("", "x@y.test"), strict))
    out = RawMessage.parse(m.to_bytes())
    assert out.get("List-Id") == "<dev.l.test>"
