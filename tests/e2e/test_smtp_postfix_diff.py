"""carteiro's SMTP server (the MX role, port 25) against Postfix 3.7's smtpd, reply by reply.

Both accept mail for example.test, where alice exists and nobody does; neither relays for the
loopback client. Each case opens a fresh connection to each server, says the same bytes and
compares the replies' classes, their enhanced status codes (RFC 3463) and, where RFC 5321 leaves
no choice, the three digits. The texts are each server's own. Where the two differ on purpose
the case says why (and docs/smtp.md lists it); everything else must agree.

`SMTP_DIFF_DUMP=1` prints both servers' replies for every case (to look at the texts too);
`SMTP_DIFF_EXAMPLES=N` sets how many random command sequences are compared (default 25).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.testing import postfix
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postfix-e2e")]

ALICE = "alice@example.test"
SIZE_LIMIT = 1_000_000
RCPT_LIMIT = 100
DUMP = bool(os.environ.get("SMTP_DIFF_DUMP"))

# carteiro: the MX listener alone; the abuse limits that would delay or cut a test client off
# (a 1 s pregreet wait per connection, 120 connections a minute) are off, and the message size
# and recipient limits are set to Postfix's below. (The generated carteiro.toml ends with its
# [smtp] table, which these first keys extend: TOML allows no second [smtp].)
CARTEIRO_CFG = f"""
max_message_size = {SIZE_LIMIT}
max_recipients = {RCPT_LIMIT}
[limits]
pregreet_wait = 0
connections_per_minute_per_ip = 0
messages_per_minute_per_ip = 0
recipients_per_minute_per_ip = 0
"""


def postfix_cf(tls_dir: Path) -> dict[str, str]:
    """Postfix's defaults except where the comparison needs otherwise (each says why)."""
    return {
        # example.test is a relay domain with a recipient list: alice (and postmaster) are
        # accepted at RCPT, any other local part gets 550 5.1.1 at RCPT, as carteiro does;
        # accepted mail is discarded (only the dialogue is compared)
        "relay_domains": "example.test",
        "relay_recipient_maps": "inline:{alice@example.test=ok, postmaster@example.test=ok}",
        "relay_transport": "discard:",
        # the loopback client is not trusted (the instance's default mynetworks lets it relay):
        # like carteiro's empty relay_networks, a remote recipient must be refused
        "mynetworks": "192.0.2.1/32",
        # a bare "postmaster" is completed with myorigin (RFC 5321 4.5.1: it must be accepted);
        # carteiro takes it as its primary domain's
        "myorigin": "example.test",
        # carteiro requires EHLO/HELO before MAIL (RFC 5321 4.1.4 lets a server do either);
        # with Postfix's default (no) the sequencing cases would all differ for that one reason
        "smtpd_helo_required": "yes",
        # carteiro offers SMTPUTF8; the instance turns it off by default
        "smtputf8_enable": "yes",
        # the same limits as carteiro's (CARTEIRO_CFG)
        "message_size_limit": str(SIZE_LIMIT),
        "smtpd_recipient_limit": str(RCPT_LIMIT),
        # STARTTLS, with carteiro's own certificate
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": str(tls_dir / "cert.pem"),
        "smtpd_tls_key_file": str(tls_dir / "key.pem"),
    }


@dataclass
class Conn:
    sock: socket.socket | ssl.SSLSocket
    buf: bytes = b""
    closed: bool = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def reply(self, timeout: float = 5.0) -> tuple[str, ...]:
        """One reply's lines, or ("closed",) when the server hung up, ("timeout",) if it said
        nothing."""
        lines: list[str] = []
        self.sock.settimeout(timeout)
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                lines.append(line)
                if len(line) < 4 or line[3] != "-":
                    return tuple(lines)
            try:
                got = self.sock.recv(65536)
            except TimeoutError:
                return ("timeout",)
            except OSError:
                got = b""
            if not got:
                self.closed = True
                return ("closed",)
            self.buf += got


@dataclass
class Case:
    """Bytes to send, each followed by the number of replies to read after it."""

    name: str
    steps: Sequence[tuple[bytes, int]]
    # compare the full three-digit code of these reply indexes (RFC 5321 leaves no choice)
    exact: Sequence[int] = ()
    ehlo: bool = True  # the dialogue starts with EHLO client.test (its reply is not compared)
    tls: bool = False  # STARTTLS after EHLO before the steps
    ehlo_after_tls: bool = True  # ... and EHLO again
    # compare the classes only (each says why)
    classes_only: bool = False
    # A deliberate difference (the reason, with its RFC section; docs/smtp.md lists them): the
    # replies are not compared with Postfix's, carteiro's must be `ours` (its summary).
    why_not: str = ""
    ours: Sequence[str] = field(default_factory=tuple)


