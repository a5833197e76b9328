"""Evaluate a compiled Sieve script against one message and its envelope into a `Result`.

Pure: the clock, the mailbox list, the duplicate tracker, included scripts and the environment
come in through `Context`. Every command, test and comparison is charged to a cost budget, so a
hostile script stops with a runtime error (and the message is kept, RFC 5228 2.10.6) instead of
holding the delivery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import TypeVar
from urllib.parse import quote as url_quote

from carteiro.core.address import AddressError, addr_spec
from carteiro.mime.address import parse_address_list
from carteiro.mime.dates import parse_date
from carteiro.mime.parse import LEAF, Message
from carteiro.mime.searchtext import part_text
from carteiro.sieve.actions import (
    Action,
    Discard,
    DuplicateMark,
    FileInto,
    Keep,
    Notify,
    Redirect,
    Reject,
    Result,
    Vacation,
)
from carteiro.sieve.compiler import (
    ADDRESS_HEADERS,
    Node,
    Script,
    compile_script,
    parse_mailto,
    sieve_address,
)
from carteiro.sieve.errors import SieveRuntimeError, SieveSyntaxError
from carteiro.sieve.headers import HeaderList
from carteiro.sieve.match import fold, glob_match, match, relation

_T = TypeVar("_T")
MAX_VARIABLE = 4096 * 16  # octets kept per variable (RFC 5229 6 asks for at least 4000)
MAX_VARIABLES = 256
DAY = 86400


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str  # "" for the null reverse-path
    rcpt_to: str  # the recipient address this delivery is for (before alias expansion)


@dataclass(slots=True)
class Limits:
    cost: int = 2_000_000  # units: one per command/test plus one per character compared
    actions: int = 64
    redirects: int = 4  # Pigeonhole's sieve_max_redirects
    include_depth: int = 10
    vacation_min_seconds: int = DAY  # :days below this are raised to it
    vacation_max_seconds: int = 90 * DAY


def _no_mailboxes(name: str) -> bool:
    return name.upper() == "INBOX"


def _never_seen(key: str) -> bool:
    return False


def _no_scripts(location: str, name: str) -> str | Script | None:
    return None


@dataclass(slots=True)
class Context:
    """Everything a script may ask about the world, injected by the caller."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    mailbox_exists: Callable[[str], bool] = _no_mailboxes
    duplicate_seen: Callable[[str], bool] = _never_seen
    # (personal|global, name) -> the script's text, or its compiled form when the caller caches
    load_script: Callable[[str, str], str | Script | None] = _no_scripts
    environment: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


class _Stop(Exception):
    pass


class _Return(Exception):
    pass


@dataclass(slots=True)
class _Frame:
    script: Script
    variables: dict[str, str] = field(default_factory=dict)
    globals: set[str] = field(default_factory=set)
    matched: list[str] = field(default_factory=list)


def evaluate(
    script: Script, msg: Message, envelope: Envelope, ctx: Context | None = None
) -> Result:
    """The actions `script` takes on `msg`. Never raises for a script problem: a runtime
    error gives `Result(error=...)` with a single implicit Keep."""
    return _Interpreter(script, msg, envelope, ctx or Context()).run()


