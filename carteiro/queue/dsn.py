"""Delivery status notifications: RFC 3464 reports in an RFC 6522 multipart/report. Pure.

Builds the bytes of a bounce (failed), delay notice (delayed) or success report (delivered,
relayed) for one message and some of its recipients. Internationalised messages get the RFC 6533
forms (message/global-delivery-status, message/global). Never decides whether a DSN is due: see
`wanted`, which the worker calls; never sends one to the null sender.
"""

from __future__ import annotations

import email.utils
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

FULL_RETURN_LIMIT = 10 * 1024 * 1024  # RET=FULL above this returns the headers only
DEFAULT_RETURN_LIMIT = 1024 * 1024  # no RET: the whole message when no bigger than this


@dataclass(frozen=True, slots=True)
class RecipientReport:
    address: str  # the recipient as we tried it (Final-Recipient)
    action: Action
    status: str  # RFC 3463 "5.1.1"
    orcpt: str | None = None  # RFC 3461 ORCPT as received: "rfc822;bob@b.test" (xtext)
    remote_mta: str = ""  # host name of the MTA that gave `diagnostic`
    diagnostic: str = ""  # the remote's reply "550 5.1.1 ..." (or our own reason)
    diagnostic_is_smtp: bool = True  # False: the reason is ours (DNS, policy), not a remote reply
    last_attempt: float | None = None
    will_retry_until: float | None = None  # delayed only


@dataclass(frozen=True, slots=True)
class DSN:
    message: bytes
    body: str  # "7BIT" | "8BITMIME": what the DSN's own envelope must declare
    smtputf8: bool


def wanted(action: Action, notify: Sequence[str], mail_from: str) -> bool:
    """RFC 3461 4.1: does the sender want this kind of report for this recipient?

    The default (no NOTIFY) is FAILURE and DELAY. Never to the null sender (RFC 5321 4.5.5,
    RFC 3464 2: a DSN is itself sent with a null reverse-path and must not cause another one).
    """
    if not mail_from:
        return False
    want = {n.upper() for n in notify}
    if "NEVER" in want:
        return False
    if not want:
        want = {"FAILURE", "DELAY"}
    needed = {
        "failed": "FAILURE",
        "delayed": "DELAY",
        "delivered": "SUCCESS",
        "relayed": "SUCCESS",
        "expanded": "SUCCESS",
    }[action]
    return needed in want


def xtext_decode(value: str) -> str:
    """RFC 3461 4: "+XX" hex escapes (octets; UTF-8 when they spell non-ASCII)."""
    out = bytearray()
    for i, piece in enumerate(re.split(r"\+([0-9A-Fa-f]{2})", value)):
        out += bytes([int(piece, 16)]) if i % 2 else piece.encode("utf-8")
    return out.decode("utf-8", "replace")


def xtext_encode(value: str) -> str:
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
        for c in value
    )


_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def utf8_addr_decode(value: str) -> str:
    """RFC 6533 3: utf-8-addr-xtext / utf-8-addr-unitext to the address ("\\x{HEX}" escapes).

    An escape naming no Unicode scalar value is left as it is.
    """

    def one(m: re.Match[str]) -> str:
        cp = int(m.group(1), 16)
        return chr(cp) if cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF else m.group(0)

    return _UTF8_ESCAPE.sub(one, value)