def connect(port: int) -> Conn:
    c = Conn(socket.create_connection(("127.0.0.1", port), timeout=5))
    greeting = c.reply()
    assert greeting[0].startswith("220"), greeting
    return c


def run(port: int, case: Case) -> list[tuple[str, ...]]:
    c = connect(port)
    out: list[tuple[str, ...]] = []
    try:
        if case.ehlo:
            c.send(b"EHLO client.test\r\n")
            c.reply()
        if case.tls:
            c.send(b"STARTTLS\r\n")
            assert c.reply()[0].startswith("220")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c.sock = ctx.wrap_socket(c.sock)
            if case.ehlo_after_tls:
                c.send(b"EHLO client.test\r\n")
                c.reply()
        for data, n in case.steps:
            if c.closed:
                break
            if data:
                c.send(data)
            for _ in range(n):
                r = c.reply()
                out.append(r)
                if r in (("closed",), ("timeout",)):
                    break
            if out and out[-1] in (("closed",), ("timeout",)):
                break
    finally:
        c.sock.close()
    return out


def summary(
    replies: list[tuple[str, ...]], exact: Sequence[int], classes_only: bool = False
) -> list[str]:
    """What is compared of each reply: its class, its enhanced code, and all three digits for
    the replies listed in `exact`."""
    out = []
    for i, r in enumerate(replies):
        last = r[-1]
        if last in ("closed", "timeout"):
            out.append(last)
            continue
        code = last[:3]
        text = last[4:]
        enhanced = text.split(" ", 1)[0] if text[:1].isdigit() and text[1:2] == "." else "-"
        if classes_only:
            enhanced = "*"
        out.append(f"{code if i in exact else code[0] + 'xx'} {enhanced}")
    return out


def L(*lines: str) -> bytes:
    return "".join(x + "\r\n" for x in lines).encode("utf-8", "surrogateescape")


def one(*lines: str) -> list[tuple[bytes, int]]:
    """Each line on its own, one reply each."""
    return [(L(x), 1) for x in lines]


MAIL = f"MAIL FROM:<{ALICE}>"
RCPT = f"RCPT TO:<{ALICE}>"
MSG = "Subject: diff\r\n\r\nhello\r\n."