class _Interpreter:
    def __init__(self, script: Script, msg: Message, env: Envelope, ctx: Context) -> None:
        self.script = script
        self.msg = msg
        self.env = env
        self.ctx = ctx
        self.limits = ctx.limits
        self.headers = HeaderList(msg)
        self.cost = 0
        self.actions: list[Action] = []
        self.implicit_keep = True
        self.flags: list[str] = []  # imap4flags' internal variable
        self.globals: dict[str, str] = {}
        self.duplicates: list[DuplicateMark] = []
        self.included_once: set[tuple[str, str]] = set()
        self.include_stack: list[tuple[str, str]] = []
        self.compiled: dict[tuple[str, str], Script] = {}
        self.redirects = 0
        self._addresses: dict[str, tuple[int, list[tuple[str | None, str | None, str]]]] = {}

    # ---- running ---------------------------------------------------------------------------

    def run(self) -> Result:
        try:
            try:
                self.block(self.script.commands, _Frame(self.script))
            except (_Stop, _Return):
                pass
        except SieveRuntimeError as e:
            # RFC 5228 2.10.6: a runtime error cancels the script's actions; keep the message.
            return Result([Keep(implicit=True)], [], str(e), self.cost)
        if self.implicit_keep:
            self.actions.append(Keep(tuple(self.flags), self.headers.to_bytes(), implicit=True))
        return Result(self.actions, self.duplicates, None, self.cost)

    def charge(self, units: int) -> None:
        self.cost += units
        if self.cost > self.limits.cost:
            raise SieveRuntimeError("the script exceeded its CPU limit")

    def fail(self, n: Node, msg: str) -> SieveRuntimeError:
        return SieveRuntimeError(f"line {n.line}: {msg}")

    def block(self, nodes: list[Node], frame: _Frame) -> None:
        chain_done = True
        for n in nodes:
            self.charge(1)
            name = n.name
            if name == "if":
                chain_done = self.test(n.tests[0], frame)
                if chain_done:
                    assert n.block is not None
                    self.block(n.block, frame)
            elif name == "elsif":
                if not chain_done:
                    chain_done = self.test(n.tests[0], frame)
                    if chain_done:
                        assert n.block is not None
                        self.block(n.block, frame)
            elif name == "else":
                if not chain_done:
                    chain_done = True
                    assert n.block is not None
                    self.block(n.block, frame)
            else:
                self.command(n, frame)

    # ---- strings and variables -------------------------------------------------------------

    def expand(self, s: str, frame: _Frame) -> str:
        """RFC 5229 3: replace ${name} and ${N}; unknown names expand to ""; one pass."""
        if not frame.script.uses_variables or "${" not in s:
            return s
        out: list[str] = []
        i, n = 0, len(s)
        while i < n:
            j = s.find("${", i)
            if j < 0:
                out.append(s[i:])
                break
            out.append(s[i:j])
            k = j + 2
            while k < n and (s[k].isascii() and (s[k].isalnum() or s[k] in "_.")):
                k += 1
            name = s[j + 2 : k]
            if k < n and s[k] == "}" and name and self.valid_ref(name):
                out.append(self.lookup(name, frame))
                i = k + 1
            else:
                out.append("${")
                i = j + 2
        result = "".join(out)
        self.charge(len(result))
        return result

    @staticmethod
    def valid_ref(name: str) -> bool:
        if name.isdigit():
            return True
        parts = name.split(".")
        return all(p and (p[0].isalpha() or p[0] == "_") for p in parts)

    def lookup(self, name: str, frame: _Frame) -> str:
        if name.isdigit():
            k = int(name)
            return frame.matched[k] if k < len(frame.matched) else ""
        key = name.lower()
        if key.startswith("global."):
            return self.globals.get(key[7:], "")
        if key.startswith("env."):
            return self.ctx.environment.get(key[4:], "")
        if "." in key:
            return ""
        if key in frame.globals:
            return self.globals.get(key, "")
        return frame.variables.get(key, "")

    def assign(self, name: str, value: str, frame: _Frame) -> None:
        key = name.lower()
        value = value[:MAX_VARIABLE]
        target = self.globals if key in frame.globals else frame.variables
        if key not in target and len(target) >= MAX_VARIABLES:
            raise SieveRuntimeError("too many variables")
        target[key] = value

    def s(self, n: Node, v: object, frame: _Frame) -> str:
        assert isinstance(v, tuple)
        return self.expand(v[0], frame)

    def sl(self, v: object, frame: _Frame) -> list[str]:
        assert isinstance(v, tuple)
        if not frame.script.uses_variables:
            return list(v)
        return [self.expand(x, frame) for x in v]

    def tag_s(self, n: Node, tag: str, frame: _Frame) -> str | None:
        v = n.tags.get(tag)
        return None if v is None else self.s(n, v, frame)

    # ---- matching --------------------------------------------------------------------------

    def compare(self, n: Node, frame: _Frame, values: list[str], keys: list[str]) -> bool:
        """Does any value match any key, with the node's comparator and match type?"""
        spec = n.spec
        if spec is None:
            cmp_v = n.tags.get("comparator")
            comparator = cmp_v[0] if isinstance(cmp_v, tuple) else "i;ascii-casemap"
            kind, rel = "is", ""
            for t in ("contains", "matches", "count", "value"):
                tag = n.tags.get(t)
                if tag is not None:
                    kind = t
                    if isinstance(tag, tuple):
                        rel = tag[0].lower()
            spec = n.spec = (comparator, kind, rel)
        comparator, kind, rel = spec
        if kind == "count":
            # RFC 5231 4.1: the number of values, compared as a decimal string
            total = str(len(values))
            return any(relation(comparator, rel, total, k) for k in keys)
        if kind == "value":
            for v in values:
                for k in keys:
                    self.charge(len(v) + len(k))
                    if relation(comparator, rel, v, k):
                        return True
            return False
        if kind == "matches":
            for v in values:
                for k in keys:
                    caps = glob_match(comparator, k, v, self.charge)
                    if caps is not None:
                        # RFC 5229 3.2: ${0} is the whole value, then one per wildcard
                        frame.matched = [v, *caps][:10]
                        return True
            return False
        if comparator == "i;ascii-numeric":
            return any(
                match(comparator, "is", v, k, self.charge) is not None for v in values for k in keys
            )
        folded = [fold(comparator, k) for k in keys]
        contains = kind == "contains"
        for v in values:
            fv = fold(comparator, v)
            self.charge(len(fv) * len(folded) + 1)
            for k in folded:
                if (k in fv) if contains else (fv == k):
                    return True
        return False

    # ---- commands --------------------------------------------------------------------------

    def add(self, action: Action) -> None:
        if len(self.actions) >= self.limits.actions:
            raise SieveRuntimeError("too many actions")
        self.actions.append(action)

    def flags_of(self, n: Node, frame: _Frame) -> tuple[str, ...]:
        v = n.tags.get("flags")
        if v is None:
            return tuple(self.flags)
        return tuple(_flag_list(self.sl(v, frame)))

    def command(self, n: Node, frame: _Frame) -> None:
        name = n.name
        if name == "stop":
            raise _Stop
        if name == "return":
            raise _Return
        if name == "keep":
            self.check_not_rejected(n)
            self.add(Keep(self.flags_of(n, frame), self.headers.to_bytes()))
            self.implicit_keep = False
        elif name == "discard":
            self.add(Discard())
            self.implicit_keep = False
        elif name == "fileinto":
            self.check_not_rejected(n)
            box = self.s(n, n.pos[0], frame)
            if not box or len(box) > 1024 or any(ord(c) < 0x20 for c in box):
                raise self.fail(n, f"invalid mailbox name {box!r}")
            copy = "copy" in n.tags
            self.add(
                FileInto(
                    box, self.flags_of(n, frame), "create" in n.tags, copy, self.headers.to_bytes()
                )
            )
            if not copy:
                self.implicit_keep = False
        elif name == "redirect":
            self.check_not_rejected(n)
            addr = self.s(n, n.pos[0], frame).strip()
            try:
                parsed = sieve_address(addr)
            except AddressError:
                # RFC 5228 4.2: an invalid address from a variable is a runtime error
                raise self.fail(n, f"invalid redirect address {addr!r}") from None
            target = f"{parsed.local}@{parsed.domain}"
            copy = "copy" in n.tags
            if not any(isinstance(a, Redirect) and a.address == target for a in self.actions):
                self.redirects += 1
                if self.redirects > self.limits.redirects:
                    raise self.fail(n, "too many redirects")
                self.add(Redirect(target, copy, self.headers.to_bytes()))
            if not copy:
                self.implicit_keep = False
        elif name in ("reject", "ereject"):
            # RFC 5429 2.2: reject is incompatible with keep, fileinto, redirect and vacation
            for a in self.actions:
                if isinstance(a, Keep | FileInto | Redirect | Vacation | Reject):
                    raise self.fail(n, f"{name} cannot be combined with an earlier action")
            self.add(Reject(self.s(n, n.pos[0], frame), name == "ereject"))
            self.implicit_keep = False
        elif name == "vacation":
            self.vacation(n, frame)
        elif name == "set":
            self.set_variable(n, frame)
        elif name in ("setflag", "addflag", "removeflag"):
            self.edit_flags(n, frame)
        elif name == "include":
            self.include(n, frame)
        elif name == "global":
            for v in self.sl(n.pos[0], frame):
                frame.globals.add(v.lower())
        elif name == "addheader":
            field_name = self.s(n, n.pos[0], frame)
            value = self.s(n, n.pos[1], frame)
            if not _valid_field_name(field_name):
                raise self.fail(n, f"invalid header name {field_name!r}")
            self.headers.add(field_name, value, "last" in n.tags)
        elif name == "deleteheader":
            self.delete_header(n, frame)
        elif name == "notify":
            self.notify(n, frame)
        else:  # the compiler knows no other command
            raise self.fail(n, f"unsupported command {name}")

    def check_not_rejected(self, n: Node) -> None:
        if any(isinstance(a, Reject) for a in self.actions):
            raise self.fail(n, f"{n.name} cannot follow reject")

    def vacation(self, n: Node, frame: _Frame) -> None:
        if any(isinstance(a, Vacation) for a in self.actions):
            raise self.fail(n, "only one vacation action per message")  # RFC 5230 4.7
        if any(isinstance(a, Reject) for a in self.actions):
            raise self.fail(n, "vacation cannot follow reject")
        lim = self.limits
        if "seconds" in n.tags:
            secs = n.tags["seconds"]
            assert isinstance(secs, int)
            # RFC 6131 2: 0 means reply every time; the maximum is the site's.
            seconds = min(secs, lim.vacation_max_seconds)
        else:
            days = n.tags.get("days", 7)
            assert isinstance(days, int)
            seconds = min(max(days * DAY, lim.vacation_min_seconds), lim.vacation_max_seconds)
        reason = self.s(n, n.pos[0], frame)
        subject = self.tag_s(n, "subject", frame)
        from_ = self.tag_s(n, "from", frame)
        addresses = tuple(self.sl(n.tags["addresses"], frame)) if "addresses" in n.tags else ()
        handle = self.tag_s(n, "handle", frame)
        if handle is None:
            # RFC 5230 4.2: without :handle, the reply text and options identify the reply
            h = hashlib.sha256()
            for part in (reason, subject or "", from_ or "", "mime" if "mime" in n.tags else ""):
                h.update(part.encode("utf-8", "surrogateescape") + b"\0")
            handle = h.hexdigest()[:32]
        self.add(Vacation(reason, handle, seconds, subject, from_, addresses, "mime" in n.tags))

    def set_variable(self, n: Node, frame: _Frame) -> None:
        name = n.pos[0]
        assert isinstance(name, tuple)
        value = self.s(n, n.pos[1], frame)
        t = n.tags
        # RFC 5229 4.1: modifiers apply by precedence: case (40), first letter (30),
        # :quotewildcard (20), :encodeurl (15, RFC 5435 6), :length (10)
        if "lower" in t:
            value = value.lower()
        elif "upper" in t:
            value = value.upper()
        if "lowerfirst" in t and value:
            value = value[0].lower() + value[1:]
        elif "upperfirst" in t and value:
            value = value[0].upper() + value[1:]
        if "quotewildcard" in t:
            value = value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
        if "encodeurl" in t:
            value = url_quote(value, safe="-._~")
        if "length" in t:
            value = str(len(value))
        self.assign(name[0], value, frame)

    def edit_flags(self, n: Node, frame: _Frame) -> None:
        flags = _flag_list(self.sl(n.pos[-1], frame))
        if len(n.pos) == 2:
            var = n.pos[0]
            assert isinstance(var, tuple)
            current = _flag_list([self.lookup(var[0], frame)])
        else:
            current = list(self.flags)
        if n.name == "setflag":
            new = flags
        elif n.name == "addflag":
            new = current + [f for f in flags if f.lower() not in {c.lower() for c in current}]
        else:
            drop = {f.lower() for f in flags}
            new = [c for c in current if c.lower() not in drop]
        if len(n.pos) == 2:
            var = n.pos[0]
            assert isinstance(var, tuple)
            self.assign(var[0], " ".join(new), frame)
        else:
            self.flags = new

    def include(self, n: Node, frame: _Frame) -> None:
        location = "global" if "global" in n.tags else "personal"
        name_v = n.pos[0]
        assert isinstance(name_v, tuple)
        key = (location, name_v[0])
        if "once" in n.tags and key in self.included_once:
            return
        if key in self.include_stack:
            raise self.fail(n, f"include loop: {name_v[0]} includes itself")
        if len(self.include_stack) >= self.limits.include_depth:
            raise self.fail(n, "includes nested too deeply")
        script = self.compiled.get(key)
        if script is None:
            text = self.ctx.load_script(location, name_v[0])
            if text is None:
                if "optional" in n.tags:
                    return  # RFC 6609 3.2: a missing optional script is silently skipped
                raise self.fail(n, f"included script {name_v[0]!r} does not exist")
            if isinstance(text, Script):
                script = text
            else:
                try:
                    script = compile_script(text)
                except SieveSyntaxError as e:
                    raise self.fail(n, f"included script {name_v[0]!r}: {e}") from None
            self.compiled[key] = script
        self.included_once.add(key)
        self.include_stack.append(key)
        try:
            self.block(script.commands, _Frame(script))
        except _Return:
            pass
        finally:
            self.include_stack.pop()

    def delete_header(self, n: Node, frame: _Frame) -> None:
        name = self.s(n, n.pos[0], frame)
        if name.lower() in ("received", "auto-submitted"):
            return  # RFC 5293 9: protected
        positions = self.headers.positions(name)
        if "index" in n.tags:
            idx = n.tags["index"]
            assert isinstance(idx, int)
            if idx > len(positions):
                return
            positions = [positions[-idx] if "last" in n.tags else positions[idx - 1]]
        if len(n.pos) == 2:
            keys = self.sl(n.pos[1], frame)
            positions = [
                p for p in positions if self.compare(n, frame, [self.headers.value_at(p)], keys)
            ]
        self.headers.delete(positions)

    def notify(self, n: Node, frame: _Frame) -> None:
        method = self.s(n, n.pos[0], frame)
        parsed = parse_mailto(method)
        if parsed is None:
            raise self.fail(n, f"invalid notification method {method!r}")
        if any(isinstance(a, Notify) and a.method == method for a in self.actions):
            return  # RFC 5435 3.x: identical notifications are sent once
        importance = self.tag_s(n, "importance", frame) or "2"
        if importance not in ("1", "2", "3"):
            raise self.fail(n, ':importance must be "1", "2" or "3"')
        options = tuple(self.sl(n.tags["options"], frame)) if "options" in n.tags else ()
        self.add(
            Notify(
                method,
                parsed[0],
                parsed[1],
                self.tag_s(n, "from", frame),
                importance,
                options,
                self.tag_s(n, "message", frame),
            )
        )

    # ---- tests -----------------------------------------------------------------------------

    def test(self, n: Node, frame: _Frame) -> bool:
        self.charge(1)
        name = n.name
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(n.tests[0], frame)
        if name == "allof":
            return all(self.test(t, frame) for t in n.tests)
        if name == "anyof":
            return any(self.test(t, frame) for t in n.tests)
        if name == "size":
            limit = n.tags.get("over", n.tags.get("under"))
            assert isinstance(limit, int)
            size = self.msg.size
            return size > limit if "over" in n.tags else size < limit
        if name == "exists":
            return all(self.headers.raw(h) for h in self.sl(n.pos[0], frame))
        if name == "header":
            values: list[str] = []
            for h in self.sl(n.pos[0], frame):
                values.extend(self.indexed(n, self.headers.values(h)))
            return self.compare(n, frame, values, self.sl(n.pos[1], frame))
        if name == "address":
            values = []
            for h in self.sl(n.pos[0], frame):
                if h.lower() not in ADDRESS_HEADERS:
                    continue  # a name from a variable: no addresses there (RFC 5228 2.7.4)
                for local, domain, whole in self.indexed(n, self.addresses(h)):
                    part = _address_part(n, local, domain, whole)
                    if part is not None:
                        values.append(part)
            return self.compare(n, frame, values, self.sl(n.pos[1], frame))
        if name == "envelope":
            values = []
            for p in self.sl(n.pos[0], frame):
                p = p.lower()
                if p == "from":
                    addr = self.env.mail_from
                elif p == "to":
                    addr = self.env.rcpt_to
                else:
                    continue
                local, _, domain = addr.rpartition("@") if "@" in addr else (addr, "", "")
                part = _address_part(n, local, domain, addr) if addr else ""
                if part is not None:
                    values.append(part)
            return self.compare(n, frame, values, self.sl(n.pos[1], frame))
        if name == "body":
            return self.compare(n, frame, self.body_values(n, frame), self.sl(n.pos[0], frame))
        if name == "string":
            sources = [v for v in self.sl(n.pos[0], frame)]
            if "count" in n.tags:
                sources = [v for v in sources if v]  # RFC 5229 5: empty strings do not count
            return self.compare(n, frame, sources, self.sl(n.pos[1], frame))
        if name == "hasflag":
            if len(n.pos) == 2:
                var = n.pos[0]
                assert isinstance(var, tuple)
                have = _flag_list([self.lookup(v, frame) for v in var])
            else:
                have = list(self.flags)
            keys = _flag_list(self.sl(n.pos[-1], frame)) if "count" not in n.tags else []
            if "count" in n.tags:
                keys = self.sl(n.pos[-1], frame)
            return self.compare(n, frame, have, keys)
        if name == "date":
            return self.date_test(n, frame)
        if name == "currentdate":
            zone = self.tag_s(n, "zone", frame)
            now = _in_zone(self.ctx.now, zone)
            part = self.s(n, n.pos[0], frame).lower()
            return self.compare(n, frame, [_date_part(now, part)], self.sl(n.pos[1], frame))
        if name == "mailboxexists":
            return all(self.ctx.mailbox_exists(b) for b in self.sl(n.pos[0], frame))
        if name == "duplicate":
            return self.duplicate(n, frame)
        if name == "environment":
            item = self.s(n, n.pos[0], frame).lower()
            if item not in self.ctx.environment:
                return False  # RFC 5183 4: an unknown item never matches
            return self.compare(n, frame, [self.ctx.environment[item]], self.sl(n.pos[1], frame))
        if name == "valid_notify_method":
            return all(parse_mailto(u) is not None for u in self.sl(n.pos[0], frame))
        if name == "notify_method_capability":
            uri = self.s(n, n.pos[0], frame)
            cap = self.s(n, n.pos[1], frame).lower()
            if parse_mailto(uri) is None or cap != "online":
                return False
            # RFC 5436 2.9: mailto cannot know whether the recipient is online
            return self.compare(n, frame, ["maybe"], self.sl(n.pos[2], frame))
        raise self.fail(n, f"unsupported test {name}")

    def addresses(self, header: str) -> list[tuple[str | None, str | None, str]]:
        """The addresses of a header's fields (see _addresses), parsed once per header version."""
        key = header.lower()
        hit = self._addresses.get(key)
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        addrs: list[tuple[str | None, str | None, str]] = []
        for raw in self.headers.raw(header):
            addrs.extend(_addresses(raw))
        self._addresses[key] = (self.headers.version, addrs)
        return addrs

    def indexed(self, n: Node, items: list[_T]) -> list[_T]:
        """RFC 5260 6: :index picks one occurrence (from the end with :last)."""
        idx = n.tags.get("index")
        if not isinstance(idx, int):
            return list(items)
        if idx > len(items):
            return []
        return [items[-idx] if "last" in n.tags else items[idx - 1]]

    def body_values(self, n: Node, frame: _Frame) -> list[str]:
        msg = self.msg
        if "raw" in n.tags:
            # RFC 5173 5.1: the undecoded body, headers excluded
            return [msg.data[msg.root.body_start :].decode("utf-8", "replace")]
        if "content" in n.tags:
            wanted = [t.lower() for t in self.sl(n.tags["content"], frame)]
        else:
            wanted = ["text"]
        out: list[str] = []
        for p in msg.root.walk():
            if p.kind != LEAF:
                continue
            mtype = p.media_type.decode("latin-1").lower()
            main = mtype.split("/", 1)[0]
            if not any(w == "" or w == mtype or ("/" not in w and w == main) for w in wanted):
                continue
            if p.is_text or "content" in n.tags:
                text = part_text(msg, p)
                self.charge(len(text))
                out.append(text)
        return out

    def date_test(self, n: Node, frame: _Frame) -> bool:
        header = self.s(n, n.pos[0], frame)
        part = self.s(n, n.pos[1], frame).lower()
        keys = self.sl(n.pos[2], frame)
        raws = self.headers.raw(header)
        if header.lower() == "received":
            # RFC 5260 4: the date of a Received field follows its last ";"
            raws = [r.rsplit(b";", 1)[-1] for r in raws]
        values: list[str] = []
        for raw in self.indexed(n, raws):
            dt = parse_date(raw)
            if dt is None:
                continue
            if "originalzone" not in n.tags:
                dt = _in_zone(dt, self.tag_s(n, "zone", frame), self.ctx.now)
            values.append(_date_part(dt, part))
        return self.compare(n, frame, values, keys)

    def duplicate(self, n: Node, frame: _Frame) -> bool:
        if "uniqueid" in n.tags:
            ident = self.tag_s(n, "uniqueid", frame) or ""
        else:
            header = self.tag_s(n, "header", frame) or "message-id"
            values = self.headers.values(header)
            if not values:
                return False  # RFC 7352 3.1: no id, not a duplicate
            ident = values[0]
            if header.lower() == "message-id":
                ident = ident.strip()
        handle = self.tag_s(n, "handle", frame) or ""
        key = hashlib.sha256(f"{handle}\0{ident}".encode("utf-8", "surrogateescape")).hexdigest()
        secs = n.tags.get("seconds", 7 * DAY)
        assert isinstance(secs, int)
        seen = self.ctx.duplicate_seen(key) or any(d.key == key for d in self.duplicates)
        if not seen or "last" in n.tags:
            self.duplicates.append(DuplicateMark(key, min(secs, 90 * DAY), "last" in n.tags))
        return seen


