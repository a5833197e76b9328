"""How long deriving values (ENVELOPE, BODYSTRUCTURE, SEARCH text) from a parsed message may
take, estimated from its shape, so a server can run the costly ones off its event loop.

The weights are measured worst cases per unit in this implementation (docs/mime.md, "Limits"),
not averages: an estimate errs high. Pure; never raises.
"""

from __future__ import annotations

from carteiro.mime.parse import MAX_VALUE, Message
from carteiro.mime.searchtext import ADDRESS_FIELDS

# Seconds per unit, worst cases measured on hostile input (a 2 GHz core, CPython 3.11).
_PER_ADDRESS_OCTET = 5e-6  # "a,a,a,...": one address per two octets, ~10 us each
_PER_HEADER_OCTET = 0.6e-6  # encoded words, short fields (decode, casefold, match)
_PER_PART = 40e-6  # BODYSTRUCTURE and SEARCH TEXT per MIME part
_PER_OCTET = 0.02e-6  # body decoding and case folding for SEARCH BODY/TEXT (C speed)

_FIELDS_SCANNED = 2000

# Work an event loop can do for one message without the others noticing.
INLINE_SECONDS = 0.01


def derive_seconds(msg: Message) -> float:
    """An upper estimate of the time to derive any value from `msg` (cached on it)."""
    cached = msg.cache.get("cost")
    if cached is None:
        address = header = fields = 0
        for part in msg.root.walk():
            header += part.body_start - part.start
            fields += len(part.fields)
        if fields > _FIELDS_SCANNED:
            address = header  # looking would cost time itself: assume the worst
        else:
            for part in msg.root.walk():
                for f in part.fields:
                    if f.name.lower() in ADDRESS_FIELDS:
                        address += min(f.value_end - f.value_start, MAX_VALUE)
        cached = msg.cache["cost"] = (
            address * _PER_ADDRESS_OCTET
            + header * _PER_HEADER_OCTET
            + msg.parts_count * _PER_PART
            + msg.size * _PER_OCTET
        )
    seconds: float = cached
    return seconds


def costly(msg: Message) -> bool:
    """True when deriving values from `msg` may take longer than an event loop should wait."""
    return derive_seconds(msg) > INLINE_SECONDS
