"""Command-line parsing: paths (RFC 5321 4.1.2), ESMTP parameters (RFC 1870, 6152, 6531, 3461, 4954)."""

from __future__ import annotations

import pytest

from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("EHLO mail.example.org", C.Helo("mail.example.org", True)),
        ("helo [192.0.2.1]", C.Helo("[192.0.2.1]", False)),
        ("EHLO [IPv6:2001:db8::1]", C.Helo("[IPv6:2001:db8::1]", True)),
        ("MAIL FROM:<>", C.Mail("")),
        ("mail from:<a@b.test>", C.Mail("a@b.test")),
        ("MAIL FROM: <a@b.test>", C.Mail("a@b.test")),
        ("MAIL FROM:a@b.test", C.Mail("a@b.test")),
        ("MAIL FROM:<@x.test,@y.test:a@b.test>", C.Mail("a@b.test")),
        ('MAIL FROM:<"a >b"@c.test>', C.Mail('"a >b"@c.test')),
        (
            "MAIL FROM:<a@b.test> SIZE=10 BODY=8bitmime RET=hdrs ENVID=x+2By AUTH=<>",
            C.Mail("a@b.test", 10, "8BITMIME", False, "HDRS", "x+2By", "<>"),
        ),
        ("MAIL FROM:<ü@b.test> SMTPUTF8", C.Mail("ü@b.test", smtputf8=True)),
        ("RCPT TO:<Postmaster>", C.Rcpt("postmaster")),
        ("RCPT TO:<b@c.test> NOTIFY=never", C.Rcpt("b@c.test", ("NEVER",))),
        (
            "RCPT TO:<b@c.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@c.test",
            C.Rcpt("b@c.test", ("SUCCESS", "FAILURE"), "rfc822;b@c.test"),
        ),
        ("BDAT 0 LAST", C.Bdat(0, True)),
        ("bdat 1000", C.Bdat(1000, False)),
        ("AUTH plain", C.Auth("PLAIN")),
        ("AUTH PLAIN =", C.Auth("PLAIN", "=")),
        ("NOOP whatever", C.Noop()),
        ("VRFY alice", C.Vrfy("alice")),
        ("HELP MAIL", C.Help("MAIL")),
        ("STARTTLS", C.StartTLS()),
    ],
)
def test_parses(line: str, expected: object) -> None:
    assert C.parse(line, esmtp=True) == expected


@pytest.mark.parametrize(
    ("line", "code", "status"),
    [
        ("EHLO", 501, "5.5.4"),
        ("EHLO two words", 501, "5.5.4"),
        ("MAIL TO:<a@b.test>", 501, "5.5.4"),
        # a malformed path after FROM:/TO: is a bad address (RFC 3463 X.1.7, X.1.3), as a bad
        # address inside good brackets is, and as Postfix says; a bad keyword is 5.5.4
        ("MAIL FROM <a@b.test>", 501, "5.5.4"),
        ("MAIL FROM:<a@b.test", 501, "5.1.7"),
        ("MAIL FROM:<a@b.test>SIZE=1", 501, "5.1.7"),
        ("MAIL FROM:a<b@c.test", 501, "5.1.7"),
        ('MAIL FROM:<"a@b.test>', 501, "5.1.7"),
        ("MAIL FROM:", 501, "5.5.4"),
        ("RCPT TO <a@b.test>", 501, "5.5.4"),
        ("RCPT TO:<a@b.test", 501, "5.1.3"),
        ("RCPT TO:<a@b.test>x", 501, "5.1.3"),
        ('RCPT TO:<"a@b.test>', 501, "5.1.3"),
        ("MAIL FROM:<a@@b.test>", 501, "5.1.7"),
        ("MAIL FROM:<a@b.test> SIZE=x", 501, "5.5.4"),
        ("MAIL FROM:<a@b.test> BODY=BINARYMIME", 555, "5.5.4"),
        ("MAIL FROM:<a@b.test> SIZE=1 SIZE=2", 501, "5.5.4"),
        ("MAIL FROM:<a@b.test> REQUIRETLS", 555, "5.5.4"),
        ("MAIL FROM:<a@b.test> ENVID=a=b", 501, "5.5.4"),
        ("MAIL FROM:<ü@b.test>", 553, "5.6.7"),
        ("RCPT TO:<>", 501, "5.1.3"),
        ("RCPT TO:<no-domain>", 501, "5.1.3"),
        ("RCPT TO:<a@b.test> NOTIFY=NEVER,DELAY", 501, "5.5.4"),
        ("RCPT TO:<a@b.test> ORCPT=rfc822", 501, "5.5.4"),
        ("RCPT TO:<a@b.test> FOO", 555, "5.5.4"),
        ("BDAT", 501, "5.5.4"),
        ("BDAT -1", 501, "5.5.4"),
        ("BDAT 10 FIRST", 501, "5.5.4"),
        ("DATA now", 501, "5.5.4"),
        ("AUTH", 501, "5.5.4"),
        ("TURN", 502, "5.5.1"),
        # RFC 3463 X.5.2: "... the command is unrecognized" (X.5.1 is for out of sequence or
        # unsupported, e.g. TURN above); Postfix says 500 5.5.2 too
        ("XYZZY", 500, "5.5.2"),
    ],
)
def test_refuses(line: str, code: int, status: str) -> None:
    got = C.parse(line, esmtp=True)
    reply = got.reply if isinstance(got, C.Unsupported) else got
    assert isinstance(reply, R.Reply), got
    assert (reply.code, reply.status) == (code, status)


