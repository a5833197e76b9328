"""A list's daily digest: one message with a table of contents and the day's posts as a
multipart/digest of message/rfc822 parts (RFC 2046 5.1.5). Pure."""

from __future__ import annotations

import email.utils
import time
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP

from carteiro.lists.model import MailingList


def build_digest(ml: MailingList, posts: list[bytes], now: float) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = ml.role_address("request")
    msg["To"] = ml.address
    msg["Subject"] = f"{ml.name} digest, {time.strftime('%Y-%m-%d', time.gmtime(now))}"
    msg["Date"] = email.utils.formatdate(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=ml.domain)
    msg["List-Id"] = f"<{ml.list_id}>"
    msg["X-BeenThere"] = ml.address
    msg["Precedence"] = "list"
    msg.make_mixed()
    toc = EmailMessage(policy=SMTP)
    subjects = []
    digest = EmailMessage(policy=SMTP)
    digest.make_mixed()
    digest.replace_header("Content-Type", "multipart/digest")
    for i, raw in enumerate(posts, 1):
        part = message_from_bytes(raw, policy=SMTP)
        subjects.append(f"{i}. {part.get('Subject', '(no subject)')} ({part.get('From', '')})")
        digest.attach(part)  # type: ignore[arg-type]
    toc.set_content(f"Today's topics ({len(posts)} messages):\n\n" + "\n".join(subjects) + "\n")
    msg.attach(toc)
    msg.attach(digest)
    return msg.as_bytes()
