"""A concurrent IMAP checker in the spirit of Dovecot imaptest's default (stress) mode: several
clients share one mailbox and send random commands while each keeps a model of the mailbox built
only from what the server told it, and the checker reports whatever no IMAP server may do.

What it checks, each a rule of RFC 3501/9051 (or of UIDPLUS, RFC 4315):
- every command gets exactly one tagged reply within a time bound, never BAD, and no unexpected BYE;
- EXISTS never shrinks the mailbox (7.4.1: only EXPUNGE may); EXPUNGE and FETCH name an existing
  sequence number; a sequence number keeps its UID, UIDs ascend with sequence numbers and a new
  message's UID is above every UID the session has seen (2.3.1.1); UIDVALIDITY does not change;
- a keyword in FETCH FLAGS was announced in the last untagged FLAGS (7.2.6, as imaptest checks);
- a message is \\Recent in one session at most (2.3.2);
- a UID always names the same octets, in every session: APPENDUID and COPYUID tie them to what was
  sent or copied, and RFC822.SIZE agrees with BODY[];
- flags a session owns (its own keyword, which only it stores) read back in that session as it
  last stored them, and reach every other session: after the run, one NOOP each, every session's
  model (UIDs and all flags) equals what a fresh session FETCHes;
- SEARCH answers name existing sequence numbers.

Run against Dovecot too (`--start dovecot`): the checker must find nothing there, which is what
makes a finding against carteiro a bug of ours.

    python -m carteiro.testing.imapstress --start carteiro|dovecot [--clients 6] [--seconds 20]
    python -m carteiro.testing.imapstress --port N --user U --password P
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteiro.proto.imap.client import Response, ResponseReader, quote

TIMEOUT = 30.0  # seconds a command may take before the server is said to hang
MAX_MESSAGES = 120  # above this, clients expunge more than they add
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
SHARED_KEYWORDS = ("$Shared1", "$Shared2")


# The commands a client picks from, with their weights (imaptest's default profile has about
# the same mix: mostly FETCH and STORE, then APPEND and EXPUNGE); delete and expunge weigh more
# once the mailbox holds MAX_MESSAGES.
STEPS = (
    ("append", 8),
    ("fetch", 12),
    ("fetch_body", 6),
    ("fetch_changed", 3),
    ("store_own", 12),
    ("store_shared", 6),
    ("delete", 4),
    ("expunge", 2),
    ("copy", 2),
    ("move", 2),
    ("move_back", 0.5),
    ("search", 5),
    ("noop", 6),
    ("idle", 2),
    ("reselect", 1),
    ("reconnect", 1),
)


class Hang(Exception):
    pass


@dataclass
class Shared:
    """What the clients know together: the octets of each UID, who saw which UID \\Recent."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)
    # (mailbox, UID) -> sha256 of its octets; -> the session that saw it \Recent
    digest: dict[tuple[str, int], str] = field(default_factory=dict)
    recent: dict[tuple[str, int], int] = field(default_factory=dict)
    uidvalidity: dict[str, int] = field(default_factory=dict)
    modseq: dict[str, int] = field(default_factory=dict)  # mailbox -> highest MODSEQ seen
    # for a kill -9 in the middle (run's `crash`): what was acknowledged must survive it
    crashed: bool = False
    at_risk: set[tuple[str, int]] = field(default_factory=set)  # \Deleted or MOVEd: may go
    own: dict[tuple[int, str, int], bool] = field(default_factory=dict)  # acked own keywords
    own_sent: set[tuple[int, str, int]] = field(default_factory=set)  # own STOREs not acked
    commands: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def error(self, who: str, text: str) -> None:
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(f"{who}: {text}")

    def risk(self, mailbox: str, uids: Iterable[int]) -> None:
        with self.lock:
            self.at_risk.update((mailbox, u) for u in uids)

    def storing_own(self, n: int, mailbox: str, uids: Iterable[int]) -> None:
        with self.lock:
            self.own_sent.update((n, mailbox, u) for u in uids)

    def stored_own(self, n: int, mailbox: str, uids: Iterable[int], value: bool) -> None:
        with self.lock:
            for u in uids:
                self.own[(n, mailbox, u)] = value
                self.own_sent.discard((n, mailbox, u))

    def octets(self, who: str, where: tuple[str, int], digest: str, how: str) -> None:
        with self.lock:
            old = self.digest.setdefault(where, digest)
        if old != digest:
            self.error(who, f"UID {where[1]} of {where[0]} has other octets than before ({how})")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _seqset(numbers: Iterable[int]) -> str:
    return ",".join(str(n) for n in sorted(set(numbers)))


@dataclass
class Model:
    """One session's view of the selected mailbox, from the server's responses only."""

    uids: list[int | None] = field(default_factory=list)  # sequence number - 1 -> UID
    flags: dict[int, frozenset[str]] = field(default_factory=dict)  # UID -> last FETCH FLAGS
    defined: frozenset[str] = frozenset()  # the last untagged FLAGS
    top: int = 0  # the highest UID this session has seen in the mailbox
    # per sequence number: the highest UID seen when EXISTS announced it (its UID must be above)
    floors: list[int] = field(default_factory=list)
    own: dict[int, bool] = field(default_factory=dict)  # UID -> does it carry our keyword
    storing: frozenset[int] = frozenset()  # UIDs our STORE in flight may change: not checked
    modseq: dict[int, int] = field(default_factory=dict)  # UID -> last MODSEQ (RFC 7162)
    flagseq: dict[int, int] = field(default_factory=dict)  # UID -> MODSEQ its flags came with
    highest: int = 0  # HIGHESTMODSEQ of the SELECT: the model holds every change up to it


