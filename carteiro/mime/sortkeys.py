"""What IMAP SORT and THREAD compare (RFC 5256, RFC 5957): base subject (RFC 5256 2.1), first
From/To/Cc mailbox and display name, sent date, Message-ID and the References chain, and the
i;unicode-casemap collation key (RFC 5051). Pure functions; no regular expression runs on the
header text (every step is a linear scan) but casemap's search for single characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from carteiro.mime.address import parse_address_prefix
from carteiro.mime.encoded_words import decode_words
from carteiro.mime.header import cached_address_lists, decoded_values, first_date, unfold
from carteiro.mime.parse import Message

MAX_SUBJECT = 4096  # characters of Subject that sort (past them, subjects are one subject)
MAX_REFERENCES = 1000  # a References field longer than this keeps its last (nearest) ids


@dataclass(frozen=True, slots=True)
class SortFields:
    subject: str  # base subject (RFC 5256 2.1)
    reply: bool  # its extraction removed a Re:/Fwd: leader, a (fwd) trailer or [fwd: ...]
    from_: str  # addr-mailbox of the first From address ("" none)
    to: str
    cc: str
    display_from: str  # RFC 5957: the first From's display name, else its addr-spec
    display_to: str
    date: float | None  # Date: as a UTC timestamp; None: missing or unreadable
    message_id: str  # "<...>" of Message-ID, "" none or unreadable
    references: tuple[str, ...]  # References ids (else In-Reply-To's first), oldest first


def casemap(s: str) -> str:
    """The i;unicode-casemap key (RFC 5051 2): each character's titlecase mapping, then NFKD;
    keys compare by code point, which is the order of their UTF-8 octets."""
    if s.isascii():
        return s.upper()  # ASCII titlecase is uppercase, and NFKD leaves ASCII alone
    if _ODD is not None:
        # str.upper() is each character's titlecase but for the _ODD ones, and runs ~10 times
        # faster than str.translate with a dict (a lookup per character): the indexer folds
        # every delivered message's text.
        odd = _ODD.findall(s)
        if not odd:
            return unicodedata.normalize("NFKD", s.upper())
        distinct = set(odd)
        if len(distinct) <= 4 and len(odd) <= len(s) >> 4:
            return unicodedata.normalize("NFKD", _upper_except(s, sorted(distinct)))
    # str.translate runs in C: SORT and THREAD take the key of every message's subject
    return unicodedata.normalize("NFKD", s.translate(_TITLES))


def _upper_except(s: str, odd: list[str]) -> str:
    """Titlecase of each character of `s` when the characters `odd` are the only ones in it
    whose uppercase is not their titlecase (str.upper maps characters one by one)."""
    if not odd:
        return s.upper()
    c, rest = odd[0], odd[1:]
    return _title(c).join([_upper_except(piece, rest) for piece in s.split(c)])


# The characters whose full uppercase mapping (str.upper) is not their simple titlecase mapping
# (_title) in Unicode 14.0, Python 3.11's version: "ß" (upper "SS"), the DŽ/LJ/NJ/DZ digraphs,
# Georgian Mkhedruli (upper Mtavruli, title itself), Greek with ypogegrammeni, ligatures...
# Under another Unicode version the list may differ: then every non-ASCII text is translated
# (tests/unit/mime/test_mime_fastpaths.py recomputes the list from unicodedata).
ODD_UNIDATA = "14.0.0"
ODD_RANGES = (
    (0x00DF, 0x00DF), (0x0149, 0x0149), (0x01C4, 0x01CC), (0x01F0, 0x01F3), (0x0390, 0x0390),
    (0x03B0, 0x03B0), (0x0587, 0x0587), (0x10D0, 0x10FA), (0x10FD, 0x10FF), (0x1E96, 0x1E9A),
    (0x1F50, 0x1F50), (0x1F52, 0x1F52), (0x1F54, 0x1F54), (0x1F56, 0x1F56), (0x1F80, 0x1FAF),
    (0x1FB2, 0x1FB4), (0x1FB6, 0x1FB7), (0x1FBC, 0x1FBC), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FC7),
    (0x1FCC, 0x1FCC), (0x1FD2, 0x1FD3), (0x1FD6, 0x1FD7), (0x1FE2, 0x1FE4), (0x1FE6, 0x1FE7),
    (0x1FF2, 0x1FF4), (0x1FF6, 0x1FF7), (0x1FFC, 0x1FFC), (0xFB00, 0xFB06), (0xFB13, 0xFB17),
)  # fmt: skip
_ODD = (
    re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in ODD_RANGES) + "]")
    if unicodedata.unidata_version == ODD_UNIDATA
    else None
)


def _title(c: str) -> str:
    t = c.title()
    return t if len(t) == 1 else c  # the simple mapping (Dovecot's): "ß" stays "ß"


class _TitleTable(dict[int, str]):
    """A str.translate table of simple titlecase mappings, filled as characters are met (at
    most TITLE_TABLE_MAX of them: past that, hostile text is mapped without being kept)."""

    def __missing__(self, cp: int) -> str:
        t = _title(chr(cp))
        if len(self) < TITLE_TABLE_MAX:
            self[cp] = t
        return t


TITLE_TABLE_MAX = 20_000
_TITLES = _TitleTable()


# ---- base subject (RFC 5256 2.1) ----

_BLANKS = {9: 32, 10: 32, 13: 32}


def _blob_end(s: str, i: int) -> int:
    """End of a subj-blob ("[" *BLOBCHAR "]" *WSP) at i, or -1."""
    if i >= len(s) or s[i] != "[":
        return -1
    j = i + 1
    while j < len(s) and s[j] not in "[]":
        j += 1
    if j >= len(s) or s[j] != "]":
        return -1
    j += 1
    while j < len(s) and s[j] in " \t":
        j += 1
    return j


def _refwd_end(s: str, i: int) -> int:
    """End of a subj-refwd (("re" / ("fw" ["d"])) *WSP [subj-blob] ":") at i, or -1."""
    low = s[i : i + 3].lower()
    if low.startswith("re"):
        j = i + 2
    elif low == "fwd":
        j = i + 3
    elif low.startswith("fw"):
        j = i + 2
    else:
        return -1
    while j < len(s) and s[j] in " \t":
        j += 1
    b = _blob_end(s, j)
    if b >= 0:
        j = b
    return j + 1 if j < len(s) and s[j] == ":" else -1


def _blob_run(s: str) -> list[int]:
    """The ends of the subj-blobs that follow one another from the start."""
    ends = []
    i = _blob_end(s, 0)
    while i >= 0:
        ends.append(i)
        i = _blob_end(s, i)
    return ends


def _leader_end(s: str) -> tuple[int, bool]:
    """End of a subj-leader ((*subj-blob subj-refwd) / WSP) at the start, and whether it was a
    Re/Fwd; (0, False) when there is none."""
    if s[:1] in (" ", "\t"):
        return 1, False
    i = 0
    while True:
        r = _refwd_end(s, i)
        if r >= 0:
            return r, True
        b = _blob_end(s, i)
        if b < 0:
            return 0, False
        i = b


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 2.1: (base subject, whether it is a reply or forward). `subject` is decoded
    (RFC 2047) already; step (1)'s blank folding is done here."""
    # (1) blanks to one space; leading and trailing ones go, as steps (2) and (3) would remove.
    # Only the first MAX_SUBJECT characters count: every step below is then cheap.
    s = " ".join(w for w in subject[:MAX_SUBJECT].translate(_BLANKS).split(" ") if w)
    reply = False
    while True:
        # (2) trailers: "(fwd)" / WSP, repeatedly
        while True:
            if s.endswith((" ", "\t")):
                s = s[:-1]
            elif s[-5:].lower() == "(fwd)":
                s = s[:-5]
                reply = True
            else:
                break
        # (3)-(5): leaders, then one blob if something remains after it, until neither applies
        while True:
            n, refwd = _leader_end(s)
            if n:
                s = s[n:]
                reply = reply or refwd
                continue
            # no leader: s starts with blobs none of which a Re/Fwd follows, so (4) takes them
            # one after the other, but a last one that would leave nothing: all at once here
            # (one at a time costs a scan of the rest each: quadratic on "[a][a][a]...")
            ends = _blob_run(s)
            if ends and ends[-1] < len(s):
                s = s[ends[-1] :]
            elif len(ends) >= 2:
                s = s[ends[-2] :]
            break
        # (6) "[fwd:" ... "]": unwrap and start again from (2)
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            reply = True
            continue
        return s, reply


