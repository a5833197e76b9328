"""Raw edits of a message's header section: read, remove and add fields without re-serialising
anything else, so what the author signed (body, other fields) stays byte for byte. Pure."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field

from carteiro.mime.header import decode_header


@dataclass
class RawMessage:
    fields: list[tuple[str, bytes]]  # (lowercased name, the whole field with its CRLF)
    body: bytes  # after the blank line
    missing_blank: bool = field(default=False)

    @classmethod
    def parse(cls, data: bytes) -> RawMessage:
        if data.startswith(b"\r\n"):
            return cls([], data[2:])
        end = data.find(b"\r\n\r\n")
        head, body = (data, b"") if end < 0 else (data[: end + 2], data[end + 4 :])
        fields: list[tuple[str, bytes]] = []
        for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                name, raw = fields[-1]
                fields[-1] = (name, raw + line + b"\r\n")
                continue
            raw_name, colon, _ = line.partition(b":")
            if not colon:
                continue  # not a field (an mbox From_ line): dropped
            fields.append((raw_name.strip().decode("latin-1").lower(), line + b"\r\n"))
        return cls(fields, body, end < 0)

    def raw_value(self, name: str) -> bytes | None:
        name = name.lower()
        for n, raw in self.fields:
            if n == name:
                return raw.partition(b":")[2].strip()
        return None

    def get(self, name: str) -> str | None:
        raw = self.raw_value(name)
        return None if raw is None else decode_header(raw).strip()

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [
            decode_header(raw.partition(b":")[2]).strip() for n, raw in self.fields if n == name
        ]

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, lowercased address) pairs of an address field."""
        values = [
            raw.partition(b":")[2].decode("utf-8", "replace")
            for n, raw in self.fields
            if n == name.lower()
        ]
        return [(n, a.lower()) for n, a in email.utils.getaddresses(values) if "@" in a]

    def remove(self, *names: str) -> None:
        drop = {n.lower() for n in names}
        self.fields = [(n, raw) for n, raw in self.fields if n not in drop]

    def prepend(self, name: str, value: str) -> None:
        self.fields.insert(0, (name.lower(), fold(name, value)))

    def replace(self, name: str, value: str) -> None:
        """Put the new field where the first old one was (or on top)."""
        low = name.lower()
        for i, (n, _) in enumerate(self.fields):
            if n == low:
                self.fields[i] = (low, fold(name, value))
                self.fields = [f for j, f in enumerate(self.fields) if j == i or f[0] != low]
                return
        self.prepend(name, value)

    def to_bytes(self) -> bytes:
        return b"".join(raw for _, raw in self.fields) + b"\r\n" + self.body


def fold(name: str, value: str) -> bytes:
    """A field with its CRLF; long values folded after commas (RFC 5322 2.2.3), non-ASCII text
    as RFC 2047 words (the stdlib's Header does the encoding)."""
    from email.header import Header

    if not value.isascii():
        encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        return f"{name}: {encoded}\r\n".encode("ascii")
    lines = [f"{name}:"]
    for i, piece in enumerate(value.split(", ")):
        word = piece + ("," if i < value.count(", ") else "")
        if len(lines[-1]) + 1 + len(word) > 78 and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += " " + word
    return "\r\n".join(lines).encode("ascii") + b"\r\n"
