"""A scripted session for the sans-IO POP3 machine: answers its requests from a dict of messages
and one account, and returns everything the machine wrote. No sockets, no store."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

from carteiro.proto import pop3
from carteiro.proto.pop3 import MachineConfig, Maildrop, Pop3Machine, Refusal

USER, PASSWORD = "alice@example.test", "secret pw"
UIDVALIDITY = 1700000000


@dataclass
class Script:
    """Answers for the machine's requests."""

    messages: dict[int, bytes] = field(default_factory=dict)  # uid -> bytes, in UID order
    gone: set[int] = field(default_factory=set)  # uids removed "by IMAP" after login
    locked: bool = False
    update_fails: bool = False
    deleted: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    updates: int = 0
    tls_starts: int = 0
    closed: bool = False
    no_bare_lf: bool = False  # answer Retrieve as store.read_wire does for an LF-form file

    def maildrop(self) -> Maildrop:
        return Maildrop(UIDVALIDITY, [(uid, len(data)) for uid, data in self.messages.items()])

    def login(self, m: Pop3Machine, user: str, password: str) -> pop3.Reply:
        if (user, password) != (USER, PASSWORD):
            return m.refused(Refusal.BAD_CREDENTIALS)
        if self.locked:
            return m.refused(Refusal.IN_USE)
        return m.authenticated(self.maildrop())

    def answer(self, m: Pop3Machine, ev: pop3.Event) -> bytes:
        if isinstance(ev, pop3.Reply):
            if ev.close:
                self.closed = True
            return ev.data
        if isinstance(ev, pop3.Login):
            return self.answer(m, self.login(m, ev.user, ev.password))
        if isinstance(ev, pop3.AuthStart | pop3.AuthResponse):
            data = ev.initial if isinstance(ev, pop3.AuthStart) else ev.data
            if data is None:
                return m.challenge(b"").data
            parts = data.split(b"\0")
            if len(parts) != 3:
                return self.answer(m, m.refused(Refusal.SASL))
            return self.answer(m, self.login(m, parts[1].decode(), parts[2].decode()))
        if isinstance(ev, pop3.StartTLS):
            self.tls_starts += 1
            m.tls_started()
            return ev.reply
        if isinstance(ev, pop3.Retrieve):
            if ev.uid in self.gone:
                return m.message_gone().data
            return m.message(self.messages[ev.uid], self.no_bare_lf).data
        assert isinstance(ev, pop3.Update), ev
        self.updates += 1
        if self.update_fails:
            return self.answer(m, m.updated(False))
        self.deleted.extend(ev.delete)
        self.seen.extend(ev.seen)
        for uid in ev.delete:
            self.messages.pop(uid, None)
        return self.answer(m, m.updated(True))


def run(
    chunks: Iterable[bytes],
    script: Script | None = None,
    config: MachineConfig | None = None,
    greeting: bool = False,
) -> tuple[bytes, Script, Pop3Machine]:
    """Feed `chunks` one after the other, answering every request; return the server's output."""
    script = script or Script()
    m = Pop3Machine(config or MachineConfig(hostname="pop.example.test", tls_active=True))
    out = bytearray(m.greeting() if greeting else b"")
    for chunk in chunks:
        m.receive_data(chunk)
        while True:
            ev = m.next_event()
            if isinstance(ev, pop3.NeedData | pop3.Closed):
                break
            out += script.answer(m, ev)
    return bytes(out), script, m


def plain(user: str = USER, password: str = PASSWORD, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def lines(*cmds: str) -> bytes:
    return b"".join(c.encode() + b"\r\n" for c in cmds)
