"""Modified UTF-7 mailbox names (RFC 3501 5.1.3): Unicode <-> the 7-bit form IMAP4rev1 puts on the wire.

Decoding is strict: anything that is not the one canonical encoding of some name is an error, so two
wire names can never denote the same mailbox. Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["UTF7Error", "UndecodableName", "decode", "encode", "is_valid"]

# RFC 3501 5.1.3: modified BASE64 uses "," instead of "/" and no "=" padding.
_B64_CHARS = rb"A-Za-z0-9+,"
_TOKEN = re.compile(rb"&([" + _B64_CHARS + rb"]*)-")
_DIRECT = re.compile(rb"[\x20-\x25\x27-\x7e]+")  # printable ASCII except "&"
_ENCODE_RUNS = re.compile(r"[^\x20-\x7e]+|&")


class UTF7Error(ValueError):
    """A mailbox name that is not valid modified UTF-7."""


class UndecodableName(str):
    """A mailbox name or LIST pattern that is good syntax (an astring) but not valid modified
    UTF-7, as the client wrote it. No mailbox can have it: the server answers NO (CREATE: NO
    [CANNOT]; SELECT: NO [NONEXISTENT]) and LIST matches nothing with it, never BAD, since the
    command itself was well formed (RFC 3501 5.1.3, 7.1.3; RFC 9051 5.1, 7.1)."""

    __slots__ = ()


def encode(name: str) -> str:
    """Unicode mailbox name -> modified UTF-7 (ASCII only)."""

    def shift(match: re.Match[str]) -> str:
        run = match.group()
        if run == "&":
            return "&-"
        try:
            raw = run.encode("utf-16-be")
        except UnicodeEncodeError as exc:  # lone surrogates: not a name anyone can have
            raise UTF7Error("name contains a lone surrogate") from exc
        b64 = base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")
        return "&" + b64.decode("ascii") + "-"

    return _ENCODE_RUNS.sub(shift, name)


def decode(wire: str | bytes) -> str:
    """Modified UTF-7 -> Unicode. Raises UTF7Error for anything not canonically encoded."""
    if isinstance(wire, str):
        try:
            data = wire.encode("ascii")
        except UnicodeEncodeError as exc:
            raise UTF7Error("8-bit character in a modified UTF-7 name") from exc
    else:
        data = wire
    out: list[str] = []
    pos = 0
    end = len(data)
    last_was_shift = False
    while pos < end:
        m = _DIRECT.match(data, pos)
        if m is not None:
            out.append(m.group().decode("ascii"))
            pos = m.end()
            last_was_shift = False
            continue
        if data[pos] != 0x26:  # "&"
            raise UTF7Error(f"character 0x{data[pos]:02x} must be encoded")
        t = _TOKEN.match(data, pos)
        if t is None:
            raise UTF7Error("unterminated or malformed &...- sequence")
        b64 = t.group(1)
        pos = t.end()
        if not b64:
            out.append("&")
            last_was_shift = False
            continue
        if last_was_shift:
            # Two adjacent shifted runs have a shorter single-run encoding.
            raise UTF7Error("adjacent encoded sequences must be merged")
        out.append(_decode_run(b64))
        last_was_shift = True
    return "".join(out)


def _decode_run(b64: bytes) -> str:
    bits = len(b64) * 6
    if bits % 16 >= 6:
        raise UTF7Error("encoded sequence has a partial character")
    padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UTF7Error("invalid base64 in encoded sequence") from exc
    # RFC 3501 5.1.3 via RFC 2152: the leftover bits must be zero.
    if base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") != b64:
        raise UTF7Error("encoded sequence has non-zero padding bits")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise UTF7Error("encoded sequence is not valid UTF-16") from exc
    for ch in text:
        if "\x20" <= ch <= "\x7e":
            raise UTF7Error(f"printable ASCII {ch!r} must not be encoded")
    return text


def is_valid(wire: str | bytes) -> bool:
    try:
        decode(wire)
    except UTF7Error:
        return False
    return True
