"""Building the messages the webmail sends: new, reply, reply-all, forward (inline or as an
attachment), with uploads; non-ASCII subjects, names and bodies encoded so any reader shows them
(RFC 2047 words, RFC 2231 file names, UTF-8 quoted-printable bodies), addresses checked first.

Pure: the stdlib's email package builds the MIME; nothing here talks to a server.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.message import EmailMessage

from carteiro.core.address import AddressError, parse_address

POLICY = email.policy.SMTP.clone(max_line_length=78)
_RE_PREFIX = re.compile(r"^\s*(re|fwd?|aw|wg|sv|vs)\s*:\s*", re.IGNORECASE)


class ComposeError(ValueError):
    """Input the user must fix; the message says what and where."""


@dataclass
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Draft:
    sender: str
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    forwarded: bytes | None = None  # message/rfc822 to attach whole


def _split(text: str) -> list[str]:
    """Comma-separated entries, commas inside "quoted names" or <addresses> not counting."""
    out: list[str] = []
    cur: list[str] = []
    quoted = angle = False
    for ch in text:
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        if ch in ",;" and not quoted and not angle:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [e.strip() for e in out if e.strip()]


def parse_recipients(text: str, field_name: str) -> list[tuple[str, str]]:
    """("Name", "addr") pairs from `addr` or `Name <addr>` entries; raises ComposeError naming
    the entry that is not an address (nothing is silently dropped)."""
    out: list[tuple[str, str]] = []
    for entry in _split(text.replace("\r", " ").replace("\n", " ")):
        name, addr = "", entry
        if entry.endswith(">") and "<" in entry:
            name, _, addr = entry[:-1].rpartition("<")
            name = name.strip().strip('"').strip()
        try:
            parse_address(addr.strip())
        except AddressError as e:
            raise ComposeError(f"{field_name}: {entry!r} is not a valid address ({e})") from None
        out.append((name, addr.strip()))
    return out


def _format(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(email.utils.formataddr(p) if p[0] else p[1] for p in pairs)


def build(
    draft: Draft, hostname: str, *, for_draft: bool = False
) -> tuple[EmailMessage, list[str]]:
    """(message, envelope recipients). Bcc is in the envelope, never in the header that is sent;
    a draft keeps it so it survives reopening."""
    to = parse_recipients(draft.to, "To")
    cc = parse_recipients(draft.cc, "Cc")
    bcc = parse_recipients(draft.bcc, "Bcc")
    if not for_draft and not (to or cc or bcc):
        raise ComposeError("Add at least one recipient.")
    msg = EmailMessage(policy=POLICY)
    msg["From"] = draft.sender
    if to:
        msg["To"] = _format(to)
    if cc:
        msg["Cc"] = _format(cc)
    if bcc and for_draft:
        msg["Bcc"] = _format(bcc)
    msg["Subject"] = draft.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        msg["References"] = draft.references
    msg["MIME-Version"] = "1.0"
    body = draft.body.replace("\r\n", "\n")
    # quoted-printable keeps long UTF-8 lines within RFC 5322 2.1.1's 998 octets.
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    for a in draft.attachments:
        maintype, _, subtype = (a.content_type or "application/octet-stream").partition("/")
        msg.add_attachment(
            a.data, maintype=maintype, subtype=subtype or "octet-stream", filename=a.filename
        )
    if draft.forwarded is not None:
        inner = email.message_from_bytes(draft.forwarded, policy=email.policy.default)
        # RFC 2046 5.2.1: the whole original, unchanged, as message/rfc822.
        msg.add_attachment(inner, filename="forwarded.eml")
    rcpts = [a for _, a in to + cc + bcc]
    return msg, list(dict.fromkeys(rcpts))


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=POLICY)


def _strip_prefixes(subject: str) -> str:
    while True:
        m = _RE_PREFIX.match(subject)
        if not m:
            return subject
        subject = subject[m.end() :]


def quote_body(text: str, who: str, date: str) -> str:
    lines = "\n".join("> " + ln if ln else ">" for ln in text.splitlines())
    return f"\n\nOn {date}, {who} wrote:\n{lines}\n"


def reply(original: EmailMessage, text: str, me: str, reply_all: bool) -> Draft:
    """RFC 5322 3.6.4: In-Reply-To is the original's Message-ID; References its References (or
    In-Reply-To) followed by that Message-ID. Reply-To wins over From."""
    mid = str(original.get("Message-ID", "")).strip()
    refs = str(original.get("References", "") or original.get("In-Reply-To", "")).split()
    if mid:
        refs.append(mid)
    target = original.get("Reply-To") or original.get("From") or ""
    to = [(n, a) for n, a in email.utils.getaddresses([str(target)]) if a]
    cc: list[tuple[str, str]] = []
    mine = me.lower()
    if reply_all:
        seen = {a.lower() for _, a in to} | {mine}
        for h in ("To", "Cc"):
            for n, a in email.utils.getaddresses([str(original.get(h, ""))]):
                if a and a.lower() not in seen:
                    seen.add(a.lower())
                    cc.append((n, a))
    subject = "Re: " + _strip_prefixes(str(original.get("Subject", "")))
    return Draft(
        sender=me,
        to=_format(to),
        cc=_format(cc),
        subject=subject,
        body=quote_body(text, str(original.get("From", "")), str(original.get("Date", ""))),
        in_reply_to=mid,
        references=" ".join(refs[-20:]),
    )


def forward(original: EmailMessage, raw: bytes, text: str, me: str, inline: bool) -> Draft:
    subject = "Fwd: " + _strip_prefixes(str(original.get("Subject", "")))
    if not inline:
        return Draft(sender=me, subject=subject, forwarded=raw)
    head = "\n".join(
        f"{h}: {original.get(h)}"
        for h in ("From", "Date", "Subject", "To", "Cc")
        if original.get(h)
    )
    body = f"\n\n-------- Forwarded message --------\n{head}\n\n{text}\n"
    return Draft(sender=me, subject=subject, body=body)
