"""What the SMTP server hands to the outbound queue: an envelope and the message, made durable.

The queue implementation (spool, scheduler, worker) lives beside this module; servers depend only on
the `Spool` Protocol so tests can pass a fake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from carteiro.queue.transport import Reply, SendResult, Transaction
from carteiro.store.api import MessageSource


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    address: str
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY: NEVER | SUCCESS, FAILURE, DELAY; () = default
    orcpt: str | None = None  # RFC 3461 ORCPT, as given ("rfc822;bob@b.test")
    # Header fields for this recipient's copy only (a list's one-click unsubscribe URL, RFC
    # 8058), prepended when sending. Only with Envelope.verp, where each copy goes alone.
    headers: bytes = b""


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str  # "" for the null reverse-path
    recipients: tuple[QueuedRecipient, ...]
    ret: str | None = None  # RFC 3461 RET: "FULL" | "HDRS"
    envid: str | None = None  # RFC 3461 ENVID
    body: str = "7BIT"  # "7BIT" | "8BITMIME" | "BINARYMIME"
    smtputf8: bool = False
    requiretls: bool = False
    auth_user: str | None = None  # the authenticated submitter, if any
    # The client is trusted (authenticated, or in smtp.relay_networks): the queue may DKIM-sign the
    # message for our domains. Messages from strangers are never signed, whatever their From: says.
    trusted: bool = False
    # VERP (carteiro/core/verp.py): each recipient gets mail_from+local=domain@ as its envelope
    # sender, in a transaction of its own (a list's fan-out: bounces name the member).
    verp: bool = False


class Spool(Protocol):
    async def enqueue(
        self, envelope: Envelope, source: MessageSource, dedupe_key: str | None = None
    ) -> str:
        """Durably store the message for delivery; returns the queue id. Durable before it returns.
        With `dedupe_key`, a message enqueued before under the same key (within DEDUPE_KEEP
        seconds) is not queued again: its queue id is returned (a client's retry after a lost
        250, or after a crash between the store's COMMIT and this one)."""
        ...


class LocalHandoff(Protocol):
    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> Reply:
        """Deliver the message `data` (as queued, with our prefix) to a local-domain recipient:
        DSNs to local senders, alias targets the queue holds. 2xx delivered, 4xx try later, 5xx
        bounce. app.py injects mail.deliver's (the queue never imports mail); tests a fake."""
        ...


class HeldMail(Protocol):
    """Mail the queue holds for held domains (RFC 1985 ETRN, RFC 2645 ATRN); the worker."""

    async def etrn(self, node: str, subdomains: bool = False) -> int:
        """Send what waits for `node` (and its subdomains) now; returns how many messages."""
        ...

    def waiting(self, domains: Collection[str]) -> int:
        """How many messages have recipients in `domains` waiting."""
        ...

    async def atrn(
        self,
        domains: Collection[str],
        send: Callable[[Transaction], Awaitable[SendResult]],
        peer: str,
    ) -> int:
        """Deliver what waits for `domains` through `send` (an open, turned-around
        connection), recording each outcome; returns how many messages were tried."""
        ...
