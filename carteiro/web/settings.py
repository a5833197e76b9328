"""What the webmail needs to know to run: where IMAP, SMTP submission and ManageSieve are and how to reach them,
the names and ports it tells clients in autoconfiguration, and the session limits. Built by
app.py from carteiro.toml or by `carteiro web` from its options; never read from globals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from carteiro.web.autoconfig import Services
from carteiro.web.imap import Endpoint

# (user, old password, new password); raises PasswordRefused.
PasswordChanger = Callable[[str, str, str], Awaitable[None]]


class PasswordRefused(Exception):
    """The change was refused; `wrong` when the current password was wrong (counts as a failed
    login for the throttle)."""

    def __init__(self, text: str, wrong: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.wrong = wrong


class ListRefused(Exception):
    """A list owner's change the list engine refused (a bad value, an unknown address)."""


@dataclass(frozen=True)
class OwnedList:
    address: str
    description: str
    members: int
    held: int


@dataclass(frozen=True)
class ListMemberView:
    address: str
    name: str
    delivery: str
    status: str


@dataclass(frozen=True)
class HeldPost:
    token: str
    sender: str
    subject: str
    reason: str
    created: float


@dataclass(frozen=True)
class ListView:
    address: str
    settings: dict[str, str]  # the settings an owner may change, as text
    members: list[ListMemberView]
    held: list[HeldPost]


class ListsOwner(Protocol):
    """What the list owners' page may do (the list engine, injected by `carteiro serve`). Every
    call names the logged-in user and acts only on lists that user owns: None / ListRefused for
    a list the user does not own, the same as for a list that does not exist."""

    async def owned(self, user: str) -> list[OwnedList]: ...
    async def view(self, user: str, address: str) -> ListView | None: ...
    async def add_member(self, user: str, address: str, member: str) -> str: ...
    async def remove_member(self, user: str, address: str, member: str) -> str: ...
    async def change(self, user: str, address: str, values: dict[str, str]) -> str: ...
    async def decide(
        self, user: str, address: str, token: str, action: str, reason: str
    ) -> str: ...


@dataclass
class WebSettings:
    imap: Endpoint
    smtp: Endpoint
    hostname: str = "localhost"
    services: Services = field(default_factory=lambda: Services("localhost", ()))
    idle_timeout: float = 1800.0  # seconds without a request before the session ends
    max_upload: int = 25 * 1024 * 1024  # all attachments of one message together
    secure_cookies: bool = False  # set when served over HTTPS
    title: str = "carteiro webmail"
    counts_every: float = 60.0  # seconds between unread-count checks of all folders (live page)
    sieve: Endpoint | None = None  # ManageSieve (RFC 5804) for the filter settings; None: none
    # Only inside `carteiro serve` (no IMAP/SMTP command changes a password): None hides the form.
    change_password: PasswordChanger | None = None
    # Only inside `carteiro serve` (the list engine): None leaves out the list owners' page.
    lists_owner: ListsOwner | None = None
