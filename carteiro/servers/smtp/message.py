"""The message file an SMTP transaction writes: trace headers first, then the data as it streams in.

The file lives in DATA/tmp (the store's filesystem, so the store can hard-link it into place) and is
never held whole in memory. On submission the header section is buffered until its end so Date and
Message-ID can be added when missing (RFC 6409 8.2, 8.3). Trace headers follow RFC 5321 4.4 with the
RFC 3848 / RFC 6531 protocol names. Blocking only on page-cache writes; fsync is the store's job.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import io
import os
import random
import re
import secrets
import time
from pathlib import Path

from carteiro.core.address import valid_domain

HEAD_MAX = 256 * 1024  # stop looking for the end of the header section after this much
TMP_PREFIX = "smtp-"
_HELO_SAFE = re.compile(r"^[A-Za-z0-9.\-_:\[\]]+$")


def new_id() -> str:
    """A short unique id for one transaction (Received `id`, logs, the 250 reply).

    The id is shown to the client, so it needs to be unique, not unpredictable: 40 random bits per
    second from the module's PRNG (seeded from the OS, reseeded after fork), which costs no
    getrandom() system call per message as `secrets` does."""
    return f"{int(time.time()):X}{random.getrandbits(40):010X}"


class DateCache:
    """RFC 5322 dates for "now", formatted once per second (formatting costs ~25 us)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second, self._text = second, email.utils.formatdate(t, localtime=True)
        return self._text


