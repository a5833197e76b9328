"""MIME structure of a message: a part tree with byte offsets (RFC 5322, RFC 2045, RFC 2046).

`parse()` never raises, runs in time linear in the message (plus the boundary stack depth per
"--" line), has no recursion and bounds nesting, parts and indexed header fields (docs/mime.md,
"Limits"). It reproduces Dovecot's message parser
(boundaries, preamble/epilogue, broken input) so that sizes, line counts and part numbers
agree with Dovecot's BODYSTRUCTURE. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from carteiro.mime.rfc822 import (
    parse_content_type,
    parse_disposition,
    parse_language,
    parse_token_value,
)

# Part kinds: a leaf, a multipart (children = its body parts), or an encapsulated message
# (message/rfc822 or message/global: children = [the inner message]).
LEAF, MULTIPART, MESSAGE = "leaf", "multipart", "message"

# Dovecot's limits (max_nested_mime_parts, max_total_mime_parts): deeper or further parts are
# not split, their bytes stay in the enclosing part's body.
MAX_DEPTH = 100
MAX_PARTS = 10000
# RFC 2046 5.1.1 allows 70 characters; longer boundaries are cut, as Dovecot does.
MAX_BOUNDARY = 80
# Header fields indexed per header and per message. A Field costs ~150 bytes and ~4 us in
# Python: 50 MB of "X:y" lines would be 12 million of them (gigabytes, most of a minute).
# Real headers have tens of fields, hundreds with long Received chains. Later fields are
# skipped at C speed: they stay in BODY[HEADER] and the sizes, but ENVELOPE, BODYSTRUCTURE,
# HEADER.FIELDS and SEARCH do not see them (Dovecot bounds headers by size instead: 50 MB in all).
MAX_HEADER_FIELDS = 10000
MAX_FIELDS = 100000
# Content-Type/-Disposition/-Language octets read for parameters, per value and per message;
# past the latter only the type is read. Real values are a few hundred octets.
MAX_CONTENT_VALUE = 64 << 10
MAX_CONTENT_OCTETS = 1 << 20
# Octets of one header value that ENVELOPE and SEARCH read (BODY[HEADER...] sends them all).
# Postfix keeps at most 100 KiB of a whole header (header_size_limit = 102400), so mail that
# came through it never gets near; a 50 MB Subject rendered into ENVELOPE took 650 MB.
MAX_VALUE = 1 << 20
_PARSED_CONTENT = frozenset({b"type", b"disposition", b"language"})

ENCAPSULATING_TYPES = (b"message/rfc822", b"message/global")  # RFC 9051 7.5.2, RFC 6532 3.5

_CR, _LF, _SP, _HT = 0x0D, 0x0A, 0x20, 0x09


# An LF that no CR precedes: found by the literal "\n" (a C-speed scan) and one fixed look
# behind, 2.5 times faster than counting LFs and CRLFs (120 us for 100 KB).
_BARE_LF = re.compile(rb"\n(?<!\r\n)")


def to_crlf(raw: bytes) -> bytes:
    """`raw` with every bare LF turned into CRLF (IMAP serves and sizes messages with CRLF)."""
    if _BARE_LF.search(raw) is None:
        return raw
    # CRLF -> LF -> CRLF adds a CR before each bare LF and leaves other CRs alone.
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(slots=True, eq=False)
class Field:
    """One header field, as offsets into Message.data."""

    name: bytes  # as written, without the whitespace before ":"
    start: int  # first octet of the field
    value_start: int  # after ":" and the whitespace that follows it (RFC 5322 2.2)
    value_end: int  # before the line break that ends the field
    end: int  # after that line break


class Part:
    """One MIME entity. Offsets index Message.data: [start, body_start) is the header
    (including the blank line that ends it, when present), [body_start, end) the body.

    Content-* values are bytes exactly as written (Dovecot reports them unchanged); None when
    absent. They are all None/empty when the entity is not MIME (RFC 2045 4: a message with
    neither MIME-Version nor Content-Type).
    """

    __slots__ = (
        "_by_name",
        "_lines",
        "body_start",
        "boundary",
        "children",
        "cte",
        "depth",
        "description",
        "digest",
        "disposition",
        "disposition_params",
        "end",
        "fields",
        "fields_end",
        "has_eoh",
        "id",
        "is_mime",
        "kind",
        "language",
        "location",
        "md5",
        "media_type",
        "overflow",
        "params",
        "parent",
        "start",
        "subtype",
        "type",
    )

    def __init__(self, start: int, parent: Part | None) -> None:
        self.start = start
        self.body_start = start
        self.end = start
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.children: list[Part] = []
        self.fields: list[Field] = []
        # Where the header's field lines end when fields were skipped (-1: after the last one).
        self.fields_end = -1
        self.has_eoh = False
        self.kind = LEAF
        self.digest = False
        self.overflow = False
        self.boundary: bytes | None = None
        self.is_mime = False
        self.media_type = b"text/plain"
        self.type: bytes | None = None
        self.subtype: bytes | None = None
        self.params: list[tuple[bytes, bytes]] = []
        self.cte: bytes | None = None
        self.id: bytes | None = None
        self.description: bytes | None = None
        self.disposition: bytes | None = None
        self.disposition_params: list[tuple[bytes, bytes]] = []
        self.md5: bytes | None = None
        self.language: list[bytes] | None = None
        self.location: bytes | None = None
        self._lines = -1
        # lowercased name -> its fields, built on the first lookup (Message.fields)
        self._by_name: dict[bytes, list[Field]] | None = None

    def __repr__(self) -> str:
        return (
            f"<Part {self.media_type.decode('latin-1')} {self.kind} "
            f"[{self.start}:{self.body_start}:{self.end}] {len(self.children)} children>"
        )

    @property
    def header_size(self) -> int:
        return self.body_start - self.start

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    @property
    def message(self) -> Part | None:
        """The encapsulated message of a message/rfc822 part."""
        return self.children[0] if self.kind == MESSAGE and self.children else None

    @property
    def is_text(self) -> bool:
        return self.media_type.startswith(b"text/") or self.media_type == b"text"

    @property
    def transfer_encoding(self) -> bytes:
        """The Content-Transfer-Encoding, lowercased; RFC 2045 6.1 default "7bit"."""
        return (self.cte or b"7bit").lower()

    def param(self, name: bytes) -> bytes | None:
        """A Content-Type parameter (merged, not RFC 2231-decoded), by case-insensitive name."""
        name = name.lower()
        for k, v in self.params:
            if k.lower() == name:
                return v
        return None

    def walk(self) -> Iterator[Part]:
        """This part and every part below it, depth first, in order (no recursion)."""
        stack: list[Part] = [self]
        while stack:
            p = stack.pop()
            yield p
            stack.extend(reversed(p.children))


class Message:
    """A parsed message: keep one per (mailbox, uid) to answer repeated FETCHes cheaply.

    `data` is the message with CRLF line endings (bare LFs converted): every offset, size and
    line count refers to it. `raw` is the message as parsed when that differs (bare LFs), else
    None: the whole message is served as stored (a binary APPEND keeps its bare LFs, RFC 3516),
    its parts from `data`. `cache` holds values derived later (ENVELOPE, BODYSTRUCTURE, search
    text) by the other mime modules.
    """

    __slots__ = ("cache", "data", "parts_count", "raw", "root")

    def __init__(self, data: bytes, root: Part, parts_count: int) -> None:
        self.data = data
        self.root = root
        self.parts_count = parts_count
        self.raw: bytes | None = None
        self.cache: dict[str, Any] = {}

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def has_nuls(self) -> bool:
        return b"\x00" in self.data

    def header_bytes(self, part: Part) -> bytes:
        return self.data[part.start : part.body_start]

    def body_bytes(self, part: Part) -> bytes:
        return self.data[part.body_start : part.end]

    def body_lines(self, part: Part) -> int:
        """Line count of the body (LF octets), as in BODYSTRUCTURE."""
        if part._lines < 0:
            part._lines = self.data.count(b"\n", part.body_start, part.end)
        return part._lines

    def raw_value(self, f: Field) -> bytes:
        """A field's value, still folded (CRLF + WSP inside), NULs as U+FFFD like Dovecot; at
        most MAX_VALUE octets of it (ENVELOPE and SEARCH read values through here)."""
        start, end = f.value_start, f.value_end
        if end - start > MAX_VALUE:
            end = start + MAX_VALUE
        v = self.data[start:end]
        return v.replace(b"\x00", "\ufffd".encode()) if b"\x00" in v else v

    def fields(self, part: Part, name: bytes) -> list[Field]:
        """The part's header fields called `name` (case-insensitive), in order."""
        return list(_named(part, name))

    def field_values(self, part: Part, name: bytes) -> list[bytes]:
        return [self.raw_value(f) for f in _named(part, name)]


