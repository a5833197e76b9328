"""The mail store contract: what SMTP delivery, IMAP, POP3 and webmail may ask of storage.

Backends (sqlite_maildir, memory) implement these Protocols; nothing above `store/` names a backend
except `app.py` and `testing/`. This module must never import a protocol, the mail layer or a server.
Mailbox names are Unicode with "/" as the hierarchy separator; "INBOX" is case-insensitive (RFC 3501 5.1).
"""

from __future__ import annotations

import enum
import os
import time
from array import array
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from errno import EDQUOT as _EDQUOT
from errno import ENOSPC as _ENOSPC
from typing import NamedTuple, Protocol, Union

from carteiro.mime.sortkeys import SortFields

# System flags (RFC 3501 2.3.2). \Recent is session state, not stored.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})

# RFC 6154 special-use attributes given to new accounts' default mailboxes.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

SEPARATOR = "/"

MessageSource = Union[bytes, "os.PathLike[str]", str]
"""Raw RFC 5322 bytes, or the path of a file (on the data dir's filesystem) holding them.

A path is never modified or removed by the store; the store may hard-link it into place.
"""


class StoreError(Exception):
    """Base of the errors a store raises for a refused request (not for bugs or I/O failures)."""


class InvalidName(StoreError):
    """A mailbox or account name that could escape the account or is otherwise unusable."""


class MailboxNotFound(StoreError):
    pass


class MailboxExists(StoreError):
    pass


class MailboxNotEmpty(StoreError):
    """DELETE of a mailbox that has inferior names and is already \\Noselect (RFC 3501 6.3.4)."""


class MessageNotFound(StoreError):
    """The message named by (mailbox, UID) is not there (expunged meanwhile)."""


class AccountNotFound(StoreError):
    pass


QUOTA_WARN = 0.9  # share of a quota limit past which the owner is warned (mail.deliver)


class OverQuota(StoreError):
    pass


class StorageFull(StoreError):
    """No room to write: the filesystem holding the data is full (ENOSPC) or the system user's
    disk quota is reached (EDQUOT). Not a bug and not the account's mail quota (OverQuota): a
    condition an operator fixes, so protocols answer it with their "insufficient storage" codes
    and a reason (SMTP 452 4.3.1, IMAP NO [LIMIT] / [OVERQUOTA], POP3 -ERR [SYS/TEMP]). Nothing
    of the refused request was stored.
    """

    def __init__(self, reason: str = "", errno: int = _ENOSPC) -> None:
        super().__init__(reason or os.strerror(errno))
        self.errno = errno

    @property
    def quota(self) -> bool:
        """A disk quota (EDQUOT): freeing space in the account helps; on a full disk it may not."""
        return self.errno == _EDQUOT

    @classmethod
    def from_error(cls, e: BaseException) -> StorageFull | None:
        """`e` itself when it is one; an OSError with errno ENOSPC or EDQUOT as one; else None."""
        if isinstance(e, StorageFull):
            return e
        if isinstance(e, OSError) and e.errno in (_ENOSPC, _EDQUOT):
            return cls(e.strerror or "", e.errno)
        return None


