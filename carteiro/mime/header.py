"""Header field values for people: unfolding, RFC 2047 words, RFC 2231 parameters.

The structural parsers live next door (rfc822: tokens and parameters, address: address lists,
dates: Date); this module turns their byte values into text for SEARCH and webmail, and is the
place to import header helpers from. Pure; never raises on malformed input.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from carteiro.mime.address import Address, format_address_list, parse_address_list
from carteiro.mime.dates import header_date, parse_date
from carteiro.mime.encoded_words import decode_charset, decode_words
from carteiro.mime.parse import Part

__all__ = [
    "Address",
    "decode_charset",
    "decode_header",
    "decode_params",
    "decode_words",
    "filename",
    "format_address_list",
    "header_date",
    "parse_address_list",
    "parse_date",
    "unfold",
]

_FOLD = re.compile(rb"\r?\n")


def unfold(value: bytes) -> bytes:
    """RFC 5322 2.2.3: remove the line breaks of a folded value (the whitespace stays). A CR
    that ends no line is no line break: it separates words like the blank it stands for."""
    if b"\n" in value:
        value = _FOLD.sub(b"", value)
    return value.replace(b"\r", b" ") if b"\r" in value else value


def decode_header(value: bytes) -> str:
    """A raw field value as text: unfolded, encoded words decoded, 8-bit read as UTF-8."""
    return decode_words(unfold(value))


def decode_params(params: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Content-Type / Content-Disposition parameters as text, keyed by lowercased name.

    Takes the merged list Part.params holds: RFC 2231 `name*` values (charset'lang'%XX) are
    decoded and win over a plain `name`; plain values get lenient RFC 2047 decoding, which
    many mailers use for file names although RFC 2047 5 forbids it.
    """
    out: dict[str, str] = {}
    extended: set[str] = set()
    for key, value in params:
        name = key.decode("latin-1").lower()
        if name.endswith("*"):
            name = name[:-1]
            charset, _, rest = value.partition(b"'")
            _lang, sep, text = rest.partition(b"'")
            if not sep:  # no charset'lang' prefix: only %-escapes
                charset, text = b"", value
            out[name] = decode_charset(unquote_to_bytes(text), charset or None)
            extended.add(name)
        elif name not in extended:
            out[name] = decode_words(value)
    return out


def filename(part: Part) -> str | None:
    """The file name a part suggests: Content-Disposition filename, else Content-Type name."""
    for params in (part.disposition_params, part.params):
        decoded = decode_params(params)
        for key in ("filename", "name"):
            if decoded.get(key):
                return decoded[key]
    return None
