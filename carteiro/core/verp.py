"""VERP (variable envelope return paths): one envelope sender per recipient, so that a bounce
names the address that bounced whatever the remote MTA writes in it.

The form is Postfix's XVERP default and Mailman's: `list-bounces+bob=b.test@lists.test` for the
sender `list-bounces@lists.test` and the recipient `bob@b.test` (delimiters "+" and "="). Pure.
"""

from __future__ import annotations


def encode(sender: str, recipient: str) -> str:
    """The sender for one recipient. An empty sender (a bounce) stays empty."""
    if not sender or "@" not in sender:
        return sender
    local, _, domain = sender.rpartition("@")
    r_local, at, r_domain = recipient.rpartition("@")
    tail = f"{r_local}={r_domain}" if at else recipient
    return f"{local}+{tail}@{domain}"


def decode(detail: str) -> str | None:
    """The recipient from the part after "+" (`bob=b.test` -> `bob@b.test`); None when it is
    not one. The last "=" separates: a domain never holds one, a local part may."""
    local, eq, domain = detail.rpartition("=")
    if not eq or not local or not domain or ("." not in domain and domain != "localhost"):
        return None
    return f"{local}@{domain}"
