"""The pipeline a post accepted by the chain goes through to become the members' copy: header
clean-up, DMARC mitigation, subject prefix, Reply-To, footer, the RFC 2369 / 2919 fields. Each
handler edits the raw message (message.py); what a handler does not need to touch stays byte for
byte what the author sent, so the author's DKIM signature survives where the settings allow.
Pure: DNS answers come in `Context`."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass

from carteiro.lists.message import RawMessage
from carteiro.lists.model import MailingList

# Fields the list replaces (RFC 2369, 2919, 8058), and ones that must not reach the members
# (receipt requests go to the author only; Approved carries a moderator's password).
LIST_FIELDS = (
    "List-Id",
    "List-Help",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Precedence",
    "X-BeenThere",
)
STRIP = (
    "Approved",
    "Approve",
    "Return-Receipt-To",
    "Disposition-Notification-To",
    "X-Confirm-Reading-To",
    "Return-Path",
)


@dataclass
class Context:
    ml: MailingList
    author: tuple[str, str]  # (display name, address) of From:
    dmarc_strict: bool  # the author's domain publishes p=reject or p=quarantine
    archive_url: str = ""


Handler = Callable[[RawMessage, Context], None]


def cleanse(msg: RawMessage, ctx: Context) -> None:
    msg.remove(*STRIP)


def dmarc_mitigation(msg: RawMessage, ctx: Context) -> None:
    """DMARC 7489 and Mailman's "munge From": a post we change would fail the author's
    p=reject/quarantine at every receiver, so it comes From the list (which signs it) and
    replies go to the author."""
    if not (ctx.dmarc_strict and ctx.ml.settings.dmarc_mitigation):
        return
    name, address = ctx.author
    who = name or address.partition("@")[0]
    msg.replace("From", email.utils.formataddr((f"{who} via {ctx.ml.name}", ctx.ml.address)))
    if ctx.ml.settings.reply_to == "list":
        msg.replace("Reply-To", ctx.ml.address)
        cc = msg.get("Cc")
        msg.replace("Cc", f"{cc}, {address}" if cc else address)
    else:
        msg.replace("Reply-To", email.utils.formataddr((name, address)))
    msg.prepend("X-Original-From", email.utils.formataddr((name, address)))


def reply_to(msg: RawMessage, ctx: Context) -> None:
    if ctx.ml.settings.reply_to == "list" and not ctx.dmarc_strict:
        msg.replace("Reply-To", ctx.ml.address)


def subject_prefix(msg: RawMessage, ctx: Context) -> None:
    prefix = ctx.ml.settings.subject_prefix
    if not prefix:
        return
    subject = msg.get("Subject") or ""
    bare = prefix.strip()
    # a reply's "Re: [dev] x" keeps its one prefix: "[dev] Re: x"
    rest = re.sub(r"^(\s*(re|aw|sv|fwd?)\s*:\s*)+", "", subject, flags=re.IGNORECASE)
    if rest.startswith(bare):
        rest = rest[len(bare) :].lstrip()
        subject = f"Re: {rest}" if rest != subject and subject.lower().startswith("re") else rest
    msg.replace("Subject", f"{prefix}{subject}")


def footer(msg: RawMessage, ctx: Context) -> None:
    """Appended to a plain-text body (7bit, 8bit or absent CTE); a multipart/mixed post gets a
    text/plain part before its end; other posts (signed, encoded, alternative) are left as they
    are rather than broken."""
    text = ctx.ml.settings.footer
    if not text:
        return
    ctype = (msg.get("Content-Type") or "text/plain").lower()
    cte = (msg.get("Content-Transfer-Encoding") or "7bit").lower().strip()
    block = ("\r\n-- \r\n" + text.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n").encode()
    if ctype.startswith("text/plain") and cte in ("7bit", "8bit"):
        charset = re.search(r'charset="?([\w-]+)', ctype)
        if not text.isascii() and (charset is None or charset.group(1) not in ("utf-8", "utf8")):
            return
        body = msg.body if msg.body.endswith(b"\r\n") or not msg.body else msg.body + b"\r\n"
        msg.body = body + block[2:]
        return
    m = re.search(r'boundary="?([^";]+)"?', msg.get("Content-Type") or "", re.IGNORECASE)
    if ctype.startswith("multipart/mixed") and m:
        close = b"\r\n--" + m.group(1).encode() + b"--"
        at = msg.body.rfind(close)
        if at >= 0:
            part = (
                b"\r\n--" + m.group(1).encode() + b"\r\nContent-Type: text/plain; charset=utf-8"
                b"\r\nContent-Transfer-Encoding: 8bit\r\nContent-Disposition: inline\r\n\r\n"
                + text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
            )
            msg.body = msg.body[:at] + part + msg.body[at:]


def list_fields(msg: RawMessage, ctx: Context) -> None:
    """RFC 2369 (List-Help, -Subscribe, -Unsubscribe, -Post, -Owner, -Archive), RFC 2919
    List-Id, Precedence: list (RFC 3834 2 names it as the mark of list traffic) and X-BeenThere
    for loop detection. A member's own List-Unsubscribe (RFC 8058) is added per copy."""
    ml = ctx.ml
    msg.remove(*LIST_FIELDS)
    desc = ml.settings.description.replace('"', "'")
    ident = f'"{desc}" <{ml.list_id}>' if desc else f"<{ml.list_id}>"
    fields = [
        ("List-Id", ident),
        ("List-Help", f"<mailto:{ml.role_address('request')}?subject=help>"),
        ("List-Subscribe", f"<mailto:{ml.role_address('join')}>"),
        ("List-Post", "NO" if ml.settings.posting == "announce" else f"<mailto:{ml.address}>"),
        ("List-Owner", f"<mailto:{ml.role_address('owner')}>"),
    ]
    if ctx.archive_url:
        fields.append(("List-Archive", f"<{ctx.archive_url}>"))
    fields += [("Precedence", "list"), ("X-BeenThere", ml.address)]
    for name, value in reversed(fields):
        msg.prepend(name, value)


PIPELINE: tuple[Handler, ...] = (
    cleanse,
    dmarc_mitigation,
    reply_to,
    subject_prefix,
    footer,
    list_fields,
)


def run(msg: RawMessage, ctx: Context, pipeline: tuple[Handler, ...] = PIPELINE) -> None:
    for handler in pipeline:
        handler(msg, ctx)
