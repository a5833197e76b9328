"""A list, its settings and its members: plain data shared by the database, the engine and the
command line. Settings are validated here, once, whoever sets them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SUBSCRIPTION_POLICIES = ("open", "confirm", "moderated", "closed")
POSTING_POLICIES = ("members", "anyone", "moderated", "announce")
REPLY_TO = ("author", "list")
DELIVERY_MODES = ("regular", "digest")
# Member delivery status: enabled, disabled by its bounces (after a probe), by the member
STATUSES = ("enabled", "bounce", "user")


class SettingError(ValueError):
    """A setting that does not exist or a value it cannot take."""


@dataclass
class Settings:
    """What an owner chooses per list (`carteiro list set LIST KEY VALUE`)."""

    description: str = ""
    # open: at once; confirm: double opt-in; moderated: confirmed, then a moderator approves;
    # closed: only the owner adds members
    subscription: str = "confirm"
    # members: non-members are held; anyone; moderated: all posts are held; announce: only the
    # owners, moderators and `posters` post, others are refused
    posting: str = "members"
    reply_to: str = "author"
    subject_prefix: str = ""  # e.g. "[dev] "; empty leaves Subject (and DKIM over it) intact
    footer: str = ""  # appended to text posts; empty leaves the body intact
    max_size: int = 5 * 1024 * 1024  # bigger posts are held
    # Mailman's require_explicit_destination: a post that names neither the list nor one of
    # `aliases` in To/Cc (spam sent Bcc) is held
    explicit_destination: bool = True
    aliases: list[str] = field(default_factory=list)
    archive: str = ""  # "account" or "account:Mailbox": each post is filed there
    digest: bool = True  # members may ask for a daily MIME digest
    dmarc_mitigation: bool = True  # rewrite From for p=reject/quarantine posters
    moderators: list[str] = field(default_factory=list)
    posters: list[str] = field(default_factory=list)  # announce lists
    hold_days: int = 14  # held posts expire after this, with a notice to the poster
    token_hours: int = 72  # confirmation tokens expire
    bounce_threshold: float = 5.0  # a day with bounces adds 1; at this, probe then disable
    bounce_stale_days: int = 7  # a score older than this starts again
    bounce_warnings: int = 3  # notices to a disabled member before removal
    bounce_warning_days: int = 7

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def set(self, key: str, value: str) -> None:
        """Set from text (the CLI): lists are comma-separated; booleans yes/no/true/false."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        if key not in fields:
            raise SettingError(f"unknown setting {key!r} (known: {', '.join(sorted(fields))})")
        current = getattr(self, key)
        new: Any
        if isinstance(current, bool):
            low = value.lower()
            if low not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
                raise SettingError(f"{key}: expected yes or no, got {value!r}")
            new = low in ("yes", "true", "on", "1")
        elif isinstance(current, int | float) and not isinstance(current, bool):
            try:
                new = type(current)(value)
            except ValueError:
                raise SettingError(f"{key}: expected a number, got {value!r}") from None
            if new < 0:
                raise SettingError(f"{key}: must not be negative")
        elif isinstance(current, list):
            new = [v.strip().lower() for v in value.split(",") if v.strip()]
        else:
            new = value.replace("\\n", "\n")
        choices = {
            "subscription": SUBSCRIPTION_POLICIES,
            "posting": POSTING_POLICIES,
            "reply_to": REPLY_TO,
        }.get(key)
        if choices is not None and new not in choices:
            raise SettingError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        setattr(self, key, new)


@dataclass
class MailingList:
    address: str  # the posting address, lowercased: dev@example.test
    owners: list[str]
    settings: Settings = field(default_factory=Settings)
    created: float = 0.0
    last_digest: float = 0.0

    @property
    def name(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def role_address(self, role: str, detail: str = "") -> str:
        plus = f"+{detail}" if detail else ""
        return f"{self.name}-{role}{plus}@{self.domain}"

    @property
    def list_id(self) -> str:
        """RFC 2919 2: the list's identifier, "dev.example.test"."""
        return f"{self.name.replace('.', '-')}.{self.domain}"

    def is_moderator(self, address: str) -> bool:
        return address in self.owners or address in self.settings.moderators


@dataclass
class Member:
    address: str
    name: str = ""
    delivery: str = "regular"
    status: str = "enabled"
    since: float = 0.0
    bounce_score: float = 0.0
    last_bounce: float = 0.0  # time of the last counted bounce (one per day counts)
    warnings: int = 0  # notices sent since the member was disabled by bounces
    last_warning: float = 0.0
