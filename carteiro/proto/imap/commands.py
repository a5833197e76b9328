"""Typed IMAP commands, as parser.py produces them (RFC 9051 6 and the extensions in RFCS.md).

Plain frozen dataclasses: mailbox names are Unicode (modified UTF-7 or UTF-8 already decoded,
"INBOX" normalised; a name that is not valid modified UTF-7 is an UndecodableName), sequence sets
are SequenceSet, flags are strings (system flags canonical).
Whether a command is allowed in the current state is the session's business, not these types'.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from carteiro.proto.imap.fetch import FetchAttr
from carteiro.proto.imap.metadata import GetMetadata, SetMetadata
from carteiro.proto.imap.notify import Notify
from carteiro.proto.imap.search import SearchKey
from carteiro.proto.imap.sets import SequenceSet
from carteiro.proto.imap.utf7 import UndecodableName

__all__ = [
    "Append",
    "AppendMessage",
    "Authenticate",
    "Capability",
    "CatenatePart",
    "CatenateText",
    "CatenateUrl",
    "Check",
    "Compress",
    "Close",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Expunge",
    "Fetch",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "QResync",
    "Rename",
    "Request",
    "Search",
    "Select",
    "StartTLS",
    "Status",
    "Store",
    "StoreOp",
    "Subscribe",
    "UidExpunge",
    "UndecodableName",
    "Unselect",
    "Unsubscribe",
]


# -- any state ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Id:
    """RFC 2971: ``params`` is None for ``ID NIL``; values may be None (NIL)."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Enable:
    """RFC 5161: capability names, upper-cased."""

    capabilities: tuple[str, ...]


# -- not authenticated --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Login:
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Authenticate:
    """``mechanism`` upper-cased; ``initial_response`` (RFC 4959 SASL-IR) decoded from base64,
    ``b""`` for ``=``, None when absent (send an empty challenge)."""

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


# -- authenticated ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QResync:
    """RFC 7162 3.2.5.1: SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids] [seq-match]))."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence: tuple[SequenceSet, SequenceSet] | None = None  # (MSNs, matching UIDs)


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT, or EXAMINE when ``readonly``. ``condstore``: the CONDSTORE parameter (RFC 7162 3.1.8)."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """``special_use``: RFC 6154 5 ``CREATE name (USE (\\Drafts ...))``, canonical case."""

    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST, basic or extended (RFC 5258, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE).

    ``select_opts`` ⊆ {SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE}; ``return_opts`` ⊆
    {SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS}; ``status_items`` for RETURN (STATUS (...)).
    ``extended`` is True when any option or a pattern list was given (RFC 5258 3).
    """

    reference: str
    patterns: tuple[str, ...]
    select_opts: frozenset[str] = frozenset()
    return_opts: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Status:
    """``items`` upper-cased, in the client's order (MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN,
    DELETED, SIZE, RECENT, HIGHESTMODSEQ, APPENDLIMIT)."""

    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatenateText:
    """RFC 4469 TEXT literal."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CatenateUrl:
    """RFC 4469 URL (an IMAP URL, RFC 5092)."""

    url: str


CatenatePart = CatenateText | CatenateUrl


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (RFC 3502 MULTIAPPEND may carry several).

    ``binary``: sent as literal8 ``~{N}`` (RFC 3516 4.4, content may hold NUL and 8-bit data).
    ``utf8``: the RFC 6855 4 ``UTF8 (~{N})`` form. ``catenate``: RFC 4469 parts, ``data`` empty.
    """

    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    data: bytes = field(repr=False)
    binary: bool = False
    utf8: bool = False
    catenate: tuple[CatenatePart, ...] | None = None


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle:
    pass


@dataclass(frozen=True, slots=True)
class Namespace:
    pass


@dataclass(frozen=True, slots=True)
class Compress:
    """RFC 4978: COMPRESS mechanism (upper-cased)."""

    mechanism: str


# -- selected -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Unselect:
    pass


@dataclass(frozen=True, slots=True)
class Expunge:
    pass


@dataclass(frozen=True, slots=True)
class UidExpunge:
    """RFC 4315 2.1: UID EXPUNGE set."""

    set: SequenceSet


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH / UID SEARCH. ``return_opts`` None: classic ``* SEARCH`` answer; otherwise ESEARCH
    (RFC 4731) with these options (``RETURN ()`` is ALL). ``charset`` as given, None if absent."""

    key: SearchKey
    uid: bool = False
    charset: str | None = None
    return_opts: frozenset[str] | None = None
    partial: tuple[int, int] | None = None  # RFC 5267 4.4: RETURN (PARTIAL low:high)


@dataclass(frozen=True, slots=True)
class GetQuota:
    """GETQUOTA quota-root (RFC 9208 4.2)."""

    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    """GETQUOTAROOT mailbox (RFC 9208 4.3)."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One SORT criterion (RFC 5256 3, RFC 5957 3): a sort key, maybe REVERSE."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    """SORT / UID SORT (RFC 5256 3): criteria, the (mandatory) search charset, the search.
    ``return_opts`` None: classic ``* SORT`` answer; otherwise ESEARCH (RFC 5267 3, ESORT)."""

    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey
    uid: bool = False
    return_opts: frozenset[str] | None = None
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """CANCELUPDATE tag... (RFC 5267 4.3.5): stop the updates of these SEARCH/SORT contexts."""

    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Thread:
    """THREAD / UID THREAD (RFC 5256 3): algorithm name (upper case), charset, the search."""

    algorithm: str
    charset: str
    key: SearchKey
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Fetch:
    """FETCH / UID FETCH. ``macro`` is ALL/FAST/FULL when one was used (already expanded).

    For UID FETCH the session adds UID to the response even when not asked (RFC 9051 6.4.9).
    ``changedsince``/``vanished``: RFC 7162 3.1.4.1 and 3.2.6 (VANISHED needs UID + CHANGEDSINCE,
    checked here); CHANGEDSINCE implies MODSEQ in every response (the session adds it).
    """

    set: SequenceSet
    items: tuple[FetchAttr, ...]
    uid: bool = False
    macro: str | None = None
    changedsince: int | None = None
    vanished: bool = False


class StoreOp(enum.Enum):
    """Same values as carteiro.store.api.FlagOp."""

    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True, slots=True)
class Store:
    """STORE / UID STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags."""

    set: SequenceSet
    op: StoreOp
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """RFC 6851."""

    set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Replace:
    """RFC 8508: [UID] REPLACE number mailbox append-message: append the message to `mailbox`
    and expunge message `number` (an MSN, or a UID with ``uid``) of the selected mailbox."""

    number: int
    mailbox: str
    message: AppendMessage
    uid: bool = False


Request = (
    Capability
    | Noop
    | Logout
    | Id
    | Enable
    | StartTLS
    | Login
    | Authenticate
    | Select
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Status
    | Append
    | Replace
    | Idle
    | Namespace
    | Compress
    | Check
    | Close
    | Unselect
    | Expunge
    | UidExpunge
    | Search
    | Sort
    | CancelUpdate
    | Thread
    | GetQuota
    | GetQuotaRoot
    | Fetch
    | Store
    | Copy
    | Move
    | Notify
    | GetMetadata
    | SetMetadata
)
