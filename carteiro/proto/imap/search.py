"""SEARCH programs (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 7162 3.1.5 MODSEQ, RFC 5032 WITHIN, RFC 5182 $)
as a typed key tree, plus ESEARCH RETURN options (RFC 4731, RFC 5182 SAVE, RFC 5267 CONTEXT,
UPDATE and PARTIAL), which SORT takes too (RFC 5267 3, ESORT).

Keys are decoded with the CHARSET (UTF-8 when none); an unknown charset is ``NO [BADCHARSET]``.
The tree is pure data: evaluating it against messages is the mail layer's job.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from carteiro.proto.imap.args import MAX_NUMBER, MAX_NUMBER64, ArgError, ArgReader
from carteiro.proto.imap.dates import DateError, parse_date
from carteiro.proto.imap.sets import SequenceSet, SequenceSetError

__all__ = [
    "RETURN_OPTIONS",
    "SUPPORTED_CHARSETS",
    "SearchAll",
    "SearchAnd",
    "SearchBody",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchOr",
    "SearchSeq",
    "SearchSize",
    "SearchText",
    "SearchWithin",
    "parse_search_program",
    "parse_search_return",
]

MAX_DEPTH: Final = 64  # nesting of NOT / OR / ( ) accepted before a BAD (no recursion blow-up)
SUPPORTED_CHARSETS: Final = ("UTF-8", "US-ASCII")
"""Advertised in [BADCHARSET (...)]; any charset Python can decode is accepted as well."""
RETURN_OPTIONS: Final = frozenset(
    {"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL"}
)
RESULT_OPTIONS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL"})
"""The options that ask for a result; CONTEXT (a hint) and UPDATE (RFC 5267 4.2, 4.3) only
modify one, so alone they mean ALL, as ``RETURN ()`` does (RFC 4731 3.1)."""
_PARTIAL_RE: Final = re.compile(rb"([0-9]{1,10}):([0-9]{1,10})")


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL."""


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/RECENT/KEYWORD (``present``) and their UN-/OLD forms.

    ``flag`` is canonical for system flags (``\\Seen``) and as written for keywords.
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """HEADER name value; FROM/TO/CC/BCC/SUBJECT are HEADER with that name (lower-case).
    An empty ``value`` matches every message that has the field (RFC 9051 6.4.4)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchBody:
    """BODY: the value in the body (after decoding), not the header."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """TEXT: the value in the header or the body."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (``sent`` False: INTERNALDATE) and SENTBEFORE/SENTON/SENTSINCE (Date:).

    ``op`` is "before", "on" or "since"; dates are compared without time or zone.
    """

    op: str
    date: dt.date
    sent: bool = False
    saved: bool = False  # RFC 8514 SAVEDBEFORE/SAVEDON/SAVEDSINCE: the save date


@dataclass(frozen=True, slots=True)
class SearchWithin:
    """RFC 5032: OLDER (``older`` True) / YOUNGER ``seconds`` relative to INTERNALDATE."""

    seconds: int
    older: bool


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER n (``larger``) / SMALLER n, on RFC822.SIZE."""

    size: int
    larger: bool


@dataclass(frozen=True, slots=True)
class SearchSeq:
    """A sequence set of MSNs, or of UIDs (``UID set``); ``$`` is ``SequenceSet.saved``."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """RFC 7162 3.1.5: MODSEQ [entry-name entry-type] value; matches mod-sequence >= value."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None  # "priv", "shared" or "all"


@dataclass(frozen=True, slots=True)
class SearchObjectId:
    """RFC 8474 6: EMAILID / THREADID objectid (``kind`` "EMAILID" or "THREADID")."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """Several keys (the top level of a program or a parenthesised list); all must match."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchFlag
    | SearchHeader
    | SearchBody
    | SearchText
    | SearchDate
    | SearchWithin
    | SearchSize
    | SearchSeq
    | SearchModSeq
    | SearchObjectId
    | SearchNot
    | SearchOr
    | SearchAnd
)

_FLAG_KEYS: Final = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_ADDRESS_KEYS: Final = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
_DATE_KEYS: Final = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}
_SAVED_KEYS: Final = {"SAVEDBEFORE": "before", "SAVEDON": "on", "SAVEDSINCE": "since"}  # RFC 8514
_SET_TOKEN_RE: Final = re.compile(rb"[0-9*$:,]+")
_OBJECTID_RE: Final = re.compile(rb"[A-Za-z0-9_-]{1,255}(?![A-Za-z0-9_-])")
_DATE_TOKEN_RE: Final = re.compile(rb'"([0-9A-Za-z-]*)"|([0-9A-Za-z-]+)')
_NEW: Final = SearchAnd((SearchFlag("\\Recent", True), SearchFlag("\\Seen", False)))


