"""Semantic check of a parsed script: every command, test, tag and argument against the
specifications (RFC 5228 and the extensions we implement), with `require` enforced. The result
is a tree of `Node`s that the interpreter runs; every error names its line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from carteiro.core.address import Address, AddressError, parse_address
from carteiro.sieve.errors import SieveSyntaxError
from carteiro.sieve.grammar import Argument, Command, Number, Strings, Tag, Test, parse
from carteiro.sieve.match import COMPARATORS, RELATIONS

# What we implement fully (advertised in ManageSieve's SIEVE capability, in this order).
EXTENSIONS = (
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "copy",
    "variables",
    "imap4flags",
    "subaddress",
    "body",
    "relational",
    "comparator-i;ascii-numeric",
    "comparator-i;unicode-casemap",
    "vacation",
    "vacation-seconds",
    "mailbox",
    "include",
    "date",
    "index",
    "editheader",
    "duplicate",
    "environment",
    "enotify",
)
# Always available, and accepted by require (RFC 5228 2.7.3).
_IMPLICIT = {"comparator-i;octet", "comparator-i;ascii-casemap"}
NOTIFY_METHODS = ("mailto",)

DATE_PARTS = frozenset(
    [
        "year",
        "month",
        "day",
        "date",
        "julian",
        "hour",
        "minute",
        "second",
        "time",
        "iso8601",
        "std11",
        "zone",
        "weekday",
    ]
)
# The fields an `address` test may name (RFC 5228 2.7.4: "MUST restrict the address test to
# headers that contain addresses", at least From, To, Cc, Bcc, Sender, Resent-From, Resent-To;
# SHOULD any other address-list field): RFC 5322's, and the common ones of RFC 2076 and mailing
# lists that Pigeonhole also allows, so scripts written for Dovecot compile here too.
ADDRESS_HEADERS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "resent-from",
        "resent-sender",
        "resent-reply-to",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "return-path",
        "delivered-to",
        "x-original-to",
        "x-original-from",
        "envelope-to",
        "apparently-to",
        "errors-to",
        "return-receipt-to",
        "disposition-notification-to",
        "read-receipt-to",
        "x-confirm-reading-to",
        "mail-followup-to",
        "mail-reply-to",
        "for-approval",
        "for-handling",
        "for-comment",
        "x-admin",
        "abuse-reports-to",
        "x-complaints-to",
        "x-report-abuse-to",
        "x-beenthere",
    }
)
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ZONE = re.compile(r"[+-](?:[01][0-9]|2[0-3])[0-5][0-9]\Z")
_ENCODED = re.compile(r"\$\{(hex|unicode):([\s0-9A-Fa-f]*)\}", re.IGNORECASE)

MATCH_TYPES = ("is", "contains", "matches", "count", "value")
ADDRESS_PARTS = ("all", "localpart", "domain", "user", "detail")


@dataclass(frozen=True, slots=True)
class TagSpec:
    value: str | None = None  # None (a flag), "string", "strings", "number"
    ext: str | None = None
    group: str | None = None  # tags of one group exclude one another


@dataclass(frozen=True, slots=True)
class Spec:
    ext: str | None
    tags: dict[str, TagSpec]
    positional: tuple[str, ...] = ()
    min_positional: int | None = None  # fewer allowed when the first ones are optional
    tests: str = "none"  # "none", "one", "list"
    block: bool = False
    literal: frozenset[int] = frozenset()  # positional indexes that take no ${} expansion
    optional_last: bool = False  # with fewer positionals, the last ones are missing


_COMPARATOR = {"comparator": TagSpec("string", group="comparator")}
_MATCH = {
    "is": TagSpec(group="match"),
    "contains": TagSpec(group="match"),
    "matches": TagSpec(group="match"),
    "count": TagSpec("string", "relational", "match"),
    "value": TagSpec("string", "relational", "match"),
}
_ADDRESS = {
    "all": TagSpec(group="address"),
    "localpart": TagSpec(group="address"),
    "domain": TagSpec(group="address"),
    "user": TagSpec(ext="subaddress", group="address"),
    "detail": TagSpec(ext="subaddress", group="address"),
}
_INDEX = {"index": TagSpec("number", "index"), "last": TagSpec(None, "index")}
_CMP = {**_COMPARATOR, **_MATCH}

COMMANDS: dict[str, Spec] = {
    "keep": Spec(None, {"flags": TagSpec("strings", "imap4flags")}),
    "discard": Spec(None, {}),
    "redirect": Spec(None, {"copy": TagSpec(None, "copy")}, ("string",)),
    "stop": Spec(None, {}),
    "fileinto": Spec(
        "fileinto",
        {
            "copy": TagSpec(None, "copy"),
            "flags": TagSpec("strings", "imap4flags"),
            "create": TagSpec(None, "mailbox"),
        },
        ("string",),
    ),
    "reject": Spec("reject", {}, ("string",)),
    "ereject": Spec("ereject", {}, ("string",)),
    "vacation": Spec(
        "vacation",
        {
            "days": TagSpec("number", group="period"),
            "seconds": TagSpec("number", "vacation-seconds", "period"),
            "subject": TagSpec("string"),
            "from": TagSpec("string"),
            "addresses": TagSpec("strings"),
            "mime": TagSpec(None),
            "handle": TagSpec("string"),
        },
        ("string",),
    ),
    "set": Spec(
        "variables",
        {
            "lower": TagSpec(group="case"),
            "upper": TagSpec(group="case"),
            "lowerfirst": TagSpec(group="first"),
            "upperfirst": TagSpec(group="first"),
            "quotewildcard": TagSpec(group="quote"),
            "length": TagSpec(),
            "encodeurl": TagSpec(None, "enotify"),
        },
        ("string", "string"),
        literal=frozenset({0}),
    ),
    "setflag": Spec("imap4flags", {}, ("string", "strings"), 1, literal=frozenset({0})),
    "addflag": Spec("imap4flags", {}, ("string", "strings"), 1, literal=frozenset({0})),
    "removeflag": Spec("imap4flags", {}, ("string", "strings"), 1, literal=frozenset({0})),
    "include": Spec(
        "include",
        {
            "personal": TagSpec(group="location"),
            "global": TagSpec(group="location"),
            "once": TagSpec(),
            "optional": TagSpec(),
        },
        ("string",),
        literal=frozenset({0}),
    ),
    "return": Spec("include", {}),
    "global": Spec("include", {}, ("strings",), literal=frozenset({0})),
    "addheader": Spec("editheader", {"last": TagSpec()}, ("string", "string")),
    "deleteheader": Spec(
        "editheader",
        {**_CMP, "index": TagSpec("number"), "last": TagSpec()},
        ("string", "strings"),
        1,
        optional_last=True,
    ),
    "notify": Spec(
        "enotify",
        {
            "from": TagSpec("string"),
            "importance": TagSpec("string"),
            "options": TagSpec("strings"),
            "message": TagSpec("string"),
        },
        ("string",),
    ),
    "if": Spec(None, {}, tests="one", block=True),
    "elsif": Spec(None, {}, tests="one", block=True),
    "else": Spec(None, {}, block=True),
}

TESTS: dict[str, Spec] = {
    "address": Spec(None, {**_CMP, **_ADDRESS, **_INDEX}, ("strings", "strings")),
    "envelope": Spec("envelope", {**_CMP, **_ADDRESS}, ("strings", "strings")),
    "header": Spec(None, {**_CMP, **_INDEX}, ("strings", "strings")),
    "exists": Spec(None, {}, ("strings",)),
    "size": Spec(
        None, {"over": TagSpec("number", group="size"), "under": TagSpec("number", group="size")}
    ),
    "allof": Spec(None, {}, tests="list"),
    "anyof": Spec(None, {}, tests="list"),
    "not": Spec(None, {}, tests="one"),
    "true": Spec(None, {}),
    "false": Spec(None, {}),
    "body": Spec(
        "body",
        {
            **_CMP,
            "raw": TagSpec(group="transform"),
            "content": TagSpec("strings", group="transform"),
            "text": TagSpec(group="transform"),
        },
        ("strings",),
    ),
    "string": Spec("variables", dict(_CMP), ("strings", "strings")),
    "hasflag": Spec("imap4flags", dict(_CMP), ("strings", "strings"), 1, literal=frozenset({0})),
    "date": Spec(
        "date",
        {
            **_CMP,
            **_INDEX,
            "zone": TagSpec("string", group="zone"),
            "originalzone": TagSpec(group="zone"),
        },
        ("string", "string", "strings"),
    ),
    "currentdate": Spec("date", {**_CMP, "zone": TagSpec("string")}, ("string", "strings")),
    "mailboxexists": Spec("mailbox", {}, ("strings",)),
    "duplicate": Spec(
        "duplicate",
        {
            "handle": TagSpec("string"),
            "header": TagSpec("string", group="id"),
            "uniqueid": TagSpec("string", group="id"),
            "seconds": TagSpec("number"),
            "last": TagSpec(),
        },
    ),
    "environment": Spec("environment", dict(_CMP), ("string", "strings")),
    "valid_notify_method": Spec("enotify", {}, ("strings",)),
    "notify_method_capability": Spec("enotify", dict(_CMP), ("string", "string", "strings")),
}

Value = int | tuple[str, ...] | bool


@dataclass(slots=True)
class Node:
    """A checked command or test: tags by name (flags map to True), positionals in order."""

    name: str
    tags: dict[str, Value]
    pos: list[Value]
    tests: list[Node]
    block: list[Node] | None
    line: int
    column: int
    literal: frozenset[int] = frozenset()
    spec: tuple[str, str, str] | None = None  # (comparator, match kind, relation), on first use


@dataclass(slots=True)
class Script:
    commands: list[Node]
    requires: frozenset[str]
    uses_variables: bool = False
    includes: list[tuple[str, str]] = field(default_factory=list)  # (location, name) literals


def _decode_encoded(s: str) -> str:
    """RFC 5228 2.4.2.4: ${hex:...} and ${unicode:...} in a string; bad ones stay as written."""

    def one(m: re.Match[str]) -> str:
        kind, body = m.group(1).lower(), m.group(2).split()
        if not body:
            return m.group(0)
        try:
            if kind == "hex":
                if any(len(h) > 2 for h in body):
                    return m.group(0)
                return bytes(int(h, 16) for h in body).decode("utf-8", "surrogateescape")
            out = []
            for h in body:
                cp = int(h, 16)
                if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    # RFC 5228 2.4.2.4: an invalid code point is an error
                    raise SieveSyntaxError(f"invalid unicode character {h}", 0, 0)
                out.append(chr(cp))
            return "".join(out)
        except ValueError:
            return m.group(0)

    return _ENCODED.sub(one, s) if "${" in s else s


class _Checker:
    def __init__(self) -> None:
        self.requires: set[str] = set()
        self.includes: list[tuple[str, str]] = []
        self.local_names: set[str] = set()  # set before any global declaration (RFC 6609 3.5)
        self.global_names: set[str] = set()

    def err(self, msg: str, where: Command | Test | Argument) -> SieveSyntaxError:
        return SieveSyntaxError(msg, where.line, where.column)

    def need(self, ext: str | None, what: str, where: Command | Test | Argument) -> None:
        if ext is not None and ext not in self.requires:
            raise self.err(f'{what} requires "{ext}" (add require "{ext}";)', where)

    def strings(self, a: Strings) -> tuple[str, ...]:
        if "encoded-character" in self.requires:
            try:
                return tuple(_decode_encoded(v) for v in a.values)
            except SieveSyntaxError as e:
                raise self.err(e.message, a) from None
        return a.values

    def script(self, commands: list[Command]) -> list[Node]:
        out: list[Node] = []
        prev: str | None = None
        requires_allowed = True
        for c in commands:
            if c.name == "require":
                if not requires_allowed:
                    raise self.err("require must come before any other command", c)
                if len(c.args) != 1 or not isinstance(c.args[0], Strings) or c.tests or c.block:
                    raise self.err("require takes one string list", c)
                for ext in self.strings(c.args[0]):
                    if ext not in EXTENSIONS and ext not in _IMPLICIT:
                        raise self.err(f'unsupported extension "{ext}"', c.args[0])
                    self.requires.add(ext)
                    if ext == "vacation-seconds":
                        self.requires.add("vacation")  # RFC 6131 3: it implies "vacation"
                if c.block is not None:
                    raise self.err("require takes no block", c)
                continue
            requires_allowed = False
            out.append(self.command(c, prev))
            prev = c.name
        return out

    def block(self, commands: list[Command]) -> list[Node]:
        out: list[Node] = []
        prev: str | None = None
        for c in commands:
            if c.name == "require":
                raise self.err("require is only allowed at the start of the script", c)
            out.append(self.command(c, prev))
            prev = c.name
        return out

    def command(self, c: Command, prev: str | None) -> Node:
        spec = COMMANDS.get(c.name)
        if spec is None:
            if c.name in TESTS:
                raise self.err(f"{c.name} is a test, not a command", c)
            raise self.err(f"unknown command {c.name}", c)
        self.need(spec.ext, c.name, c)
        if c.name in ("elsif", "else") and prev not in ("if", "elsif"):
            raise self.err(f"{c.name} without a preceding if", c)
        if spec.block and c.block is None:
            raise self.err(f"{c.name} needs a block", c)
        if not spec.block and c.block is not None:
            raise self.err(f"{c.name} takes no block", c)
        node = self.arguments(c.name, spec, c.args, c.tests, c)
        node.block = self.block(c.block) if c.block is not None else None
        self.extra_checks(node, c)
        return node

    def test(self, t: Test) -> Node:
        spec = TESTS.get(t.name)
        if spec is None:
            if t.name in COMMANDS:
                raise self.err(f"{t.name} is a command, not a test", t)
            raise self.err(f"unknown test {t.name}", t)
        self.need(spec.ext, t.name, t)
        node = self.arguments(t.name, spec, t.args, t.tests, t)
        self.extra_checks(node, t)
        return node

    def arguments(
        self,
        name: str,
        spec: Spec,
        args: list[Argument],
        tests: list[Test],
        where: Command | Test,
    ) -> Node:
        tags: dict[str, Value] = {}
        groups: dict[str, str] = {}
        pos: list[Argument] = []
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if isinstance(a, Tag):
                if pos:
                    raise self.err(f"tag :{a.name} after the positional arguments of {name}", a)
                ts = spec.tags.get(a.name)
                if ts is None:
                    raise self.err(f"unknown tag :{a.name} for {name}", a)
                self.need(ts.ext, f":{a.name}", a)
                if a.name in tags:
                    raise self.err(f"tag :{a.name} given twice", a)
                if ts.group is not None:
                    if ts.group in groups:
                        raise self.err(f":{a.name} cannot be used with :{groups[ts.group]}", a)
                    groups[ts.group] = a.name
                if ts.value is None:
                    tags[a.name] = True
                    continue
                if i >= len(args):
                    raise self.err(f":{a.name} needs a {ts.value} argument", a)
                v = args[i]
                i += 1
                tags[a.name] = self.value(ts.value, v, f":{a.name}")
            else:
                pos.append(a)
        n = len(spec.positional)
        lo = n if spec.min_positional is None else spec.min_positional
        if not lo <= len(pos) <= n:
            want = str(n) if lo == n else f"{lo} to {n}"
            raise self.err(f"{name} takes {want} positional argument(s), found {len(pos)}", where)
        skip = 0 if spec.optional_last else n - len(pos)
        kinds = spec.positional[skip : skip + len(pos)]
        values: list[Value] = []
        literal: set[int] = set()
        for k, (kind, a) in enumerate(zip(kinds, pos, strict=True)):
            values.append(self.value(kind, a, f"argument {k + 1} of {name}"))
            if (k + skip) in spec.literal:
                literal.add(k)
        if spec.tests == "none" and tests:
            raise self.err(f"{name} takes no test", where)
        if spec.tests == "one" and (len(tests) != 1 or where_test_list(where)):
            raise self.err(f"{name} needs exactly one test", where)
        if spec.tests == "list" and (not tests or not where_test_list(where)):
            raise self.err(f"{name} needs a test list ( ... )", where)
        checked = [self.test(t) for t in tests]
        return Node(name, tags, values, checked, None, where.line, where.column, frozenset(literal))

    def value(self, kind: str, a: Argument, what: str) -> Value:
        if kind == "number":
            if not isinstance(a, Number):
                raise self.err(f"{what} must be a number", a)
            return a.value
        if not isinstance(a, Strings):
            raise self.err(
                f"{what} must be a {'string list' if kind == 'strings' else 'string'}", a
            )
        if kind == "string" and a.is_list:
            raise self.err(f"{what} must be a single string, not a list", a)
        return self.strings(a)

    def extra_checks(self, n: Node, where: Command | Test) -> None:
        """Constraints the tables cannot say: comparator names, relations, variable names..."""
        cmp = n.tags.get("comparator")
        if isinstance(cmp, tuple):
            name = cmp[0]
            if name not in COMPARATORS:
                raise self.err(f'unknown comparator "{name}"', where)
            if name not in ("i;octet", "i;ascii-casemap"):
                self.need(f"comparator-{name}", f'comparator "{name}"', where)
            if name == "i;ascii-numeric" and ("contains" in n.tags or "matches" in n.tags):
                raise self.err("i;ascii-numeric supports only :is, :count and :value", where)
        for rel_tag in ("count", "value"):
            rel = n.tags.get(rel_tag)
            if isinstance(rel, tuple) and rel[0].lower() not in RELATIONS:
                raise self.err(f'unknown relation "{rel[0]}" (gt, ge, lt, le, eq, ne)', where)
        # (:last of addheader and duplicate, RFC 5293 4 and RFC 7352 3, are their own tags)
        if "last" in n.tags and "index" not in n.tags and n.name not in ("addheader", "duplicate"):
            raise self.err(":last needs :index", where)
        idx = n.tags.get("index")
        if isinstance(idx, int) and idx < 1:
            raise self.err(":index counts from 1", where)
        name = n.name
        if name == "size" and not ("over" in n.tags or "under" in n.tags):
            raise self.err("size needs :over or :under", where)
        if name in ("header", "exists", "address", "deleteheader", "addheader", "date"):
            heads = n.pos[0]
            assert isinstance(heads, tuple)
            for h in heads:
                if "${" not in h and not _HEADER_NAME.match(h):
                    raise self.err(f'invalid header name "{h}"', where)
                if name == "address" and "${" not in h and h.lower() not in ADDRESS_HEADERS:
                    raise self.err(
                        f'"{h}" holds no addresses: the address test cannot use it', where
                    )
        if name == "envelope":
            parts = n.pos[0]
            assert isinstance(parts, tuple)
            for p in parts:
                if "${" not in p and p.lower() not in ("from", "to"):
                    raise self.err(f'unknown envelope part "{p}" (from, to)', where)
        if name in ("date", "currentdate"):
            dp = n.pos[-2]
            assert isinstance(dp, tuple)
            if "${" not in dp[0] and dp[0].lower() not in DATE_PARTS:
                raise self.err(f'unknown date part "{dp[0]}"', where)
            zone = n.tags.get("zone")
            if isinstance(zone, tuple) and "${" not in zone[0] and not _ZONE.match(zone[0]):
                raise self.err(f'invalid time zone "{zone[0]}" (+hhmm or -hhmm)', where)
        if name == "set":
            var = n.pos[0]
            assert isinstance(var, tuple)
            if not _VAR_NAME.match(var[0]):
                raise self.err(f'invalid variable name "{var[0]}"', where)
            if var[0].lower() not in self.global_names:
                self.local_names.add(var[0].lower())
        if name == "global":
            self.need("variables", "global", where)  # RFC 6609 3.5: include and variables
            names = n.pos[0]
            assert isinstance(names, tuple)
            for v in names:
                if not _VAR_NAME.match(v):
                    raise self.err(f'invalid variable name "{v}"', where)
                # RFC 6609 3.5: a name `set` earlier in this script is an error (at upload or
                # at run time; here, at upload, as Pigeonhole does)
                if v.lower() in self.local_names:
                    raise self.err(f'variable "{v}" was set before it was declared global', where)
                self.global_names.add(v.lower())
        if name in ("setflag", "addflag", "removeflag", "hasflag") and len(n.pos) == 2:
            self.need("variables", "a variable name argument", where)
            names = n.pos[0]
            assert isinstance(names, tuple)
            for v in names:
                if not _VAR_NAME.match(v):
                    raise self.err(f'invalid variable name "{v}"', where)
        if name == "include":
            script = n.pos[0]
            assert isinstance(script, tuple)
            if not valid_script_name(script[0]):
                raise self.err(f'invalid script name "{script[0]}"', where)
            self.includes.append(("global" if "global" in n.tags else "personal", script[0]))
        if name == "vacation":
            days = n.tags.get("days")
            if isinstance(days, int) and days < 0:
                raise self.err(":days must not be negative", where)
        if name == "notify":
            imp = n.tags.get("importance")
            if isinstance(imp, tuple) and "${" not in imp[0] and imp[0] not in ("1", "2", "3"):
                raise self.err(':importance must be "1", "2" or "3"', where)
            method = n.pos[0]
            assert isinstance(method, tuple)
            if "${" not in method[0] and not method[0].lower().startswith("mailto:"):
                raise self.err(f'unsupported notification method "{method[0]}"', where)
            if "${" not in method[0] and parse_mailto(method[0]) is None:
                # RFC 5436 2.2: no valid recipient; it would fail every delivery
                raise self.err(f'invalid notification method "{method[0]}"', where)
        if name == "redirect":
            addr = n.pos[0]
            assert isinstance(addr, tuple)
            if "${" not in addr[0]:
                try:
                    sieve_address(addr[0])
                except AddressError:
                    raise self.err(f'invalid redirect address "{addr[0]}"', where) from None
        if name in ("vacation", "notify"):
            # RFC 5230 4.3: a syntactically invalid :from is an error (it becomes the From:
            # field of the reply, or of a mailto notification)
            sender = n.tags.get("from")
            if isinstance(sender, tuple) and "${" not in sender[0]:
                try:
                    sieve_address(sender[0])
                except AddressError:
                    raise self.err(f'invalid :from address "{sender[0]}"', where) from None
        if name == "fileinto":
            box = n.pos[0]
            assert isinstance(box, tuple)
            if not box[0]:
                raise self.err("fileinto needs a mailbox name", where)
            if "${" not in box[0] and (len(box[0]) > 1024 or any(ord(c) < 0x20 for c in box[0])):
                raise self.err(f"invalid mailbox name {box[0]!r}", where)


def sieve_address(text: str) -> Address:
    """An address argument (redirect, :from): an addr-spec, or a display name then the addr-spec
    in angle brackets (RFC 5228 2.4.2.3: `phrase "<" addr-spec ">"`). Raises AddressError."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1].strip()
    return parse_address(text)


