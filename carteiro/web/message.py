"""A fetched message made ready to show: decoded headers, the text and HTML bodies, attachments
(numbered in walk order, with name, type and size) and the parts `cid:` URLs name (RFC 2392).

Pure: parses bytes with the stdlib's email package (policy.default decodes RFC 2047 words and
RFC 2231 parameters); never raises on broken mail, whose undecodable parts show as attachments.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

MAX_PARTS = 500


@dataclass
class Part:
    index: int
    filename: str
    content_type: str
    size: int
    content_id: str


@dataclass
class View:
    msg: EmailMessage
    headers: list[tuple[str, str]]
    text: str
    html: str
    attachments: list[Part] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return header(self.msg, "Subject")


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header(msg: EmailMessage, name: str) -> str:
    try:
        v = msg.get(name)
    except (ValueError, TypeError, IndexError, AttributeError):
        v = None  # a header the stdlib cannot parse shows as missing rather than failing
    return str(v) if v is not None else ""


def _leaves(msg: EmailMessage) -> list[EmailMessage]:
    out = []
    for i, p in enumerate(msg.walk()):
        if i > MAX_PARTS:
            break
        if not p.is_multipart():
            out.append(p)
    return out


def _content(part: EmailMessage) -> str:
    try:
        c = part.get_content()
    except (LookupError, ValueError, AssertionError, KeyError):  # unknown charset, broken CTE
        payload = part.get_payload(decode=True)
        c = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return c if isinstance(c, str) else ""


def view(raw: bytes) -> View:
    msg = parse(raw)
    headers = [(h, header(msg, h)) for h in ("From", "To", "Cc", "Date", "Subject")]
    headers = [(h, v) for h, v in headers if v]
    text = html = ""
    body_parts: set[int] = set()
    try:
        plain = msg.get_body(preferencelist=("plain",))
        rich = msg.get_body(preferencelist=("html",))
    except (KeyError, ValueError, AttributeError):
        plain = rich = None
    leaves = _leaves(msg)
    for i, p in enumerate(leaves):
        if p is plain:
            text = _content(p)
            body_parts.add(i)
        elif p is rich:
            html = _content(p)
            body_parts.add(i)
    if not text and not html and not msg.is_multipart() and msg.get_content_maintype() == "text":
        text = _content(msg)
        body_parts.add(0)
    atts: list[Part] = []
    for i, p in enumerate(leaves):
        if i in body_parts:
            continue
        cid = str(p.get("Content-ID", "")).strip().strip("<>")
        if cid and html and f"cid:{cid}" in html:
            continue  # an image of the HTML body (RFC 2392), shown there, not an attachment
        payload = p.get_payload(decode=True)
        atts.append(
            Part(
                index=i,
                filename=p.get_filename() or f"part-{i + 1}",
                content_type=p.get_content_type(),
                size=len(payload) if isinstance(payload, bytes) else 0,
                content_id=cid,
            )
        )
    return View(msg, headers, text, html, atts)


def part_bytes(raw: bytes, index: int) -> tuple[bytes, str, str] | None:
    """(decoded bytes, content type, file name) of leaf `index`."""
    leaves = _leaves(parse(raw))
    if not 0 <= index < len(leaves):
        return None
    p = leaves[index]
    if p.get_content_type() == "message/rfc822":
        inner = p.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        data = first.as_bytes() if first is not None and not isinstance(first, str) else b""
    else:
        payload = p.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    return data, p.get_content_type(), p.get_filename() or f"part-{index + 1}"


def cid_part(raw: bytes, cid: str) -> tuple[bytes, str] | None:
    for i, p in enumerate(_leaves(parse(raw))):
        if str(p.get("Content-ID", "")).strip().strip("<>") == cid:
            got = part_bytes(raw, i)
            if got:
                return got[0], got[1]
    return None
