"""RFC 2047 encoded-word decoding and charset conversion, as lenient as real mail clients.

Accepts what mailers actually send: words inside quoted strings or glued to text, unknown or
misspelt charsets, multi-byte characters split across adjacent words, bad base64 padding, raw
8-bit (UTF-8 per RFC 6532, else Windows-1252). Never raises.
"""

from __future__ import annotations

import binascii
import codecs
import re

# RFC 2047 2: =?charset?encoding?encoded-text?=  (charset may carry an RFC 2231 "*lang").
_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_BLANK = re.compile(rb"[ \t\r\n]*")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
# Encoded words decoded per value (~5 us each here). Real subjects and names hold a handful;
# past this the value's text is kept as written, so a 50 MB Subject costs no minutes.
MAX_WORDS = 10_000

# Codecs that are not charsets, or that are costly or surprising on hostile input.
_REFUSED = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined", "rot-13"}
)
# WHATWG Encoding: these labels mean Windows-1252 in practice.
_AS_CP1252 = frozenset(
    {
        "iso-8859-1",
        "iso8859-1",
        "latin1",
        "latin-1",
        "l1",
        "iso_8859-1",
        "cp819",
        "ibm819",
        "us-ascii",
        "ascii",
        "ansi_x3.4-1968",
        "windows-1252",
        "cp1252",
        "x-cp1252",
    }
)
_UNKNOWN_LABELS = frozenset(
    {"", "unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"}
)


def _codec(charset: str) -> str | None:
    name = charset.strip().strip('"').lower()
    if name in _AS_CP1252:
        return "cp1252"
    if name in _UNKNOWN_LABELS:
        return None
    if name in ("utf8", "utf-8", "x-utf8", "unicode-1-1-utf-8"):
        return "utf-8"
    if name in ("gb2312", "x-gbk", "gbk", "cp936"):
        return "gb18030"  # a superset; mail labelled gb2312 often holds GBK characters
    if name in ("ks_c_5601-1987", "ks_c_5601", "euc-kr"):
        return "cp949"
    if name in ("shift_jis", "sjis", "x-sjis", "shift-jis"):
        return "cp932"
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if info.name in _REFUSED or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_charset(data: bytes, charset: str | bytes | None) -> str:
    """`data` in `charset` as text. Unknown charsets: UTF-8 if valid, else Windows-1252."""
    if isinstance(charset, bytes):
        charset = charset.decode("latin-1")
    codec = _codec(charset) if charset else None
    if codec is None or codec == "cp1252":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    try:
        return data.decode(codec, "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


def decode_b(text: bytes) -> bytes:
    """RFC 2047 4.1 "B" (base64) text, forgiving junk, bad padding and truncation."""
    text = _B64_JUNK.sub(b"", text)
    cut = text.find(b"=")
    if cut >= 0:
        text = text[:cut]
    if len(text) % 4 == 1:
        text = text[:-1]
    return binascii.a2b_base64(text + b"=" * (-len(text) % 4))


def decode_q(text: bytes) -> bytes:
    """RFC 2047 4.2 "Q" text: "_" is a space, =XX an octet; a stray "=" stays as it is."""
    text = text.replace(b"_", b" ")
    return unhex(text) if b"=" in text else text


_HEX_OCTETS = {
    (a + b).encode(): bytes([int(a + b, 16)])
    for a in "0123456789ABCDEFabcdef"
    for b in "0123456789ABCDEFabcdef"
}


def unhex(text: bytes) -> bytes:
    """Every "=XX" (hexadecimal, either case) as its octet, the rest as it is: what
    `_QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text)` gives, without a Python call
    per escape (an HTML part has one per tag attribute)."""
    pieces = _QP_HEX.split(text)
    if len(pieces) == 1:
        return text
    pieces[1::2] = map(_HEX_OCTETS.__getitem__, pieces[1::2])
    return b"".join(pieces)


def decode_words(value: bytes | str) -> str:
    """Decode the encoded words in an (unfolded) header value; other text is kept.

    RFC 2047 6.2: whitespace between two encoded words is dropped. Adjacent words in the same
    charset are joined before conversion, so characters split across them survive.
    """
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if b"=?" not in raw:  # most values: decode_charset(raw, None) without its call
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", "replace")
    out: list[str] = []
    pending = bytearray()
    pending_cs: bytes | None = None
    pos = 0
    after_word = False
    for count, m in enumerate(_WORD.finditer(raw)):
        if count == MAX_WORDS:
            break
        between = raw[pos : m.start()]
        charset = m.group(1).split(b"*", 1)[0].lower()
        text = m.group(3)
        decoded = decode_b(text) if m.group(2) in b"bB" else decode_q(text)
        if not (after_word and _BLANK.fullmatch(between)):
            if pending_cs is not None:
                out.append(decode_charset(bytes(pending), pending_cs))
                del pending[:]
            out.append(decode_charset(between, None))
        elif pending_cs is not None and charset != pending_cs:
            out.append(decode_charset(bytes(pending), pending_cs))
            del pending[:]
        pending_cs = charset
        pending += decoded
        pos = m.end()
        after_word = True
    if pending_cs is not None:
        out.append(decode_charset(bytes(pending), pending_cs))
    out.append(decode_charset(raw[pos:], None))
    return "".join(out)
