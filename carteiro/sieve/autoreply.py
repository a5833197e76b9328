"""Messages a script makes the server send, built as bytes, and when not to send them: vacation
replies (RFC 5230, RFC 3834), rejections (RFC 5429 as an RFC 8098 MDN) and mailto
notifications (RFC 5436). Pure: the caller supplies the time, the message id and the host name,
and hands the result to the outbound queue with a null reverse-path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime

from carteiro.mime.address import parse_address_list
from carteiro.sieve.actions import Notify, Vacation
from carteiro.sieve.headers import HeaderList

# RFC 5230 4.5 / RFC 3834 2: senders that are lists, robots or daemons get no reply.
_ROBOT_LOCALPARTS = ("mailer-daemon", "listserv", "majordomo", "postmaster", "noreply")
_ROBOT_PREFIXES = ("owner-", "bounce", "no-reply", "noreply")
_ROBOT_SUFFIXES = ("-request", "-owner", "-bounces", "-errors")
_LIST_HEADERS = ("list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post",
                 "list-owner", "list-archive")  # fmt: skip
_RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def _base(address: str) -> str:
    """An address without its +detail, lowercased, for comparing the user's addresses."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def is_automatic(headers: HeaderList) -> str | None:
    """Why this message must get no automatic answer (RFC 3834 2, RFC 5230 4.5), or None."""
    for v in headers.values("auto-submitted"):
        if v.split(";", 1)[0].strip().lower() != "no":
            return "Auto-Submitted"
    for v in headers.values("precedence"):
        if v.strip().lower() in ("bulk", "list", "junk"):
            return "Precedence: " + v.strip().lower()
    for h in _LIST_HEADERS:
        if headers.raw(h):
            return h
    for v in headers.values("x-auto-response-suppress"):
        if any(t.strip().lower() in ("all", "oof", "autoreply") for t in v.split(",")):
            return "X-Auto-Response-Suppress"
    return None


def is_robot(sender: str) -> bool:
    local = sender.rpartition("@")[0].lower()
    return (
        local in _ROBOT_LOCALPARTS
        or local.startswith(_ROBOT_PREFIXES)
        or local.endswith(_ROBOT_SUFFIXES)
    )


def vacation_refusal(
    headers: HeaderList, sender: str, user_addresses: Iterable[str], action: Vacation
) -> str | None:
    """Why no vacation reply may be sent for this message (RFC 5230 4.5), or None to send."""
    if not sender:
        return "null sender"
    mine = {_base(a) for a in (*user_addresses, *action.addresses) if "@" in a}
    if _base(sender) in mine:
        return "the sender is the user"
    if is_robot(sender):
        return "the sender is a list or robot"
    why = is_automatic(headers)
    if why is not None:
        return why
    # RFC 5230 4.5: reply only when one of the user's addresses is a visible recipient
    for h in _RECIPIENT_HEADERS:
        for raw in headers.raw(h):
            for a in parse_address_list(raw, fill_missing=False, limit=1000):
                if a.mailbox and a.domain:
                    addr = f"{a.mailbox.decode('utf-8', 'replace')}@{a.domain.decode('utf-8', 'replace')}"
                    if _base(addr) in mine:
                        return None
    return "the user is not a visible recipient"


def _message(smtputf8: bool) -> EmailMessage:
    return EmailMessage(policy=SMTPUTF8 if smtputf8 else SMTP)


def _refs(headers: HeaderList, msg: EmailMessage) -> None:
    ids = headers.values("message-id")
    if ids:
        msg["In-Reply-To"] = ids[0]
        refs = headers.values("references")
        msg["References"] = " ".join([*refs[:1], ids[0]]).strip()


