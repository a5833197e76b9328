"""The Authentication-Results header field (RFC 8601): rendering ours, finding forged ones.

Values that came from the client (addresses, domains) are only ever written as RFC 8601 2.2
"value" tokens or quoted strings, so a hostile MAIL FROM cannot inject a result. The authserv-id
of an incoming field is read with a linear scan (no backtracking regex on untrusted input).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

FIELD = b"authentication-results"
_TOKEN_SPECIALS = set('()<>@,;:\\"/[]?= \t')


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One "method=result (comment) ptype.property=value" clause (RFC 8601 2.2)."""

    method: str
    result: str
    comment: str = ""
    properties: tuple[tuple[str, str], ...] = field(default=())

    def render(self) -> str:
        parts = [f"{self.method}={self.result}"]
        if self.comment:
            parts.append(f"({_comment(self.comment)})")
        for name, value in self.properties:
            parts.append(f"{name}={_value(value)}")
        return " ".join(parts)


def _comment(text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in text)[:200]
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _value(value: str) -> str:
    # RFC 8601 2.2: pvalue is a value (token or quoted-string) or [local-part "@"] domain-name
    v = "".join(c for c in value if c.isprintable())[:254]
    if v and all(c not in _TOKEN_SPECIALS for c in v):
        return v
    local, at, domain = v.rpartition("@")
    plain = all(c not in _TOKEN_SPECIALS for c in local + domain)
    if at and domain and local and plain:
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(authserv_id: str, results: Iterable[MethodResult]) -> bytes:
    """The whole field, folded one result per line, ending in CRLF."""
    items = [r.render() for r in results]
    if not items:
        items = ["none"]  # RFC 8601 2.2: no-result
    if items == ["none"]:
        return f"Authentication-Results: {authserv_id}; none\r\n".encode()
    text = f"Authentication-Results: {authserv_id};\r\n\t" + ";\r\n\t".join(items) + "\r\n"
    return text.encode("utf-8")


def authserv_id_of(value: bytes) -> str:
    """The authserv-id of a field value: the first token after comments and white space
    (RFC 8601 2.2), lower-cased; "" when there is none."""
    i, n = 0, len(value)
    depth = 0
    while i < n:
        c = value[i]
        if depth:
            if c == 0x5C:  # backslash: quoted-pair inside a comment
                i += 2
                continue
            if c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
            i += 1
            continue
        if c == 0x28:
            depth = 1
            i += 1
        elif c in b" \t\r\n":
            i += 1
        else:
            break
    j = i
    while j < n and value[j] not in b" \t\r\n;(":
        j += 1
    return value[i:j].decode("utf-8", "replace").lower().rstrip(".")


def strip_ours(head: bytes, authserv_id: str) -> tuple[bytes, int]:
    """The header section without Authentication-Results (and ARC-Authentication-Results is
    left alone: it belongs to ARC) fields that claim `authserv_id` (RFC 8601 5: forged or
    stale results under our name must not reach the reader). Returns (head, fields removed)."""
    ours = authserv_id.lower().rstrip(".")
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    removed = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        name, colon, rest = line.partition(b":")
        if colon and name.strip().lower() == FIELD:
            value = b"\r\n".join([rest, *lines[i + 1 : j]])
            if authserv_id_of(value) == ours:
                removed += 1
                i = j
                continue
        out.extend(lines[i:j])
        i = j
    return b"\r\n".join(out), removed


def has_field(head: bytes) -> bool:
    """Whether the header section may hold an Authentication-Results field (cheap pre-check)."""
    return FIELD in head.lower()
