"""The messages a list writes itself: confirmation requests, welcome and goodbye, moderation
notices, refusals, command results, bounce probes and warnings, digests. Built with the stdlib's
email package; every one has Auto-Submitted: auto-replied or auto-generated (RFC 3834) so that
auto-responders stay quiet."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from email.policy import SMTP

from carteiro.lists.model import MailingList


def notice(
    ml: MailingList,
    to: str,
    subject: str,
    text: str,
    *,
    sender_role: str = "owner",
    reply_to: str | None = None,
    auto: str = "auto-generated",
    attach: bytes | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = email.utils.formataddr((f"{ml.name} list", ml.role_address(sender_role)))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=ml.domain)
    msg["Auto-Submitted"] = auto
    msg["Precedence"] = "list"  # "bulk" keeps vacation responders quiet too (RFC 3834 2)
    msg["List-Id"] = f"<{ml.list_id}>"
    msg["X-BeenThere"] = ml.address  # our own notices must not come back as posts
    if reply_to:
        msg["Reply-To"] = reply_to
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(text, cte="quoted-printable" if not text.isascii() else "7bit")
    if attach is not None:
        from email import message_from_bytes

        inner = message_from_bytes(attach, policy=SMTP)
        msg.add_attachment(inner)
    return msg.as_bytes()


def help_text(ml: MailingList) -> str:
    return (
        f"Help for the list {ml.address}\n\n"
        f"To post, write to {ml.address}.\n"
        f"To subscribe, write to {ml.role_address('join')} (or 'subscribe' to"
        f" {ml.role_address('request')}).\n"
        f"To unsubscribe, write to {ml.role_address('leave')} (or 'unsubscribe').\n"
        f"'digest on' or 'digest off' to {ml.role_address('request')} switches to one daily"
        " digest and back.\n"
        f"The people who run the list: {ml.role_address('owner')}.\n"
    )