def parse_search_return(
    r: ArgReader,
) -> tuple[frozenset[str] | None, tuple[int, int] | None]:
    """``RETURN (opts)`` after SEARCH (RFC 4731 3.1) or SORT (RFC 5267 3): the options (None
    when absent; ``RETURN ()`` is ALL) and the PARTIAL range (RFC 5267 4.4), if any."""
    if not r.accept_word(b"RETURN"):
        return None, None
    r.sp()
    r.expect(b"(", "'(' after RETURN")
    opts: set[str] = set()
    partial: tuple[int, int] | None = None
    if not r.accept(b")"):
        while True:
            opt = r.keyword("search return option")
            if opt not in RETURN_OPTIONS:
                raise ArgError(f"Unknown search return option {opt[:40]}")
            if opt == "PARTIAL":
                if partial is not None:
                    raise ArgError("PARTIAL can be given only once")
                r.sp()
                partial = _partial_range(r)
            opts.add(opt)
            if r.accept(b")"):
                break
            r.sp()
    r.sp()
    if partial is not None and "ALL" in opts:
        raise ArgError("PARTIAL conflicts with ALL")  # as Dovecot: one or the other
    if not opts & RESULT_OPTIONS:
        opts.add("ALL")
    return frozenset(opts), partial


def _partial_range(r: ArgReader) -> tuple[int, int]:
    """partial-range = nz-number ":" nz-number (RFC 5267 4.4): 1-based positions in the
    result, low first (a reversed range is read low to high, as Dovecot does)."""
    raw = r.match(_PARTIAL_RE, "partial range")
    m = _PARTIAL_RE.fullmatch(raw)
    assert m is not None
    a, b = int(m.group(1)), int(m.group(2))
    if not 0 < a <= MAX_NUMBER or not 0 < b <= MAX_NUMBER:
        raise ArgError("Invalid partial range")
    if r.peek_is(b":") or (0x30 <= r.peek() <= 0x39):
        raise ArgError("Invalid partial range")
    return (a, b) if a <= b else (b, a)


def parse_search_program(r: ArgReader) -> tuple[str | None, SearchKey]:
    """search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)."""
    charset: str | None = None
    codec = "utf-8"
    if r.accept_word(b"CHARSET"):
        r.sp()
        charset = r.astring_text("charset")
        codec = _codec_for(charset)
        r.sp()
    keys = [_key(r, codec, 0)]
    while r.try_sp():
        keys.append(_key(r, codec, 0))
    r.end()
    return charset, keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


def parse_search_criteria(r: ArgReader, charset: str) -> SearchKey:
    """1*(SP search-key) after SORT's and THREAD's mandatory charset (RFC 5256 5), which the
    caller read (the leading SP is read here)."""
    codec = _codec_for(charset)
    keys = []
    while True:
        r.sp()
        keys.append(_key(r, codec, 0))
        if not r.peek_is(b" "):
            break
    r.end()
    return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))


def _codec_for(charset: str) -> str:
    try:
        info = codecs.lookup(charset)
    except LookupError:
        info = None
    # Only text encodings: "base64" or "rot13" are codecs too, but not charsets.
    if info is None or not getattr(info, "_is_text_encoding", True):
        supported = " ".join(SUPPORTED_CHARSETS)
        raise ArgError(
            f"Unsupported charset {charset[:40]}", code=f"BADCHARSET ({supported})", status="NO"
        )
    return info.name


def _string(r: ArgReader, codec: str, what: str) -> str:
    raw = r.astring(what)
    try:
        text = raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        raise ArgError(f"{what.capitalize()} is not valid in the charset") from None
    if "\x00" in text:
        raise ArgError(f"NUL in {what}")
    return text


def _date(r: ArgReader) -> dt.date:
    """date = date-text / DQUOTE date-text DQUOTE."""
    m = _DATE_TOKEN_RE.match(r.buf, r.pos)
    if m is None:
        raise ArgError("Missing date" if r.at_end() else "Expected a date")
    raw = m.group(1) if m.group(1) is not None else m.group(2)
    try:
        value = parse_date(raw.decode("ascii"))
    except DateError as exc:
        raise ArgError(str(exc).capitalize()) from None
    r.pos = m.end()
    return value