def with_protocol(esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> str:
    """RFC 3848 (ESMTP, ESMTPA, ESMTPS, ESMTPSA) and RFC 6531 3.7.3 (UTF8SMTP...) names."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def _comment(text: str) -> str:
    # RFC 5322 3.2.2: a comment may not hold unescaped parentheses or backslashes.
    text = "".join(c if c.isprintable() else "?" for c in text)
    return re.sub(r"([()\\])", r"\\\1", text)


def received_header(
    *,
    helo: str,
    peer_ip: str,
    hostname: str,
    protocol: str,
    txn_id: str,
    tls: str | None = None,
    auth_user: str | None = None,
    recipient: str | None = None,
    date: str | None = None,
) -> bytes:
    """RFC 5321 4.4 Received: from, by, with, id, (for when there is one recipient), date.

    The HELO name is untrusted: it appears as the From-domain only when it is a syntactically valid
    domain or address literal, otherwise as a comment next to the peer's address literal.
    """
    lines = [_from_clause(helo, peer_ip)]
    if auth_user:
        lines.append(f"\t(authenticated user {_comment(auth_user)})")
    lines.append(f"\tby {hostname} (carteiro) with {protocol} id {txn_id}")
    tail = []
    if tls:
        tail.append(f"({_comment(tls)})")
    if recipient:
        tail.append(f"for <{recipient}>")
    if tail:
        lines.append("\t" + " ".join(tail) + ";")
    else:
        lines[-1] += ";"
    lines.append("\t" + (date or email.utils.formatdate(localtime=True)))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@functools.lru_cache(maxsize=256)  # HELO names are short; at most ~1 MB if not
def _from_clause(helo: str, peer_ip: str) -> str:
    # Remembered: a session sends the same HELO name from the same address for every message,
    # and the domain check with the escaping cost ~10 us of the header's ~12 us here.
    literal = f"[IPv6:{peer_ip}]" if ":" in peer_ip else f"[{peer_ip}]"
    if helo and _HELO_SAFE.match(helo) and (valid_domain(helo) or helo.startswith("[")):
        return f"Received: from {helo} ({literal})"
    return f"Received: from {literal} (helo={_comment(helo)})"


def return_path(mail_from: str) -> bytes:
    """RFC 5321 4.4: the delivering MTA records the reverse-path."""
    return f"Return-Path: <{mail_from}>\r\n".encode()


def header_names(head: bytes) -> set[bytes]:
    """Lower-cased field names of a header section (continuation lines skipped)."""
    names: set[bytes] = set()
    for line in head.split(b"\r\n"):
        if line and line[:1] not in (b" ", b"\t"):
            name, colon, _ = line.partition(b":")
            if colon:
                names.add(name.strip().lower())
    return names


def header_end(buf: bytes | bytearray) -> int:
    """Offset of the empty line ending the header section, or -1 if not seen yet."""
    if buf.startswith(b"\r\n"):
        return 0
    i = buf.find(b"\r\n\r\n")
    return i + 2 if i >= 0 else -1


class MessageWriter:
    """One message: `prefix` (trace headers), then the client's data as it streams in.

    Up to `memory_max` octets stay in memory (a small message then costs no temp file: the store
    writes it once, where it belongs); past that everything goes to a temp file and memory use
    stays at one read. `memory_max = 0` always uses the file.
    """

    def __init__(
        self,
        tmp_dir: Path,
        prefix: bytes,
        add_missing: tuple[str, str] | None = None,  # (hostname, date) on submission
        memory_max: int = 0,
    ) -> None:
        self.tmp_dir = tmp_dir
        self.path: Path | None = None
        self._f: io.FileIO | None = None
        # the message while in memory: its pieces, joined once at the end (a bytearray grown
        # by each piece, then copied to bytes, copied a 100 KB message three times)
        self._mem: list[bytes | bytearray] = [prefix]
        self._mem_size = len(prefix)
        self._memory_max = memory_max
        self.prefix_len = len(prefix)
        self.size = len(prefix)
        self._hostname, self._date = add_missing or ("", "")
        self._head: bytearray | None = bytearray() if add_missing else None
        if memory_max <= 0:
            self._spill()

    def _spill(self) -> None:
        fd, name = _mkstemp(self.tmp_dir)
        self.path = Path(name)
        self._f = io.FileIO(fd, "wb")

    def _out(self, data: bytes | bytearray) -> None:
        f = self._f
        if f is None:
            if self._mem_size + len(data) <= self._memory_max:
                self._mem.append(data)
                self._mem_size += len(data)
                return
            self._spill()
            f = self._f
            assert f is not None
        if self._mem:
            data, self._mem, self._mem_size = b"".join([*self._mem, data]), [], 0
        n = f.write(data)
        if n is not None and n < len(data):  # a short write (a signal, a full disk): go on
            view = memoryview(data)[n:]
            while view:
                view = view[f.write(view) or 0 :]

    def write(self, data: bytes) -> None:
        self.size += len(data)
        head = self._head
        if head is None:
            self._out(data)
            return
        head += data
        end = header_end(head)
        if end >= 0 or len(head) > HEAD_MAX:
            self._flush_head(end)

    def _flush_head(self, end: int) -> None:
        head, self._head = self._head, None
        assert head is not None
        if end < 0:
            end = len(head) if len(head) <= HEAD_MAX else -1
        if end >= 0:
            names = header_names(bytes(head[:end]))
            extra = b""
            if b"date" not in names:
                date = self._date or email.utils.formatdate(localtime=True)
                extra += f"Date: {date}\r\n".encode()
            if b"message-id" not in names:
                extra += f"Message-ID: <{new_id().lower()}@{self._hostname}>\r\n".encode()
            if extra:
                if end and not head[:end].endswith(b"\r\n"):
                    extra = b"\r\n" + extra
                head[end:end] = extra
                self.size += len(extra)
        self._out(head)

    def finish(self) -> bytes | Path:
        """All data written: the message (bytes, or the temp file still to be removed)."""
        if self._head is not None:
            self._flush_head(-1)
        if self._f is None:
            return b"".join(self._mem)
        if self._mem:
            self._out(b"")
        self._f.close()
        assert self.path is not None
        return self.path

    def discard(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._mem, self._mem_size = [], 0


def _mkstemp(tmp_dir: Path) -> tuple[int, str]:
    base = os.path.join(tmp_dir, TMP_PREFIX)
    for _ in range(100):
        name = base + secrets.token_hex(12)
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temp file in {tmp_dir}")


def without_prefix(source: bytes | Path, skip: int, tmp_dir: Path) -> bytes | Path:
    """The message without its first `skip` octets (the Return-Path line), for the copy that goes
    to the outbound queue when a transaction also has local recipients. Blocking for a file."""
    if isinstance(source, bytes):
        return source[skip:]
    fd, name = _mkstemp(tmp_dir)
    try:
        with open(source, "rb") as f, os.fdopen(fd, "wb") as out:
            f.seek(skip)
            while block := f.read(1 << 20):
                out.write(block)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return Path(name)


def clean_tmp(tmp_dir: Path, older_than: float = 86400.0) -> int:
    """Remove temp files a crashed server left behind (ours only). Returns how many."""
    n = 0
    cutoff = time.time() - older_than
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(tmp_dir):
            if entry.name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        n += 1
    return n