def utf8_addr_xtext(value: str) -> str:
    """RFC 6533 3: the 7-bit utf-8-addr-xtext form (QCHAR, else "\\x{HEX}")."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=\\" else f"\\x{{{ord(c):X}}}" for c in value
    )


def original_recipient(orcpt: str, utf8: bool) -> str | None:
    """The Original-Recipient value ("type;address") for an ORCPT as received, or None.

    RFC 3461 4.2: the report carries the original address type and the xtext-decoded address.
    RFC 6533 3: a "utf-8" address is written as UTF-8 (utf-8-address) in a
    message/global-delivery-status and in its 7-bit utf-8-addr-xtext form in a
    message/delivery-status, which must stay ASCII (RFC 3464 2.1.1). An "rfc822" ORCPT that
    spells non-ASCII can only be carried by the utf-8 type.
    """
    atype, _, orig = orcpt.partition(";")
    atype, orig = atype.strip().lower(), orig.strip()
    if not atype or not orig:
        return None
    if atype == "utf-8":
        # utf-8-addr-xtext has no "+"; a client xtext-encoding it anyway is decoded too.
        address = utf8_addr_decode(
            xtext_decode(orig) if re.search(r"\+[0-9A-Fa-f]{2}", orig) else orig
        )
    else:
        address = xtext_decode(orig)
    if not address.isascii() and atype == "rfc822":
        atype = "utf-8"
    if atype == "utf-8":
        return f"utf-8;{address if utf8 else utf8_addr_xtext(address)}"
    if not utf8 and not address.isascii():
        return f"{atype};{xtext_encode(address)}"
    return f"{atype};{address}"


def _addr_type(address: str) -> str:
    # RFC 6533 3: "utf-8" address type for internationalised addresses.
    return "rfc822" if address.isascii() else "utf-8"


def _clean(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def _fold(name: str, value: str, width: int = 78) -> str:
    """A header-style field, folded at spaces (RFC 5322 2.2.3) so no line passes 998 octets."""
    words = _clean(value).split(" ")
    lines: list[str] = []
    line = f"{name}:"
    for w in words:
        if len(line) + 1 + len(w) > width and line.strip() and line != f"{name}:":
            lines.append(line)
            line = " "
        line = f"{line} {w}" if line.strip() else f"{line}{w}"
        while len(line) > 990:
            lines.append(line[:990])
            line = " " + line[990:]
    lines.append(line)
    return "\r\n".join(lines)


def _date(t: float) -> str:
    return email.utils.formatdate(t, localtime=True)


def header_block(message: bytes) -> bytes:
    """The header section of a message, ending with one CRLF (without the blank line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = message.find(sep)
        if i >= 0:
            return message[: i + len(sep) // 2]
    return message if message.endswith(b"\n") else message + b"\r\n"


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def _human(
    reporting_mta: str, reports: Sequence[RecipientReport], kind: Action, now: float, arrival: float
) -> str:
    lines = [f"This is the mail system at host {reporting_mta}.", ""]
    if kind == "failed":
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
            "",
            "For further assistance, please send mail to postmaster.",
            "",
            "If you do so, please include this problem report. You can",
            "delete your own text from the attached returned message.",
        ]
    elif kind == "delayed":
        hours = max(0, int((now - arrival) // 3600))
        until = max((r.will_retry_until or 0) for r in reports)
        lines += [
            "####################################################################",
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
            "####################################################################",
            "",
            f"Your message could not be delivered for more than {hours} hour(s).",
            f"It will be retried until {_date(until)}." if until else "It will be retried.",
        ]
    else:
        lines += [
            "Your message was successfully delivered to the destination(s)",
            "listed below. If the message was delivered to a mailbox you will",
            "receive no further notifications. Otherwise you may still receive",
            "notifications of mail delivery errors from other systems.",
        ]
    lines.append("")
    for r in reports:
        where = f"host {r.remote_mta} said: " if r.remote_mta and r.diagnostic_is_smtp else ""
        detail = f"{where}{_clean(r.diagnostic)}" if r.diagnostic else r.action
        lines.append(f"<{r.address}>: {detail}")
    lines.append("")
    return "\r\n".join(lines)


def _status_fields(
    reporting_mta: str,
    envid: str | None,
    arrival: float,
    reports: Sequence[RecipientReport],
    utf8: bool,
) -> str:
    blocks = []
    msg_fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        msg_fields.append(_fold("Original-Envelope-Id", xtext_decode(envid)))
    msg_fields.append(f"Arrival-Date: {_date(arrival)}")
    blocks.append("\r\n".join(msg_fields))
    for r in reports:
        f: list[str] = []
        orig = original_recipient(r.orcpt, utf8) if r.orcpt else None
        if orig:
            f.append(_fold("Original-Recipient", orig))
        f.append(f"Final-Recipient: {_addr_type(r.address)}; {r.address}")
        f.append(f"Action: {r.action}")
        f.append(f"Status: {r.status}")
        if r.remote_mta:
            f.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            dtype = "smtp" if r.diagnostic_is_smtp else "X-Carteiro"
            f.append(_fold("Diagnostic-Code", f"{dtype}; {r.diagnostic}"))
        if r.last_attempt is not None:
            f.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until is not None and r.action == "delayed":
            f.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        blocks.append("\r\n".join(f))
    # RFC 3464 2.1: per-message fields, then one block per recipient, separated by blank lines.
    return "\r\n\r\n".join(blocks) + "\r\n"


def _subject(kind: Action) -> str:
    return {
        "failed": "Undelivered Mail Returned to Sender",
        "delayed": "Delayed Mail (still being retried)",
    }.get(kind, "Successful Mail Delivery Report")


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    reports: Sequence[RecipientReport],
    original: bytes,
    arrival: float,
    now: float,
    envid: str | None = None,
    ret: str | None = None,
    utf8: bool = False,
    token: str | None = None,
) -> DSN:
    """One DSN to `sender` about `reports` (all of one action: failed, delayed or successes).

    `original` is the message as queued (headers and body, CRLF). `token` makes the boundary and
    Message-ID deterministic in tests.
    """
    if not sender:
        raise ValueError("no DSN to the null sender")
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    kind: Action = reports[0].action
    token = token or os.urandom(12).hex()
    utf8 = utf8 or not sender.isascii() or any(not r.address.isascii() for r in reports)

    full = False
    if kind == "failed":
        ret_u = (ret or "").upper()
        if ret_u == "FULL":
            full = len(original) <= FULL_RETURN_LIMIT
        elif ret_u != "HDRS":
            full = len(original) <= DEFAULT_RETURN_LIMIT
    returned = _crlf(original if full else header_block(original))
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"

    boundary = f"{token}/{reporting_mta}"
    while boundary.encode() in returned:
        boundary = f"{os.urandom(8).hex()}={boundary}"

    if utf8:
        report_type = "global-delivery-status"
        status_type = "message/global-delivery-status"
        returned_type = "message/global" if full else "message/global-headers"
    else:
        report_type = "delivery-status"
        status_type = "message/delivery-status"
        returned_type = "message/rfc822" if full else "text/rfc822-headers"

    human = _human(reporting_mta, reports, kind, now, arrival)
    status = _status_fields(reporting_mta, envid, arrival, reports, utf8)
    eight_bit = any(b > 0x7F for b in returned) or not (human + status).isascii()
    cte = "8bit" if eight_bit else "7bit"
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        f"Subject: {_subject(kind)}",
        f"Date: {_date(now)}",
        f"Message-ID: <{int(now)}.{token}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type={report_type};\r\n\tboundary="{boundary}"',
        f"Content-Transfer-Encoding: {cte}",
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]
    parts = [
        f"--{boundary}\r\nContent-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {'7bit' if human.isascii() else '8bit'}\r\n\r\n{human}",
        f"--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: {status_type}\r\n"
        f"\r\n{status}",
    ]
    returned_head = (
        f"--{boundary}\r\nContent-Description: "
        f"{'Undelivered Message' if full else 'Message Headers'}\r\n"
        f"Content-Type: {returned_type}\r\n"
    )
    if any(b > 0x7F for b in returned):
        returned_head += "Content-Transfer-Encoding: 8bit\r\n"
    text = "\r\n".join(head) + "\r\n" + "\r\n".join(parts) + "\r\n"
    data = text.encode("utf-8") + returned_head.encode("utf-8") + b"\r\n" + returned
    data += f"\r\n--{boundary}--\r\n".encode()
    return DSN(message=data, body="8BITMIME" if eight_bit else "7BIT", smtputf8=utf8)