# ---- helpers -------------------------------------------------------------------------------------


def _flag_list(values: list[str]) -> list[str]:
    """RFC 5232 2: a flag list is space-separated; duplicates (case-insensitive) dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        for f in v.split():
            if f.lower() not in seen:
                seen.add(f.lower())
                out.append(f)
    return out


def _valid_field_name(name: str) -> bool:
    return 0 < len(name) <= 200 and all(33 <= ord(c) <= 126 and c != ":" for c in name)


def _addresses(raw: bytes) -> list[tuple[str | None, str | None, str]]:
    """(local part, domain, the whole address) of each address of one field. As Pigeonhole
    reads them: an entry that is not a valid address is left out when others are, and a field
    with no valid address at all is one invalid address, whose whole is the field's text and
    which has no local part or domain (RFC 5228 2.7.4: :localpart and :domain never match it).
    A group's members are addresses; an empty group (`undisclosed-recipients:;`) holds none."""
    out: list[tuple[str | None, str | None, str]] = []
    invalid = False
    for a in parse_address_list(raw, fill_missing=False, limit=1000):
        if a.is_group_start or a.is_group_end:
            continue
        if a.invalid or not a.mailbox or not a.domain:
            invalid = True
            continue
        local = a.mailbox.decode("utf-8", "replace")
        domain = a.domain.decode("utf-8", "replace")
        out.append((local, domain, addr_spec(local, domain)))
    if invalid and not out:
        text = raw.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t")
        out.append((None, None, text.decode("utf-8", "replace")))
    return out


