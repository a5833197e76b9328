"""POP3 command lines -> typed commands (RFC 1939 3, RFC 2449 3-4, RFC 2595 4, RFC 5034 4).

Pure parsing of one line (without its CRLF): no state and no I/O. A malformed line gives a
CommandError whose `reason` is the text of the -ERR reply; parsing never raises.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class State(enum.Enum):
    """RFC 1939 3: the session's states (plus the end of it)."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


# RFC 1939 (+ CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034), by the state they are valid in.
# APOP is deliberately absent: it needs the plaintext password on the server and uses MD5.
AUTHORIZATION_COMMANDS = frozenset({"USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT"})
TRANSACTION_COMMANDS = frozenset(
    {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}
)
KNOWN_COMMANDS = AUTHORIZATION_COMMANDS | TRANSACTION_COMMANDS

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# A message number beyond any maildrop (the argument is kept bounded, never a huge int).
OUT_OF_RANGE = 1 << 40


@dataclass(slots=True)
class Command:
    """Not frozen: a frozen dataclass's __init__ costs four times as much, once per command."""

    name: str  # upper-case keyword
    args: tuple[str, ...] = ()
    msg: int = 0  # the message number of LIST n, RETR, DELE, TOP, UIDL n (0: none given)
    lines: int = 0  # TOP's line count


@dataclass(frozen=True, slots=True)
class CommandError:
    reason: str  # the -ERR text
    name: str = ""  # the keyword when it was recognised


def _printable(text: str) -> str:
    """A client-supplied word made safe to echo in a reply (short, printable ASCII only)."""
    safe = "".join(c if 0x21 <= ord(c) < 0x7F else "?" for c in text[:20])
    return safe + ("..." if len(text) > 20 else "")


def _number(arg: str) -> int | None:
    """RFC 1939 3: a message number is a decimal number (no sign, no spaces); 0 parses but
    never names a message."""
    if not arg or not arg.isascii() or not arg.isdigit():
        return None
    if len(arg) > 12:
        return OUT_OF_RANGE
    return int(arg)


def _no_args(name: str, rest: str) -> Command | CommandError:
    if rest.strip(" \t"):
        return CommandError(f"{name} takes no arguments", name)
    return Command(name)


# The commands a download repeats, as clients write them, with their numeric arguments: parsed
# without the general path's checks (what they would find is known: a keyword and digits).
_NUMBERED = {
    spelled: name
    for name in ("RETR", "DELE", "LIST", "UIDL", "TOP")
    for spelled in (name.encode(), name.lower().encode(), name.capitalize().encode())
}


def parse_command(line: bytes) -> Command | CommandError:
    """One command line, its CRLF (or bare LF) already removed."""
    # "RETR 12", "TOP 12 0": the same Command as the general path below, for less
    word, _, rest = line.partition(b" ")
    name = _NUMBERED.get(word)
    if name == "TOP":
        first, _, count = rest.partition(b" ")
        if first.isdigit() and count.isdigit() and len(first) <= 12 and len(count) <= 12:
            return Command(name, (first.decode(), count.decode()), int(first), int(count))
    elif name is not None and rest.isdigit() and len(rest) <= 12:  # (bytes.isdigit: ASCII)
        return Command(name, (rest.decode(),), msg=int(rest))
    return _parse(line)


def _parse(line: bytes) -> Command | CommandError:
    if not line:
        return CommandError("Empty command line")
    # RFC 1939 3: keywords and arguments are printable ASCII. USER and PASS may carry UTF-8
    # (RFC 6856 style) but never control characters.
    if _CONTROL.search(line):
        return CommandError("Control characters are not allowed in a command")
    text = line.decode("utf-8", "replace")
    word, sep, rest = text.partition(" ")
    name = word.upper()
    if not (3 <= len(name) <= 4 and name.isascii() and name.isalpha()):
        return CommandError(f"Unknown command: {_printable(word)}")
    if name not in KNOWN_COMMANDS:
        if name == "APOP":
            return CommandError("APOP is not supported; use USER/PASS or AUTH over TLS", name)
        return CommandError(f"Unknown command: {_printable(word)}")

    if name == "PASS":
        # RFC 1939 7: PASS has exactly one argument, so spaces belong to the password.
        if not sep or not rest:
            return CommandError("PASS needs a password", name)
        return Command(name, (rest,))
    if name == "USER":
        user = rest.strip(" \t")
        if not user:
            return CommandError("USER needs a user name", name)
        return Command(name, (user,))
    args = tuple(a for a in rest.split(" ") if a) if sep else ()
    if name in ("STAT", "NOOP", "RSET", "QUIT", "CAPA", "STLS"):
        return _no_args(name, rest)
    if name == "AUTH":
        # RFC 5034 4: AUTH mechanism [initial-response]; a bare AUTH lists mechanisms
        # (the RFC 1734 usage some clients still send).
        if len(args) > 2:
            return CommandError("AUTH takes a mechanism and an optional initial response", name)
        return Command(name, args)
    if name in ("LIST", "UIDL"):
        if not args:
            return Command(name)
        if len(args) > 1:
            return CommandError(f"{name} takes at most one message number", name)
        n = _number(args[0])
        if n is None:
            return CommandError(f"{name}: {_printable(args[0])} is not a message number", name)
        return Command(name, args, msg=n)
    if name in ("RETR", "DELE"):
        if len(args) != 1:
            return CommandError(f"{name} needs one message number", name)
        n = _number(args[0])
        if n is None:
            return CommandError(f"{name}: {_printable(args[0])} is not a message number", name)
        return Command(name, args, msg=n)
    # TOP msg n (RFC 1939 7): n is a non-negative number of body lines.
    if len(args) != 2:
        return CommandError("TOP needs a message number and a number of lines", name)
    n = _number(args[0])
    if n is None:
        return CommandError(f"TOP: {_printable(args[0])} is not a message number", name)
    lines = _number(args[1])
    if lines is None:
        return CommandError(f"TOP: {_printable(args[1])} is not a number of lines", name)
    return Command(name, args, msg=n, lines=lines)