def _named(part: Part, name: bytes) -> list[Field]:
    """The part's fields called `name`, from its index by lowercased name, built on the first
    lookup: SEARCH, SORT and the store's indexer look up a dozen names per message, each a pass
    over every field before. A part's fields do not change once parsed (a Message is immutable),
    so the index never goes stale. The list is the index's own: callers copy it."""
    index = part._by_name
    if index is None:
        index = {}
        for f in part.fields:
            lname = f.name.lower()
            same = index.get(lname)
            if same is None:
                index[lname] = [f]
            else:
                same.append(f)
        part._by_name = index
    return index.get(name.lower(), _NONE)


_NONE: list[Field] = []


@dataclass(slots=True)
class _Boundary:
    value: bytes
    part: Part


class _Parser:
    """The state machine; Dovecot's message-parser.c is the model for every edge case."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.stack: list[_Boundary] = []
        self.total = 0
        self.fields_left = MAX_FIELDS
        self.content_left = MAX_CONTENT_OCTETS
        self._patterns: dict[tuple[frozenset[bytes], bytes], re.Pattern[bytes]] = {}

    def boundary_lines(self, cur: Part | None = None) -> re.Pattern[bytes]:
        """Finds "\n--" followed by an open boundary, so "--" lines that name none are
        skipped at C speed (with 99 boundaries open, a million such lines took 10 s).

        Past MAX_PARTS, inside the innermost multipart (`cur`), a separator of its own
        boundary starts no part and ends none: only its close-delimiter is looked for then
        (a million "--b" lines took 2 s)."""
        values = {b.value for b in self.stack}
        closing = b""
        if cur is not None and self.total >= MAX_PARTS and self.stack[-1].part is cur:
            closing = self.stack[-1].value
            if not any(b.value == closing for b in self.stack[:-1]):
                values.discard(closing)
            else:
                closing = b""
        key = (frozenset(values), closing)
        pattern = self._patterns.get(key)
        if pattern is None:
            ordered = sorted(values, key=len, reverse=True)
            alternatives = [re.escape(v) for v in ordered]
            if closing:
                alternatives.insert(0, re.escape(closing + b"--"))
            pattern = re.compile(b"\n--(?:" + b"|".join(alternatives) + b")")
            self._patterns[key] = pattern
        return pattern

    def run(self) -> Message:
        root = Part(0, None)
        cur = root
        pos = 0
        in_header = True
        while True:
            if in_header:
                cut = self.read_header(cur)
                self.fields_left -= len(cur.fields)
                self.classify(cur)
                if cur.kind == MESSAGE and (cur.depth + 1 >= MAX_DEPTH or self.total >= MAX_PARTS):
                    cur.kind, cur.overflow = LEAF, True
                if cut is not None:
                    index, epilogue, line, after = cut
                    cur.end = cur.body_start
                    if cur.kind == MESSAGE:
                        inner = self.new_part(cur.end, cur)
                        self.classify(inner)
                        cur.children.append(inner)
                    # The cut part ends before its last line break; its ancestors end at the
                    # boundary line (Dovecot counts that line break in the parent's body), but
                    # a message/rfc822 part is exactly its message: it ends with it.
                    while cur.parent is not None and cur.parent.kind == MESSAGE:
                        cur.parent.end = cur.end
                        cur = cur.parent
                    assert cur.parent is not None  # a boundary belongs to some ancestor
                    pos, in_header, cur = self.at_boundary(cur.parent, index, epilogue, line, after)
                    continue
                pos = cur.body_start
                if cur.kind == MULTIPART and cur.has_eoh and cur.boundary is not None:
                    if cur.depth + 1 >= MAX_DEPTH:
                        cur.kind, cur.overflow = LEAF, True
                    else:
                        self.stack.append(_Boundary(cur.boundary, cur))
                hit = (
                    self.boundary_at(pos)
                    if self.stack and self.data.startswith(b"--", pos)
                    else None
                )
                if hit is not None and self.stack[hit[0]].part is not cur:
                    # RFC 2046 5.1.1: the blank line is the line break before the boundary, so
                    # it belongs to the boundary: the part is a header without a body.
                    cur.body_start = cur.end = pos - 2  # parse() made every line break CRLF
                    cur.has_eoh = False
                    if cur.kind == MESSAGE:
                        inner = self.new_part(cur.end, cur)
                        self.classify(inner)
                        cur.children.append(inner)
                    assert cur.parent is not None  # a boundary belongs to some ancestor
                    pos, in_header, cur = self.at_boundary(cur, hit[0], hit[1], cur.end, hit[2])
                    continue
                if cur.kind == MESSAGE:
                    inner = self.new_part(pos, cur)
                    cur.children.append(inner)
                    cur = inner
                    continue
                in_header = False
                continue
            found = self.find_boundary(pos, cur) if self.stack else None
            if found is None:
                break
            index, epilogue, cut_at, after = found
            pos, in_header, cur = self.at_boundary(cur, index, epilogue, cut_at, after)
        p: Part | None = cur
        while p is not None:
            p.end = self.n
            p = p.parent
        return Message(self.data, root, self.total + 1)

    def new_part(self, start: int, parent: Part) -> Part:
        self.total += 1
        return Part(start, parent)

    def read_header(self, part: Part) -> tuple[int, bool, int, int] | None:
        """Read the header at part.start; sets fields, body_start, has_eoh. Returns
        (stack index, close-delimiter?, line offset, offset after the line) when a boundary
        line cuts the header short."""
        data, n = self.data, self.n
        p = part.start
        fields = part.fields
        prev_newline = 0
        limit = min(self.fields_left, MAX_HEADER_FIELDS)
        while p < n:
            if len(fields) >= limit:
                return self.skip_header(part, p)
            c = data[p]
            if c == 0x2D and self.stack and data.startswith(b"--", p):
                hit = self.boundary_at(p)
                if hit is not None and self.stack[hit[0]].part is not part:
                    # The line break before the boundary belongs to the boundary (RFC 2046 5.1.1).
                    part.body_start = p - prev_newline
                    if fields:
                        fields[-1].end = part.body_start
                    return hit[0], hit[1], p, hit[2]
            if c == _LF or (c == _CR and p + 1 < n and data[p + 1] == _LF):
                part.body_start = p + (1 if c == _LF else 2)
                part.has_eoh = True
                return None
            nl = data.find(b"\n", p)
            first_end = n if nl < 0 else nl + 1
            q = first_end
            while q < n and (data[q] == _SP or data[q] == _HT):  # RFC 5322 2.2.3 folding
                nl = data.find(b"\n", q)
                q = n if nl < 0 else nl + 1
            value_end = q
            if value_end > p and data[value_end - 1] == _LF:
                value_end -= 1
                if value_end > p and data[value_end - 1] == _CR:
                    value_end -= 1
            prev_newline = q - value_end
            line_end = first_end
            if line_end > p and data[line_end - 1] == _LF:
                line_end -= 1
                if line_end > p and data[line_end - 1] == _CR:
                    line_end -= 1
            colon = data.find(b":", p, line_end)
            if colon < 0:
                # No ":" - Dovecot takes the whole line as the name, with an empty value.
                fields.append(Field(data[p:line_end], p, line_end, max(line_end, value_end), q))
            else:
                name_end = colon
                while name_end > p and data[name_end - 1] in (_SP, _HT):
                    name_end -= 1
                v = colon + 1
                w = v
                while w < line_end and data[w] in (_SP, _HT):
                    w += 1
                if w == line_end and line_end > v:
                    w = v + 1  # an all-blank value keeps all but its first blank
                fields.append(Field(data[p:name_end], p, w, max(w, value_end), q))
            p = q
        part.body_start = n
        return None

    def skip_header(self, part: Part, p: int) -> tuple[int, bool, int, int] | None:
        """The rest of a header from line start `p`, past the field limits: found with C-speed
        searches, no Field objects. Same result as read_header but for the fields."""
        data, n = self.data, self.n
        first = p
        # The blank line (parse() made every line break CRLF).
        if data.startswith(b"\r\n", p):
            eoh = p
        else:
            i = data.find(b"\n\r\n", p)
            eoh = n if i < 0 else i + 1
        if self.stack:
            line = p if data.startswith(b"--", p) else -1
            lines = self.boundary_lines()
            while True:
                if line < 0:
                    m = lines.search(data, p, eoh)
                    if m is None:
                        break
                    line = m.start() + 1
                hit = self.boundary_at(line)
                if hit is not None and self.stack[hit[0]].part is not part:
                    # The line break before the boundary belongs to the boundary (RFC 2046 5.1.1).
                    cut = line
                    if line >= part.start + 2 and data.startswith(b"\r\n", line - 2):
                        cut = line - 2
                    part.body_start = part.fields_end = cut
                    if line == first and part.fields:
                        part.fields[-1].end = cut
                    return hit[0], hit[1], line, hit[2]
                p, line = line, -1
        part.fields_end = eoh
        if eoh < n:
            part.body_start = eoh + 2
            part.has_eoh = True
        else:
            part.body_start = n
        return None

    def boundary_at(self, line: int) -> tuple[int, bool, int] | None:
        """For a "--" line at `line` naming an open boundary: (its index in the stack, is it a
        close-delimiter, offset after the line)."""
        data = self.data
        s = line + 2
        nl = data.find(b"\n", s)
        if nl >= 0:
            after = nl + 1
            fe = nl
            if fe > s and data[fe - 1] == _CR:
                fe -= 1
            full = fe - s
            if fe - s > 2 and data[fe - 1] == 0x2D and data[fe - 2] == 0x2D:
                fe -= 2
            size = fe - s
        else:
            after = self.n
            size = full = min(self.n - s, MAX_BOUNDARY + 4)
        best, best_len = self.longest_match(s, size)
        if best < 0 and full != size:
            # A boundary may itself end in "--" (Mailman digests use "__--__--"): RFC 2046
            # 5.1.1 makes "--__--__--" its separator and "--__--__----" its close.
            best, best_len = self.longest_match(s, full)
        if best < 0:
            return None
        return best, data.startswith(b"--", s + best_len), after

    def longest_match(self, s: int, size: int) -> tuple[int, int]:
        """(stack index, length) of the open boundary that starts at `s` and fits in `size`
        octets, or (-1, -1). RFC 2046 5.1.2: the innermost match wins; only a prefix must
        match, prefer the longest."""
        data, stack = self.data, self.stack
        best, best_len = -1, -1
        for k in range(len(stack) - 1, -1, -1):
            value = stack[k].value
            blen = len(value)
            if best_len < blen <= size and data.startswith(value, s):
                best, best_len = k, blen
                if blen == size:
                    break
        return best, best_len

    def find_boundary(self, pos: int, cur: Part) -> tuple[int, bool, int, int] | None:
        """The next boundary line at or after `pos` (a line start): (stack index,
        close-delimiter?, where the preceding part ends, offset after the line)."""
        data = self.data
        # Past MAX_PARTS a separator of cur's own boundary changes nothing (at_boundary).
        idle = self.stack[-1].part is cur and self.total >= MAX_PARTS
        top = len(self.stack) - 1
        if data.startswith(b"--", pos):
            hit = self.boundary_at(pos)
            if hit is not None and not (idle and hit[0] == top and not hit[1]):
                return hit[0], hit[1], pos, hit[2]
        q = pos
        lines = self.boundary_lines(cur)
        while True:
            m = lines.search(data, q)
            if m is None:
                return None
            i = m.start()
            hit = self.boundary_at(i + 1)
            if hit is not None and not (idle and hit[0] == top and not hit[1]):
                cut = i - 1 if i > pos and data[i - 1] == _CR else i
                if idle:
                    # After a separator line the next line starts a new search, and its line
                    # break belongs to the part: keep that for the separators skipped here.
                    prev = data.rfind(b"\n", pos, i) + 1 or pos
                    if data.startswith(b"--", prev):
                        before = self.boundary_at(prev)
                        if before is not None and before[0] == top and not before[1]:
                            cut = i + 1
                return hit[0], hit[1], cut, hit[2]
            q = i + 1

    def at_boundary(
        self, cur: Part, index: int, epilogue: bool, cut_at: int, after: int
    ) -> tuple[int, bool, Part]:
        """Close the parts a boundary line ends; returns (next offset, in header?, part)."""
        owner = self.stack[index].part
        while cur is not owner:
            cur.end = cut_at
            assert cur.parent is not None
            cur = cur.parent
        # Boundaries of parts left unclosed are forgotten; a close-delimiter ends its own too.
        del self.stack[index if epilogue else index + 1 :]
        # The rest of the boundary line is padding (RFC 2046 5.1.1).
        if not epilogue and self.total < MAX_PARTS:
            part = self.new_part(after, cur)
            cur.children.append(part)
            return after, True, part
        return after, False, cur

    def classify(self, part: Part) -> None:
        """Read the Content-* fields and decide the part's kind (RFC 2045, RFC 2046)."""
        data = self.data
        parent = part.parent
        in_multipart = parent is not None and parent.kind == MULTIPART
        is_mime = in_multipart  # RFC 2045 4: body parts need no MIME-Version of their own
        scanned_type: bytes | None = None
        for f in part.fields:
            lname = f.name.lower()
            if lname == b"mime-version":
                is_mime = True
                continue
            if not lname.startswith(b"content-"):
                continue
            what = lname[8:]
            end = f.value_end
            if what in _PARSED_CONTENT:
                # Parameters cost ~1.4 us per octet of junk: bounded per value and message.
                end = min(end, f.value_start + MAX_CONTENT_VALUE)
                if self.content_left <= 0:
                    semi = data.find(b";", f.value_start, end)
                    end = min(end if semi < 0 else semi, f.value_start + 256)  # the type only
                self.content_left -= end - f.value_start
            value = data[f.value_start : end]
            if b"\x00" in value:
                value = value.replace(b"\x00", "\ufffd".encode())
            if what == b"type":
                is_mime = True  # Dovecot treats Content-Type alone as enough
                if scanned_type is None:
                    scanned_type, ret, params = parse_content_type(value)
                    if ret < 0:
                        # RFC 2045 5.2: a syntactically invalid Content-Type means the default
                        # text/plain; charset=us-ascii (Dovecot keeps the half-read type).
                        scanned_type = b""
                        continue
                    slash = scanned_type.find(b"/")
                    part.type, part.subtype = scanned_type[:slash], scanned_type[slash + 1 :]
                    part.params = params
            elif what == b"transfer-encoding":
                if part.cte is None:
                    part.cte = parse_token_value(value)
            elif what == b"id":
                if part.id is None:
                    part.id = value
            elif what == b"md5":
                if part.md5 is None:
                    part.md5 = value
            elif what == b"description":
                if part.description is None:
                    part.description = value
            elif what == b"location":
                if part.location is None:
                    part.location = value
            elif what == b"language":
                if part.language is None:
                    part.language = parse_language(value) or None
            elif what == b"disposition" and not part.disposition_params:
                # Dovecot re-reads a later Content-Disposition while none had parameters.
                disp = parse_disposition(value)
                if disp is not None:
                    part.disposition, part.disposition_params = disp
        part.is_mime = is_mime
        if not is_mime:
            # RFC 2045 4: without MIME-Version the Content-* fields mean nothing.
            part.type = part.subtype = part.cte = part.id = part.md5 = None
            part.description = part.location = part.disposition = None
            part.language = None
            part.params, part.disposition_params = [], []
        if scanned_type and is_mime:
            mt = scanned_type.lower()
            part.media_type = mt
            if mt in ENCAPSULATING_TYPES:
                part.kind = MESSAGE
            elif mt.startswith(b"multipart/"):
                part.kind = MULTIPART
                part.digest = mt == b"multipart/digest"
                boundary = _boundary(part.params)
                if boundary is not None:
                    part.boundary = boundary[:MAX_BOUNDARY]
        elif in_multipart and parent is not None and parent.digest:
            part.kind = MESSAGE  # RFC 2046 5.1.5: the default in a digest
            part.media_type = b"message/rfc822"


def _boundary(params: list[tuple[bytes, bytes]]) -> bytes | None:
    """A multipart's boundary: the plain parameter (what Dovecot reads), else the RFC 2231
    `boundary*` (continuations already merged): charset'language'%XX, the octets undecoded
    from its charset, as a boundary is ASCII (RFC 2046 5.1.1)."""
    extended = None
    for k, v in params:
        name = k.lower()
        if name == b"boundary":
            return v
        if name == b"boundary*" and extended is None:
            _charset, sep, rest = v.partition(b"'")
            _language, sep2, text = rest.partition(b"'")
            extended = unquote_to_bytes(text if sep and sep2 else v)
    return extended


def parse(raw: bytes, *, crlf: bool = False) -> Message:
    """Parse a message (CRLF or bare-LF line endings, 8-bit, broken) into its part tree.
    `crlf`: the caller knows `raw` has no bare LF (what `store.maildir.to_wire` makes of a file's
    LF form), so the scan for one, most of the parse of a big message, is skipped."""
    raw = bytes(raw)
    data = raw if crlf else to_crlf(raw)
    msg = _Parser(data).run()
    if data is not raw:  # to_crlf returns its argument when there is nothing to change
        msg.raw = raw
    return msg