def _seqset(r: ArgReader, what: str) -> SequenceSet:
    raw = r.match(_SET_TOKEN_RE, what)
    try:
        return SequenceSet.parse(raw)
    except SequenceSetError as exc:
        raise ArgError(str(exc).capitalize()) from None


def _key(r: ArgReader, codec: str, depth: int) -> SearchKey:
    if depth > MAX_DEPTH:
        raise ArgError("Search program nested too deeply")
    b = r.peek()
    if b == 0x28:  # "("
        r.pos += 1
        keys = [_key(r, codec, depth + 1)]
        while r.try_sp():
            keys.append(_key(r, codec, depth + 1))
        r.expect(b")", "')' after search keys")
        return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    if b == 0x2A or b == 0x24 or 0x30 <= b <= 0x39:  # "*", "$", digit
        return SearchSeq(_seqset(r, "sequence set"))
    name = r.keyword("search key")
    flag = _FLAG_KEYS.get(name)
    if flag is not None:
        return SearchFlag(*flag)
    if name == "ALL":
        return SearchAll()
    if name == "NEW":
        return _NEW
    field = _ADDRESS_KEYS.get(name)
    if field is not None:
        r.sp()
        return SearchHeader(field, _string(r, codec, name.lower()))
    date_key = _DATE_KEYS.get(name)
    if date_key is not None:
        r.sp()
        return SearchDate(date_key[0], _date(r), sent=date_key[1])
    saved_op = _SAVED_KEYS.get(name)
    if saved_op is not None:
        r.sp()
        return SearchDate(saved_op, _date(r), saved=True)
    if name == "SAVEDATESUPPORTED":  # RFC 8514 4.3: every mailbox here records save dates
        return SearchAll()
    if name == "NOT":
        r.sp()
        return SearchNot(_key(r, codec, depth + 1))
    if name == "OR":
        r.sp()
        left = _key(r, codec, depth + 1)
        r.sp()
        return SearchOr(left, _key(r, codec, depth + 1))
    if name in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        keyword = r.flag()
        if keyword.startswith("\\"):
            raise ArgError(f"{name} takes a keyword, not a system flag")
        return SearchFlag(keyword, name == "KEYWORD")
    if name == "HEADER":
        r.sp()
        header = _string(r, codec, "header field name")
        if not header or any(c <= " " or c == ":" or c > "~" for c in header):
            raise ArgError("Invalid header field name")
        r.sp()
        return SearchHeader(header.lower(), _string(r, codec, "header value"))
    if name == "BODY":
        r.sp()
        return SearchBody(_string(r, codec, "body text"))
    if name == "TEXT":
        r.sp()
        return SearchText(_string(r, codec, "text"))
    if name in ("LARGER", "SMALLER"):
        r.sp()
        return SearchSize(r.number("size", limit=MAX_NUMBER64), name == "LARGER")
    if name == "UID":
        r.sp()
        return SearchSeq(_seqset(r, "UID set"), uid=True)
    if name in ("OLDER", "YOUNGER"):
        r.sp()
        return SearchWithin(r.nz_number("interval"), name == "OLDER")
    if name == "MODSEQ":
        return _modseq(r)
    if name in ("EMAILID", "THREADID"):
        r.sp()
        # objectid = 1*255(ALPHA / DIGIT / "_" / "-") (RFC 8474 7)
        return SearchObjectId(name, r.match(_OBJECTID_RE, "objectid").decode("ascii"))
    raise ArgError(f"Unknown search key {name[:40]}")


def _modseq(r: ArgReader) -> SearchModSeq:
    """search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer (RFC 7162 7)."""
    r.sp()
    entry = entry_type = None
    if r.peek() == 0x22:
        raw = r.quoted()
        if not raw.lower().startswith(b"/flags/") or len(raw) <= 7:
            raise ArgError("MODSEQ entry name must be /flags/<flag>")
        entry = raw.decode("ascii", "replace")
        r.sp()
        entry_type = r.keyword("entry type").lower()
        if entry_type not in ("priv", "shared", "all"):
            raise ArgError("MODSEQ entry type must be priv, shared or all")
        r.sp()
    return SearchModSeq(r.number("mod-sequence", limit=MAX_NUMBER64), entry, entry_type)
