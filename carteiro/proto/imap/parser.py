"""IMAP command arguments -> typed commands (RFC 9051 9 formal syntax, RFC 3501 9, extensions).

``parse_command(cmd, utf8=...)`` turns a receiver Command into one of the dataclasses in
commands.py, or a ParseError value the session answers with ``tag BAD reason`` (``NO`` for
[BADCHARSET]). One ``parse_<name>`` per command. Parsing never depends on session state and
never raises on client input.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from carteiro.proto.imap.args import MAX_NUMBER64, ArgError, ArgReader
from carteiro.proto.imap.commands import (
    Append,
    AppendMessage,
    Authenticate,
    CancelUpdate,
    Capability,
    CatenatePart,
    CatenateText,
    CatenateUrl,
    Check,
    Close,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    QResync,
    Rename,
    Replace,
    Request,
    Search,
    Select,
    Sort,
    SortCriterion,
    StartTLS,
    Status,
    Store,
    StoreOp,
    Subscribe,
    Thread,
    UidExpunge,
    Unselect,
    Unsubscribe,
)
from carteiro.proto.imap.dates import DateError, parse_date_time
from carteiro.proto.imap.fetch import parse_fetch_atts
from carteiro.proto.imap.metadata import parse_getmetadata, parse_setmetadata
from carteiro.proto.imap.notify import parse_notify
from carteiro.proto.imap.patterns import collapse_wildcards
from carteiro.proto.imap.receiver import Command, NeedContinuation, Receiver
from carteiro.proto.imap.search import (
    parse_search_criteria,
    parse_search_program,
    parse_search_return,
)
from carteiro.proto.imap.sets import SequenceSet, SequenceSetError

__all__ = ["COMMANDS", "STATUS_ITEMS", "ParseError", "parse_command", "parse_wire"]

STATUS_ITEMS: Final = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",  # RFC 9051 6.3.11
        "SIZE",  # RFC 8438
        "HIGHESTMODSEQ",  # RFC 7162 3.1.6
        "APPENDLIMIT",  # RFC 7889 3
        "DELETED-STORAGE",  # RFC 9208 4.2.1
        "MAILBOXID",  # RFC 8474 4.3
    }
)
SYSTEM_FLAGS: Final = {
    f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
}
SPECIAL_USE: Final = {
    f.lower(): f
    for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
LIST_SELECT_OPTS: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTS: Final = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
ID_MAX_PAIRS: Final = 30  # RFC 2971 3.3
ID_MAX_FIELD: Final = 30
ID_MAX_VALUE: Final = 1024

_SET_RE: Final = re.compile(rb"[0-9*$:,]+")
_BASE64_RE: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True, slots=True)
class ParseError:
    """A command the session must refuse: ``tag status [code] reason`` (status BAD, or NO for
    ``BADCHARSET``). ``code`` is the response code text without brackets, if any."""

    tag: str
    reason: str
    code: str | None = None
    status: str = "BAD"


def parse_command(cmd: Command, *, utf8: bool = False) -> Request | ParseError:
    """Parse a receiver Command. ``utf8``: UTF8=ACCEPT is enabled (mailbox names are UTF-8)."""
    fn = COMMANDS.get(cmd.name)
    if fn is None:
        return ParseError(cmd.tag, f"Unknown command {cmd.name[:40]}")
    r = ArgReader(cmd.segments, cmd.literals, utf8=utf8)
    try:
        return fn(r)
    except ArgError as exc:
        return ParseError(cmd.tag, f"{cmd.name}: {exc.reason}", exc.code, exc.status)


def parse_wire(data: bytes, *, utf8: bool = False) -> Request | ParseError:
    """Parse one complete command as it would appear on the wire, literals included
    (``b'a1 LOGIN {4}\\r\\nuser pass\\r\\n'``). For tests and tools; raises ValueError if
    ``data`` is not exactly one framed command."""
    receiver = Receiver(max_line=max(64, len(data)), max_literal=len(data))
    receiver.feed(data)
    while True:
        event = receiver.next_event()
        if isinstance(event, NeedContinuation):
            continue
        if isinstance(event, Command):
            return parse_command(event, utf8=utf8)
        raise ValueError(f"not a complete command: {event!r}")


# -- shared pieces -------------------------------------------------------------------------------


def _seqset(r: ArgReader, what: str = "sequence set") -> SequenceSet:
    raw = r.match(_SET_RE, what)
    try:
        return SequenceSet.parse(raw)
    except SequenceSetError as exc:
        raise ArgError(str(exc).capitalize()) from None


def _flag(raw: str) -> str:
    """Validate one flag for STORE/APPEND: \\Recent and unknown system flags are refused."""
    if raw.startswith("\\"):
        canonical = SYSTEM_FLAGS.get(raw.lower())
        if canonical is None:
            if raw.lower() == "\\recent":
                raise ArgError("\\Recent cannot be set by a client")  # RFC 9051 2.3.2
            raise ArgError(f"Unknown system flag {raw[:40]}")
        return canonical
    return raw


def _flags(r: ArgReader, *, parenthesised: bool) -> tuple[str, ...]:
    """flag-list = "(" [flag *(SP flag)] ")", or flag *(SP flag) when not parenthesised."""
    out: list[str] = []
    if parenthesised:
        r.expect(b"(", "'(' before flags")
        if r.accept(b")"):
            return ()
        while True:
            out.append(_flag(r.flag()))
            if r.accept(b")"):
                break
            r.sp()
    else:
        out.append(_flag(r.flag()))
        while r.try_sp():
            out.append(_flag(r.flag()))
    return tuple(dict.fromkeys(out))


def _paren_list(r: ArgReader, item: Callable[[ArgReader], str], what: str) -> list[str]:
    """ "(" item *(SP item) ")" (possibly empty)."""
    r.expect(b"(", f"'(' before {what}")
    out: list[str] = []
    if r.accept(b")"):
        return out
    while True:
        out.append(item(r))
        if r.accept(b")"):
            return out
        r.sp()


def _status_items(r: ArgReader) -> tuple[str, ...]:
    items = _paren_list(r, lambda rr: rr.keyword("status item"), "status items")
    if not items:
        raise ArgError("Empty status item list")
    for item in items:
        if item not in STATUS_ITEMS:
            raise ArgError(f"Unknown status item {item[:40]}")
    return tuple(dict.fromkeys(items))


def _no_args(cls: Callable[[], Request]) -> Callable[[ArgReader], Request]:
    def parse(r: ArgReader) -> Request:
        r.end()
        return cls()

    return parse


# -- any state -----------------------------------------------------------------------------------

parse_capability = _no_args(Capability)
parse_noop = _no_args(Noop)
parse_logout = _no_args(Logout)


def parse_id(r: ArgReader) -> Id:
    """RFC 2971 3.3: ID ("name" "value" ...) / ID NIL."""
    r.sp()
    if r.accept_word(b"NIL"):
        r.end()
        return Id(None)
    r.expect(b"(", "'(' or NIL")
    pairs: list[tuple[str, str | None]] = []
    if not r.accept(b")"):
        while True:
            key = r.astring_text("field name")
            r.sp()
            # Lenient: values may be atoms too; the atom NIL (not "NIL") is no value.
            value = (
                None if r.accept_word(b"NIL") else r.text(r.astring("field value"), "field value")
            )
            if len(key.encode()) > ID_MAX_FIELD or (
                value is not None and len(value.encode()) > ID_MAX_VALUE
            ):
                raise ArgError("ID field or value too long")
            pairs.append((key, value))
            if len(pairs) > ID_MAX_PAIRS:
                raise ArgError("Too many ID fields")
            if r.accept(b")"):
                break
            r.sp()
    r.end()
    return Id(tuple(pairs))


def parse_enable(r: ArgReader) -> Enable:
    """RFC 5161 3: ENABLE 1*(SP capability)."""
    caps = []
    r.sp()
    caps.append(r.keyword("capability"))
    while r.try_sp():
        caps.append(r.keyword("capability"))
    r.end()
    return Enable(tuple(dict.fromkeys(caps)))


# -- not authenticated ---------------------------------------------------------------------------

parse_starttls = _no_args(StartTLS)


def parse_login(r: ArgReader) -> Login:
    r.sp()
    user = r.astring_text("user name")
    r.sp()
    password = r.astring_text("password")
    r.end()
    return Login(user, password)


def parse_authenticate(r: ArgReader) -> Authenticate:
    """AUTHENTICATE mech [SP (base64 / "=")] (RFC 9051 6.2.2, RFC 4959 SASL-IR)."""
    r.sp()
    mechanism = r.keyword("mechanism")
    initial: bytes | None = None
    if r.try_sp():
        raw = r.match(_BASE64_RE, "initial response")
        if raw == b"=":
            initial = b""
        else:
            try:
                # RFC 4959 3: invalid base64 in the initial response is a BAD.
                initial = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ArgError("Invalid base64 in initial response") from None
            if not raw:
                if not r.at_end():  # something, but not base64
                    raise ArgError("Invalid base64 in initial response")
                raise ArgError("Empty initial response (use =)")
    r.end()
    return Authenticate(mechanism, initial)


# -- authenticated -------------------------------------------------------------------------------


def _select(r: ArgReader, readonly: bool) -> Select:
    r.sp()
    mailbox = r.mailbox()
    condstore = False
    qresync: QResync | None = None
    if r.try_sp():
        # RFC 4466 2.1 select-params; RFC 7162 CONDSTORE / QRESYNC
        r.expect(b"(", "'(' before select parameters")
        seen: set[str] = set()
        while True:
            name = r.keyword("select parameter")
            if name in seen:
                raise ArgError(f"Duplicate select parameter {name}")
            seen.add(name)
            if name == "CONDSTORE":
                condstore = True
            elif name == "QRESYNC":
                r.sp()
                qresync = _qresync(r)
            else:
                raise ArgError(f"Unknown select parameter {name[:40]}")
            if r.accept(b")"):
                break
            r.sp()
    r.end()
    return Select(mailbox, readonly, condstore, qresync)


def _qresync(r: ArgReader) -> QResync:
    """ "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"."""
    r.expect(b"(", "'(' after QRESYNC")
    uidvalidity = r.nz_number("UIDVALIDITY")
    r.sp()
    modseq = r.number("mod-sequence", limit=MAX_NUMBER64)
    known_uids: SequenceSet | None = None
    known_sequence: tuple[SequenceSet, SequenceSet] | None = None
    if r.try_sp():
        if not r.peek_is(b"("):
            known_uids = _seqset(r, "known UIDs")
            if known_uids.uses_star or known_uids.saved:
                raise ArgError("Known UIDs must not contain * or $")  # RFC 7162 7
            if r.try_sp():
                known_sequence = _seq_match(r)
        else:
            known_sequence = _seq_match(r)
    r.expect(b")", "')' after QRESYNC parameters")
    return QResync(uidvalidity, modseq, known_uids, known_sequence)


def _seq_match(r: ArgReader) -> tuple[SequenceSet, SequenceSet]:
    """seq-match-data = "(" known-sequence-set SP known-uid-set ")"."""
    r.expect(b"(", "'(' before sequence match data")
    msns = _seqset(r, "known sequence set")
    r.sp()
    uids = _seqset(r, "known UID set")
    r.expect(b")", "')' after sequence match data")
    if msns.saved or uids.saved:
        raise ArgError("$ is not allowed in QRESYNC")
    return msns, uids


def parse_select(r: ArgReader) -> Select:
    return _select(r, readonly=False)


def parse_examine(r: ArgReader) -> Select:
    return _select(r, readonly=True)


def parse_create(r: ArgReader) -> Create:
    r.sp()
    mailbox = r.mailbox()
    uses: list[str] = []
    if r.try_sp():
        r.expect(b"(", "'(' before create parameters")
        while True:
            name = r.keyword("create parameter")
            if name != "USE":
                raise ArgError(f"Unknown create parameter {name[:40]}")
            r.sp()
            # RFC 6154 5: use-attr; unknown ones are the session's NO [USEATTR]
            for attr in _paren_list(r, lambda rr: rr.flag(), "special-use attributes"):
                if not attr.startswith("\\"):
                    raise ArgError(f"Invalid special-use attribute {attr[:40]}")
                uses.append(SPECIAL_USE.get(attr.lower(), attr))
            if r.accept(b")"):
                break
            r.sp()
    r.end()
    return Create(mailbox, tuple(dict.fromkeys(uses)))


def _one_mailbox(r: ArgReader) -> str:
    r.sp()
    mailbox = r.mailbox()
    r.end()
    return mailbox


def parse_delete(r: ArgReader) -> Delete:
    return Delete(_one_mailbox(r))


def parse_subscribe(r: ArgReader) -> Subscribe:
    return Subscribe(_one_mailbox(r))


def parse_unsubscribe(r: ArgReader) -> Unsubscribe:
    return Unsubscribe(_one_mailbox(r))


def parse_rename(r: ArgReader) -> Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    new = r.mailbox()
    r.end()
    return Rename(old, new)


def parse_list(r: ArgReader) -> List:
    """LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts] (RFC 5258 6)."""
    r.sp()
    extended = False
    select_opts: frozenset[str] = frozenset()
    if r.peek() == 0x28:  # "("
        extended = True
        opts = _paren_list(r, lambda rr: rr.keyword("selection option"), "selection options")
        for opt in opts:
            if opt not in LIST_SELECT_OPTS:
                raise ArgError(f"Unknown selection option {opt[:40]}")
        select_opts = frozenset(opts)
        # RFC 5258 3.1: RECURSIVEMATCH alone (or only with REMOTE) is a BAD.
        if "RECURSIVEMATCH" in select_opts and not select_opts - {"RECURSIVEMATCH", "REMOTE"}:
            raise ArgError("RECURSIVEMATCH needs another selection option")
        r.sp()
    reference = r.mailbox_name(r.astring("reference name"), pattern=True)
    r.sp()
    if r.peek() == 0x28:
        extended = True
        r.pos += 1
        patterns = [r.list_mailbox()]
        while r.try_sp():
            patterns.append(r.list_mailbox())
        r.expect(b")", "')' after mailbox patterns")
    else:
        patterns = [r.list_mailbox()]
    return_opts: set[str] = set()
    status_items: tuple[str, ...] = ()
    if r.try_sp():
        extended = True
        if not r.accept_word(b"RETURN"):
            raise ArgError("Expected RETURN")
        r.sp()
        r.expect(b"(", "'(' after RETURN")
        if not r.accept(b")"):
            while True:
                opt = r.keyword("return option")
                if opt not in LIST_RETURN_OPTS:
                    raise ArgError(f"Unknown return option {opt[:40]}")
                if opt == "STATUS":  # RFC 5819 2
                    r.sp()
                    status_items = _status_items(r)
                return_opts.add(opt)
                if r.accept(b")"):
                    break
                r.sp()
    r.end()
    # A run of wildcards means one wildcard: shorter patterns cost the matcher less, and a
    # backtracking matcher (a regex) no longer explodes on "*%*%*%...x".
    return List(
        collapse_wildcards(reference),
        tuple(collapse_wildcards(p) for p in patterns),
        select_opts,
        frozenset(return_opts),
        status_items,
        extended,
    )


def parse_lsub(r: ArgReader) -> Lsub:
    r.sp()
    reference = r.mailbox_name(r.astring("reference name"), pattern=True)
    r.sp()
    pattern = r.list_mailbox()
    r.end()
    return Lsub(collapse_wildcards(reference), collapse_wildcards(pattern))


def parse_status(r: ArgReader) -> Status:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    items = _status_items(r)
    r.end()
    return Status(mailbox, items)


def parse_getquota(r: ArgReader) -> GetQuota:
    r.sp()
    root = r.astring_text("quota root")
    r.end()
    return GetQuota(root)


def parse_getquotaroot(r: ArgReader) -> GetQuotaRoot:
    r.sp()
    mailbox = r.mailbox()
    r.end()
    return GetQuotaRoot(mailbox)


def parse_append(r: ArgReader) -> Append:
    """APPEND mailbox 1*append-message (RFC 3502 MULTIAPPEND, RFC 3516 literal8, RFC 4469
    CATENATE, RFC 6855 UTF8): each message is [SP flag-list] [SP date-time] SP data."""
    r.sp()
    mailbox = r.mailbox()
    messages: list[AppendMessage] = []
    while True:
        r.sp()
        messages.append(_append_message(r))
        if r.at_end():
            break
    return Append(mailbox, tuple(messages))


def _append_message(r: ArgReader) -> AppendMessage:
    """append-message = [flag-list SP] [date-time SP] (literal / literal8 / UTF8 (literal8) /
    CATENATE (...))."""
    flags: tuple[str, ...] = ()
    when = None
    if r.peek() == 0x28:
        flags = _flags(r, parenthesised=True)
        if not r.try_sp():
            raise ArgError("Missing message literal")
    if r.peek() == 0x22:
        raw = r.quoted()
        try:
            when = parse_date_time(raw.decode("ascii"))
        except (DateError, UnicodeDecodeError):
            raise ArgError("Invalid date-time") from None
        r.sp()
    if r.literal_here():
        data, binary = r.literal(allow8=True)
        return AppendMessage(flags, when, data, binary=binary)
    if r.accept_word(b"UTF8"):
        r.sp()
        r.expect(b"(", "'(' after UTF8")
        data, binary = r.literal(allow8=True)
        if not binary:
            raise ArgError("UTF8 needs a literal8")  # RFC 6855 4
        r.expect(b")", "')' after UTF8 literal")
        return AppendMessage(flags, when, data, binary=True, utf8=True)
    if r.accept_word(b"CATENATE"):
        r.sp()
        return AppendMessage(flags, when, b"", catenate=_catenate(r))
    raise ArgError("Missing message literal" if r.at_end() else "Expected a message literal")


def parse_replace(r: ArgReader, uid: bool = False) -> Replace:
    """replace = "REPLACE" SP seq-number SP mailbox append-message (RFC 8508 6; "UID REPLACE"
    takes a UID). One message only: MULTIAPPEND does not apply."""
    r.sp()
    number = r.nz_number("message number")
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    message = _append_message(r)
    r.end()
    return Replace(number, mailbox, message, uid)


def _catenate(r: ArgReader) -> tuple[CatenatePart, ...]:
    """RFC 4469 5: "(" cat-part *(SP cat-part) ")", cat-part = TEXT SP literal / URL SP astring."""
    r.expect(b"(", "'(' after CATENATE")
    parts: list[CatenatePart] = []
    while True:
        kind = r.keyword("catenate part")
        r.sp()
        if kind == "TEXT":
            data, _ = r.literal(allow8=True)
            parts.append(CatenateText(data))
        elif kind == "URL":
            parts.append(CatenateUrl(r.astring_text("URL")))
        else:
            raise ArgError(f"Unknown catenate part {kind[:40]}")
        if r.accept(b")"):
            return tuple(parts)
        r.sp()


parse_idle = _no_args(Idle)
parse_namespace = _no_args(Namespace)


def parse_compress(r: ArgReader) -> Compress:
    """RFC 4978 3: COMPRESS SP algorithm (an atom)."""
    r.sp()
    mechanism = r.keyword("compression mechanism")
    r.end()
    return Compress(mechanism)


# -- selected ------------------------------------------------------------------------------------

parse_check = _no_args(Check)
parse_close = _no_args(Close)
parse_unselect = _no_args(Unselect)
parse_expunge = _no_args(Expunge)


def parse_uid_expunge(r: ArgReader) -> UidExpunge:
    r.sp()
    uids = _seqset(r, "UID set")
    r.end()
    return UidExpunge(uids)


def parse_search(r: ArgReader, uid: bool = False) -> Search:
    r.sp()
    return_opts, partial = parse_search_return(r)
    charset, key = parse_search_program(r)
    return Search(key, uid, charset, return_opts, partial)


SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)  # RFC 5256 3, RFC 5957 3 (SORT=DISPLAY)
THREAD_ALGORITHMS: Final = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


def parse_sort(r: ArgReader, uid: bool = False) -> Sort:
    """sort = ["UID" SP] "SORT" SP [sort-return-opts SP] sort-criteria SP search-charset
    1*(SP search-key) (RFC 5256 5, RFC 5267 3)."""
    r.sp()
    return_opts, partial = parse_search_return(r)
    r.expect(b"(", "'(' before the sort criteria")
    criteria = []
    while True:
        reverse = False
        word = r.keyword("sort key")
        if word == "REVERSE":
            reverse = True
            r.sp()
            word = r.keyword("sort key")
        if word not in SORT_KEYS:
            raise ArgError(f"Unknown sort key {word[:40]}")
        criteria.append(SortCriterion(word, reverse))
        if r.accept(b")"):
            break
        r.sp()
        if len(criteria) >= 32:
            raise ArgError("Too many sort criteria")
    r.sp()
    charset = r.astring_text("charset")
    if return_opts is None and r.buf[r.pos : r.pos + 8].upper() == b" RETURN ":
        # RETURN options after the charset too, where Dovecot parses them (imaptest's
        # sort-partial sends them there); RETURN is no search key, so nothing is ambiguous
        r.pos += 1
        return_opts, partial = parse_search_return(r)
        r.pos -= 1  # the SP before the first search key, which parse_search_criteria reads
    key = parse_search_criteria(r, charset)
    return Sort(tuple(criteria), charset, key, uid, return_opts, partial)


def parse_cancelupdate(r: ArgReader) -> CancelUpdate:
    """ "CANCELUPDATE" 1*(SP quoted) (RFC 5267 4.3.5): the tags of the contexts to cancel."""
    tags: list[str] = []
    while True:
        r.sp()
        tags.append(r.quoted().decode("utf-8", "replace"))
        if r.at_end():
            break
        if len(tags) >= 100:
            raise ArgError("Too many tags")
    return CancelUpdate(tuple(tags))


def parse_thread(r: ArgReader, uid: bool = False) -> Thread:
    """thread = ["UID" SP] "THREAD" SP thread-alg SP search-charset 1*(SP search-key)."""
    r.sp()
    algorithm = r.keyword("threading algorithm")
    if algorithm not in THREAD_ALGORITHMS:
        raise ArgError(f"Unknown threading algorithm {algorithm[:40]}")
    r.sp()
    charset = r.astring_text("charset")
    return Thread(algorithm, charset, parse_search_criteria(r, charset), uid)


def parse_fetch(r: ArgReader, uid: bool = False) -> Fetch:
    r.sp()
    seqset = _seqset(r)
    r.sp()
    items, macro = parse_fetch_atts(r)
    changedsince: int | None = None
    vanished = False
    if r.try_sp():
        # RFC 4466 2.4 fetch-modifiers; RFC 7162 3.1.4.1 CHANGEDSINCE, 3.2.6 VANISHED
        r.expect(b"(", "'(' before fetch modifiers")
        while True:
            name = r.keyword("fetch modifier")
            if name == "CHANGEDSINCE" and changedsince is None:
                r.sp()
                changedsince = r.number("mod-sequence", limit=MAX_NUMBER64)
            elif name == "VANISHED" and not vanished:
                vanished = True
            else:
                raise ArgError(f"Unknown or repeated fetch modifier {name[:40]}")
            if r.accept(b")"):
                break
            r.sp()
        if vanished and not uid:
            raise ArgError("VANISHED is only valid with UID FETCH")  # RFC 7162 3.2.6
        if vanished and changedsince is None:
            raise ArgError("VANISHED needs CHANGEDSINCE")  # RFC 7162 3.2.6
    r.end()
    return Fetch(seqset, items, uid, macro, changedsince, vanished)


_STORE_ITEMS: Final = {
    b"FLAGS": (StoreOp.REPLACE, False),
    b"FLAGS.SILENT": (StoreOp.REPLACE, True),
    b"+FLAGS": (StoreOp.ADD, False),
    b"+FLAGS.SILENT": (StoreOp.ADD, True),
    b"-FLAGS": (StoreOp.REMOVE, False),
    b"-FLAGS.SILENT": (StoreOp.REMOVE, True),
}
_STORE_ITEM_RE: Final = re.compile(rb"[+-]?[A-Za-z.]+")


def parse_store(r: ArgReader, uid: bool = False) -> Store:
    r.sp()
    seqset = _seqset(r)
    r.sp()
    unchangedsince: int | None = None
    if r.accept(b"("):
        # RFC 7162 3.1.3: store-modifier = "UNCHANGEDSINCE" SP mod-sequence-valzer
        while True:
            name = r.keyword("store modifier")
            if name != "UNCHANGEDSINCE" or unchangedsince is not None:
                raise ArgError(f"Unknown or repeated store modifier {name[:40]}")
            r.sp()
            unchangedsince = r.number("mod-sequence", limit=MAX_NUMBER64)
            if r.accept(b")"):
                break
            r.sp()
        r.sp()
    item = r.match(_STORE_ITEM_RE, "store item").upper()
    op_silent = _STORE_ITEMS.get(item)
    if op_silent is None:
        raise ArgError(f"Unknown store item {item[:40].decode('ascii')}")
    r.sp()
    flags = _flags(r, parenthesised=r.peek() == 0x28)
    r.end()
    return Store(seqset, op_silent[0], flags, op_silent[1], uid, unchangedsince)


def _copy_args(r: ArgReader) -> tuple[SequenceSet, str]:
    r.sp()
    seqset = _seqset(r)
    r.sp()
    mailbox = r.mailbox()
    r.end()
    return seqset, mailbox


def parse_copy(r: ArgReader, uid: bool = False) -> Copy:
    return Copy(*_copy_args(r), uid=uid)


def parse_move(r: ArgReader, uid: bool = False) -> Move:
    return Move(*_copy_args(r), uid=uid)


_UID_COMMANDS: Final[dict[str, Callable[[ArgReader, bool], Request]]] = {
    "COPY": parse_copy,
    "MOVE": parse_move,
    "FETCH": parse_fetch,
    "SEARCH": parse_search,
    "SORT": parse_sort,
    "THREAD": parse_thread,
    "STORE": parse_store,
    "REPLACE": parse_replace,
}


def parse_uid(r: ArgReader) -> Request:
    """UID (COPY / MOVE / FETCH / SEARCH / STORE / EXPUNGE) (RFC 9051 6.4.9, RFC 4315 2.1)."""
    r.sp()
    sub = r.keyword("UID command")
    if sub == "EXPUNGE":
        return parse_uid_expunge(r)
    fn = _UID_COMMANDS.get(sub)
    if fn is None:
        raise ArgError(f"Unknown UID command {sub[:40]}")
    return fn(r, True)


COMMANDS: Final[dict[str, Callable[[ArgReader], Request]]] = {
    "CAPABILITY": parse_capability,
    "NOOP": parse_noop,
    "LOGOUT": parse_logout,
    "ID": parse_id,
    "ENABLE": parse_enable,
    "STARTTLS": parse_starttls,
    "LOGIN": parse_login,
    "AUTHENTICATE": parse_authenticate,
    "SELECT": parse_select,
    "EXAMINE": parse_examine,
    "CREATE": parse_create,
    "DELETE": parse_delete,
    "RENAME": parse_rename,
    "SUBSCRIBE": parse_subscribe,
    "UNSUBSCRIBE": parse_unsubscribe,
    "LIST": parse_list,
    "LSUB": parse_lsub,
    "STATUS": parse_status,
    "APPEND": parse_append,
    "REPLACE": parse_replace,
    "IDLE": parse_idle,
    "NAMESPACE": parse_namespace,
    "COMPRESS": parse_compress,
    "CHECK": parse_check,
    "CLOSE": parse_close,
    "UNSELECT": parse_unselect,
    "EXPUNGE": parse_expunge,
    "SEARCH": parse_search,
    "SORT": parse_sort,
    "CANCELUPDATE": parse_cancelupdate,
    "THREAD": parse_thread,
    "GETQUOTA": parse_getquota,
    "GETQUOTAROOT": parse_getquotaroot,
    "FETCH": parse_fetch,
    "STORE": parse_store,
    "COPY": parse_copy,
    "MOVE": parse_move,
    "UID": parse_uid,
    # RFC 5465 NOTIFY, RFC 5464 METADATA: their syntax lives in their own modules
    "NOTIFY": parse_notify,
    "GETMETADATA": parse_getmetadata,
    "SETMETADATA": parse_setmetadata,
}
"""Command name -> parse function; the session can check membership to answer unknown names."""
