"""IMAP response rendering (RFC 9051 7, 9 formal syntax): values, response codes, whole lines.

Value convention (shared with carteiro.mime.bodystructure): None -> NIL, int -> number,
str -> quoted string when safe, else a literal (UTF-8 quoted when UTF8=ACCEPT is on),
bytes -> literal ``{N}``, list/tuple -> parenthesised list, Atom -> as is, Literal8 -> ``~{N}``,
datetime -> quoted date-time, SequenceSet -> its text. Every builder returns bytes ending in CRLF.
Nothing here decides *what* to answer; that is the session's job.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias

from carteiro.proto.imap import utf7
from carteiro.proto.imap.dates import format_date_time
from carteiro.proto.imap.sets import SequenceSet, render_numbers

__all__ = [
    "Atom",
    "Code",
    "Literal8",
    "Raw",
    "Value",
    "bad",
    "bye",
    "capability",
    "continuation",
    "continuation_data",
    "enabled",
    "encode",
    "encode_mailbox",
    "esearch",
    "exists",
    "expunge",
    "fetch",
    "flag_list",
    "flags",
    "id_response",
    "list_item",
    "namespace",
    "preauth",
    "recent",
    "search",
    "status",
    "tagged",
    "untagged",
    "untagged_status",
    "vanished",
]

CRLF: Final = b"\r\n"
MAX_QUOTED: Final = 1024  # longer strings go as literals: shorter lines for clients
_ASCII_QUOTABLE = re.compile(r"[\x20-\x7e]*")
_UTF8_UNQUOTABLE = re.compile(r"[\x00-\x1f\x7f]")
_ASTRING_ATOM = re.compile(r'[^\x00-\x20\x7f-\U0010ffff(){%*"\\]+')


class Atom(str):
    """Text sent as is, unquoted: flags, keywords, status item names, capability names."""

    __slots__ = ()


class Literal8(bytes):
    """Octets sent as a literal8 ``~{N}`` (RFC 3516 BINARY[] with NUL or 8-bit content)."""

    __slots__ = ()


class Raw(bytes):
    """Already-rendered wire bytes, inserted verbatim (e.g. a cached BODYSTRUCTURE)."""

    __slots__ = ()


# Atom, Literal8 and Raw are str/bytes subclasses and so part of Value too.
Value: TypeAlias = "int | str | bytes | dt.datetime | SequenceSet | Sequence[Value] | None"

NIL: Final = Atom("NIL")


# -- values ---------------------------------------------------------------------------------------


def encode(value: Value, *, utf8: bool = False) -> bytes:
    out: list[bytes] = []
    _encode(out, value, utf8)
    return b"".join(out)


def _encode(out: list[bytes], value: Value, utf8: bool) -> None:
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, Atom):
        out.append(value.encode("utf-8" if utf8 else "ascii", "replace"))
    elif isinstance(value, str):
        out.append(_string(value, utf8))
    elif isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    elif isinstance(value, int):
        out.append(b"%d" % value)
    elif isinstance(value, Raw):
        out.append(value)
    elif isinstance(value, Literal8):
        out.append(b"~{%d}\r\n" % len(value))
        out.append(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out.append(b"{%d}\r\n" % len(data))
        out.append(data)
    elif isinstance(value, dt.datetime):
        out.append(b'"' + format_date_time(value).encode("ascii") + b'"')
    elif isinstance(value, SequenceSet):
        out.append(str(value).encode("ascii"))
    elif isinstance(value, list | tuple):
        out.append(b"(")
        only_lists = True
        for i, item in enumerate(value):
            is_list = isinstance(item, list | tuple)
            # RFC 3501 9: "1*body", "1*address" and namespace lists run together with no SP
            # between the parenthesised elements; SP only after the run (body-type-mpart).
            if i and not (is_list and only_lists):
                out.append(b" ")
            only_lists = only_lists and is_list
            _encode(out, item, utf8)
        out.append(b")")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as an IMAP value")


def _string(value: str, utf8: bool) -> bytes:
    if len(value) <= MAX_QUOTED:
        if _ASCII_QUOTABLE.fullmatch(value):
            return _quote(value.encode("ascii"))
        if utf8 and _UTF8_UNQUOTABLE.search(value) is None:
            # RFC 6855 3 / RFC 9051 9: quoted strings may carry UTF-8.
            return _quote(value.encode("utf-8", "surrogatepass"))
    data = value.encode("utf-8", "surrogatepass")
    return b"{%d}\r\n" % len(data) + data


def _quote(raw: bytes) -> bytes:
    if b"\\" in raw or b'"' in raw:
        raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + raw + b'"'


def astring(value: str, *, utf8: bool = False) -> bytes:
    """An atom when the text allows it (never NIL), else a string."""
    if value and _ASTRING_ATOM.fullmatch(value) and value.upper() != "NIL":
        return value.encode("ascii")
    return _string(value, utf8)


def encode_mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name for LIST/LSUB/STATUS: modified UTF-7 unless UTF8=ACCEPT (RFC 6855 3)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else utf7.encode(name), utf8=utf8)


def flag_list(names: Iterable[str]) -> list[Atom]:
    return [Atom(n) for n in names]


# -- response codes (RFC 9051 7.1, RFC 5530, extensions) ------------------------------------------


class Code:
    """A response code, rendered ``[NAME args]``. Use the constants and factories below."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, args: bytes = b"") -> None:
        self.name = name
        self.args = args

    def __bytes__(self) -> bytes:
        if self.args:
            return b"[" + self.name.encode("ascii") + b" " + self.args + b"]"
        return b"[" + self.name.encode("ascii") + b"]"

    def __repr__(self) -> str:
        return f"Code({bytes(self).decode('ascii', 'replace')})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Code) and (self.name, self.args) == (other.name, other.args)

    def __hash__(self) -> int:
        return hash((self.name, self.args))

    # factories
    @staticmethod
    def capability(caps: Iterable[str]) -> Code:
        return Code("CAPABILITY", " ".join(caps).encode("ascii"))

    @staticmethod
    def permanentflags(names: Iterable[str]) -> Code:
        """Include ``\\*`` when clients may create keywords (RFC 9051 7.1)."""
        return Code("PERMANENTFLAGS", encode(flag_list(names)))

    @staticmethod
    def uidnext(n: int) -> Code:
        return Code("UIDNEXT", b"%d" % n)

    @staticmethod
    def uidvalidity(n: int) -> Code:
        return Code("UIDVALIDITY", b"%d" % n)

    @staticmethod
    def unseen(n: int) -> Code:
        return Code("UNSEEN", b"%d" % n)

    @staticmethod
    def highestmodseq(n: int) -> Code:
        return Code("HIGHESTMODSEQ", b"%d" % n)

    @staticmethod
    def appenduid(uidvalidity: int, uids: Iterable[int]) -> Code:
        """RFC 4315 3: APPENDUID uidvalidity uid-set (several for MULTIAPPEND)."""
        return Code(
            "APPENDUID", b"%d %s" % (uidvalidity, render_numbers(uids, sort=False).encode())
        )

    @staticmethod
    def copyuid(uidvalidity: int, source: Iterable[int], dest: Iterable[int]) -> Code:
        """RFC 4315 3: the two sets pair up by position, so their order is kept."""
        return Code(
            "COPYUID",
            b"%d %s %s"
            % (
                uidvalidity,
                render_numbers(source, sort=False).encode(),
                render_numbers(dest, sort=False).encode(),
            ),
        )

    @staticmethod
    def modified(numbers: Iterable[int] | SequenceSet) -> Code:
        """RFC 7162 3.1.3: the messages STORE UNCHANGEDSINCE did not change."""
        text = str(numbers) if isinstance(numbers, SequenceSet) else render_numbers(numbers)
        return Code("MODIFIED", text.encode("ascii"))

    @staticmethod
    def badcharset(charsets: Iterable[str] = ()) -> Code:
        names = [astring(c) for c in charsets]
        return Code("BADCHARSET", b"(" + b" ".join(names) + b")" if names else b"")

    @staticmethod
    def appendlimit(n: int | None) -> Code:
        return Code("APPENDLIMIT", b"NIL" if n is None else b"%d" % n)

    @staticmethod
    def useattr() -> Code:
        return Code("USEATTR")

    @staticmethod
    def parse(text: str) -> Code:
        """A code given as text (``"BADCHARSET (UTF-8)"``), e.g. ParseError.code."""
        name, _, args = text.partition(" ")
        return Code(name, args.encode("ascii", "replace"))