CASES: list[Case] = [
    # --- command sequencing (RFC 5321 4.1.4, 4.3.2)
    Case("mail before ehlo", one(MAIL), ehlo=False, exact=[0]),
    Case("rcpt before mail", one(RCPT), exact=[0]),
    Case("data before rcpt", one(MAIL, "DATA"), exact=[1]),
    Case("data before mail", one("DATA"), exact=[0]),
    Case("second mail", one(MAIL, MAIL), exact=[1]),
    Case("rset anywhere", one("RSET", MAIL, "RSET", RCPT, MAIL, RCPT, "RSET", "DATA"), exact=[0]),
    Case("rset before ehlo", one("RSET"), ehlo=False),
    Case("helo after ehlo", one(MAIL, "HELO client.test", RCPT)),
    Case("ehlo resets transaction", one(MAIL, "EHLO client.test", RCPT)),
    Case("noop", one("NOOP", "NOOP hello there", "noop"), exact=[0, 1, 2]),
    Case("rset with argument", one("RSET x")),
    Case("quit", one("QUIT"), exact=[0]),
    Case("quit before ehlo", one("QUIT"), ehlo=False, exact=[0]),
    Case(
        "quit with argument",
        one("QUIT x", "NOOP"),
        why_not='RFC 5321 4.1.1.10: quit = "QUIT" CRLF, no argument (501 and the session goes '
        "on); Postfix ignores the argument and closes",
        ours=["5xx 5.5.4", "2xx 2.0.0"],
    ),
    Case("vrfy no argument", one("VRFY")),
    Case(
        "vrfy user",
        one(f"VRFY {ALICE}", "VRFY nobody@example.test"),
        why_not="no user enumeration: carteiro answers every VRFY 252 (RFC 5321 3.5.3 allows it);"
        " Postfix answers 252 for a known user and 550 for an unknown one",
        ours=["2xx 2.5.0", "2xx 2.5.0"],
    ),
    Case(
        "help",
        one("HELP", "HELP MAIL"),
        why_not="Postfix does not implement HELP (500); RFC 5321 4.1.1.8 defines it, carteiro "
        "answers 214",
        ours=["2xx 2.0.0", "2xx 2.0.0"],
    ),
    Case("unknown verb", one("FOO", "FOO bar"), exact=[0, 1]),
    Case("mixed case", [(L(f"mail from:<{ALICE}>", f"rCpT To:<{ALICE}>", "daTA"), 3), (L(MSG), 1)]),
    # RFC 2034 ties enhanced codes to EHLO: Postfix sends none on a failed HELO/EHLO
    Case("helo no argument", one("HELO"), ehlo=False, classes_only=True),
    Case("ehlo no argument", one("EHLO"), ehlo=False, classes_only=True),
    Case("helo then mail", one("HELO client.test", MAIL), ehlo=False),
    Case(
        "helo then parameters",
        one("HELO client.test", f"{MAIL} BODY=8BITMIME"),
        ehlo=False,
        why_not="service extensions are for a session that began with EHLO (RFC 5321 2.2.1, "
        "4.1.1.1): 555 after HELO; Postfix takes the parameters anyway",
        ours=["2xx -", "555 5.5.4"],
        exact=[1],
    ),
    Case(
        "expn and turn",
        one("EXPN alice", "TURN"),
        why_not="RFC 5321 4.2.4: 502 for a command recognised but not implemented (EXPN, TURN); "
        "Postfix does not know them (500 5.5.2)",
        ours=["502 5.5.1", "502 5.5.1"],
        exact=[0, 1],
    ),
    # --- ETRN (RFC 1985). Postfix flushes its relay domains (example.test here), carteiro only
    # the domains it holds for ATRN/ETRN clients (none here): compared on a domain neither
    # holds. Postfix puts no enhanced codes on its ETRN replies: classes only.
    Case(
        "etrn", one("ETRN remote.test", "ETRN", "ETRN @remote.test"), classes_only=True, exact=[0]
    ),
    Case("etrn in transaction", one(MAIL, "ETRN remote.test"), classes_only=True, exact=[1]),
    Case("etrn before ehlo", one("ETRN remote.test"), ehlo=False, classes_only=True, exact=[0]),
    # --- odd command lines
    Case("data with argument", one(MAIL, RCPT, "DATA now")),
    Case(
        "helo two words",
        one("HELO a b", "EHLO a b"),
        ehlo=False,
        why_not="RFC 5321 4.1.1.1: HELO/EHLO take one domain or address literal (Exim refuses "
        "too); Postfix takes the whole rest of the line",
        ours=["5xx 5.5.4", "5xx 5.5.4"],
    ),
    Case(
        "leading space",
        one(" NOOP", f" {MAIL}"),
        why_not="RFC 5321 4.1.1: a command begins with its verb: 500; Postfix skips the space",
        ours=["500 5.5.2", "500 5.5.2"],
        exact=[0, 1],
    ),
    Case("trailing space", one("NOOP ", "RSET ", f"{MAIL} ", f"{RCPT} ", "DATA ")),
    Case(
        "tab separator",
        one(f"MAIL\tFROM:<{ALICE}>", "NOOP\tx"),
        why_not="RFC 5321 4.1.1: the verb is followed by SP, a tab makes no known verb: 500; "
        "Postfix splits on any white space",
        ours=["500 5.5.2", "500 5.5.2"],
        exact=[0, 1],
    ),
    Case("long verb", one("X" * 600)),
    Case("unknown lowercase verb", one("foo", "NOOP")),
    Case("latin-1 octets", [(b"NOOP \xff\r\n", 1), (b"MAIL FROM:<\xff@client.test>\r\n", 1)]),
    Case("size zero", one(f"{MAIL} SIZE=0", RCPT)),
    # --- MAIL/RCPT syntax (RFC 5321 4.1.2)
    Case("null sender", [(L("MAIL FROM:<>", RCPT, "DATA"), 3), (L(MSG), 1)]),
    Case("missing colon", one(f"MAIL FROM <{ALICE}>", f"MAIL <{ALICE}>", MAIL, f"RCPT <{ALICE}>")),
    # RFC 5321 names no order between the syntax and the sequence checks: carteiro parses first
    # (501 5.5.4), Postfix looks at the state first (503 5.5.1); both refuse
    Case("bad rcpt before mail", one(f"RCPT <{ALICE}>"), classes_only=True),
    Case("space after colon", one(f"MAIL FROM: <{ALICE}>", f"RCPT TO: <{ALICE}>")),
    Case(
        "malformed sender path",
        one(
            "MAIL FROM:<a@b.test",
            "MAIL FROM:<a@b.test>x",
            "MAIL FROM:a<b@c.test",
            'MAIL FROM:<"a@b.test>',
        ),
    ),
    Case(
        "malformed recipient path",
        one(
            MAIL,
            "RCPT TO:<alice@example.test",
            "RCPT TO:<alice@example.test>x",
            "RCPT TO:a<alice@example.test",
            'RCPT TO:<"alice@example.test>',
        ),
    ),
    Case("space before colon", one(f"MAIL FROM :<{ALICE}>")),
    Case(
        "space or brackets inside brackets",
        one(f"MAIL FROM:< {ALICE} >", f"MAIL FROM:<{ALICE} >", f"MAIL FROM:<<{ALICE}>>"),
        why_not="RFC 5321 4.1.2: no space or second bracket inside <>; carteiro is lenient only "
        "where real clients need it (space after the colon, no brackets), Postfix strips them",
        ours=["5xx 5.1.7", "5xx 5.1.7", "5xx 5.1.7"],
    ),
    Case("no brackets", one(f"MAIL FROM:{ALICE}", f"RCPT TO:{ALICE}")),
    Case("source route", one(MAIL, f"RCPT TO:<@a.test,@b.test:{ALICE}>")),
    Case("source route relay", one(MAIL, "RCPT TO:<@example.test:someone@remote.test>")),
    Case("quoted local part", one('MAIL FROM:<"a b"@client.test>', RCPT)),
    Case("quoted local part rcpt", one(MAIL, 'RCPT TO:<"alice"@example.test>')),
    Case("ip literal", one("MAIL FROM:<u@[192.0.2.1]>", "RCPT TO:<u@[IPv6:2001:db8::1]>")),
    Case("bad ip literal", one("MAIL FROM:<u@[300.1.2.3]>", "MAIL FROM:<u@[IPv6:zz]>")),
    # over RFC 5321 4.5.3.1.1's 64 octets, taken by both (SRS/VERP senders)
    Case("long local part", one(f"MAIL FROM:<{'a' * 65}@client.test>", RCPT)),
    Case("long domain", one(f"MAIL FROM:<u@{'d' * 60}.{'e' * 60}.{'f' * 60}.{'g' * 80}.test>")),
    Case("long label", one(f"MAIL FROM:<u@{'d' * 64}.test>")),
    Case(
        "long path",
        one(f"MAIL FROM:<{'a' * 60}@{'.'.join(['d' * 60] * 4)}.test>"),
        why_not="RFC 5321 4.5.3.1.3: a path has at most 256 octets; Postfix has no limit",
        ours=["5xx 5.1.7"],
    ),
    Case(
        "long line",
        [(L(f"NOOP {'x' * 5000}"), 1), (L("NOOP"), 1)],
        why_not="RFC 5321 4.5.3.1.4/4.5.3.1.10: '500 Line too long'; Postfix cuts the line at "
        "line_length_limit and runs what is left (a truncated command)",
        ours=["5xx 5.5.2", "2xx 2.0.0"],
    ),
    Case(
        "8bit address",
        [
            (
                L(
                    "MAIL FROM:<jos\u00e9@client.test>",
                    "RSET",
                    MAIL,
                    "RCPT TO:<jos\u00e9@example.test>",
                ),
                4,
            )
        ],
        why_not="RFC 6531 3.6/3.7.4: a non-ASCII address without SMTPUTF8 gets 553 5.6.7; "
        "Postfix takes the octets as they come",
        ours=["553 5.6.7", "2xx 2.0.0", "2xx 2.1.0", "553 5.6.7"],
        exact=[0, 3],
    ),
    Case("8bit address smtputf8", one("MAIL FROM:<jos\u00e9@client.test> SMTPUTF8", RCPT)),
    Case("unknown mail parameter", one(f"{MAIL} FOO=BAR", f"{MAIL} XYZ"), exact=[0, 1]),
    Case("unknown rcpt parameter", one(MAIL, f"{RCPT} FOO=BAR"), exact=[1]),
    Case("size bad", one(f"{MAIL} SIZE=abc", f"{MAIL} SIZE=", f"{MAIL} SIZE=-1")),
    Case(
        "size over",
        one(f"{MAIL} SIZE={SIZE_LIMIT + 1}", f"{MAIL} SIZE=99999999999999999999"),
        exact=[0, 1],
    ),
    Case(
        "mail after size over",
        one(f"{MAIL} SIZE={SIZE_LIMIT + 1}", MAIL),
        why_not="RFC 1870 6: SIZE belongs to its MAIL command; Postfix keeps the refused "
        "size and refuses the next MAIL without SIZE too (552), a Postfix slip",
        ours=["552 5.3.4", "2xx 2.1.0"],
        exact=[0],
    ),
    Case("size ok", one(f"{MAIL} SIZE=1000", RCPT)),
    Case("body 8bitmime", one(f"{MAIL} BODY=8BITMIME", RCPT)),
    Case("body 7bit", one(f"{MAIL} BODY=7bit", RCPT)),
    Case("body binarymime", one(f"{MAIL} BODY=BINARYMIME")),
    Case("body bad", one(f"{MAIL} BODY=FOO")),
    Case("smtputf8", one(f"{MAIL} SMTPUTF8", RCPT)),
    Case(
        "duplicate parameter",
        one(f"{MAIL} SIZE=10 SIZE=20", f"{MAIL} BODY=7BIT BODY=8BITMIME"),
        why_not="a parameter given twice is refused (RFC 5321 4.1.2 has each once; two SIZE or "
        "BODY values would be read differently by different hops); Postfix takes the last",
        ours=["5xx 5.5.4", "5xx 5.5.4"],
    ),
    Case(
        "nul in command",
        [(b"NOOP a\x00b\r\n", 1), (b"MAIL FROM:<a\x00b@client.test>\r\n", 1), (L("NOOP"), 1)],
        why_not="RFC 5321 4.1.2 allows no control characters in a command line: 501; Postfix "
        "ignores NOOP's argument, and refuses the NUL in the path (501 5.1.7)",
        ours=["5xx 5.5.4", "5xx 5.5.4", "2xx 2.0.0"],
    ),
    Case(
        "bare lf command",
        [(b"NOOP\n", 1), (b"NOOP\r\n", 1)],
        why_not="RFC 5321 2.3.8: command lines end with CRLF; a bare LF is refused (the "
        "smuggling class), Postfix 3.7 accepts it (smtpd_forbid_bare_newline = no)",
        ours=["5xx 5.5.2", "2xx 2.0.0"],
    ),
    Case(
        "bare cr in command",
        [(b"NOOP a\rb\r\n", 1), (b"NOOP\r\n", 1)],
        why_not="RFC 5321 2.3.8: a bare CR in a command line is refused; Postfix ignores "
        "NOOP's argument",
        ours=["5xx 5.5.4", "2xx 2.0.0"],
    ),
    # --- DSN (RFC 3461), AUTH= (RFC 4954 5)
    Case("dsn mail", one(f"{MAIL} RET=HDRS ENVID=abc+2B", RCPT, "RSET", f"{MAIL} RET=BAD")),
    Case(
        "dsn rcpt",
        one(
            MAIL,
            f"{RCPT} NOTIFY=NEVER",
            f"{RCPT} NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;alice@example.test",
            f"{RCPT} NOTIFY=NEVER,DELAY",
            f"{RCPT} NOTIFY=BOGUS",
        ),
    ),
    Case("mail auth parameter", one(f"{MAIL} AUTH=<>", RCPT)),
    Case("null recipient", one(MAIL, "RCPT TO:<>")),
    # --- HELO/EHLO arguments (neither server checks the name by default)
    Case(
        "ehlo names",
        one("EHLO [192.0.2.1]", "EHLO [IPv6:2001:db8::1]", "EHLO x", "HELO client.test", MAIL),
        ehlo=False,
        classes_only=True,
    ),
    # --- RCPT policy
    Case(
        "recipient case", one(MAIL, "RCPT TO:<ALICE@EXAMPLE.TEST>", "RCPT TO:<Alice@Example.Test>")
    ),
    Case("trailing dot", one(MAIL, "RCPT TO:<alice@example.test.>")),
    Case(
        "own address literal",
        one(MAIL, "RCPT TO:<alice@[127.0.0.1]>"),
        why_not="carteiro serves its configured domains only, not its own address literals "
        "(RFC 5321 4.1.3 lets a server choose): relay refused; Postfix takes [its own IP] as a "
        "local destination (and, with local_recipient_maps empty here, any user)",
        ours=["2xx 2.1.0", "554 5.7.1"],
        exact=[1],
    ),
    Case("unknown user", one(MAIL, "RCPT TO:<nobody@example.test>", RCPT), exact=[1]),
    Case("relay refused", one(MAIL, "RCPT TO:<someone@remote.test>", RCPT), exact=[1]),
    Case(
        "relay percent hack",
        one(MAIL, "RCPT TO:<someone%remote.test@example.test>"),
        why_not="both refuse; carteiro never routes on '%' (RFC 5321 3.6.1 leaves it to the "
        "domain's owner), so the local part is an unknown user (550 5.1.1), Postfix says relay "
        "access denied (554 5.7.1)",
        ours=["2xx 2.1.0", "550 5.1.1"],
        exact=[1],
    ),
    Case("postmaster bare", one(MAIL, "RCPT TO:<postmaster>", "RCPT TO:<POSTMASTER>")),
    Case("postmaster domain", one(MAIL, "RCPT TO:<postmaster@example.test>")),
    Case("too many recipients", one(MAIL, *[RCPT] * (RCPT_LIMIT + 1)), exact=[RCPT_LIMIT + 1]),
    # --- DATA
    Case("data ok", [(L(MAIL, RCPT, "DATA"), 3), (L(MSG), 1)], exact=[2, 3]),
    Case("data long line", [(L(MAIL, RCPT, "DATA"), 3), (L("X: " + "y" * 5000, "", "b", "."), 1)]),
    Case(
        "data bare lf",
        [(L(MAIL, RCPT, "DATA"), 3), (b"Subject: x\n\nbody\r\n.\r\n", 1), (L("NOOP"), 1)],
        why_not="bare LF in message data is refused (550 5.5.2, the SMTP smuggling class, "
        "RFC 5321 2.3.8; bare_newline = reject); Postfix 3.7 accepts it by default",
        ours=["2xx 2.1.0", "2xx 2.1.5", "3xx -", "5xx 5.5.2", "2xx 2.0.0"],
    ),
    Case(
        "data smuggling",
        [(L(MAIL, RCPT, "DATA"), 3), (b"Subject: x\r\n\r\nbody\n.\r\n", 0), (L("NOOP", "."), 1)],
        why_not="only CRLF.CRLF ends DATA (RFC 5321 4.1.1.4): carteiro reads on and refuses the "
        "message with its bare LF; Postfix 3.7 by default ends DATA at <LF>.<CR><LF> "
        "(CVE-2023-51764)",
        ours=["2xx 2.1.0", "2xx 2.1.5", "3xx -", "5xx 5.5.2"],
    ),
    Case("data nul", [(L(MAIL, RCPT, "DATA"), 3), (b"Subject: n\r\n\r\na\x00b\r\n.\r\n", 1)]),
    Case(
        "data 8bit without body",
        [(L(MAIL, RCPT, "DATA"), 3), (L("Subject: \u00e9", "", "\u00e9", "."), 1)],
    ),
    Case("data no header", [(L(MAIL, RCPT, "DATA"), 3), (L("just a line", "."), 1)]),
    Case("data lone dot", [(L(MAIL, RCPT, "DATA"), 3), (L("."), 1)], exact=[2]),
    Case(
        "data dot stuffing",
        [(L(MAIL, RCPT, "DATA"), 3), (L("Subject: d", "", "..x", ".", "NOOP"), 2)],
    ),
    Case(
        "data over size",
        [
            (L(MAIL, RCPT, "DATA"), 3),
            ((b"x" * 70 + b"\r\n") * (SIZE_LIMIT // 70 + 10) + b".\r\n", 1),
            *one("NOOP"),
        ],
        exact=[3],
    ),
    Case(
        "pipelined bad rcpt",
        [(L(MAIL, "RCPT TO:<nobody@example.test>", RCPT, "DATA"), 4), (L(MSG), 1)],
        exact=[1, 3],
    ),
    Case(
        "pipelined data and message, no recipient",
        [(L(MAIL, "RCPT TO:<nobody@example.test>", "DATA", "Subject: x", "", "body", "."), 7)],
        why_not="both hang up at the first header line sent as a command, so the message's "
        "lines never run as commands; carteiro says 421 (RFC 5321 3.8: a server closing on its "
        "own says 421), Postfix 221 2.7.0",
        ours=["2xx 2.1.0", "550 5.1.1", "554 5.5.1", "421 4.7.0", "closed"],
        exact=[1, 2, 3],
    ),
    Case(
        "pipelined all rcpt bad",
        [(L(MAIL, "RCPT TO:<nobody@example.test>", "DATA"), 3), (L("NOOP"), 1)],
        exact=[2],
    ),
    Case(
        "pipelined bad mail",
        [(L("MAIL FROM:<a@", RCPT, "DATA"), 3), (L("NOOP"), 1)],
        exact=[1, 2, 3],
    ),
    Case(
        "rset mid bdat",
        [(L(MAIL, RCPT, "BDAT 3") + b"abc" + L("RSET", MAIL, RCPT, "BDAT 0 LAST"), 7)],
    ),
    # --- BDAT (RFC 3030)
    Case("bdat 0 last", one(MAIL, RCPT, "BDAT 0 LAST")),
    Case("bdat without mail", one("BDAT 0 LAST")),
    Case("bdat without rcpt", one(MAIL, "BDAT 0 LAST")),
    Case("bdat then data", [(L(MAIL, RCPT, "BDAT 5") + b"hello", 3), (L("DATA"), 1)]),
    Case(
        "bdat chunks",
        [(L(MAIL, RCPT, "BDAT 5") + b"x: y\r", 3), (L("BDAT 4 LAST") + b"\nz\r\n", 1)],
    ),
    Case(
        "bdat bare cr",
        [(L(MAIL, RCPT, "BDAT 6 LAST") + b"x: y\r\r", 3)],
        why_not="BDAT content follows bare_newline too (the stored message must be CRLF-clean,"
        " docs/smtp.md); Postfix stores it as it is",
        ours=["2xx 2.1.0", "2xx 2.1.5", "5xx 5.5.2"],
    ),
    Case("bdat bad size", one(MAIL, RCPT, "BDAT x")),
    Case(
        "pipelined bdat bad rcpt",
        [(L(MAIL, "RCPT TO:<nobody@example.test>", "BDAT 5 LAST") + b"hello" + L("NOOP"), 4)],
        exact=[1, 2, 3],
    ),
    Case(
        "pipelined bdat chunks",
        [(L(MAIL, RCPT, "BDAT 3") + b"a: " + L("BDAT 5 LAST") + b"b\r\n\r\n" + L("NOOP"), 5)],
        exact=[4],
    ),
    # --- AUTH and STARTTLS (RFC 3207, RFC 4954)
    Case("auth before tls", one("AUTH PLAIN AGFsaWNlAHB3")),
    Case("starttls with argument", one("STARTTLS x")),
    Case("starttls twice", one("STARTTLS"), tls=True),
    Case("auth after tls", one("AUTH PLAIN AGFsaWNlAHB3"), tls=True),
    Case("mail after tls", one(MAIL, RCPT), tls=True),
    # RFC 3207 4.2: the server forgets the EHLO with everything else
    Case("mail after tls without ehlo", one(MAIL), tls=True, ehlo_after_tls=False, exact=[0]),
    Case("transaction across starttls", one(MAIL, "STARTTLS"), exact=[1]),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    reason = postfix.available()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("smtpdiff")
    s = ServerProcess(tmp, users={ALICE: "pw"}, services=("smtp",), extra_config=CARTEIRO_CFG)
    s.init()
    with s, postfix.PostfixInstance(tmp, main_cf=postfix_cf(s.data / "tls")) as pf:
        yield s.ports["smtp"], pf.smtp_port


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reply_by_reply(servers: tuple[int, int], case: Case) -> None:
    ours = run(servers[0], case)
    theirs = run(servers[1], case)
    if DUMP:
        print(f"\n== {case.name}")
        for a, b in zip(ours, theirs, strict=False):
            print(f"  carteiro: {' | '.join(a)}\n  postfix:  {' | '.join(b)}")
    if case.why_not:
        assert summary(ours, case.exact) == list(case.ours), ours
        return
    assert summary(ours, case.exact, case.classes_only) == summary(
        theirs, case.exact, case.classes_only
    ), (ours, theirs)


def test_starttls_discards_pipelined_plaintext(servers: tuple[int, int]) -> None:
    """RFC 3207 5 / CVE-2011-0411: commands sent in the same packet as STARTTLS must not be
    answered inside the TLS session."""
    for port in servers:
        c = connect(port)
        c.send(b"EHLO client.test\r\n")
        c.reply()
        c.send(b"STARTTLS\r\nNOOP\r\n")
        first = c.reply()
        assert first[0].startswith("220"), (port, first)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock)
        c.buf = b""
        c.send(b"NOOP second\r\n")
        assert c.reply()[0].startswith("250")
        # one reply for one NOOP: the injected one was dropped
        assert c.reply(timeout=0.5) == ("timeout",), port
        c.sock.close()


def ehlo_keywords(port: int, tls: bool) -> set[str]:
    c = connect(port)
    c.send(b"EHLO client.test\r\n")
    lines = c.reply()
    if tls:
        c.send(b"STARTTLS\r\n")
        c.reply()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock)
        c.send(b"EHLO client.test\r\n")
        lines = c.reply()
    c.sock.close()
    return {line[4:].upper() for line in lines[1:]}


def test_ehlo_keywords(servers: tuple[int, int]) -> None:
    """The extensions both offer, before and after STARTTLS. Postfix also lists VRFY (which
    RFC 5321 3.5.2 requires anyway), carteiro HELP (RFC 5321 4.1.1.8); AUTH is offered by neither
    on port 25 (carteiro: submission only; this Postfix has no SASL)."""
    for tls in (False, True):
        ours, theirs = ehlo_keywords(servers[0], tls), ehlo_keywords(servers[1], tls)
        assert theirs - ours == {"VRFY"}, (tls, ours, theirs)
        assert ours - theirs == {"HELP"}, (tls, ours, theirs)
        assert f"SIZE {SIZE_LIMIT}" in ours
        assert ("STARTTLS" in ours) is not tls
        assert not any(k.startswith("AUTH") for k in ours | theirs)


# ---- random command sequences -------------------------------------------------------------------
# Commands on which the two servers have no deliberate difference, said one at a time after EHLO
# (a 354 is followed by a message). Few enough per dialogue that neither server's error limit is
# reached (carteiro closes after max_errors = 10, Postfix sleeps after 10).
POOL = [
    *(
        L(x)
        for x in (
            "EHLO client.test",
            "HELO client.test",
            MAIL,
            "MAIL FROM:<>",
            RCPT,
            "RCPT TO:<nobody@example.test>",
            "RCPT TO:<someone@remote.test>",
            "RCPT TO:<postmaster>",
            "RCPT TO:<Postmaster@Example.Test>",
            "DATA",
            "QUIT",
            "BDAT 0 LAST",
            "RSET",
            "NOOP",
            "NOOP x y",
            "VRFY",
            "XYZZY",
        )
    ),
    # chunk data right after the command line, no CRLF of its own
    b"BDAT 3\r\nabc",
    b"BDAT 3 LAST\r\nx\r\n",
]
EXAMPLES = int(os.environ.get("SMTP_DIFF_EXAMPLES", "25"))


def dialogue(port: int, lines: Sequence[bytes]) -> list[tuple[str, ...]]:
    c = connect(port)
    out: list[tuple[str, ...]] = []
    try:
        c.send(b"EHLO client.test\r\n")
        c.reply()
        for line in lines:
            c.send(line)
            r = c.reply()
            out.append(r)
            if r[-1].startswith("354"):
                c.send(L(MSG))
                out.append(c.reply())
            elif line.startswith(b"BDAT") and r[-1][:1] in "45":
                # after a refused BDAT Postfix wants RSET before the next MAIL, even with no
                # transaction open ("503 MAIL after BDAT"); carteiro does not insist (RFC 3030
                # asks neither). A client resets there: so does this one.
                c.send(b"RSET\r\n")
                out.append(c.reply())
            if c.closed or r == ("timeout",):
                break
    finally:
        c.sock.close()
    return out


@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=8))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_random_sequences(servers: tuple[int, int], lines: list[bytes]) -> None:
    ours, theirs = dialogue(servers[0], lines), dialogue(servers[1], lines)
    assert summary(ours, ()) == summary(theirs, ()), (lines, ours, theirs)
