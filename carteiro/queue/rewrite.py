"""Address rewriting for mail entering the queue (Postfix's canonical/generic maps): internal
addresses such as alice@host.internal leave as alice@example.test, in the envelope (sender and
recipients) and in the address header fields, before the message is DKIM-signed.

A map holds full addresses ("alice@host.internal") and domains ("@host.internal", the local part
kept); the full address wins. Header fields are edited in place: only the address text changes,
display names, comments and every other byte stay as they were. Pure; no I/O.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping

# RFC 5322 3.6.2, 3.6.3, 3.6.6: the fields that carry addresses
ADDRESS_FIELDS = frozenset(
    {
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"bcc",
        b"resent-from",
        b"resent-sender",
        b"resent-to",
        b"resent-cc",
        b"resent-bcc",
    }
)
HEAD_MAX = 256 * 1024  # header sections beyond this are left alone


class AddressMap:
    def __init__(self, entries: Mapping[str, str]) -> None:
        self.full: dict[str, str] = {}
        self.domains: dict[str, str] = {}
        for k, v in entries.items():
            if k.startswith("@"):
                self.domains[k[1:].lower()] = v[1:] if v.startswith("@") else v
            else:
                self.full[k.lower()] = v

    def __bool__(self) -> bool:
        return bool(self.full or self.domains)

    def map(self, address: str) -> str:
        """The rewritten address, or `address` itself."""
        if not address or "@" not in address:
            return address
        hit = self.full.get(address.lower())
        if hit is not None:
            return hit
        local, _, domain = address.rpartition("@")
        new = self.domains.get(domain.lower())
        if new is not None:
            return f"{local}@{new}"
        return address

    def header_section(self, head: bytes) -> bytes:
        """`head` (the header section, CRLF lines, without the blank line) with the addresses
        in its address fields rewritten."""
        out: list[bytes] = []
        lines = head.split(b"\r\n")
        i = 0
        while i < len(lines):
            field = [lines[i]]
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                field.append(lines[i])
                i += 1
            raw = b"\r\n".join(field)
            name = raw.split(b":", 1)[0].strip().lower()
            if name in ADDRESS_FIELDS and b":" in raw:
                raw = self._field(raw)
            out.append(raw)
        return b"\r\n".join(out)

    def _field(self, raw: bytes) -> bytes:
        name, _, value = raw.partition(b":")
        text = value.decode("utf-8", "surrogateescape")
        unfolded = re.sub(r"\r\n[ \t]", " ", text)
        for _, addr in email.utils.getaddresses([unfolded]):
            new = self.map(addr)
            if new != addr and addr:
                # the address as a token: not inside a longer address
                pattern = re.compile(
                    r"(?<![\w.+-])" + re.escape(addr) + r"(?![\w.-])", re.IGNORECASE
                )
                text = pattern.sub(lambda _m, new=new: new, text)  # type: ignore[misc]
        return name + b":" + text.encode("utf-8", "surrogateescape")

    def message(self, data: bytes) -> bytes:
        """The message with its header section rewritten (the body untouched)."""
        end = data.find(b"\r\n\r\n", 0, HEAD_MAX)
        if end < 0:
            return data
        head = self.header_section(data[:end])
        return head + data[end:]
