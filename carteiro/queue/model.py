"""The queue's records: one message (its envelope) and the delivery state of each recipient.

Plain data shared by the spool (which makes them durable), the worker and the operator commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from carteiro.core import verp
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.transport import Reply

RecipientStatus = Literal["pending", "delivered", "failed"]


@dataclass
class RecipientState:
    idx: int
    address: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    state: RecipientStatus = "pending"
    attempts: int = 0
    next_try: float = 0.0
    last_attempt: float | None = None
    last_code: int = 0
    last_status: str = ""
    last_text: str = ""
    remote_mta: str = ""
    remote_reply: bool = True  # the last reply came from a remote server (vs. our own reason)
    delay_notified: bool = False
    headers: bytes = b""  # QueuedRecipient.headers

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()

    @property
    def last_reply(self) -> Reply | None:
        if not self.last_code:
            return None
        return Reply(self.last_code, self.last_status, self.last_text)

    @property
    def last_error(self) -> str:
        reply = self.last_reply
        if reply is None:
            return ""
        where = f"{self.remote_mta} said: " if self.remote_mta and self.remote_reply else ""
        return f"{where}{reply}"

    def copy(self) -> RecipientState:
        # every field is immutable (str, int, float, bool, tuple, bytes): a shallow copy of the
        # attributes, without __init__ (made several times per recipient per attempt)
        new = object.__new__(RecipientState)
        new.__dict__.update(self.__dict__)
        return new


@dataclass
class QueuedMessage:
    id: str
    mail_from: str
    recipients: list[RecipientState]
    size: int
    arrival: float
    ret: str | None = None
    envid: str | None = None
    body: str = "7BIT"
    smtputf8: bool = False
    requiretls: bool = False
    auth_user: str | None = None
    held: bool = False
    prefix: bytes = b""  # header fields prepended when sending (our DKIM-Signature)
    origin: str = ""  # "" or "dsn" (a report we generated)
    inline: bool = False  # small messages live in the index, big ones in msg/ID
    verp: bool = False  # one envelope sender per recipient (Envelope.verp)
    # Runtime only, never stored:
    active: bool = field(default=False, compare=False)
    scheduled: float | None = field(default=None, compare=False)
    deleted: bool = field(default=False, compare=False)
    flush: bool = field(default=False, compare=False)

    @property
    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.state == "pending"]

    @property
    def done(self) -> bool:
        return all(r.state != "pending" for r in self.recipients)

    def envelope(self) -> Envelope:
        return Envelope(
            mail_from=self.mail_from,
            recipients=tuple(
                QueuedRecipient(r.address, r.notify, r.orcpt, r.headers) for r in self.recipients
            ),
            ret=self.ret,
            envid=self.envid,
            body=self.body,
            smtputf8=self.smtputf8,
            requiretls=self.requiretls,
            auth_user=self.auth_user,
            verp=self.verp,
        )

    def sender_for(self, address: str) -> str:
        """The envelope sender of the copy for `address` (VERP when the message asks)."""
        return verp.encode(self.mail_from, address) if self.verp else self.mail_from