class FlagOp(enum.Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None = None
    subscribed: bool = False
    # \Noselect placeholder kept for inferior names after a DELETE (RFC 3501 6.3.4)
    selectable: bool = True
    # RFC 8474 MAILBOXID: the mailbox's own id, kept across RENAME, never given to another
    mailboxid: str = ""


@dataclass(frozen=True, slots=True)
class MailboxCounts:
    messages: int
    unseen: int
    deleted: int
    size: int  # sum of message sizes in octets (RFC 8438 STATUS=SIZE)
    deleted_size: int = 0  # of those flagged \Deleted (RFC 9208 4.2 DELETED-STORAGE)


@dataclass(frozen=True, slots=True)
class MessageMeta:
    uid: int
    flags: frozenset[str]
    modseq: int
    internaldate: float  # seconds since the epoch, UTC
    size: int  # exact size in octets of the stored bytes (CRLF line endings)
    # The zone INTERNALDATE was given in, in minutes east of UTC (RFC 3501 2.3.3: an APPEND's
    # date-time FETCHes back as sent; SEARCH BEFORE/ON/SINCE take the date in this zone). 0 for
    # messages stored before zones were kept: they show in UTC, as they always did.
    internaldate_tz: int = 0


class ZonedDate(NamedTuple):
    """An INTERNALDATE with the zone it was given in (an IMAP APPEND date-time). A bare float
    given for an INTERNALDATE is an instant without a zone: the store keeps the server's local
    zone at that instant with it (what Dovecot shows for a delivery or an import)."""

    ts: float  # seconds since the epoch, UTC
    tz: int  # minutes east of UTC


InternalDate = float | ZonedDate


def local_zone(ts: float) -> int:
    """The server's local zone at instant `ts`, in minutes east of UTC (TZ, or /etc/localtime;
    UTC in most containers)."""
    return time.localtime(ts).tm_gmtoff // 60


def zoned(when: InternalDate | None, now: float | None = None) -> tuple[float, int]:
    """(instant, zone) of an INTERNALDATE as given to the store: None is `now` (else the
    current time), a bare instant takes the local zone at that instant."""
    if when is None:
        when = time.time() if now is None else now
    elif type(when) is ZonedDate:
        return when.ts, when.tz
    ts = float(when)  # type: ignore[arg-type]
    return ts, local_zone(ts)


@dataclass(frozen=True, slots=True)
class MessageIds:
    """What a message carries beside MessageMeta, read only when asked for: its RFC 8474 EMAILID
    (the same for every copy of one appended message, kept by COPY and MOVE) and its RFC 8514
    SAVEDATE (when it was saved into this mailbox: APPEND, delivery, COPY, MOVE; None: unknown,
    for messages stored before the store recorded it)."""

    emailid: str
    savedate: float | None


class UidFlags(NamedTuple):
    """A mailbox's messages as parallel columns in ascending UID order: what SELECT needs
    (EXISTS, UIDs, FLAGS/PERMANENTFLAGS keywords, UNSEEN, HIGHESTMODSEQ) without one object per
    message. `flags[i]` belongs to `uids[i]`; equal flag sets are often one shared frozenset."""

    uids: array[int]  # typecode "I" (UIDs are 32-bit, RFC 3501 2.3.1.1)
    flags: list[frozenset[str]]
    modseqs: array[int]  # typecode "Q"


@dataclass(frozen=True, slots=True)
class MailboxDelta:
    """What changed in a mailbox after MODSEQ `since`, from one snapshot: the change feed's data
    (events are only wake-ups). `changed`: messages whose MODSEQ is greater (new or with new
    flags), in UID order; `expunged`: UIDs expunged after it. `complete` is False when the
    expunge history no longer reaches back to `since` (pruned: docs/store.md): the caller then
    compares the whole mailbox instead (with since=0 every message is in `changed`)."""

    highestmodseq: int
    changed: list[MessageMeta]
    expunged: list[int]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """RFC 9208 STORAGE (octets) and MESSAGE limits; None: no limit."""

    storage: int | None = None
    messages: int | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """An account's limits (None: none) and usage, over all its mailboxes (one quota root)."""

    storage_limit: int | None
    message_limit: int | None
    storage: int  # octets used
    messages: int

    def above(self, share: float) -> bool:
        """Is a usage above `share` of its limit?"""
        return (self.storage_limit is not None and self.storage > share * self.storage_limit) or (
            self.message_limit is not None and self.messages > share * self.message_limit
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    account: str
    mailbox_id: int
    uidvalidity: int
    uid: int
    modseq: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    """RFC 4315 COPYUID data: source UIDs paired with destination UIDs, in source UID order."""

    uidvalidity: int
    pairs: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One destination of a (possibly multi-account) atomic delivery."""

    account: str
    mailbox: str = "INBOX"
    flags: frozenset[str] = frozenset()
    internaldate: InternalDate | None = None


@dataclass(frozen=True, slots=True)
class IndexTerm:
    """One SEARCH key a store's search index may answer (RFC 3501 6.4.4), protocol-neutral.

    kind "header": `value` (case-folded, "" = the field exists) is a substring of a decoded
    `field` (lower case; from/to/cc/bcc compare the normalised address list, subject the
    squeezed Subject); "body"/"text": a substring of a body text / of a part's header block or
    body; "sent": the Date: day (else INTERNALDATE's day in its zone) is `op` ("before"/"on"/"since")
    date ordinal `day`."""

    kind: str
    field: str = ""
    value: str = ""
    op: str = ""
    day: int = 0


@dataclass(frozen=True, slots=True)
class TermHits:
    """A term's answer from the index: for every UID up to `upto` the term matches exactly
    when the UID is in `hits`, except the UIDs in `unsure` (the caller reads those messages).
    UIDs above `upto` are not indexed yet."""

    upto: int
    hits: frozenset[int]
    unsure: frozenset[int]


# ---- change feed events (see changes.py for the feed) -------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageAdded:
    account: str
    mailbox_id: int
    uid: int
    modseq: int


@dataclass(frozen=True, slots=True)
class MessagesExpunged:
    account: str
    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    account: str
    mailbox_id: int
    uid: int
    flags: frozenset[str]
    modseq: int


@dataclass(frozen=True, slots=True)
class MailboxChanged:
    """A mailbox was created, deleted, renamed or (un)subscribed."""

    account: str
    mailbox_id: int
    kind: str  # "created" | "deleted" | "renamed" | "subscribed"
    name: str = ""
    old_name: str = ""


@dataclass(frozen=True, slots=True)
class Resync:
    """The feed lost track (overflow, other process, restart): re-read state from the store."""

    account: str
    mailbox_id: int | None = None


ChangeEvent = MessageAdded | MessagesExpunged | FlagsChanged | MailboxChanged | Resync


class ChangeSubscription(Protocol):
    """Events of one account, in commit order, from this process and from other processes.

    Iteration waits for the next event; it never ends until close(). A slow consumer may receive
    Resync instead of an unbounded backlog.
    """

    def __aiter__(self) -> AsyncIterator[ChangeEvent]: ...

    async def next(self, timeout: float | None = None) -> ChangeEvent | None:
        """The next event, or None after `timeout` seconds with none."""
        ...

    def pending(self) -> list[ChangeEvent]:
        """Events already received, without waiting."""
        ...

    def close(self) -> None: ...


class FolderWatch(Protocol):
    """Held by a session that waits for changes (IMAP IDLE): see AccountStore.watch."""

    @property
    def active(self) -> bool:
        """True when other programs' changes arrive by themselves; False: poll refresh()."""
        ...

    def close(self) -> None: ...


class MaildropLock(Protocol):
    """An exclusive POP3 maildrop lock (RFC 1939 8; RFC 2449 IN-USE), across processes."""

    def release(self) -> None: ...


class AccountStore(Protocol):
    """One account's mailboxes. Every method is safe under concurrent sessions and processes."""

    @property
    def account(self) -> str: ...

    async def list_mailboxes(self) -> list[MailboxInfo]: ...

    async def get_mailbox(self, name: str) -> MailboxInfo:
        """Raises MailboxNotFound."""
        ...

    async def create_mailbox(self, name: str, special_use: str | None = None) -> MailboxInfo:
        """Creates missing intermediate levels too. Raises MailboxExists, InvalidName."""
        ...

    async def delete_mailbox(self, name: str) -> None:
        """Removes the mailbox and its messages; INBOX cannot be deleted."""
        ...

    async def rename_mailbox(self, old: str, new: str) -> None:
        """Renames inferiors too. Renaming INBOX moves its messages to `new`, leaving INBOX empty
        (RFC 3501 6.3.5)."""
        ...

    async def set_subscribed(self, name: str, subscribed: bool) -> None: ...

    async def subscriptions(self) -> list[str]:
        """Subscribed names, including names of mailboxes that no longer exist."""
        ...

    async def counts(self, mailbox_id: int) -> MailboxCounts: ...

    async def append(
        self,
        mailbox: str,
        source: MessageSource,
        flags: Iterable[str] = (),
        internaldate: InternalDate | None = None,
    ) -> AppendResult:
        """Durable (fsynced, indexed) before it returns. INTERNALDATE: see ZonedDate."""
        ...

    async def append_many(
        self,
        mailbox: str,
        messages: Sequence[tuple[bytes, Iterable[str], InternalDate | None]],
    ) -> list[AppendResult]:
        """RFC 3502 MULTIAPPEND: every message (bytes, flags, INTERNALDATE or None for now) or
        none, in that order with ascending UIDs, durable before it returns."""
        ...

    async def replace(
        self,
        mailbox_id: int,
        uid: int,
        mailbox: str,
        message: tuple[bytes, Iterable[str], InternalDate | None],
    ) -> AppendResult:
        """RFC 8508 REPLACE: append `message` to `mailbox` and expunge (`mailbox_id`, `uid`),
        atomically: both or neither. Raises MessageNotFound (nothing appended) when that message
        is gone, MailboxNotFound for either mailbox."""
        ...

    async def list_messages(self, mailbox_id: int) -> list[MessageMeta]:
        """All messages in ascending UID order (what SELECT and POP3 login need)."""
        ...

    async def open_mailbox(self, name: str) -> tuple[MailboxInfo, list[MessageMeta]]:
        """get_mailbox and, for a selectable one, list_messages, from one snapshot (what SELECT
        needs; an empty list for a non-selectable one). Raises MailboxNotFound."""
        ...

    async def list_uids_flags(self, mailbox_id: int) -> UidFlags:
        """The UIDs, flags and MODSEQs of list_messages() as columns: the same snapshot, but cheap
        for a large mailbox (no MessageMeta per message). For SELECT/EXAMINE; fetch INTERNALDATE
        and sizes with list_messages()/changed_since() when a command needs them."""
        ...

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageMeta]:
        """Messages whose MODSEQ is greater than `modseq`, in UID order."""
        ...

    async def refresh(self, mailbox_id: int) -> None:
        """Adopt what other programs did to the mailbox's files (a Maildir client renaming or
        deleting a message, another delivery agent adding one), if anything: open sessions hear
        of it through the change feed like any change. Cheap when nothing happened (the sqlite
        backend: two stat calls); get_mailbox, open_mailbox, counts and changes_since do it too."""
        ...

    async def watch(self, mailbox_id: int) -> FolderWatch:
        """Until the watch is closed, changes other programs make to the mailbox's files are
        adopted as they happen (the sqlite backend: inotify on the folder), and reach open
        sessions through the change feed. An inactive watch (no files, no inotify) means the
        caller polls refresh() instead. Raises MailboxNotFound."""
        ...

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxDelta:
        """Everything that changed in the mailbox after `modseq`, in commit order's terms (one
        snapshot). Raises MailboxNotFound."""
        ...

    async def recent_claimed(self, mailbox_id: int) -> int:
        """\\Recent (RFC 3501 2.3.2): the highest UID some session has been handed as recent,
        in any process, across restarts (0: none yet). Messages above it are recent to the next
        session that claims them. Raises MailboxNotFound."""
        ...

    async def claim_recent(self, mailbox_id: int, up_to: int) -> int:
        """Claim every UID up to `up_to` as seen by the calling session; returns what was claimed
        before (recent_claimed()), so the caller's recent messages are those above it. Atomic
        between sessions and processes: each message is recent to exactly one session."""
        ...

    async def read_message(self, mailbox_id: int, uid: int) -> bytes:
        """The raw bytes. Raises KeyError if the message is gone."""
        ...

    async def read_head(self, mailbox_id: int, uid: int, octets: int) -> tuple[bytes, bool]:
        """The start of read_message's bytes, at least `octets` of them when the message has that
        many (more may come), and True when that is the whole message: POP3 TOP of a large
        message reads its header, not all of it. Raises KeyError if the message is gone."""
        ...

    async def read_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[bytes | KeyError]:
        """read_message of each UID, in order, a KeyError in place of a message that is gone: one
        index lookup for the run (POP3's read-ahead, a FETCH of many bodies)."""
        ...

    async def read_wire(
        self, mailbox_id: int, uids: Sequence[int]
    ) -> list[tuple[bytes, bool] | KeyError]:
        """read_messages, each message with a mark: True when its bytes are known to have no bare
        LF (every LF ends a CRLF), so a reader that must send CRLF lines (POP3) need not look.
        False says nothing. A file in LF form (maildir.is_lf_form) is marked by construction:
        its CRLFs are made from its LFs."""
        ...

    async def message_ids(
        self, mailbox_id: int, uids: Sequence[int] | None = None
    ) -> dict[int, MessageIds]:
        """EMAILID and SAVEDATE of the given messages (every message for None); UIDs not in the
        mailbox are left out. Raises MailboxNotFound."""
        ...

    async def set_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: Iterable[str],
        unchangedsince: int | None = None,
    ) -> tuple[list[MessageMeta], list[int]]:
        """Atomically changes flags. Returns (messages whose flags changed, with their new MODSEQ;
        UIDs not changed because their MODSEQ exceeded `unchangedsince` (RFC 7162 3.1.3))."""
        ...

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Removes messages flagged \\Deleted (restricted to `uids` when given); returns their UIDs."""
        ...

    async def delete_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        """Removes the given messages whatever their flags (POP3 UPDATE); returns the UIDs removed."""
        ...

    async def copy(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult: ...

    async def move(self, src_mailbox_id: int, uids: Sequence[int], dst: str) -> CopyResult:
        """Atomic: the copies exist and the originals are expunged, or nothing changed."""
        ...

    def subscribe(self) -> ChangeSubscription:
        """Start receiving this account's change events (from now on)."""
        ...

    def try_lock_maildrop(self) -> MaildropLock | None:
        """The exclusive POP3 lock, or None when another session (any process) holds it."""
        ...

    async def search_index(
        self, mailbox_id: int, terms: Sequence[IndexTerm]
    ) -> list[TermHits | None]:
        """What the store's search index knows of each term (None: nothing, read the messages).
        Raises nothing for a missing mailbox: its terms are simply not known."""
        ...

    async def quota(self) -> Quota:
        """The account's limits and usage (RFC 9208)."""
        ...

    async def set_quota(self, storage: int | None, messages: int | None) -> None:
        """Per-account limits: None goes back to the configured default, 0 is no limit."""
        ...

    async def quota_warning(self) -> Quota | None:
        """After a delivery: the quota when usage just went above QUOTA_WARN of a limit (the
        caller warns the owner, once: it is said again only after usage went back under);
        None otherwise, and at once for an account without limits."""
        ...

    async def sort_index(
        self, mailbox_id: int, above: int = 0
    ) -> tuple[int, dict[int, SortFields]]:
        """SORT/THREAD fields from the store's index: (its mark, uid -> fields) for messages up
        to the mark it could read; the caller parses the others. (0, {}) without an index.
        `above`: only messages with a greater UID (a message's fields never change, so a caller
        that kept an earlier answer asks for what came after its mark)."""
        ...


DELIVERY_ID_KEEP = 5 * 24 * 3600  # seconds: RFC 5321 4.5.4.1, senders give up after 4-5 days


class MailStore(Protocol):
    """All accounts' mail under one data dir."""

    async def create_account(self, account: str) -> None:
        """Idempotent; creates the default mailboxes (DEFAULT_MAILBOXES)."""
        ...

    async def delete_account(self, account: str, purge: bool = False) -> None:
        """Without purge the account's mail stays on disk and in the index."""
        ...

    async def account(self, account: str) -> AccountStore:
        """Raises AccountNotFound."""
        ...

    async def deliver(
        self,
        deliveries: Sequence[Delivery],
        source: MessageSource,
        delivery_id: str | None = None,
        crlf: bool = False,
    ) -> list[AppendResult]:
        """Append one message to several accounts/mailboxes in one transaction: all or none.

        Durable before it returns. Concurrent calls share fsync rounds (group commit).
        `delivery_id` makes a retry a no-op: a delivery whose id was committed before (within
        DELIVERY_ID_KEEP seconds) appends nothing and returns the first one's results.
        `crlf`: the caller vouches that every CR of the message starts a CRLF and every LF ends
        one (the SMTP server checked it as the message came): the store need not check again.
        A wrong promise stores a message that reads back altered, so only a checker says it.
        """
        ...

    async def close(self) -> None: ...


@dataclass
class CheckReport:
    """What `carteiro store check` found."""

    missing_files: list[tuple[str, str, int]] = field(default_factory=list)  # account, mailbox, uid
    orphan_files: list[str] = field(default_factory=list)
    size_mismatches: list[tuple[str, str, int]] = field(default_factory=list)
    # files whose info part (flags) differs from the index's: renamed by a Maildir client and
    # not adopted yet (a server adopts it at its next look at the folder, as it does the
    # missing files and the new ones among the orphans)
    flag_mismatches: list[tuple[str, str, int]] = field(default_factory=list)
    # rows of the search index that disagree with the messages (`store reindex` rebuilds it)
    search_index: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.missing_files
            or self.orphan_files
            or self.size_mismatches
            or self.flag_mismatches
            or self.search_index
        )