def _named(name: str) -> Code:
    return Code(name)


# Bare codes: RFC 9051 7.1 and RFC 5530 3.
ALERT: Final = _named("ALERT")
PARSE: Final = _named("PARSE")
READ_ONLY: Final = _named("READ-ONLY")
READ_WRITE: Final = _named("READ-WRITE")
TRYCREATE: Final = _named("TRYCREATE")
NOMODSEQ: Final = _named("NOMODSEQ")  # RFC 7162 3.1.2
CLOSED: Final = _named("CLOSED")  # RFC 7162 3.2.11
UIDNOTSTICKY: Final = _named("UIDNOTSTICKY")  # RFC 4315 3
UNKNOWN_CTE: Final = _named("UNKNOWN-CTE")  # RFC 3516 4.3
TOOBIG: Final = _named("TOOBIG")  # RFC 7888 4, RFC 4469
NOTSAVED: Final = _named("NOTSAVED")  # RFC 5182 2.1
HASCHILDREN: Final = _named("HASCHILDREN")  # RFC 9051 7.1
USEATTR: Final = _named("USEATTR")  # RFC 6154 5
UNAVAILABLE: Final = _named("UNAVAILABLE")
AUTHENTICATIONFAILED: Final = _named("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED: Final = _named("AUTHORIZATIONFAILED")
EXPIRED: Final = _named("EXPIRED")
PRIVACYREQUIRED: Final = _named("PRIVACYREQUIRED")
CONTACTADMIN: Final = _named("CONTACTADMIN")
NOPERM: Final = _named("NOPERM")
INUSE: Final = _named("INUSE")
EXPUNGEISSUED: Final = _named("EXPUNGEISSUED")
CORRUPTION: Final = _named("CORRUPTION")
SERVERBUG: Final = _named("SERVERBUG")
CLIENTBUG: Final = _named("CLIENTBUG")
CANNOT: Final = _named("CANNOT")
LIMIT: Final = _named("LIMIT")
OVERQUOTA: Final = _named("OVERQUOTA")
ALREADYEXISTS: Final = _named("ALREADYEXISTS")
NONEXISTENT: Final = _named("NONEXISTENT")


# -- status responses ------------------------------------------------------------------------------


def _text(text: str, utf8: bool) -> bytes:
    # resp-text is one line: never let a reason (which may quote client input) break it.
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    if not text:
        text = "Done"
    raw = text.encode("utf-8") if utf8 else text.encode("ascii", "replace")
    return raw


def _resp_text(text: str, code: Code | str | None, utf8: bool) -> bytes:
    body = _text(text, utf8)
    if code is None:
        if body.startswith(b"["):  # would read as a response code
            body = b" " + body
        return body
    if isinstance(code, str):
        code = Code.parse(code)
    return bytes(code) + b" " + body


def tagged(
    tag: str, status: str, text: str, code: Code | str | None = None, *, utf8: bool = False
) -> bytes:
    """``tag OK|NO|BAD [code] text``."""
    return b"%s %s %s\r\n" % (
        tag.encode("ascii"),
        status.encode("ascii"),
        _resp_text(text, code, utf8),
    )


def untagged_status(
    status: str, text: str, code: Code | str | None = None, *, utf8: bool = False
) -> bytes:
    """``* OK|NO|BAD|BYE|PREAUTH [code] text``."""
    return b"* %s %s\r\n" % (status.encode("ascii"), _resp_text(text, code, utf8))


def bad(tag: str | None, text: str, code: Code | str | None = None) -> bytes:
    """``tag BAD ...``, or ``* BAD ...`` when the tag is unknown (receiver/parser errors)."""
    if tag is None:
        return untagged_status("BAD", text, code)
    return tagged(tag, "BAD", text, code)


def bye(text: str, code: Code | str | None = None) -> bytes:
    return untagged_status("BYE", text, code)


def preauth(text: str, code: Code | str | None = None) -> bytes:
    return untagged_status("PREAUTH", text, code)


def continuation(text: str = "Ready") -> bytes:
    """``+ text`` (before a synchronising literal, or during IDLE: ``+ idling``)."""
    return b"+ " + _text(text, False) + CRLF


def continuation_data(data: bytes) -> bytes:
    """``+ base64`` for a SASL challenge (``+ `` alone for an empty one, RFC 9051 6.2.2)."""
    return b"+ " + base64.b64encode(data) + CRLF


# -- untagged data ---------------------------------------------------------------------------------


def untagged(*parts: Value, utf8: bool = False) -> bytes:
    """``* part part ...``; pass names as Atom: ``untagged(3, Atom("EXISTS"))``."""
    out: list[bytes] = [b"*"]
    for part in parts:
        out.append(b" ")
        _encode(out, part, utf8)
    out.append(CRLF)
    return b"".join(out)


def capability(caps: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(caps).encode("ascii") + CRLF


def enabled(caps: Iterable[str]) -> bytes:
    """RFC 5161 3.2: ``* ENABLED`` with the capabilities newly enabled (may be none)."""
    names = " ".join(caps)
    return b"* ENABLED" + (b" " + names.encode("ascii") if names else b"") + CRLF


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def recent(n: int) -> bytes:
    return b"* %d RECENT\r\n" % n


def expunge(msn: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % msn


def vanished(uids: Iterable[int] | SequenceSet, *, earlier: bool = False) -> bytes:
    """RFC 7162 3.2.10: ``* VANISHED [(EARLIER)] uid-set``."""
    text = str(uids) if isinstance(uids, SequenceSet) else render_numbers(uids)
    return b"* VANISHED " + (b"(EARLIER) " if earlier else b"") + text.encode("ascii") + CRLF


def flags(names: Iterable[str]) -> bytes:
    return b"* FLAGS " + encode(flag_list(names)) + CRLF


def fetch(msn: int, items: Iterable[tuple[str, Value]], *, utf8: bool = False) -> bytes:
    """``* msn FETCH (NAME value ...)``; names from FetchAttr.response_name(), values as above:
    ``fetch(1, [("UID", 7), ("FLAGS", flag_list(["\\\\Seen"])), ("BODY[]", raw_bytes)])``."""
    out: list[bytes] = [b"* %d FETCH (" % msn]
    first = True
    for name, value in items:
        if not first:
            out.append(b" ")
        first = False
        out.append(name.encode("ascii"))
        out.append(b" ")
        _encode(out, value, utf8)
    out.append(b")\r\n")
    return b"".join(out)


def search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """``* SEARCH 2 3 6`` [RFC 7162 3.1.5 ``(MODSEQ n)``, only when something matched]."""
    nums = b" ".join(b"%d" % n for n in numbers)
    out = b"* SEARCH " + nums if nums else b"* SEARCH"
    if modseq is not None and nums:
        out += b" (MODSEQ %d)" % modseq
    return out + CRLF


def esearch(
    tag: str | None,
    *,
    uid: bool = False,
    min: int | None = None,  # the RFC 4731 names
    max: int | None = None,
    count: int | None = None,
    all: Iterable[int] | SequenceSet | None = None,
    modseq: int | None = None,
) -> bytes:
    """RFC 4731 3.1: ``* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 3 ALL 2,5,9``.

    Leave out what was not asked for; MIN, MAX and ALL are omitted when nothing matched.
    """
    out = b"* ESEARCH"
    if tag is not None:
        out += b" (TAG " + _string(tag, False) + b")"
    if uid:
        out += b" UID"
    if min is not None:
        out += b" MIN %d" % min
    if max is not None:
        out += b" MAX %d" % max
    if count is not None:
        out += b" COUNT %d" % count
    if all is not None:
        text = str(all) if isinstance(all, SequenceSet) else render_numbers(all)
        if text:
            out += b" ALL " + text.encode("ascii")
    if modseq is not None:
        out += b" MODSEQ %d" % modseq
    return out + CRLF


def list_item(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    command: str = "LIST",
    childinfo: Iterable[str] | None = None,
    oldname: str | None = None,
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" INBOX`` (``command`` LSUB for LSUB). ``childinfo``: RFC 5258
    CHILDINFO extended item; ``oldname``: RFC 9051 7.3.1 OLDNAME after a RENAME."""
    out = [
        b"* ",
        command.encode("ascii"),
        b" ",
        encode(flag_list(attributes)),
        b" ",
        b"NIL" if delimiter is None else _quote(delimiter.encode("utf-8")),
        b" ",
        encode_mailbox(name, utf8=utf8),
    ]
    ext: list[bytes] = []
    if childinfo is not None:
        ext.append(b'"CHILDINFO" ' + encode([str(c) for c in childinfo]))
    if oldname is not None:
        ext.append(b'"OLDNAME" (' + encode_mailbox(oldname, utf8=utf8) + b")")
    if ext:
        out.append(b" (" + b" ".join(ext) + b")")
    out.append(CRLF)
    return b"".join(out)


def status(
    mailbox: str, items: Mapping[str, int] | Iterable[tuple[str, int]], *, utf8: bool = False
) -> bytes:
    """``* STATUS name (MESSAGES 231 UIDNEXT 44292)`` (items in the order given)."""
    pairs = items.items() if isinstance(items, Mapping) else items
    body = b" ".join(b"%s %d" % (k.encode("ascii"), v) for k, v in pairs)
    return b"* STATUS " + encode_mailbox(mailbox, utf8=utf8) + b" (" + body + b")" + CRLF


NamespaceList = Sequence[tuple[str, str | None]] | None


def namespace(
    personal: NamespaceList,
    other: NamespaceList = None,
    shared: NamespaceList = None,
    *,
    utf8: bool = False,
) -> bytes:
    """RFC 2342 5 / RFC 9051 7.3.5: ``* NAMESPACE (("" "/")) NIL NIL``."""

    def one(spaces: NamespaceList) -> bytes:
        if not spaces:
            return b"NIL"
        parts = []
        for prefix, delim in spaces:
            wire = prefix if utf8 else utf7.encode(prefix)
            d = b"NIL" if delim is None else _quote(delim.encode("utf-8"))
            parts.append(b"(" + _string(wire, utf8) + b" " + d + b")")
        return b"(" + b"".join(parts) + b")"

    return b"* NAMESPACE " + one(personal) + b" " + one(other) + b" " + one(shared) + CRLF


def id_response(
    params: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None,
) -> bytes:
    """RFC 2971 3.2: ``* ID ("name" "carteiro")`` or ``* ID NIL``."""
    if params is None:
        return b"* ID NIL\r\n"
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    if not pairs:
        return b"* ID NIL\r\n"
    body = b" ".join(
        _string(k, False) + b" " + (b"NIL" if v is None else _string(v, False)) for k, v in pairs
    )
    return b"* ID (" + body + b")" + CRLF
