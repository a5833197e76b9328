"""ManageSieve (RFC 5804), sans-IO: `receiver` turns the client's bytes into lines of tokens
(atoms, numbers, quoted strings, literals) under size limits; `responses` renders OK/NO/BYE,
strings and the capability list. The session (servers/managesieved.py) does the rest."""

from carteiro.proto.managesieve.receiver import (
    Atom,
    Line,
    LineError,
    NeedData,
    Receiver,
)
from carteiro.proto.managesieve.responses import (
    bye,
    capabilities,
    no,
    ok,
    string,
)

__all__ = [
    "Atom",
    "Line",
    "LineError",
    "NeedData",
    "Receiver",
    "bye",
    "capabilities",
    "no",
    "ok",
    "string",
]
