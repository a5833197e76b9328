"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), response codes (RFC 3206) and SASL
(RFC 5034), as a sans-IO machine: no sockets, asyncio, ssl or store here."""

from carteiro.proto.pop3.commands import State
from carteiro.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    AuthResponse,
    AuthStart,
    Closed,
    Event,
    Login,
    NeedData,
    Reply,
    Retrieve,
    StartTLS,
    Update,
)
from carteiro.proto.pop3.machine import MachineConfig, Pop3Machine, Refusal
from carteiro.proto.pop3.maildrop import Maildrop, unique_id

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "AuthResponse",
    "AuthStart",
    "Closed",
    "Event",
    "Login",
    "MachineConfig",
    "Maildrop",
    "NeedData",
    "Pop3Machine",
    "Refusal",
    "Reply",
    "Retrieve",
    "StartTLS",
    "State",
    "Update",
    "unique_id",
]
