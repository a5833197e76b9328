"""Delivery of queued mail to our own domains: DSNs to local senders, alias targets that the queue
holds. Mail for a local domain never leaves the machine.

The default `StoreDelivery` resolves the address with the directory and appends to INBOX through
MailStore.deliver; app.py may inject the mail layer's delivery (sieve, quota) instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from carteiro.directory.accounts import Directory, DirectoryError
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.transport import Reply
from carteiro.store.api import (
    AccountNotFound,
    Delivery,
    MailStore,
    MessageSource,
    OverQuota,
    StoreError,
)

log = logging.getLogger("carteiro.queue")


class LocalDelivery(Protocol):
    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> Reply:
        """Deliver the message `data` (as queued, with our prefix) to a local-domain recipient.
        2xx delivered, 4xx try later, 5xx bounce."""
        ...


Requeue = Callable[[Envelope, MessageSource], Awaitable[str]]


class StoreDelivery:
    def __init__(
        self, store: MailStore, directory: Directory, requeue: Requeue | None = None
    ) -> None:
        self.store = store
        self.directory = directory
        self.requeue = requeue  # alias targets in other domains go back to the queue

    async def deliver(self, mail_from: str, recipient: str, data: bytes) -> Reply:
        try:
            res = await asyncio.to_thread(self.directory.resolve, recipient)
        except DirectoryError as e:
            return Reply(550, "5.4.6", f"alias expansion failed: {e}")
        except ValueError as e:
            return Reply(550, "5.1.3", f"bad recipient address: {e}")
        if res is None:
            return Reply(550, "5.1.1", f"<{recipient}>: recipient address unknown")
        # RFC 5321 4.4: the delivering MTA records the reverse-path in Return-Path.
        raw = data
        data = f"Return-Path: <{mail_from}>\r\n".encode() + raw
        if res.local_accounts:
            try:
                await self.store.deliver(
                    [Delivery(account=acct) for acct, _detail in res.local_accounts], data
                )
            except AccountNotFound:
                return Reply(550, "5.1.1", f"<{recipient}>: mailbox unavailable")
            except OverQuota:
                return Reply(452, "4.2.2", f"<{recipient}>: mailbox full")
            except StoreError as e:
                log.warning("queue: local delivery to %s failed: %s", recipient, e)
                return Reply(451, "4.3.0", "local delivery failed, will retry")
        if res.remote:
            if self.requeue is None:
                return Reply(451, "4.3.0", "cannot forward alias targets")
            env = Envelope(mail_from, tuple(QueuedRecipient(a) for a in res.remote))
            await self.requeue(env, raw)
        return Reply(250, "2.0.0", "delivered locally")