def parse_mailto(uri: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]] | None:
    """RFC 6068 mailto URI -> (recipients, other header fields); None if unusable (RFC 5436
    2.2: at least one valid recipient)."""
    if uri[:7].lower() != "mailto:":
        return None
    rest = uri[7:]
    to_part, _, query = rest.partition("?")
    recipients: list[str] = []
    headers: list[tuple[str, str]] = []
    candidates = [unquote(a) for a in to_part.split(",") if a]
    for pair in query.split("&") if query else []:
        k, _, v = pair.partition("=")
        k, v = unquote(k).lower(), unquote(v)
        if k == "to":
            candidates.extend(a for a in v.split(",") if a)
        elif k in ("subject", "body", "cc", "in-reply-to", "keywords", "comments"):
            headers.append((k, v))
        # RFC 5436 2.3: other header fields (from, bcc, received...) are ignored
    for c in candidates:
        try:
            a = parse_address(c.strip())
        except AddressError:
            return None
        recipients.append(f"{a.local}@{a.domain}")
    if not recipients:
        return None
    return tuple(recipients), tuple(headers)


def where_test_list(where: Command | Test) -> bool:
    return where.test_list


# RFC 5804 1.6: never in a name (besides the C0/C1 controls and DEL)
_LINE_SEPARATORS = "\u2028\u2029"


def valid_script_name(name: str) -> bool:
    """RFC 5804 1.6: 1 to 128 characters, no control characters, DEL, U+2028 or U+2029. Besides
    (names are also the script store's file names): no "/" or "\\", not "." or ".."."""
    return (
        0 < len(name) <= 128
        and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "/\\" or c in _LINE_SEPARATORS
            for c in name
        )
        and name not in (".", "..")
    )


def compile_script(text: str) -> Script:
    """Parse and check a script. Raises SieveSyntaxError naming line and column."""
    checker = _Checker()
    commands = checker.script(parse(text))
    return Script(
        commands,
        frozenset(checker.requires),
        "variables" in checker.requires,
        checker.includes,
    )
