"""The remote mailbox, through the stdlib's poplib and imaplib (blocking: the poller runs these in
a thread). One class per protocol with the same four steps: list what is there, read one, mark
one for deletion, finish (POP3 deletes at QUIT, RFC 1939 6; IMAP expunges, RFC 9051 6.4.3).
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import select
import socket
import ssl
import time
from dataclasses import dataclass

from carteiro.core.hostport import parse_hostport

TIMEOUT = 120.0
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


class RemoteError(Exception):
    """The remote server refused or failed (login, command); the message says which."""


@dataclass(frozen=True)
class Remote:
    server: str  # host:port
    protocol: str  # "pop3" | "imap"
    tls: str  # "implicit" | "starttls" | "none"
    user: str
    password: str
    verify: bool = True  # check the server's certificate and name
    cafile: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _default_port(protocol: str, tls: str) -> int:
    if protocol == "pop3":
        return 995 if tls == "implicit" else 110
    return 993 if tls == "implicit" else 143


class POP3Mailbox:
    def __init__(self, r: Remote) -> None:
        host, port = parse_hostport(r.server, _default_port("pop3", r.tls))
        try:
            if r.tls == "implicit":
                self.c: poplib.POP3 = poplib.POP3_SSL(
                    host, port, timeout=TIMEOUT, context=r.context()
                )
            else:
                self.c = poplib.POP3(host, port, timeout=TIMEOUT)
                if r.tls == "starttls":
                    self.c.stls(r.context())  # RFC 2595 4
            self.c.user(r.user)
            self.c.pass_(r.password)
        except poplib.error_proto as e:
            raise RemoteError(f"POP3 login as {r.user}: {e}") from None
        self.idle = False

    def listing(self, folder: str) -> list[tuple[str, str]]:
        """[(message number, UIDL)] (RFC 1939 7: UIDL)."""
        _, lines, _ = self.c.uidl()
        out = []
        for line in lines:
            num, _, uid = line.decode("ascii", "replace").partition(" ")
            out.append((num, uid.strip()))
        return out

    def read(self, ref: str) -> bytes:
        _, lines, _ = self.c.retr(int(ref))  # poplib undoes the dot-stuffing
        return b"\r\n".join(lines) + b"\r\n"

    def delete(self, ref: str) -> None:
        self.c.dele(int(ref))

    def finish(self, folder: str) -> None:
        pass  # deletions happen at QUIT

    def close(self) -> None:
        try:
            self.c.quit()  # RFC 1939 6: the UPDATE state removes what was marked
        except (OSError, poplib.error_proto):
            self.c.close()


class IMAPMailbox:
    def __init__(self, r: Remote) -> None:
        host, port = parse_hostport(r.server, _default_port("imap", r.tls))
        try:
            if r.tls == "implicit":
                self.c: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=r.context(), timeout=TIMEOUT
                )
            else:
                self.c = imaplib.IMAP4(host, port, timeout=TIMEOUT)
                if r.tls == "starttls":
                    self.c.starttls(r.context())
            self.c.login(r.user, r.password)
        except imaplib.IMAP4.error as e:
            raise RemoteError(f"IMAP login as {r.user}: {e}") from None
        self.idle = "IDLE" in self.c.capabilities
        self.uidplus = "UIDPLUS" in self.c.capabilities
        self._deleted: list[str] = []
        self.readonly = True

    def select(self, folder: str, readonly: bool) -> str:
        """Returns the folder's UIDVALIDITY (RFC 9051 2.3.1.1): uids are keyed by it."""
        self.readonly = readonly
        typ, data = self.c.select(_quote(folder), readonly=readonly)
        if typ != "OK":
            raise RemoteError(f"IMAP SELECT {folder}: {data!r}")
        for value in self.c.untagged_responses.get("OK", []):
            m = _UIDVALIDITY.search(value if isinstance(value, bytes) else b"")
            if m:
                return m.group(1).decode()
        typ, data = self.c.response("UIDVALIDITY")
        if data and data[0]:
            return str(int(data[0]))
        raise RemoteError(f"IMAP SELECT {folder}: no UIDVALIDITY")

    def listing(self, folder: str) -> list[tuple[str, str]]:
        typ, data = self.c.uid("SEARCH", "ALL")
        if typ != "OK":
            raise RemoteError(f"IMAP UID SEARCH in {folder}: {data!r}")
        uids = (data[0] or b"").split()
        return [(u.decode(), u.decode()) for u in uids]

    def read(self, ref: str) -> bytes:
        typ, data = self.c.uid("FETCH", ref, "(BODY.PEEK[])")
        if typ != "OK":
            raise RemoteError(f"IMAP UID FETCH {ref}: {data!r}")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        raise RemoteError(f"IMAP UID FETCH {ref}: no body (expunged meanwhile?)")

    def delete(self, ref: str) -> None:
        typ, data = self.c.uid("STORE", ref, "+FLAGS.SILENT", "(\\Deleted)")
        if typ != "OK":
            raise RemoteError(f"IMAP UID STORE {ref}: {data!r}")
        self._deleted.append(ref)

    def finish(self, folder: str) -> None:
        if not self._deleted:
            return
        if self.uidplus:
            # RFC 4315 2.1: expunge only what we marked, not what another client marked
            self.c.uid("EXPUNGE", ",".join(self._deleted))
        else:
            self.c.expunge()
        self._deleted.clear()

    def idle_wait(self, timeout: float) -> bool:
        """RFC 2177: IDLE in the selected folder until the server reports new mail (True) or
        `timeout` passes (False); then DONE. `interrupt()` from another thread ends it."""
        tag = self.c._new_tag()  # type: ignore[attr-defined]  # imaplib has no IDLE before 3.14
        self.c.send(tag + b" IDLE\r\n")
        first = self.c.readline()
        if not first.startswith(b"+"):
            raise RemoteError(f"IMAP IDLE refused: {first[:100]!r}")
        changed = False
        deadline = time.monotonic() + timeout
        while not changed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.c.sock], [], [], left)
            if not ready:
                break
            line = self.c.readline()
            if not line:
                raise RemoteError("the IMAP server closed the connection during IDLE")
            # RFC 2177 3: "* n EXISTS" is what a new message looks like
            changed = line.startswith(b"* ") and line.rstrip().upper().endswith(b"EXISTS")
        self.c.send(b"DONE\r\n")
        while True:
            line = self.c.readline()
            if not line:
                raise RemoteError("the IMAP server closed the connection after IDLE")
            if line.startswith(tag):
                return changed

    def interrupt(self) -> None:
        """Wake a thread blocked in idle_wait (the server is stopping)."""
        with contextlib.suppress(OSError):
            self.c.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        try:
            self.c.logout()
        except (OSError, imaplib.IMAP4.error):
            self.c.shutdown()


def _quote(folder: str) -> str:
    if folder.upper() == "INBOX":
        return "INBOX"
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
