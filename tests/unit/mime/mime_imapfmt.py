"""A tiny IMAP serialiser for tests: the value convention -> Dovecot's text form.

Only for comparing with expected strings; the real encoder lives in proto/imap. Strings are
always quoted (8-bit shown as is); a run of lists at the start of a list (multipart bodies,
address lists) is written without separating spaces, as RFC 3501's `1*body` / `1*address`.
"""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    if value is None:
        return "NIL"
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return f"{{{len(value)}}}{value.decode('latin-1')}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        out = []
        leading = True
        for i, v in enumerate(value):
            if i > 0 and not (leading and isinstance(v, list)):
                out.append(" ")
            if not isinstance(v, list):
                leading = False
            out.append(fmt(v))
        return "(" + "".join(out) + ")"
    raise TypeError(f"not an IMAP value: {value!r}")


def fmt_inner(value: list[Any]) -> str:
    """A top-level list without its own parentheses (as Dovecot's test strings are)."""
    return fmt(value)[1:-1]