def _address_part(n: Node, local: str | None, domain: str | None, whole: str) -> str | None:
    t = n.tags
    if "localpart" in t:
        return local
    if "domain" in t:
        return domain
    if "user" in t or "detail" in t:
        if local is None:
            return None
        # RFC 5233 4: "+" separates; no separator means :detail matches nothing
        user, sep, detail = local.partition("+")
        if "user" in t:
            return user
        return detail if sep else None
    return whole


def _in_zone(dt: datetime, zone: str | None, now: datetime | None = None) -> datetime:
    if zone is None:
        # RFC 5260 4.1: without :zone, the local time zone (the injected clock's offset)
        ref = now if now is not None else dt
        return dt.astimezone(ref.tzinfo or UTC)
    sign = -1 if zone.startswith("-") else 1
    try:
        hh, mm = int(zone[1:3]), int(zone[3:5])
    except ValueError:
        return dt
    return dt.astimezone(timezone(sign * timedelta(hours=hh, minutes=mm)))


_MJD_EPOCH = date(1858, 11, 17)


def _date_part(dt: datetime, part: str) -> str:
    """RFC 5260 4.2 date-part values."""
    off = dt.utcoffset() or timedelta(0)
    total = int(off.total_seconds()) // 60
    zone = f"{'-' if total < 0 else '+'}{abs(total) // 60:02d}{abs(total) % 60:02d}"
    if part == "year":
        return f"{dt.year:04d}"
    if part == "month":
        return f"{dt.month:02d}"
    if part == "day":
        return f"{dt.day:02d}"
    if part == "date":
        return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
    if part == "julian":
        return str((dt.date() - _MJD_EPOCH).days)
    if part == "hour":
        return f"{dt.hour:02d}"
    if part == "minute":
        return f"{dt.minute:02d}"
    if part == "second":
        return f"{dt.second:02d}"
    if part == "time":
        return f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if part == "iso8601":
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + zone[:3] + ":" + zone[3:]
    if part == "std11":
        return format_datetime(dt)
    if part == "zone":
        return zone
    if part == "weekday":
        return str((dt.weekday() + 1) % 7)  # 0 is Sunday
    return ""
