"""What the queue asks of an outbound SMTP transport, and what it gets back: values, no sockets.

The aiosmtplib implementation lives in carteiro/net/smtp_client.py; app.py injects it. Tests pass a
fake. A transport never decides about retries or bounces: it reports replies, the worker decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

TLSPolicy = Literal["opportunistic", "starttls", "implicit", "none"]
"""opportunistic: STARTTLS when offered, falling back to plain text when the handshake fails
(RFC 3207 4.1; Postfix's "may"). starttls: STARTTLS required. implicit: TLS from the first byte
(RFC 8314). none: never. With `Hop.verify` TLS is required and the certificate must match the host
name (Postfix's "verify")."""

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


TLSARecord = tuple[int, int, int, bytes]  # usage, selector, matching type, data (RFC 6698)


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply (remote or made up by us) with its RFC 3463 enhanced status code."""

    code: int
    status: str  # "5.1.1"; derived from the code's class when the server gave none
    text: str

    @classmethod
    def parse(cls, code: int, message: str) -> Reply:
        """A reply as aiosmtplib hands it over: code and (multi-line) text."""
        text = " ".join(line.strip() for line in message.splitlines() if line.strip())
        m = _ENHANCED.match(text)
        if m and m.group(1) == str(code)[0]:
            return cls(code, f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end() :].strip())
        # RFC 3463 3.1: X.0.0 when nothing more specific is known.
        klass = str(code)[0] if 200 <= code < 600 else "4"
        return cls(code, f"{klass}.0.0", text)

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def temporary(self) -> bool:
        return not (self.ok or self.permanent)

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}".rstrip()


@dataclass(frozen=True, slots=True)
class Hop:
    """One address to try: the MX (or relay) name for TLS and logs, the IP to connect to."""

    host: str
    address: str
    port: int = 25
    tls: TLSPolicy = "opportunistic"
    verify: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""  # extra trust anchors for "verify" (private CAs, tests)
    protocol: Literal["smtp", "lmtp"] = "smtp"  # lmtp: `address` may be "unix:/path"
    required_by: str = ""  # who requires verified TLS here ("MTA-STS policy of d"), for errors
    tlsa: tuple[TLSARecord, ...] = ()  # DANE (RFC 7672): the host's usable TLSA records

    @property
    def key(self) -> tuple[object, ...]:
        """Connections to the same key are interchangeable (the pool's key)."""
        return (
            self.host,
            self.address,
            self.port,
            self.tls,
            self.verify,
            self.username,
            self.cafile,
            self.tlsa,
        )


@dataclass(frozen=True, slots=True)
class RcptSpec:
    address: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None  # as received (xtext-encoded), passed on verbatim (RFC 3461 4.2)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One MAIL transaction: a sender, some recipients (all for one destination), the bytes."""

    mail_from: str
    recipients: tuple[RcptSpec, ...]
    message: bytes  # CRLF line endings, not dot-stuffed
    body: str = "7BIT"  # "7BIT" | "8BITMIME" | "BINARYMIME" (RFC 6152, RFC 3030)
    smtputf8: bool = False  # RFC 6531: the sender asked for it
    ret: str | None = None  # RFC 3461 RET
    envid: str | None = None  # RFC 3461 ENVID, xtext as received
    requiretls: bool = False  # RFC 8689


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt at one hop.

    Either `session_error` is set (nothing was accepted for any recipient; `try_next` says whether
    another MX might do better, RFC 5321 5.1), or `recipients` holds one final reply per recipient,
    in the order of the transaction: the RCPT reply when refused, else the reply to the data.
    """

    session_error: Reply | None = None
    try_next: bool = False
    remote_said: bool = (
        False  # session_error is the server's reply (not a connect/TLS/timeout error)
    )
    recipients: tuple[Reply, ...] = ()
    remote_dsn: bool = (
        False  # the server announced DSN: it takes over NOTIFY=SUCCESS (RFC 3461 5.2.2)
    )
    tls: str = ""  # "TLSv1.3" when the session was encrypted
    reused: bool = False  # over a connection kept from an earlier transaction (no new handshake)
    local_ip: str = ""  # our address in a session that failed TLS (TLS reports, RFC 8460)


class Transport(Protocol):
    async def send(self, hop: Hop, txn: Transaction) -> SendResult:
        """Deliver `txn` to `hop`, reusing an idle connection to the same hop when it has one.

        Never raises for network or protocol trouble: that is a SendResult with a 4xx reply.
        """
        ...

    def has_idle(self, hop: Hop) -> bool:
        """True when a reusable connection to `hop` is waiting (routing prefers it)."""
        ...

    async def close(self) -> None:
        """QUIT and close every idle connection."""
        ...
