"""SMTP replies as values: a code, an enhanced status code (RFC 3463, RFC 2034) and a reason.

Named constants are shared by the server and the tests, so a transcript test reads the same text the
server sends. Rendering never lets a reason contain CR or LF (a reply must not smuggle extra lines).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_REPLY_LINE = 512  # RFC 5321 4.5.3.1.5, the CRLF included


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    status: (
        str  # enhanced status code "x.y.z"; "" for replies that carry none (220, 221, 354, EHLO)
    )
    text: str = ""
    lines: tuple[str, ...] = ()  # further lines of a multi-line reply (EHLO keywords)
    wire: bytes = field(default=b"", init=False, repr=False, compare=False)  # rendered once

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire", self._render())

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.status, text, self.lines)

    def render(self) -> bytes:
        return self.wire

    def _render(self) -> bytes:
        text = self.text
        if not self.lines and "\r" not in text and "\n" not in text and len(text) < 400:
            # One short line (most replies, rendered once per MAIL/RCPT/end of data): the
            # general path below gives the same octets, at three times the cost.
            one = f"{self.code} {self.status} {text}" if self.status else f"{self.code} {text}"
            wire = one.rstrip().encode("utf-8")
            if len(wire) <= MAX_REPLY_LINE - 2:
                return wire + b"\r\n"
        # RFC 5321 4.2.1: every line but the last has a hyphen after the code.
        # RFC 2034 3: the enhanced code starts the text of each line.
        lines = self.lines
        prefix = f"{self.status} " if self.status else ""
        first = _line(self.code, "-" if lines else " ", prefix, self.text)
        if not lines:
            return first
        if len(lines) > 32:  # (an EXPN of a long list: not worth remembering)
            return first + _continuation.__wrapped__(self.code, self.status, lines)
        return first + _continuation(self.code, self.status, lines)

    def __str__(self) -> str:
        return self.render().decode("utf-8").rstrip("\r\n")


def _line(code: int, sep: str, prefix: str, text: str) -> bytes:
    text = text.replace("\r", " ").replace("\n", " ")
    line = f"{code}{sep}{prefix}{text}".rstrip().encode("utf-8")
    if len(line) > MAX_REPLY_LINE - 2:
        # RFC 5321 4.5.3.1.5: 512 octets with the CRLF. Texts echo what the client sent (EHLO
        # name, addresses, VRFY argument), so cut them to fit.
        line = line[: MAX_REPLY_LINE - 5].decode("utf-8", "ignore").encode("utf-8") + b"..."
    return line + b"\r\n"


@functools.lru_cache(maxsize=64)
def _continuation(code: int, status: str, lines: tuple[str, ...]) -> bytes:
    """The lines after the first. Remembered: the EHLO keywords are the same for every client
    (only the first line names it), and rendering them was most of a connection's reply work."""
    prefix = f"{status} " if status else ""
    last = len(lines) - 1
    return b"".join(_line(code, "-" if i < last else " ", prefix, t) for i, t in enumerate(lines))


def multiline(code: int, first: str, rest: Sequence[str]) -> Reply:
    """A reply without enhanced codes whose later lines are keywords (EHLO, HELP)."""
    return Reply(code, "", first, tuple(rest))


# ---- positive ---------------------------------------------------------------------------------

R_211_STATUS = Reply(211, "2.0.0", "System status")
R_214_HELP = Reply(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH",
)
R_221_BYE = Reply(221, "2.0.0", "Bye")
R_235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 6
R_250_OK = Reply(250, "2.0.0", "OK")
R_250_RESET = Reply(250, "2.0.0", "Reset OK")
R_250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
R_250_RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
R_250_CHUNK_OK = Reply(250, "2.0.0", "Chunk received")
R_250_QUEUED = Reply(250, "2.0.0", "Message accepted")
R_252_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
R_220_TLS_GO = Reply(220, "2.0.0", "Ready to start TLS")
R_334_EMPTY = Reply(334, "", "")
R_354_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

# ---- transient --------------------------------------------------------------------------------

