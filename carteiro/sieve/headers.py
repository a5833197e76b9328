"""The message header as a Sieve script sees it: a list of fields that editheader (RFC 5293) can
change, read by header/address/date/exists tests, and written back for the stored copy."""

from __future__ import annotations

from carteiro.mime.encoded_words import decode_words
from carteiro.mime.header import unfold
from carteiro.mime.parse import Message

# RFC 5293 9: trace and auto-reply markers are not ours to change (Pigeonhole protects them too).
PROTECTED = frozenset({"received", "auto-submitted"})


class HeaderList:
    __slots__ = ("_by_name", "_cache", "_fields", "_original", "changed", "version")

    def __init__(self, msg: Message) -> None:
        self._fields: list[tuple[str, bytes]] = [
            (f.name.decode("latin-1"), msg.raw_value(f)) for f in msg.root.fields
        ]
        self._original = msg.header_bytes(msg.root)
        self.changed = False
        self.version = 0  # bumped by every edit: callers' caches key on it
        self._cache: dict[str, list[str]] = {}
        self._by_name: dict[str, list[bytes]] | None = None

    def raw(self, name: str) -> list[bytes]:
        index = self._by_name
        if index is None:
            index = {}
            for n, v in self._fields:
                index.setdefault(n.lower(), []).append(v)
            self._by_name = index
        return index.get(name.lower(), [])

    def values(self, name: str) -> list[str]:
        """Decoded values (RFC 2047 words, unfolded), leading/trailing blanks removed."""
        key = name.lower()
        hit = self._cache.get(key)
        if hit is None:
            hit = [decode_words(unfold(v)).strip(" \t") for v in self.raw(name)]
            self._cache[key] = hit
        return hit

    def _edited(self) -> None:
        self.changed = True
        self.version += 1
        self._cache.clear()
        self._by_name = None

    def add(self, name: str, value: str, last: bool) -> bool:
        if name.lower() in PROTECTED:
            return False
        # RFC 5293 4: fold long values; a value is 7-bit (encoded words) or UTF-8 (RFC 6532).
        raw = _fold(value).encode("utf-8")
        if last:
            self._fields.append((name, raw))
        else:
            self._fields.insert(0, (name, raw))
        self._edited()
        return True

    def positions(self, name: str) -> list[int]:
        key = name.lower()
        return [i for i, (n, _) in enumerate(self._fields) if n.lower() == key]

    def value_at(self, i: int) -> str:
        return decode_words(unfold(self._fields[i][1])).strip(" \t")

    def delete(self, indexes: list[int]) -> None:
        if not indexes:
            return
        drop = set(indexes)
        self._fields = [f for i, f in enumerate(self._fields) if i not in drop]
        self._edited()

    def to_bytes(self) -> bytes | None:
        """The edited header block (ending with the blank line), or None if unchanged."""
        if not self.changed:
            return None
        return (
            b"".join(n.encode("latin-1") + b": " + v + b"\r\n" for n, v in self._fields) + b"\r\n"
        )


def _fold(value: str) -> str:
    value = value.replace("\r", " ").replace("\n", " ")
    if len(value) <= 76:
        return value
    out: list[str] = []
    line = ""
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > 76:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return "\r\n ".join(out)
