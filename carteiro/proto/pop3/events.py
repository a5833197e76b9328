"""What the POP3 machine tells its session: replies to write and requests only the session can serve.

A request (Login, AuthStart, AuthResponse, StartTLS, Retrieve, Update) blocks the machine until the
session answers it with the matching machine method; replies are plain bytes to write in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NeedData:
    """Every complete line has been handled: read more."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over (QUIT answered, or closed after an error): stop reading."""


@dataclass(slots=True)  # (not frozen, like Retrieve: once per command, four times cheaper)
class Reply:
    data: bytes
    close: bool = False  # write `data`, then close the connection


@dataclass(frozen=True, slots=True)
class Login:
    """USER + PASS (RFC 1939 7). Answer with authenticated() or refused()."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthStart:
    """AUTH mechanism [initial-response] (RFC 5034 4); `initial` is decoded, None when absent.
    Answer with challenge(), authenticated() or refused()."""

    mechanism: str
    initial: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client's (decoded) answer to a challenge. Answer like AuthStart."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartTLS:
    """STLS accepted (RFC 2595 4): write `reply`, negotiate TLS, then call tls_started()."""

    reply: bytes


@dataclass(slots=True)
class Retrieve:
    """RETR (lines None) or TOP n (lines n). Answer with message() or message_gone()."""

    number: int
    uid: int
    size: int
    lines: int | None


@dataclass(frozen=True, slots=True)
class Update:
    """QUIT in the TRANSACTION state (RFC 1939 6): remove `delete`, set \\Seen on `seen`,
    release the maildrop, then call updated()."""

    delete: tuple[int, ...]
    seen: tuple[int, ...]


Event = NeedData | Closed | Reply | Login | AuthStart | AuthResponse | StartTLS | Retrieve | Update

NEED_DATA = NeedData()
CLOSED = Closed()