R_421_TIMEOUT = Reply(421, "4.4.2", "Timeout waiting for input; closing connection")
R_421_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors; closing connection")
R_421_SHUTDOWN = Reply(421, "4.3.2", "Service shutting down; try again later")
R_421_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address")
R_421_LINE_TOO_LONG = Reply(421, "4.7.0", "Line too long; closing connection")
R_421_FORBIDDEN = Reply(421, "4.7.0", "This is an SMTP server; closing connection")
R_421_CONTENT_AS_COMMANDS = Reply(
    421, "4.7.0", "Message content sent as commands; closing connection"
)
R_421_DATA_DEADLINE = Reply(421, "4.4.2", "Message transfer took too long; closing connection")
R_451_LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing; try again later")
R_451_QUEUE_UNAVAILABLE = Reply(
    451, "4.3.0", "Cannot queue mail for remote recipients now; try again later"
)
R_452_TOO_MANY_RCPTS = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 4.5.3.1.10
R_452_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")
R_452_MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full: over quota; try again later")
R_454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
R_454_AUTH_BLOCKED = Reply(454, "4.7.0", "Too many failed authentication attempts; try again later")
R_454_AUTH_TEMP = Reply(454, "4.7.0", "Temporary authentication failure")

# ---- permanent --------------------------------------------------------------------------------

# RFC 3463 X.5.2 names "the command is unrecognized"; X.5.1 is for a known command out of
# sequence or unsupported (as Postfix: 500 5.5.2)
R_500_UNKNOWN = Reply(500, "5.5.2", "Command unrecognized")
# HELO/EHLO on the LMTP listener: a known command, not this protocol's (RFC 2033 4.1)
R_500_NOT_LMTP = Reply(500, "5.5.1", "This is LMTP: send LHLO")
R_500_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
R_500_BAD_UTF8 = Reply(500, "5.5.2", "Command is not valid UTF-8")
R_500_BARE_NEWLINE_CMD = Reply(500, "5.5.2", "Command lines must end with <CR><LF>")
R_500_AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")
R_501_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
R_501_HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: EHLO domain-or-address-literal")
R_501_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
R_501_BAD_RCPT = Reply(501, "5.1.3", "Bad recipient address syntax")
R_501_AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")  # RFC 4954 4
R_501_AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode base64 response")
R_502_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
R_502_EXPN = Reply(502, "5.5.1", "EXPN not available")
R_502_VRFY = Reply(502, "5.5.1", "VRFY not available")
R_503_NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
R_503_NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
R_503_NEED_MAIL = Reply(503, "5.5.1", "Send MAIL first")
R_503_NEED_RCPT = Reply(503, "5.5.1", "Send RCPT first")
R_503_ALREADY_AUTH = Reply(503, "5.5.1", "Already authenticated")
R_503_AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
R_503_MIXED_DATA_BDAT = Reply(503, "5.5.1", "DATA and BDAT cannot be mixed in one transaction")
R_503_BDAT_FAILED = Reply(503, "5.5.1", "Transaction already failed; send RSET")
R_503_TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")
R_504_AUTH_MECH = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
R_530_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
R_530_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
R_535_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
R_538_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
R_550_NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
R_550_BARE_NEWLINE = Reply(
    550, "5.5.2", "Message contains a bare <CR> or <LF>; lines must end with <CR><LF>"
)
R_550_ROUTING_LOOP = Reply(550, "5.4.6", "Alias expansion loop or too many targets")
R_552_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
# RFC 5321 7.8: a server defending itself may close after a 5yz reply; 552 (not 421) because
# the same message would only be too big again.
R_552_TOO_BIG_CLOSING = Reply(
    552, "5.3.4", "Message size exceeds fixed maximum message size; closing connection"
)
R_553_SENDER_NOT_OWNED = Reply(
    553, "5.7.1", "Sender address is not owned by the authenticated user"
)
R_553_NEED_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter")
R_554_NO_VALID_RCPTS = Reply(554, "5.5.1", "No valid recipients")
R_554_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
R_421_CONNECTION_RATE = Reply(
    421, "4.7.0", "Too many connections from your address; try again later"
)
# RFC 5321 4.3.1: the client must wait for the greeting; one that does not is refused
R_554_PREGREET = Reply(554, "5.5.1", "Protocol error: talking before the greeting")
R_555_PARAM = Reply(555, "5.5.4", "MAIL/RCPT parameter not recognized or not implemented")
