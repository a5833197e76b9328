"""Which addresses a bounce says failed: RFC 3464 delivery status notifications (only Action:
failed counts; delayed, delivered, relayed and expanded do not), then the common non-standard
forms (qmail's qmail-send, Exim's "following address(es) failed", Postfix's and Sendmail's old
text). Reads at most MAX_SCAN octets; never raises on malformed input. Pure."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

MAX_SCAN = 256 * 1024
_ADDR = r"<?([^\s<>@\"',;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?"
_QMAIL = re.compile(r"^<([^>\s]+@[^>\s]+)>:\s*$", re.MULTILINE)
_EXIM = re.compile(r"following address(?:es|\(es\))? failed:", re.IGNORECASE)
_FIRST_ADDR = re.compile(_ADDR)
_SMTP_FAIL = re.compile(r"^[ \t]*" + _ADDR + r"[^\n]{0,200}?\b5\d\d\b", re.MULTILINE)
_NOT_DELIVERED = re.compile(
    r"(could not be delivered|undeliverable|delivery (has )?failed|permanent(ly)? (error|fail)"
    r"|user unknown|no such user|mailbox unavailable|returned to sender|failure notice)",
    re.IGNORECASE,
)


def failed_recipients(data: bytes) -> list[str]:
    """Lowercased addresses that permanently failed, in order, each once. [] when the message
    is not a bounce, reports only delays, or names no address."""
    try:
        msg = email.message_from_bytes(data[:MAX_SCAN], policy=email.policy.compat32)
    except Exception:  # the stdlib parser is lenient, but a bounce must never crash us
        return []
    found = _rfc3464(msg)
    if found is None:
        found = _text_forms(msg)
    seen: dict[str, None] = {}
    for a in found:
        seen.setdefault(a.strip().strip("<>").lower(), None)
    return [a for a in seen if "@" in a]


def is_dsn(msg: Message) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


def _rfc3464(msg: Message) -> list[str] | None:
    """None when there is no delivery-status part (so the text forms are tried)."""
    status = None
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            status = part
            break
    if status is None:
        return None
    blocks = _status_blocks(status)
    out = []
    for fields in blocks[1:]:  # the first block is per-message (RFC 3464 2.2)
        action = fields.get("action", "").lower()
        if action != "failed":
            continue
        rcpt = fields.get("original-recipient") or fields.get("final-recipient") or ""
        _type, _, address = rcpt.partition(";")
        if address.strip():
            out.append(address.strip())
    return out


def _status_blocks(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib parses message/delivery-status into blocks
        return [
            {k.lower(): str(v).strip() for k, v in b.items()}
            for b in payload
            if isinstance(b, Message)
        ]
    text = payload if isinstance(payload, str) else ""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in chunk.splitlines():
            name, colon, value = line.partition(":")
            if colon:
                fields[name.strip().lower()] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def _text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return raw.decode("utf-8", "replace")
        if part.get_content_type() == "message/rfc822":
            break  # the returned message: its text is the member's post, not the report
    return ""


def _text_forms(msg: Message) -> list[str]:
    subject = str(msg.get("Subject", ""))
    text = _text(msg)
    if "qmail-send" in text or "This is the mail system at host" in text:
        hits = _QMAIL.findall(text)
        if hits:
            return list(hits)
    m = _EXIM.search(text)
    if m:
        # the indented lines after the marker, up to the first unindented one
        found = []
        for line in text[m.end() :].splitlines()[1:200]:
            if line.strip() and not line[:1].isspace():
                break
            words = line.split()
            if words and "@" in words[0]:
                hit = _FIRST_ADDR.match(words[0])
                if hit:
                    found.append(hit.group(1))
        return found
    if _NOT_DELIVERED.search(subject) or _NOT_DELIVERED.search(text[:2000]):
        return [a for a in _SMTP_FAIL.findall(text)]
    return []