def vacation_reply(
    headers: HeaderList,
    action: Vacation,
    sender: str,
    recipient: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """The reply (RFC 5230 5, RFC 3834 3): to the envelope sender, Auto-Submitted:
    auto-replied, threaded on the original."""
    utf8 = not (sender.isascii() and recipient.isascii())
    msg = _message(utf8)
    msg["From"] = action.from_ or recipient
    msg["To"] = sender
    if action.subject is not None:
        subject = action.subject
    else:
        orig = headers.values("subject")
        subject = "Auto: " + (orig[0] if orig else "")
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    _refs(headers, msg)
    msg["Auto-Submitted"] = "auto-replied (vacation)"  # RFC 3834 5
    msg["Precedence"] = "bulk"
    if action.mime:
        # RFC 5230 4.4: the reason is a MIME entity (its own header and body)
        head, _, body = action.reason.replace("\r\n", "\n").partition("\n\n")
        out = msg.as_bytes()
        entity = (head.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")
        return out.rstrip(b"\r\n") + b"\r\nMIME-Version: 1.0\r\n" + entity
    msg.set_content(action.reason.replace("\r\n", "\n"))
    return msg.as_bytes()


def rejection(
    headers: HeaderList,
    original_header: bytes,
    reason: str,
    sender: str,
    recipient: str,
    host: str,
    now: datetime,
    message_id: str,
    extended: bool = False,
) -> bytes:
    """RFC 5429 2.1: an MDN (RFC 8098) saying the message was deleted, with the reason; for
    ereject (2.2), which cannot refuse in the SMTP dialogue here, a DSN (RFC 3464) instead."""
    policy = SMTPUTF8 if not (sender.isascii() and recipient.isascii()) else SMTP
    kind = "delivery-status" if extended else "disposition-notification"
    msg = MIMEMultipart("report", report_type=kind, policy=policy)
    msg["From"] = f"Mail Delivery Subsystem <MAILER-DAEMON@{host}>"
    msg["To"] = sender
    orig = headers.values("subject")
    msg["Subject"] = "Rejected: " + (orig[0] if orig else "(no subject)")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    mid = headers.values("message-id")
    if mid:
        msg["In-Reply-To"] = mid[0]
    msg["Auto-Submitted"] = "auto-replied (rejected)"
    text = reason.replace("\r\n", "\n")
    msg.attach(
        MIMEText(
            f"Your message to {recipient} was automatically rejected:\n\n{text}\n", "plain", "utf-8"
        )
    )
    report = MIMEBase("message", kind)
    if extended:
        why = " ".join(reason.split())[:200]
        per_message, per_recipient = Message(), Message()
        per_message["Reporting-MTA"] = f"dns; {host}"
        per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
        per_recipient["Action"] = "failed"
        per_recipient["Status"] = "5.7.1"
        per_recipient["Diagnostic-Code"] = f"smtp; 550 5.7.1 {why}"
        report.set_payload([per_message, per_recipient])
    else:
        report.set_payload(
            f"Reporting-UA: {host}; carteiro\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\n"
            + (f"Original-Message-ID: {mid[0]}\r\n" if mid else "")
            + "Disposition: automatic-action/MDN-sent-automatically; deleted\r\n"
        )
    msg.attach(report)
    original = MIMEBase("text", "rfc822-headers")
    original.set_payload(original_header.decode("utf-8", "replace"))
    msg.attach(original)
    return msg.as_bytes(policy=policy)


def notification(
    headers: HeaderList,
    action: Notify,
    recipient: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """RFC 5436 2.7: a short message about the new mail, Auto-Submitted: auto-notified."""
    uri = dict(action.uri_headers)
    msg = _message(not recipient.isascii() or not all(r.isascii() for r in action.recipients))
    msg["From"] = action.from_ or recipient
    msg["To"] = ", ".join(action.recipients)
    if "cc" in uri:
        msg["Cc"] = uri["cc"]
    frm = headers.values("from")
    subj = headers.values("subject")
    default = f"[SIEVE] New mail from {frm[0] if frm else 'unknown'}: {subj[0] if subj else ''}"
    msg["Subject"] = uri.get("subject") or action.message or default
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-notified"  # RFC 5436 2.7.1
    # RFC 5436 2.7: importance 1/2/3 -> high/normal/low
    msg["Importance"] = {"1": "high", "2": "normal", "3": "low"}[action.importance]
    if "in-reply-to" in uri:
        msg["In-Reply-To"] = uri["in-reply-to"]
    msg.set_content(uri.get("body") or action.message or default)
    return msg.as_bytes()
