"""ManageSieve responses (RFC 5804 4): OK / NO / BYE with an optional response code and text,
strings (quoted when short and simple, else a literal), and the capability list (1.7)."""

from __future__ import annotations

from collections.abc import Iterable

MAX_QUOTED = 1024


def string(value: str | bytes) -> bytes:
    """A string as the server sends it: "quoted" or {n}CRLF literal (RFC 5804 4)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) <= MAX_QUOTED and not any(c in raw for c in b"\r\n\0"):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def _response(kind: bytes, code: str | bytes, text: str | bytes | None) -> bytes:
    """`code` is an atom with its arguments, already rendered (`TAG "x"` carries a client's
    UTF-8 string: bytes, or a str encoded as UTF-8)."""
    out = kind
    if code:
        out += b" (" + (code.encode("utf-8") if isinstance(code, str) else code) + b")"
    if text is not None and text != "":
        out += b" " + string(text)
    return out + b"\r\n"


def ok(text: str | None = None, code: str | bytes = "") -> bytes:
    return _response(b"OK", code, text)


def no(text: str | bytes | None = None, code: str = "") -> bytes:
    return _response(b"NO", code, text)


def bye(text: str | None = None, code: str = "") -> bytes:
    return _response(b"BYE", code, text)


def capabilities(items: Iterable[tuple[str, str | None]]) -> bytes:
    """One line per capability: "NAME" ["value"] (RFC 5804 1.7)."""
    out = b""
    for name, value in items:
        out += string(name)
        if value is not None:
            out += b" " + string(value)
        out += b"\r\n"
    return out