class Client:
    def __init__(
        self,
        n: int,
        host: str,
        port: int,
        user: str,
        password: str,
        mailbox: str,
        shared: Shared,
        rng: random.Random,
    ) -> None:
        self.n = n
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.mailbox = mailbox
        self.shared = shared
        self.rng = rng
        self.keyword = f"$Own{n}"
        self.session = 0
        self.sock: socket.socket | None = None
        self.reader = ResponseReader()
        self.tag = 0
        self.model = Model()
        self.who = f"client {n}"
        self.verb = ""  # of the command in progress
        self.cmd = ""
        self.selected = mailbox
        self.last: list[str] = []  # the last lines sent and received, for a report
        self.caps: frozenset[str] = frozenset()
        self.readonly = False  # the mailbox was EXAMINEd
        self.deflate: Any = None  # zlib streams once COMPRESS=DEFLATE is on
        self.inflate: Any = None
        self.mode = "plain"  # or "condstore", "qresync": what this session ENABLEd
        # a QRESYNC session's state at its end: (mailbox, UIDVALIDITY, HIGHESTMODSEQ of its
        # SELECT, UID -> flags, UID -> MODSEQ), which the next session resynchronises from
        self.resume: tuple[str, int, int, dict[int, frozenset[str]], dict[int, int]] | None = None

    # ---- the connection ----

    def connect(self, select: bool = True) -> None:
        self.session += 1
        self.who = f"client {self.n} session {self.session}"
        self.sock = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        self.reader = ResponseReader()
        self.deflate = self.inflate = None
        greeting = self._next()
        if greeting.tag != "*" or greeting.status()[0] != "OK":
            raise Hang(f"greeting {greeting.text!r}")
        r, _ = self.command(f"LOGIN {quote(self.user)} {quote(self.password)}")
        if r.status()[0] != "OK":
            raise Hang(f"LOGIN refused: {r.text!r}")
        _, untagged = self.command("CAPABILITY")
        for r in untagged:
            v = r.values()
            if v and v[0] == "CAPABILITY":
                self.caps = frozenset(str(c).upper() for c in v[1:])
        if "COMPRESS=DEFLATE" in self.caps and self.rng.random() < 0.3:
            r, _ = self.command("COMPRESS DEFLATE")
            if r.status()[0] != "OK":
                self.shared.error(self.who, f"COMPRESS DEFLATE: {r.text!r}")
            else:  # RFC 4978 3: raw deflate both ways from the next octet on
                self.deflate = zlib.compressobj(wbits=-15)
                self.inflate = zlib.decompressobj(wbits=-15)
                # whatever came after the OK in the same read is already compressed
                rest = bytes(self.reader.buf)
                self.reader.buf.clear()
                if rest:
                    self.reader.feed(self.inflate.decompress(rest))
                with self.shared.lock:
                    self.shared.counts["compressed"] = self.shared.counts.get("compressed", 0) + 1
        modes = ["plain"]
        if "CONDSTORE" in self.caps:
            modes.append("condstore")
        if "QRESYNC" in self.caps:
            modes.append("qresync")
        self.mode = "qresync" if self.resume is not None else self.rng.choice(modes)
        if self.mode != "plain":
            r, _ = self.command(f"ENABLE {self.mode.upper()}")
            if r.status()[0] != "OK":
                self.shared.error(self.who, f"ENABLE {self.mode.upper()}: {r.text!r}")
        if select:
            self.select()

    def close(self) -> None:
        m = self.model
        uidvalidity = self.shared.uidvalidity.get(self.selected)
        if self.mode == "qresync" and m.highest and uidvalidity is not None:
            # a client resynchronising later must know the UID and flags of every message it
            # keeps (the server reports only what changed after HIGHESTMODSEQ)
            with contextlib.suppress(OSError, Hang):
                self.fetch_all()
            known = {u: m.flags.get(u, frozenset()) for u in self.known()}
            self.resume = (self.selected, uidvalidity, m.highest, known, dict(m.modseq))
        if self.sock is not None:
            with contextlib.suppress(OSError, Hang):
                self.command("LOGOUT", expect_bye=True)
            self.sock.close()
            self.sock = None

    def _next(self) -> Response:
        assert self.sock is not None
        while True:
            got = self.reader.next()
            if got is not None:
                self.last = [*self.last[-30:], f"S: {got.text[:200]!r}"]
                return got
            try:
                data = self._recv()
            except TimeoutError:
                raise Hang("no response within the time bound") from None
            if not data:
                raise Hang("the server closed the connection")
            self.reader.feed(data)

    def _send(self, line: bytes) -> None:
        assert self.sock is not None
        self.last = [*self.last[-30:], f"C: {line[:200]!r}"]
        if self.deflate is not None:
            line = self.deflate.compress(line) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(line)

    def _recv(self) -> bytes:
        """Octets from the server, inflated once COMPRESS=DEFLATE is on (RFC 4978); b"" at EOF."""
        assert self.sock is not None
        while True:
            data = self.sock.recv(65536)
            if not data or self.inflate is None:
                return data
            out: bytes = self.inflate.decompress(data)
            if out:
                return out

    def command(
        self, text: str, literal: bytes | None = None, expect_bye: bool = False
    ) -> tuple[Response, list[Response]]:
        """Send one command, read to its tagged reply; untagged responses update the model."""
        self.tag += 1
        tag = f"s{self.n}.{self.tag}"
        self.verb = text.split(" ", 1)[0].upper()
        self.cmd = text.upper()
        with self.shared.lock:
            self.shared.commands += 1
            verb = text.split(" ", 2)[0 if not text.startswith("UID ") else 1]
            self.shared.counts[verb] = self.shared.counts.get(verb, 0) + 1
        if literal is not None:
            self._send(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        else:
            self._send(f"{tag} {text}\r\n".encode())
        untagged: list[Response] = []
        while True:
            r = self._next()
            if r.tag == tag:
                status = r.status()[0]
                if status == "BAD":
                    self.shared.error(self.who, f"BAD to {text[:80]!r}: {r.text!r}")
                return r, untagged
            if r.tag == "+":
                self.shared.error(self.who, f"continuation to {text[:80]!r}")
                continue
            if r.tag != "*":
                self.shared.error(self.who, f"response with an unknown tag {r.tag!r}")
                continue
            if r.text.upper().startswith(b"BYE") and not expect_bye:
                self.shared.error(self.who, f"unexpected BYE: {r.text!r}")
                raise Hang("BYE")
            if not self.raw:
                self.untagged(r)
            untagged.append(r)

    # ---- the model ----

    def select(self, mailbox: str | None = None) -> None:
        self.model = Model()
        self.readonly = False
        self.selected = mailbox or self.mailbox
        with self.shared.lock:
            before = self.shared.modseq.get(self.selected, 0)
        resume, self.resume = self.resume, None
        if resume is not None and resume[0] == self.selected:
            self.resync(resume, before)
            return
        # some sessions only look (EXAMINE, RFC 9051 6.3.3): every change they ask for is refused
        self.readonly = mailbox is None and self.rng.random() < 0.15
        verb = "EXAMINE" if self.readonly else "SELECT"
        r, _ = self.command(f"{verb} {quote(self.selected)}")
        if r.status()[0] != "OK":
            raise Hang(f"{verb} failed: {r.text!r}")
        self.check_highest(before)
        self.fetch_all()

    def check_highest(self, before: int) -> None:
        """RFC 7162 3.1.1: HIGHESTMODSEQ is at least every MODSEQ given out before the SELECT."""
        if self.mode != "plain" and self.model.highest < before:
            self.shared.error(
                self.who, f"HIGHESTMODSEQ {self.model.highest} below MODSEQ {before} seen before"
            )

    def resync(
        self,
        resume: tuple[str, int, int, dict[int, frozenset[str]], dict[int, int]],
        before: int,
    ) -> None:
        """SELECT (QRESYNC ...) from the previous session's state (RFC 7162 3.2.5): what the
        server sends must bring that state to the mailbox's, with EXISTS messages exactly."""
        mailbox, uidvalidity, highest, flags, modseqs = resume
        with self.shared.lock:
            self.shared.counts["resync"] = self.shared.counts.get("resync", 0) + 1
        known = _seqset(flags) if flags else ""
        params = f"{uidvalidity} {highest}" + (f" {known}" if known else "")
        self.raw = True
        try:
            r, untagged = self.command(f"SELECT {quote(mailbox)} (QRESYNC ({params}))")
        finally:
            self.raw = False
        if r.status()[0] != "OK":
            raise Hang(f"SELECT (QRESYNC) failed: {r.text!r}")
        # the responses in their order: VANISHED (EARLIER) and FETCH bring the old state up to
        # date; a live VANISHED (a message expunged meanwhile) also lowers the count
        exists: int | None = None
        now: int | None = None
        vanished: set[int] = set()
        fetched: set[int] = set()
        state = dict(flags)
        seqs = dict(modseqs)
        for u in untagged:
            v = u.values()
            if len(v) >= 2 and v[1] == "EXISTS" and isinstance(v[0], str):
                exists = int(v[0])
            elif v and v[0] == "VANISHED" and len(v) >= 2:
                gone = set(_expand(str(v[-1])))
                vanished |= gone
                for uid in gone:
                    state.pop(uid, None)
                if not isinstance(v[1], list) and exists is not None:
                    exists -= len(gone)
            elif len(v) >= 3 and v[1] == "FETCH" and isinstance(v[2], list):
                items = _pairs(v[2])
                got, fl, ms = items.get("UID"), items.get("FLAGS"), items.get("MODSEQ")
                if isinstance(got, str) and isinstance(fl, list):
                    fetched.add(int(got))
                    state[int(got)] = frozenset(str(f) for f in fl)
                    if isinstance(ms, list) and ms:
                        seqs[int(got)] = int(str(ms[0]))
            elif v and v[0] == "FLAGS" and isinstance(v[1], list):
                self.model.defined = frozenset(str(f) for f in v[1])
            elif v and v[0] == "OK":
                code = u.code().split()
                if code[:1] == ["HIGHESTMODSEQ"]:
                    now = int(code[1])
                elif code[:1] == ["UIDVALIDITY"] and int(code[1]) != uidvalidity:
                    self.shared.error(self.who, f"UIDVALIDITY changed at QRESYNC: {code[1]}")
                    return
        m = self.model
        m.highest = now or 0
        self.check_highest(before)
        # known-uids limits what the server reports to those UIDs (RFC 7162 3.2.5.1): messages
        # that came later are learned the way a client does, from the UIDs above the known ones
        raced = False
        if exists is not None and len(state) < exists:
            self.raw = True
            try:
                _, more = self.command(
                    f"UID FETCH {max(flags, default=0) + 1}:* (UID FLAGS MODSEQ)"
                )
            finally:
                self.raw = False
            for u in more:
                v = u.values()
                if v and v[0] == "FLAGS" and len(v) >= 2 and isinstance(v[1], list):
                    m.defined = frozenset(str(f) for f in v[1])
                elif len(v) >= 2 and v[1] == "EXISTS" and isinstance(v[0], str):
                    raced = raced or int(v[0]) != exists
                    exists = int(v[0])
                elif v and v[0] == "VANISHED" and len(v) == 2:
                    raced = True
                    gone = set(_expand(str(v[1])))
                    if exists is not None:
                        exists -= len(gone)
                    for uid in gone:
                        state.pop(uid, None)
                elif len(v) >= 3 and v[1] == "FETCH" and isinstance(v[2], list):
                    items = _pairs(v[2])
                    got, fl, ms = items.get("UID"), items.get("FLAGS"), items.get("MODSEQ")
                    if isinstance(got, str) and isinstance(fl, list):
                        state[int(got)] = frozenset(str(f) for f in fl)
                        if isinstance(ms, list) and ms:
                            seqs[int(got)] = int(str(ms[0]))
        if raced and (exists is None or len(state) != exists):
            # Mail came or went while we learned the new UIDs: what the count says then is not
            # the resynchronisation's doing; start over with a plain SELECT.
            self.select()
            return
        if exists is None or len(state) != exists:
            kept = sorted(set(flags) - vanished - set(fetched))[:8]
            self.shared.error(
                self.who,
                f"after SELECT (QRESYNC {highest}): {len(state)} messages known, EXISTS {exists}"
                f" (kept unreported: {kept}...)",
            )
            self.select()  # start over with a plain SELECT
            return
        order = sorted(state)
        m.uids = list(order)
        m.floors = [0] * len(order)
        m.top = max(order, default=0)
        m.flags = state
        m.modseq = {u: seqs[u] for u in state if u in seqs}
        m.flagseq = dict(m.modseq)
        m.own = {u: self.keyword in f for u, f in state.items()}
        # Every message whose MODSEQ is not above the SELECT's HIGHESTMODSEQ has not changed
        # since: its flags now are the ones the resynchronised state holds.
        snapshot = dict(state)
        _, untagged = self.command("UID FETCH 1:* (UID FLAGS MODSEQ)")
        for u in untagged:
            v = u.values()
            if len(v) >= 3 and v[1] == "FETCH" and isinstance(v[2], list):
                items = _pairs(v[2])
                got, fl, ms = items.get("UID"), items.get("FLAGS"), items.get("MODSEQ")
                if not (isinstance(got, str) and isinstance(fl, list) and isinstance(ms, list)):
                    continue
                was = snapshot.get(int(got))
                same = frozenset(str(f) for f in fl) - {"\\Recent"}
                if was is not None and int(str(ms[0])) <= m.highest and was - {"\\Recent"} != same:
                    self.shared.error(
                        self.who,
                        f"QRESYNC from {highest} missed UID {got}'s flags {sorted(same)}"
                        f" (MODSEQ {ms[0]} <= {m.highest}), kept {sorted(was)}",
                    )

    def fetch_all(self) -> None:
        if self.model.uids:
            items = "UID FLAGS" if self.mode == "plain" else "UID FLAGS MODSEQ"
            self.command(f"FETCH 1:* ({items})")

    def untagged(self, r: Response) -> None:
        v = r.values()
        m = self.model
        if not v:
            return
        first = v[0]
        if isinstance(first, str) and first.isdigit() and len(v) >= 2 and isinstance(v[1], str):
            n, what = int(first), v[1].upper()
            if what == "EXISTS":
                if n < len(m.uids):
                    self.shared.error(self.who, f"EXISTS {n} below the {len(m.uids)} known")
                else:
                    m.floors.extend([m.top] * (n - len(m.uids)))
                    m.uids.extend([None] * (n - len(m.uids)))
            elif what == "EXPUNGE":
                if self.mode == "qresync":
                    self.shared.error(self.who, "EXPUNGE after ENABLE QRESYNC (RFC 7162 3.2.10)")
                if self.verb in ("FETCH", "STORE", "SEARCH"):
                    # RFC 3501 7.4.1, RFC 9051 7.5.1: the sequence numbers the client sent
                    # would be wrong under it
                    self.shared.error(self.who, f"EXPUNGE during {self.verb}")
                if not 1 <= n <= len(m.uids):
                    self.shared.error(self.who, f"EXPUNGE {n} of {len(m.uids)} messages")
                else:
                    uid = m.uids.pop(n - 1)
                    m.floors.pop(n - 1)
                    if uid is not None:
                        m.flags.pop(uid, None)
                        m.own.pop(uid, None)
            elif what == "FETCH" and len(v) >= 3 and isinstance(v[2], list):
                self.on_fetch(n, v[2])
            return
        if first == "VANISHED" and len(v) >= 2:
            if self.mode != "qresync" or isinstance(v[1], list):
                self.shared.error(self.who, f"unexpected {r.text!r}")
                return
            for uid in _expand(str(v[1])):
                self.vanish(uid)
            return
        if first == "OK" and r.code().split()[:1] == ["HIGHESTMODSEQ"]:
            self.model.highest = int(r.code().split()[1])
            return
        if first == "FLAGS" and len(v) >= 2 and isinstance(v[1], list):
            m.defined = frozenset(str(f) for f in v[1] if isinstance(f, str))
        elif first == "OK" and len(v) >= 2 and isinstance(v[1], str):
            code = r.code().split()
            if code[:1] == ["UIDVALIDITY"] and len(code) == 2 and code[1].isdigit():
                with self.shared.lock:
                    known = self.shared.uidvalidity.setdefault(self.selected, int(code[1]))
                if known != int(code[1]):
                    self.shared.error(self.who, f"UIDVALIDITY changed: {known} -> {code[1]}")
        elif first == "SEARCH":
            for x in v[1:]:
                in_range = isinstance(x, str) and x.isdigit() and 1 <= int(x) <= len(m.uids)
                if self._searching_seqs and not in_range:
                    self.shared.error(self.who, f"SEARCH names {x} of {len(m.uids)}")

    _searching_seqs = False
    raw = False  # untagged responses are the caller's to read (the QRESYNC SELECT)

    def on_fetch(self, n: int, items: list[object]) -> None:
        m = self.model
        if not 1 <= n <= len(m.uids):
            self.shared.error(self.who, f"FETCH of message {n} of {len(m.uids)}")
            return
        pairs: dict[str, object] = {}
        for i in range(0, len(items) - 1, 2):
            key = items[i]
            if isinstance(key, str):
                pairs[key.upper()] = items[i + 1]
        uid = m.uids[n - 1]
        got = pairs.get("UID")
        if isinstance(got, str) and got.isdigit():
            u = int(got)
            if uid is None:
                before = [x for x in m.uids[: n - 1] if x is not None]
                after = [x for x in m.uids[n:] if x is not None]
                if (before and u <= before[-1]) or (after and u >= after[0]):
                    self.shared.error(self.who, f"UID {u} at {n} breaks the ascending order")
                if u <= m.floors[n - 1]:
                    # RFC 9051 2.3.1.1: a new message's UID is above every UID given before
                    floor = m.floors[n - 1]
                    self.shared.error(self.who, f"new message {n} has UID {u}, not above {floor}")
                m.uids[n - 1] = uid = u
                m.top = max(m.top, u)
            elif uid != u:
                self.shared.error(self.who, f"message {n} was UID {uid}, FETCH says {u}")
        if uid is None:
            return  # flags of a message whose UID we do not know yet: nothing to check
        flags = pairs.get("FLAGS")
        seq = pairs.get("MODSEQ")
        # RFC 7162 3.1.4.1: a FETCH that reports a change (STORE's, another session's) carries
        # MODSEQ once CONDSTORE is on; one answering FETCH FLAGS need not (Dovecot's does not)
        fetching = self.verb == "FETCH" or self.cmd.startswith("UID FETCH")
        if self.mode != "plain" and isinstance(flags, list) and seq is None and not fetching:
            self.shared.error(self.who, f"FETCH FLAGS of UID {uid} without MODSEQ (RFC 7162 3.1.4)")
        if isinstance(seq, list) and seq and isinstance(seq[0], str) and seq[0].isdigit():
            new, old = int(seq[0]), m.modseq.get(uid)
            if old is not None and new < old:
                self.shared.error(self.who, f"UID {uid}: MODSEQ {old} then {new}")
            # flags other than those seen at MODSEQ n come with a MODSEQ above n (3.1.3)
            seen_at = m.flagseq.get(uid)
            if (
                isinstance(flags, list)
                and seen_at is not None
                and new <= seen_at
                and m.flags[uid] - {"\\Recent"} != frozenset(str(f) for f in flags) - {"\\Recent"}
            ):
                self.shared.error(
                    self.who, f"UID {uid}: other flags at MODSEQ {new}, seen at {seen_at}"
                )
            m.modseq[uid] = new
            if isinstance(flags, list):
                m.flagseq[uid] = new
            with self.shared.lock:
                top = self.shared.modseq.get(self.selected, 0)
                self.shared.modseq[self.selected] = max(top, new)
        elif isinstance(flags, list):
            m.flagseq.pop(uid, None)
        if isinstance(flags, list):
            names = frozenset(str(f) for f in flags if isinstance(f, str))
            for f in names:
                if f == "\\Recent" and self.readonly:
                    continue  # (an EXAMINE neither takes \Recent nor need be the only one)
                if f == "\\Recent":
                    with self.shared.lock:
                        first = self.shared.recent.setdefault(
                            (self.selected, uid), self.n * 1000 + self.session
                        )
                    if first != self.n * 1000 + self.session:
                        self.shared.error(self.who, f"UID {uid} \\Recent in two sessions")
                elif f not in SYSTEM_FLAGS and f not in m.defined:
                    self.shared.error(self.who, f"keyword {f} of UID {uid} not in FLAGS")
            m.flags[uid] = names
            mine = self.keyword in names
            if uid in m.storing:
                return
            if uid in m.own and m.own[uid] != mine:
                self.shared.error(
                    self.who, f"UID {uid}: own keyword read back {mine}, stored {m.own[uid]}"
                )
            m.own[uid] = mine
        body = pairs.get("BODY[]")
        if isinstance(body, bytes):
            self.shared.octets(self.who, (self.selected, uid), _digest(body), "BODY[]")
            size = pairs.get("RFC822.SIZE")
            if isinstance(size, str) and int(size) != len(body):
                self.shared.error(self.who, f"UID {uid}: RFC822.SIZE {size}, BODY[] {len(body)}")

    def vanish(self, uid: int) -> None:
        m = self.model
        if uid in m.flags or uid in m.uids:
            i = m.uids.index(uid)
        else:
            # A message announced by EXISTS whose UID we never fetched: UIDs ascend, so it is
            # one of the unknown entries between the known UIDs below and above it. They differ
            # only in their floors (the least their UID can be), which ascend: the last one whose
            # floor is below the UID goes, leaving the lower floors to the others.
            at = -1
            for j, u in enumerate(m.uids):
                if u is not None:
                    if u > uid:
                        break
                    at = -1  # a known UID below it: its place is further on
                elif m.floors[j] < uid:
                    at = j
            if at < 0:
                return  # never announced to this session
            i = at
        m.uids.pop(i)
        m.floors.pop(i)
        for d in (m.flags, m.own, m.modseq, m.flagseq):
            d.pop(uid, None)  # type: ignore[attr-defined, union-attr]

    def known(self) -> list[int]:
        return [u for u in self.model.uids if u is not None]

    # ---- the random commands ----

    def step(self) -> None:
        many = len(self.model.uids) > MAX_MESSAGES
        weights = [w * (2.5 if many and name in ("delete", "expunge") else 1) for name, w in STEPS]
        choice = self.rng.choices([name for name, _ in STEPS], weights=weights)[0]
        getattr(self, "do_" + choice)()

    def _some_uids(self, k: int) -> list[int]:
        uids = self.known()
        return self.rng.sample(uids, min(k, len(uids))) if uids else []

    def do_append(self) -> None:
        ident = f"{self.n}-{self.session}-{self.tag}-{self.rng.randrange(1 << 30)}"
        body = "".join(f"line {i} of {ident}\r\n" for i in range(self.rng.randrange(1, 40)))
        data = (
            f"Message-ID: <{ident}@stress.test>\r\nSubject: stress {ident}\r\n"
            f"From: Stress <stress@example.test>\r\n\r\n{body}"
        ).encode()
        flags = [] if self.rng.random() < 0.5 else [self.keyword]
        r, _ = self.command(f"APPEND {quote(self.mailbox)} ({' '.join(flags)})", data)
        if r.status()[0] != "OK":
            self.shared.error(self.who, f"APPEND failed: {r.text!r}")
            return
        code = r.code().split()
        if code[:1] == ["APPENDUID"] and len(code) == 3 and code[2].isdigit():
            uid = int(code[2])
            self.shared.octets(self.who, (self.mailbox, uid), _digest(data), "APPENDUID")
            self.model.own[uid] = bool(flags)  # our keyword is ours alone from now on
            self.shared.stored_own(self.n, self.mailbox, [uid], bool(flags))

    def do_fetch(self) -> None:
        if not self.model.uids:
            return
        if self.rng.random() < 0.5:
            self.command("FETCH 1:* (UID FLAGS)")
        else:
            uids = self._some_uids(5)
            if uids:
                self.command(f"UID FETCH {_seqset(uids)} (FLAGS RFC822.SIZE ENVELOPE)")

    def do_fetch_body(self) -> None:
        uids = self._some_uids(2)
        if uids:
            self.command(f"UID FETCH {_seqset(uids)} (UID RFC822.SIZE BODY.PEEK[])")

    def refused(self, text: str) -> None:
        """A change in an EXAMINEd mailbox (RFC 9051 6.3.3): NO (carteiro), or OK (Dovecot says
        OK to STORE, EXPUNGE and MOVE there); never BAD. The model takes nothing from it."""
        r, _ = self.command(text)
        if r.status()[0] not in ("NO", "OK"):
            self.shared.error(self.who, f"{text[:40]!r} in a read-only mailbox: {r.text!r}")
        with self.shared.lock:
            self.shared.counts["read-only refusals"] = (
                self.shared.counts.get("read-only refusals", 0) + 1
            )

    def _store(self, uids: list[int], op: str, flags: str) -> bool:
        if self.readonly:
            self.refused(f"UID STORE {_seqset(uids)} {op}FLAGS ({flags})")
            return False
        silent = self.rng.random() < 0.3
        r, _ = self.command(
            f"UID STORE {_seqset(uids)} {op}FLAGS{'.SILENT' if silent else ''} ({flags})"
        )
        if r.status()[0] != "OK":
            self.shared.error(self.who, f"STORE failed: {r.text!r}")
            return False
        return True

    def do_store_own(self) -> None:
        uids = self._some_uids(self.rng.randrange(1, 6))
        if not uids:
            return
        add = self.rng.random() < 0.5
        known = [self.model.modseq[u] for u in uids if u in self.model.modseq]
        if self.mode != "plain" and known and self.rng.random() < 0.4:
            self.store_unchanged(uids, add, min(known))
            return
        # While the STORE runs, a FETCH may still show the flags from before it; once it is
        # done, every FETCH of them in this session must show what it stored.
        self.model.storing = frozenset(uids)
        self.shared.storing_own(self.n, self.selected, uids)
        try:
            ok = self._store(uids, "+" if add else "-", self.keyword)
        finally:
            self.model.storing = frozenset()
        if not ok:
            return  # refused (read-only): nothing changed
        self.shared.stored_own(self.n, self.selected, uids, add)
        alive = set(self.known())
        for u in uids:
            if u in alive:
                self.model.own[u] = add

    def store_unchanged(self, uids: list[int], add: bool, since: int) -> None:
        """STORE (UNCHANGEDSINCE n) (RFC 7162 3.1.3): a message whose MODSEQ is above n is left
        alone and named in MODIFIED; the others are stored."""
        if self.readonly:
            return
        self.model.storing = frozenset(uids)
        self.shared.storing_own(self.n, self.selected, uids)
        try:
            r, _ = self.command(
                f"UID STORE {_seqset(uids)} (UNCHANGEDSINCE {since}) "
                f"{'+' if add else '-'}FLAGS ({self.keyword})"
            )
        finally:
            self.model.storing = frozenset()
        if r.status()[0] != "OK":
            self.shared.error(self.who, f"STORE UNCHANGEDSINCE failed: {r.text!r}")
            return
        code = r.code().split()
        modified = set(_expand(code[1])) if code[:1] == ["MODIFIED"] and len(code) == 2 else set()
        if not modified <= set(uids):
            self.shared.error(self.who, f"MODIFIED names UIDs not stored to: {r.text!r}")
        self.shared.stored_own(self.n, self.selected, [u for u in uids if u not in modified], add)
        alive = set(self.known())
        for u in uids:
            if u in alive and u not in modified:
                self.model.own[u] = add
        # those left alone: their MODSEQ is above `since` (it never goes down), or they are gone
        left = modified & alive
        if left:
            _, untagged = self.command(f"UID FETCH {_seqset(left)} (UID MODSEQ)")
            for uid, items in _fetches(untagged):
                ms = items.get("MODSEQ")
                if isinstance(ms, list) and ms and int(str(ms[0])) <= since:
                    self.shared.error(
                        self.who, f"UID {uid} in MODIFIED with MODSEQ {ms[0]} <= {since}"
                    )

    def do_fetch_changed(self) -> None:
        """FETCH (CHANGEDSINCE n) (RFC 7162 3.1.4.1): exactly the messages whose MODSEQ is above
        n. Ours above n must be in it (MODSEQ never goes down) unless expunged meanwhile."""
        if self.mode == "plain" or not self.model.modseq:
            return
        values = sorted(self.model.modseq.values())
        since = values[len(values) // 2]
        _, untagged = self.command(f"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {since})")
        got: set[int] = set()
        for uid, items in _fetches(untagged):
            ms = items.get("MODSEQ")
            if not isinstance(ms, list) or not ms:
                continue
            if int(str(ms[0])) > since:
                got.add(uid)
            else:  # (a change made meanwhile gets a MODSEQ above every one before it)
                self.shared.error(self.who, f"CHANGEDSINCE {since} gave UID {uid} at {ms[0]}")
        alive = set(self.known())
        missing = {k for k, ms in self.model.modseq.items() if ms > since and k in alive} - got
        for uid in self.still_there(missing):
            self.shared.error(self.who, f"CHANGEDSINCE {since} misses UID {uid}")

    def still_there(self, uids: set[int]) -> set[int]:
        """Those of `uids` that exist: after a NOOP, which brings the expunges a server may have
        kept back, those still in the model (an answer that leaves out a message expunged by
        another session before it is no error)."""
        if not uids:
            return set()
        self.command("NOOP")
        return uids & set(self.known())

    def do_store_shared(self) -> None:
        uids = self._some_uids(self.rng.randrange(1, 6))
        if uids:
            flag = self.rng.choice(["\\Seen", "\\Flagged", "\\Answered", *SHARED_KEYWORDS])
            self._store(uids, self.rng.choice("+-"), flag)

    def do_delete(self) -> None:
        uids = self._some_uids(self.rng.randrange(1, 4))
        if uids:
            self.shared.risk(self.selected, uids)
            self._store(uids, "+", "\\Deleted")

    def do_expunge(self) -> None:
        if self.readonly:
            self.refused("EXPUNGE")
            return
        if self.rng.random() < 0.5:
            self.command("EXPUNGE")
            return
        uids = [u for u, f in self.model.flags.items() if "\\Deleted" in f]
        if uids:
            self.command(f"UID EXPUNGE {_seqset(uids)}")

    def do_copy(self) -> None:
        self._transfer("COPY", self.mailbox)

    def do_move(self) -> None:
        self._transfer("MOVE", self.mailbox + "-b")

    def do_move_back(self) -> None:
        """Everything moved out goes back, from a session that selects the other mailbox: the
        sessions that have the stress mailbox selected see it arrive."""
        self.select(self.mailbox + "-b")
        try:
            if self.model.uids:
                self._transfer("MOVE", self.mailbox, self.known())
        finally:
            self.select()

    def _transfer(self, verb: str, to: str, uids: list[int] | None = None) -> None:
        uids = self._some_uids(2) if uids is None else uids
        if not uids:
            return
        with self.shared.lock:
            digests = {u: self.shared.digest.get((self.selected, u)) for u in uids}
        if verb == "MOVE" and self.readonly:
            self.refused(f"UID MOVE {_seqset(uids)} {quote(to)}")
            return
        if verb == "MOVE":
            self.shared.risk(self.selected, uids)
        r, untagged = self.command(f"UID {verb} {_seqset(uids)} {quote(to)}")
        if r.status()[0] != "OK":
            return  # a source expunged meanwhile may fail it (RFC 9051 6.4.7)
        # COPYUID is in the tagged OK of a COPY, in an untagged OK before the EXPUNGEs of a MOVE
        for resp in [r, *untagged]:
            code = resp.code().split()
            if code[:1] != ["COPYUID"] or len(code) != 4:
                continue
            src, dst = _expand(code[2]), _expand(code[3])
            if len(src) != len(dst) or not set(src) <= set(uids):
                self.shared.error(self.who, f"COPYUID does not fit {verb}: {resp.text!r}")
                return
            for a, b in zip(src, dst, strict=True):
                digest = digests.get(a)
                if digest is not None:
                    self.shared.octets(self.who, (to, b), digest, f"COPYUID of {a}")
            # a copy keeps the flags: of a message that may have \Deleted, it may go too
            with self.shared.lock:
                risky = {
                    (to, b)
                    for a, b in zip(src, dst, strict=True)
                    if (self.selected, a) in self.shared.at_risk
                }
                self.shared.at_risk |= risky

    def do_search(self) -> None:
        key = self.rng.choice(["ALL", "UNSEEN", "DELETED", f"KEYWORD {self.keyword}", "FLAGGED"])
        self._searching_seqs = True
        try:
            self.command(f"SEARCH {key}")
        finally:
            self._searching_seqs = False
        if key.startswith("KEYWORD"):
            _, untagged = self.command(f"UID SEARCH {key}")
            found: set[int] = set()
            for u in untagged:
                v = u.values()
                if v and v[0] == "SEARCH":
                    found |= {int(x) for x in v[1:] if isinstance(x, str) and x.isdigit()}
            alive = set(self.known())
            extra = {u for u, mine in self.model.own.items() if not mine and u in found}
            missing = {u for u, mine in self.model.own.items() if mine and u in alive} - found
            if extra:
                self.shared.error(self.who, f"UID SEARCH {key} finds {sorted(extra)[:5]}")
            for uid in self.still_there(missing):
                if self.model.own.get(uid):
                    self.shared.error(self.who, f"UID SEARCH {key} misses UID {uid}, which has it")

    def do_noop(self) -> None:
        self.command(self.rng.choice(["NOOP", "CHECK"]))

    def do_idle(self) -> None:
        self.tag += 1
        tag = f"s{self.n}.{self.tag}"
        self.verb = self.cmd = "IDLE"
        self._send(f"{tag} IDLE\r\n".encode())
        r = self._next()
        while r.tag == "*":
            self.untagged(r)
            r = self._next()
        if r.tag != "+":
            self.shared.error(self.who, f"IDLE answered {r.tag} {r.text!r}")
            return
        assert self.sock is not None
        end = time.monotonic() + self.rng.uniform(0.05, 0.4)
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got = self.reader.next()
                if got is None:
                    data = self._recv()
                    if not data:
                        raise Hang("closed in IDLE")
                    self.reader.feed(data)
                    continue
            except TimeoutError:
                break
            finally:
                self.sock.settimeout(TIMEOUT)
            self.untagged(got)
        self._send(b"DONE\r\n")
        while True:
            r = self._next()
            if r.tag == tag:
                if r.status()[0] != "OK":
                    self.shared.error(self.who, f"IDLE ended with {r.text!r}")
                return
            self.untagged(r)

    def do_reselect(self) -> None:
        self.select()

    def do_reconnect(self) -> None:
        self.close()
        self.connect()

    # ---- the end ----

    def settle(self) -> None:
        """Take every pending update and read all flags again."""
        self.command("NOOP")
        self.fetch_all()


class Pop3Client:
    """A POP3 session on the same INBOX (RFC 1939), beside the IMAP clients: STAT agrees with
    LIST, UIDLs are unique and (carteiro's form, "UIDVALIDITY.UID") name the message IMAP shows
    under that UID, so RETR must give its octets, exactly LIST's size of them; what it DELEtes
    goes at QUIT (and may then be gone after a crash)."""

    def __init__(
        self, host: str, port: int, user: str, password: str, shared: Shared, rng: random.Random
    ) -> None:
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.shared = shared
        self.rng = rng
        self.session = 0
        self.who = "pop3"

    def _line(self, f: Any) -> bytes:
        line = f.readline(1 << 16)
        if not line:
            raise Hang("the server closed the connection")
        return bytes(line)

    def _cmd(self, sock: socket.socket, f: Any, text: str, multi: bool = False) -> list[bytes]:
        sock.sendall(text.encode() + b"\r\n")
        first = self._line(f)
        if not first.startswith(b"+OK"):
            return [first]
        out = [first]
        while multi:
            line = self._line(f)
            if line == b".\r\n":
                break
            out.append(line[1:] if line.startswith(b".") else line)  # RFC 1939 3: dot-stuffed
        return out

    def step(self) -> None:
        self.session += 1
        self.who = f"pop3 session {self.session}"
        with socket.create_connection((self.host, self.port), timeout=TIMEOUT) as sock:
            f = sock.makefile("rb")
            if not self._line(f).startswith(b"+OK"):
                raise Hang("POP3 greeting")
            self._cmd(sock, f, f"USER {self.user}")
            if not self._cmd(sock, f, f"PASS {self.password}")[0].startswith(b"+OK"):
                raise Hang("POP3 login refused")
            stat = self._cmd(sock, f, "STAT")[0].split()
            listing = self._cmd(sock, f, "LIST", True)[1:]
            uidls = self._cmd(sock, f, "UIDL", True)[1:]
            sizes = {int(a): int(b) for a, b in (x.split()[:2] for x in listing)}
            ids = {int(a): b.decode() for a, b in (x.split()[:2] for x in uidls)}
            if len(sizes) != int(stat[1]) or sum(sizes.values()) != int(stat[2]):
                self.shared.error(self.who, f"STAT {stat[1:3]} disagrees with LIST {len(sizes)}")
            if sorted(sizes) != list(range(1, len(sizes) + 1)) or set(ids) != set(sizes):
                self.shared.error(self.who, "LIST/UIDL numbers are not 1..n")
            if len(set(ids.values())) != len(ids):
                self.shared.error(self.who, "two messages with one UIDL")
            for n in self.rng.sample(sorted(sizes), min(3, len(sizes))):
                got = self._cmd(sock, f, f"RETR {n}", True)
                if not got[0].startswith(b"+OK"):
                    continue  # expunged through IMAP meanwhile
                data = b"".join(got[1:])
                if len(data) != sizes[n]:
                    self.shared.error(
                        self.who, f"RETR {n}: {len(data)} octets, LIST said {sizes[n]}"
                    )
                _, _, uid = ids[n].partition(".")
                if uid.isdigit():
                    self.shared.octets(self.who, ("INBOX", int(uid)), _digest(data), "RETR")
            doomed = [n for n in sizes if self.rng.random() < 0.05]
            for n in doomed:
                self._cmd(sock, f, f"DELE {n}")
            uids = [
                int(ids[n].partition(".")[2]) for n in doomed if ids[n].partition(".")[2].isdigit()
            ]
            self.shared.risk("INBOX", uids)
            with self.shared.lock:
                self.shared.counts["POP3 sessions"] = self.shared.counts.get("POP3 sessions", 0) + 1
            if not self._cmd(sock, f, "QUIT")[0].startswith(b"+OK"):
                self.shared.error(self.who, "QUIT refused")


def _fetches(untagged: list[Response]) -> list[tuple[int, dict[str, object]]]:
    """(UID, items) of each FETCH response that has a UID."""
    out = []
    for r in untagged:
        v = r.values()
        if len(v) >= 3 and v[1] == "FETCH" and isinstance(v[2], list):
            items = _pairs(v[2])
            uid = items.get("UID")
            if isinstance(uid, str) and uid.isdigit():
                out.append((int(uid), items))
    return out


def _pairs(items: list[object]) -> dict[str, object]:
    return {str(items[i]).upper(): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _expand(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        lo, _, hi = part.partition(":")
        a, b = int(lo), int(hi or lo)
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


@dataclass
class Report:
    errors: list[str]
    commands: int
    counts: dict[str, int]
    seconds: float


def run(
    host: str,
    port: int,
    user: str,
    password: str,
    mailbox: str = "stress",
    clients: int = 6,
    seconds: float = 20.0,
    seed: int | None = None,
    inject: Callable[[bytes], None] | None = None,
    crash: Callable[[], int] | None = None,
    pop3_port: int | None = None,
) -> Report:
    """`inject`: delivers a message into `mailbox` another way than IMAP (another process, SMTP),
    called from a thread of its own all along the run. `crash`: kills the server (kill -9) and
    starts it again, returning its IMAP port; called once in the middle of the run, after which
    the clients stop and a fresh session checks that what was acknowledged survived."""
    shared = Shared()
    rng = random.Random(seed)
    setup = Client(99, host, port, user, password, "INBOX", shared, random.Random(0))
    setup.connect(select=False)
    for name in (mailbox, mailbox + "-b"):
        if name.upper() == "INBOX":  # it cannot be deleted: emptied
            setup.select(name)
            setup.command("UID STORE 1:* +FLAGS.SILENT (\\Deleted)")
            setup.command("CLOSE")
        else:
            setup.command(f"DELETE {quote(name)}")
            setup.command(f"CREATE {quote(name)}")
    setup.close()
    workers = [
        Client(i, host, port, user, password, mailbox, shared, random.Random(rng.random()))
        for i in range(clients)
    ]
    start = time.monotonic()
    stop = start + seconds
    done = threading.Barrier(clients + 1)

    def work(c: Client) -> None:
        try:
            c.connect()
            while time.monotonic() < stop:
                c.step()
        except (Hang, OSError) as e:
            if not shared.crashed:
                shared.error(c.who, f"{type(e).__name__}: {e}; last lines: {c.last[-6:]}")
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait(TIMEOUT * 2)

    def injector() -> None:
        assert inject is not None
        k = 0
        while time.monotonic() < stop - 1:
            k += 1
            data = (
                f"Message-ID: <inject-{k}@stress.test>\r\nSubject: injected {k}\r\n"
                f"From: <injector@example.test>\r\n\r\nbody {k}\r\n"
            ).encode()
            try:
                inject(data)
            except Exception as e:  # a delivery that fails is a finding too
                if not shared.crashed:
                    shared.error("injector", f"{type(e).__name__}: {e}")
                return
            with shared.lock:
                shared.counts["injected"] = shared.counts.get("injected", 0) + 1

    def pop3() -> None:
        assert pop3_port is not None
        p = Pop3Client(host, pop3_port, user, password, shared, random.Random(rng.random()))
        while time.monotonic() < stop - 1:
            try:
                p.step()
            except (Hang, OSError) as e:
                if not shared.crashed:
                    shared.error(p.who, f"{type(e).__name__}: {e}")
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in workers]
    if inject is not None:
        threads.append(threading.Thread(target=injector, daemon=True))
    if pop3_port is not None and mailbox.upper() == "INBOX":
        threads.append(threading.Thread(target=pop3, daemon=True))
    for t in threads:
        t.start()
    if crash is not None:
        time.sleep(seconds * rng.uniform(0.4, 0.8))
        shared.crashed = True
        port = crash()
        with shared.lock:
            # \Recent claims are not kept through a kill -9 (neither are Dovecot's): a session
            # after the restart may be the first to be told of a message again
            shared.recent.clear()
    done.wait(seconds + TIMEOUT * 3)
    elapsed = time.monotonic() - start
    if crash is not None:
        for c in workers:
            if c.sock is not None:
                c.sock.close()
        check_survivors(host, port, user, password, mailbox, shared)
        return Report(shared.errors, shared.commands, dict(shared.counts), elapsed)
    # every session catches up, then all must agree with a fresh one
    views: dict[str, dict[int, frozenset[str]]] = {}
    for c in workers:
        if c.sock is None:
            continue
        try:
            c.settle()
            views[c.who] = {u: c.model.flags.get(u, frozenset()) for u in c.known()}
        except (Hang, OSError) as e:
            shared.error(c.who, f"settling: {e}")
    fresh = Client(98, host, port, user, password, mailbox, shared, random.Random(0))
    try:
        fresh.connect()
        truth = {u: fresh.model.flags.get(u, frozenset()) - {"\\Recent"} for u in fresh.known()}
        if truth:
            fresh.command("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])")
        fresh.close()
        for who, view in views.items():
            if set(view) != set(truth):
                shared.error(
                    who,
                    f"after NOOP: UIDs {sorted(set(view) ^ set(truth))[:10]} differ from a fresh "
                    "session's",
                )
                continue
            for u, flags in view.items():
                if flags - {"\\Recent"} != truth[u]:
                    shared.error(
                        who, f"after NOOP: UID {u} flags {sorted(flags)} != {sorted(truth[u])}"
                    )
    except (Hang, OSError) as e:
        shared.error("fresh session", str(e))
    for w in workers:
        w.close()
    return Report(shared.errors, shared.commands, dict(shared.counts), elapsed)


def check_survivors(
    host: str, port: int, user: str, password: str, mailbox: str, shared: Shared
) -> None:
    """After a kill -9: every message a session was told of (APPENDUID, COPYUID, a FETCH of its
    octets) is there with the same octets unless a \\Deleted STORE or a MOVE was sent for it,
    and every acknowledged STORE of a session's own keyword holds unless another one of the
    same message was in flight."""
    fresh = Client(97, host, port, user, password, mailbox, shared, random.Random(0))
    fresh.connect(select=False)
    there: dict[tuple[str, int], tuple[frozenset[str], str]] = {}
    for name in (mailbox, mailbox + "-b"):
        fresh.select(name)
        if fresh.model.uids:
            fresh.raw = True
            try:
                _, untagged = fresh.command("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
            finally:
                fresh.raw = False
            for uid, items in _fetches(untagged):
                fl, body = items.get("FLAGS"), items.get("BODY[]")
                if isinstance(fl, list) and isinstance(body, bytes):
                    there[(name, uid)] = (frozenset(str(f) for f in fl), _digest(body))
    fresh.close()
    with shared.lock:
        digests, at_risk = dict(shared.digest), set(shared.at_risk)
        own, own_sent = dict(shared.own), set(shared.own_sent)
    for where, digest in digests.items():
        got = there.get(where)
        if got is None and where not in at_risk:
            shared.error("after kill -9", f"UID {where[1]} of {where[0]} is gone")
        elif got is not None and got[1] != digest:
            shared.error("after kill -9", f"UID {where[1]} of {where[0]} has other octets")
    for (n, name, uid), value in own.items():
        got = there.get((name, uid))
        if got is not None and (n, name, uid) not in own_sent and (f"$Own{n}" in got[0]) != value:
            shared.error(
                "after kill -9", f"UID {uid} of {name}: the acknowledged STORE of $Own{n} lost"
            )
    with shared.lock:
        shared.counts["checked after kill"] = len(digests)


@dataclass
class Started:
    port: int
    inject: Callable[[bytes], None] | None = None  # delivers into the user's INBOX
    crash: Callable[[], int] | None = None  # kill -9 and start again: the new IMAP port
    pop3: int | None = None  # a POP3 port on the same accounts


def start_server(stack: contextlib.ExitStack, which: str, user: str, password: str) -> Started:
    """A private server (temp dir, free port). For carteiro, also a way to deliver into the
    user's INBOX from outside its IMAP, `carteiro deliver` (another process: the cross-process
    change feed) and SMTP (the server's own delivery) in turn, and a kill -9 with a restart."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imapstress-")))
    if which == "dovecot":
        from carteiro.testing.dovecot import DovecotInstance

        # its default of 10 sessions per user and address would refuse the larger runs
        extra = "protocol imap {\n  mail_max_userip_connections = 1000\n}\n"
        dc = DovecotInstance(tmp, users={user: password}, extra=extra)
        return Started(stack.enter_context(dc).imap_port)
    import smtplib

    from carteiro.testing.server import ServerProcess, carteiro_cmd

    srv = ServerProcess(
        tmp,
        domains=[user.split("@", 1)[1] if "@" in user else "example.test"],
        users={user: password},
        services=("imap", "smtp", "pop3"),
        # as Dovecot's above: more sessions of one account from one address than the default
        extra_config=(
            "[imap]\nallow_plaintext_auth = true\nmax_userip_connections = 1000\n"
            "[pop3]\nallow_plaintext_auth = true\n"
        ),
    )
    stack.enter_context(srv)
    turn = [0]

    def inject(data: bytes) -> None:
        turn[0] += 1
        if turn[0] % 2:
            cmd = carteiro_cmd("deliver", "--to", user, "--data", str(srv.data))
            subprocess.run(cmd, input=data, check=True, capture_output=True, timeout=60)
        else:
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as smtp:
                smtp.sendmail("injector@example.test", [user], data)

    def crash() -> int:
        srv.kill()
        srv.start()
        return srv.ports["imap"]

    return Started(srv.ports["imap"], inject, crash, srv.ports["pop3"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--user", default="tester@example.test")
    ap.add_argument("--password", default="tester-password")
    ap.add_argument("--start", choices=("carteiro", "dovecot"))
    ap.add_argument("--mailbox", default="stress")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument(
        "--crash", action="store_true", help="kill -9 the server midway (--start carteiro)"
    )
    ns = ap.parse_args(argv)
    if ns.port is None and ns.start is None:
        ap.error("--port or --start is needed")
    with contextlib.ExitStack() as stack:
        started = Started(ns.port)
        if ns.start is not None:
            started = start_server(stack, ns.start, ns.user, ns.password)
        inject = started.inject if ns.mailbox.upper() == "INBOX" else None  # deliveries: INBOX
        crash = started.crash if ns.crash else None
        rep = run(
            ns.host,
            started.port,
            ns.user,
            ns.password,
            ns.mailbox,
            ns.clients,
            ns.seconds,
            ns.seed,
            inject,
            crash,
            started.pop3,
        )
    print(
        f"{rep.commands} commands in {rep.seconds:.1f} s by {ns.clients} clients "
        f"({', '.join(f'{k} {v}' for k, v in sorted(rep.counts.items()))})"
    )
    for e in rep.errors:
        print("ERROR", e)
    print(f"{len(rep.errors)} errors")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
