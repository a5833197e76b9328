"""What a script decided, as values: the delivery layer carries these out (nothing here does)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Keep:
    """Store in the default mailbox (INBOX). `header`: the edited header (editheader), or None."""

    flags: tuple[str, ...] = ()
    header: bytes | None = None
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class FileInto:
    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False  # RFC 5490 3.2: create the mailbox when it does not exist
    copy: bool = False
    header: bytes | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    address: str
    copy: bool = False
    header: bytes | None = None


@dataclass(frozen=True, slots=True)
class Discard:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    extended: bool = False  # ereject: refuse in the SMTP/LMTP dialogue when possible


@dataclass(frozen=True, slots=True)
class Vacation:
    reason: str
    handle: str
    seconds: int  # period during which one sender gets one reply (0: every time)
    subject: str | None = None
    from_: str | None = None
    addresses: tuple[str, ...] = ()
    mime: bool = False


@dataclass(frozen=True, slots=True)
class Notify:
    """RFC 5435/5436: a mailto notification (recipients and headers from the URI)."""

    method: str
    recipients: tuple[str, ...]
    uri_headers: tuple[tuple[str, str], ...]
    from_: str | None = None
    importance: str = "2"
    options: tuple[str, ...] = ()
    message: str | None = None


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation | Notify


@dataclass(frozen=True, slots=True)
class DuplicateMark:
    """RFC 7352 3: remember this id for `seconds`, once the delivery succeeded."""

    key: str
    seconds: int
    last: bool


@dataclass(slots=True)
class Result:
    """The actions in order (the implicit keep, when it stands, is the last one), what the
    duplicate tracker must record, and the runtime error that made the result a plain keep."""

    actions: list[Action] = field(default_factory=list)
    duplicates: list[DuplicateMark] = field(default_factory=list)
    error: str | None = None
    cost: int = 0

    @property
    def kept(self) -> bool:
        return any(isinstance(a, Keep) for a in self.actions)
