"""SASL server mechanisms as small challenge/response machines, shared by SMTP, IMAP and POP3.

RFC 4422 framework, RFC 4616 PLAIN, draft-murchison-sasl-login LOGIN. A SaslServer takes the
client's wire lines (base64, ``=`` for an empty initial response, ``*`` to cancel) and yields
Challenge / Success / Failure; it never checks passwords: Success carries Credentials for the
session to verify (off the event loop). No I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = [
    "MECHANISMS",
    "Challenge",
    "Credentials",
    "Failure",
    "FailureKind",
    "LoginMechanism",
    "Mechanism",
    "PlainMechanism",
    "SaslServer",
    "Step",
    "Success",
    "decode_response",
    "encode_challenge",
    "server",
]

MECHANISMS: Final = ("PLAIN", "LOGIN")
MAX_FIELD: Final = 1024  # octets per identity or password; RFC 4616 2 asks for at least 255
_BASE64_RE: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client claimed. ``authzid`` is "" when the client acts as itself."""

    authcid: str
    password: str = field(repr=False)
    authzid: str = ""

    @property
    def identity(self) -> str:
        """The identity to act as once the password is verified for ``authcid``."""
        return self.authzid or self.authcid


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` to the client, base64-encoded (IMAP ``+ ``, SMTP ``334 ``, POP3 ``+ ``)."""

    data: bytes


class FailureKind(enum.Enum):
    CANCELLED = "cancelled"  # the client sent "*": IMAP BAD, SMTP 501, POP3 -ERR
    ENCODING = "encoding"  # not base64: IMAP BAD (RFC 9051 6.2.2), SMTP 501
    INVALID = "invalid"  # decodes, but is not a valid message of the mechanism: NO / 535
    REFUSED = "refused"  # well formed but not allowed (proxy authorization): NO / 535


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    kind: FailureKind


@dataclass(frozen=True, slots=True)
class Success:
    credentials: Credentials


Step = Challenge | Success | Failure


def encode_challenge(data: bytes) -> bytes:
    return base64.b64encode(data)


def decode_response(line: bytes | str) -> bytes | Failure:
    """A client's base64 line -> octets. ``*`` cancels (RFC 4422 3.5); ``=`` is the empty
    initial response (RFC 4959 3, RFC 4954 4); an empty line is an empty response."""
    raw = line.encode("ascii", "replace") if isinstance(line, str) else bytes(line)
    raw = raw.strip(b" \t\r\n")
    if raw == b"*":
        return Failure("Authentication cancelled", FailureKind.CANCELLED)
    if raw == b"=":
        return b""  # accepted in continuation lines too: harmless leniency
    if _BASE64_RE.fullmatch(raw) is None or len(raw) % 4:
        return Failure("Invalid base64", FailureKind.ENCODING)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return Failure("Invalid base64", FailureKind.ENCODING)


class Mechanism(Protocol):
    name: str

    def start(self, initial: bytes | None) -> Step:
        """Begin; ``initial`` is the decoded initial response, None if the client sent none."""
        ...

    def step(self, data: bytes) -> Step:
        """The client's decoded answer to the last Challenge."""
        ...


def _text(raw: bytes, what: str) -> str | Failure:
    if len(raw) > MAX_FIELD:
        return Failure(f"{what} too long", FailureKind.INVALID)
    if b"\x00" in raw:
        return Failure(f"NUL in {what}", FailureKind.INVALID)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return Failure(f"{what} is not UTF-8", FailureKind.INVALID)


class PlainMechanism:
    """RFC 4616: message = [authzid] NUL authcid NUL passwd.

    Unless ``allow_proxy``, an authzid other than the authcid is refused (RFC 4616 2: the server
    must check the authcid may act as the authzid; this server allows only itself).
    """

    name = "PLAIN"

    def __init__(self, *, allow_proxy: bool = False) -> None:
        self.allow_proxy = allow_proxy

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, data: bytes) -> Step:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return Failure("PLAIN message must have exactly two NULs", FailureKind.INVALID)
        authzid = _text(parts[0], "authorization identity")
        authcid = _text(parts[1], "user name")
        password = _text(parts[2], "password")
        for value in (authzid, authcid, password):
            if isinstance(value, Failure):
                return value
        assert isinstance(authzid, str) and isinstance(authcid, str) and isinstance(password, str)
        if not authcid or not password:
            return Failure("Empty user name or password", FailureKind.INVALID)
        if authzid and authzid.casefold() == authcid.casefold():
            authzid = ""
        if authzid and not self.allow_proxy:
            return Failure("Acting as another user is not allowed", FailureKind.REFUSED)
        return Success(Credentials(authcid, password, authzid))


class LoginMechanism:
    """draft-murchison-sasl-login: ``Username:`` then ``Password:``; a user name may come as the
    initial response (``AUTH LOGIN dXNlcg==``)."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if not initial:
            return Challenge(b"Username:")
        return self.step(initial)

    def step(self, data: bytes) -> Step:
        if self._user is None:
            user = _text(data, "user name")
            if isinstance(user, Failure):
                return user
            if not user:
                return Failure("Empty user name", FailureKind.INVALID)
            self._user = user
            return Challenge(b"Password:")
        password = _text(data, "password")
        if isinstance(password, Failure):
            return password
        if not password:
            return Failure("Empty password", FailureKind.INVALID)
        return Success(Credentials(self._user, password))


class SaslServer:
    """One authentication exchange on the wire: base64 in, Step out.

    ``start(initial)`` with the already-decoded initial response (IMAP's parser decodes it) or
    ``start_wire(token)`` with the base64 / ``=`` argument (SMTP AUTH, POP3 AUTH); then
    ``respond(line)`` for each client line until Success or Failure.
    """

    def __init__(self, mechanism: Mechanism) -> None:
        self.mechanism = mechanism
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def _finish(self, step: Step) -> Step:
        if not isinstance(step, Challenge):
            self._done = True
        return step

    def start(self, initial: bytes | None = None) -> Step:
        if self._started:
            raise RuntimeError("SASL exchange already started")
        self._started = True
        return self._finish(self.mechanism.start(initial))

    def start_wire(self, token: bytes | str | None) -> Step:
        if token is None:
            return self.start(None)
        decoded = decode_response(token)
        if isinstance(decoded, Failure):
            self._started = True
            return self._finish(decoded)
        return self.start(decoded)

    def respond(self, line: bytes | str) -> Step:
        if not self._started or self._done:
            raise RuntimeError("no SASL challenge is outstanding")
        decoded = decode_response(line)
        if isinstance(decoded, Failure):
            return self._finish(decoded)
        return self._finish(self.mechanism.step(decoded))


def server(name: str, *, allow_proxy: bool = False) -> SaslServer | None:
    """A SaslServer for mechanism ``name`` (case-insensitive), None if unsupported."""
    upper = name.upper()
    if upper == "PLAIN":
        return SaslServer(PlainMechanism(allow_proxy=allow_proxy))
    if upper == "LOGIN":
        return SaslServer(LoginMechanism())
    return None