def test_parameters_need_ehlo() -> None:
    got = C.parse("MAIL FROM:<a@b.test> SIZE=10", esmtp=False)
    assert isinstance(got, R.Reply) and got.code == 555


def test_http_is_fatal() -> None:
    got = C.parse("POST / HTTP/1.1", esmtp=False)
    assert isinstance(got, C.Unsupported) and got.fatal and got.reply.code == 421


@pytest.mark.parametrize(
    "line", ["Subject: hello", "From: <a@b.test>", "X-Mailer: x", "received:from x", "Subject:"]
)
def test_header_field_as_command_is_fatal(line: str) -> None:
    """Message content where a command belongs (DATA refused after it was pipelined with the
    message): the rest of the message must not run as commands. Postfix hangs up too."""
    got = C.parse(line, esmtp=True)
    assert isinstance(got, C.Unsupported) and got.fatal, got
    assert (got.reply.code, got.reply.status) == (421, "4.7.0")


@pytest.mark.parametrize("line", ["FOO", "FOO bar: baz", "X-FOO", ":", ":x"])
def test_other_unknown_verbs_are_not_fatal(line: str) -> None:
    got = C.parse(line, esmtp=True)
    assert isinstance(got, C.Unsupported) and not got.fatal and got.reply.code == 500, got


# ---- RFC 5321 4.5.3.1 size limits ----------------------------------------------------------------


def _domain(octets: int) -> str:
    """A valid domain of exactly `octets` octets (labels of up to 63)."""
    labels, left = [], octets
    while left > 0:
        n = min(63, left if left <= 63 else left - 2)  # keep room for ".x" at the end
        labels.append("d" * n)
        left -= n + 1
    return ".".join(labels)


@pytest.mark.parametrize("verb", ["MAIL FROM", "RCPT TO"])
def test_local_parts_over_64_octets_are_taken(verb: str) -> None:
    # 4.5.3.1.1 says 64 octets, 4.5.3.1 asks for no limits where possible: SRS and VERP senders
    # pass 64 (Postfix and Dovecot take them); the path's 256 octets still hold
    srs = "SRS0=HHH=TT=" + "d" * 30 + ".example=" + "u" * 40
    utf8 = " SMTPUTF8" if verb == "MAIL FROM" else ""  # (a RCPT's is the MAIL's)
    for local in ("a" * 65, srs, "é" * 33):
        ok = C.parse(f"{verb}:<{local}@b.test>{utf8}", True)
        assert isinstance(ok, C.Mail | C.Rcpt), local
    assert isinstance(C.parse(f"{verb}:<{'a' * 250}@b.test>", True), R.Reply)


def test_path_limit_256_with_brackets() -> None:
    # 4.5.3.1.3: the path, "<" and ">" included; the same whichever parser checks it
    for local in ("a", "a.b", '"q q"'):
        fits = f"{local}@{_domain(254 - len(local) - 1)}"
        assert len(fits) == 254
        assert isinstance(C.parse(f"RCPT TO:<{fits}>", True), C.Rcpt), fits
        over = f"{local}@{_domain(255 - len(local) - 1)}"
        reply = C.parse(f"RCPT TO:<{over}>", True)
        assert isinstance(reply, R.Reply) and reply.code == 501, over
        assert "too long" in reply.text


def test_domain_limit_255() -> None:
    # 4.5.3.1.2: 255 octets; our paths never get there (254), EHLO names may
    assert isinstance(C.parse(f"EHLO {_domain(255)}", True), C.Helo)
    assert isinstance(C.parse(f"EHLO {_domain(256)}", True), R.Reply)


def test_reply_lines_at_most_512_octets() -> None:
    # 4.5.3.1.5: replies echo client text (EHLO name, addresses, VRFY argument): cut to fit
    long = R.Reply(550, "5.1.1", "<" + "é" * 600 + ">: no such user here")
    wire = long.render()
    assert len(wire) <= 512
    assert wire.endswith(b"...\r\n") and wire.startswith(b"550 5.1.1 <")
    wire.decode("utf-8")  # not cut inside a character
    multi = R.multiline(250, "x" * 1000, ["PIPELINING", "y" * 600])
    assert all(len(line) <= 512 for line in multi.render().split(b"\r\n"))
    assert R.R_250_OK.render() == b"250 2.0.0 OK\r\n"


@pytest.mark.parametrize(
    ("literal", "ok"),
    [
        ("[127.0.0.1]", True),
        ("[IPv6:2001:db8::1]", True),
        ("[ipv6:::1]", True),
        ("[IPv6:::ffff:1.2.3.4]", True),
        ("[x-tag:anything]", True),
        ("[999.1.1.1]", False),
        ("[1.2.3]", False),
        ("[IPv6:zz::1]", False),
        ("[foo]", False),
        ("[]", False),
    ],
)
def test_address_literals(literal: str, ok: bool) -> None:
    assert C.valid_address_literal(literal) is ok
    assert C.valid_helo_name(literal) is ok


def test_quoted_local_part_is_unquoted_when_it_needs_no_quotes() -> None:
    assert C.parse('RCPT TO:<"alice"@example.test>', esmtp=True) == C.Rcpt("alice@example.test")
    assert C.parse('RCPT TO:<"a\\lice"@example.test>', esmtp=True) == C.Rcpt("alice@example.test")
    assert C.parse('RCPT TO:<"john doe"@example.test>', esmtp=True) == C.Rcpt(
        '"john doe"@example.test'
    )
    assert C.parse('RCPT TO:<"Postmaster">', esmtp=True) == C.Rcpt("postmaster")