# ---- the fields ----


def _first_address(msg: Message, name: bytes) -> tuple[str, str]:
    """(addr-mailbox, display) of the first address of the first `name` field."""
    # Only the first 4 entries count: a parse that read more (SEARCH's, cached) has the same
    # first 4, as the parser appends entries in order and never changes one it appended.
    parsed = cached_address_lists(msg, name)
    if parsed is not None:
        # the first field is always read (the budget is whole then)
        firsts = [read[0][:4] for read in parsed[:1] if read is not None]
    else:
        firsts = [
            parse_address_prefix(raw, fill_missing=False, limit=4)[0]
            for raw in msg.field_values(msg.root, name)[:1]
        ]
    for addrs in firsts:
        for a in addrs:
            if a.is_group_start or a.is_group_end:
                continue
            mailbox = decode_words(a.mailbox.decode("utf-8", "replace")) if a.mailbox else ""
            domain = a.domain.decode("utf-8", "replace") if a.domain else ""
            name_ = decode_words(a.name.decode("utf-8", "replace")).strip() if a.name else ""
            # RFC 5957 3: the display name, else the addr-spec
            return mailbox, name_ or (f"{mailbox}@{domain}" if domain else mailbox)
        return "", ""
    return "", ""


def _msg_ids(raw: bytes, limit: int) -> list[str]:
    """The "<...>" ids of a Message-ID / References / In-Reply-To value (comments and words
    between them skipped), at most `limit` (the last ones)."""
    out: list[str] = []
    text = unfold(raw).decode("utf-8", "replace")
    i = 0
    while True:
        start = text.find("<", i)
        if start < 0:
            break
        end = text.find(">", start + 1)
        if end < 0:
            break
        inner = text[start + 1 : end]
        if inner and "<" not in inner and "@" in inner:
            out.append("<" + "".join(inner.split()) + ">")
        i = end + 1
    return out[-limit:]


def sort_fields(msg: Message) -> SortFields:
    subjects = decoded_values(msg, b"subject")
    subject = subjects[0] if subjects else ""
    base, reply = base_subject(subject)
    from_, display_from = _first_address(msg, b"from")
    to, display_to = _first_address(msg, b"to")
    cc, _ = _first_address(msg, b"cc")
    when = first_date(msg)
    ids = msg.field_values(msg.root, b"message-id")
    mid = _msg_ids(ids[0], MAX_REFERENCES)[:1] if ids else []
    refs: list[str] = []
    for raw in msg.field_values(msg.root, b"references")[:1]:
        refs = _msg_ids(raw, MAX_REFERENCES)
    if not refs:  # RFC 5256 2.2 step 1A: In-Reply-To when there are no valid References
        for raw in msg.field_values(msg.root, b"in-reply-to")[:1]:
            refs = _msg_ids(raw, MAX_REFERENCES)[:1]  # its first valid id
    return SortFields(
        base,
        reply,
        from_,
        to,
        cc,
        display_from,
        display_to,
        when.timestamp() if when is not None else None,
        mid[0] if mid else "",
        tuple(refs),
    )
