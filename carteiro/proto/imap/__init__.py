"""Sans-IO IMAP4rev1/IMAP4rev2 protocol layer (RFC 3501, RFC 9051 and extensions).

receiver.Receiver frames bytes into Command events; parser.parse_command turns a Command into a
typed request (commands.py); responses renders answers; sets, utf7, dates, fetch and search hold
the shared grammar pieces. No I/O, no asyncio, no store: see docs/imap-protocol.md.
"""

from carteiro.proto.imap.parser import ParseError, parse_command, parse_wire
from carteiro.proto.imap.receiver import (
    NEED_DATA,
    AuthResponse,
    Command,
    Event,
    IdleDone,
    NeedContinuation,
    NeedData,
    ProtocolError,
    Receiver,
)
from carteiro.proto.imap.sets import SequenceSet

__all__ = [
    "NEED_DATA",
    "AuthResponse",
    "Command",
    "Event",
    "IdleDone",
    "NeedContinuation",
    "NeedData",
    "ParseError",
    "ProtocolError",
    "Receiver",
    "SequenceSet",
    "parse_command",
    "parse_wire",
]
