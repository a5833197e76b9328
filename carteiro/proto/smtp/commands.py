"""SMTP command lines -> typed commands, or a Reply saying what is wrong (errors are values).

Paths follow RFC 5321 4.1.2 (source routes accepted and ignored, 4.1.1.3 bare <Postmaster>), ESMTP
parameters follow RFC 1870 (SIZE), RFC 6152 (BODY), RFC 6531 (SMTPUTF8), RFC 3461 (RET, ENVID,
NOTIFY, ORCPT) and RFC 4954 5 (AUTH=). Pure functions: no state, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from carteiro.core.address import AddressError, parse_address
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply


@dataclass(frozen=True, slots=True)
class Helo:
    name: str
    extended: bool  # EHLO


@dataclass(frozen=True, slots=True)
class Mail:
    reverse_path: str  # "" for the null reverse-path <>
    size: int | None = None
    body: str = "7BIT"  # 7BIT | 8BITMIME
    smtputf8: bool = False
    ret: str | None = None  # FULL | HDRS
    envid: str | None = None  # xtext, as given
    auth: str | None = None  # RFC 4954 5 AUTH= (xtext), as given


@dataclass(frozen=True, slots=True)
class Rcpt:
    forward_path: str  # "postmaster" (no domain) for the RFC 5321 4.1.1.3 special case
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    topic: str = ""


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str  # upper-cased
    initial_response: str | None = None  # base64 text, "=" for an empty response (RFC 4954 4)
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class Etrn:
    """RFC 1985: start the queue for `node` (a domain; `subdomains` for "@domain")."""

    node: str
    subdomains: bool = False


@dataclass(frozen=True, slots=True)
class Atrn:
    """RFC 2645 4.1: turn the connection around for these domains (() = all the user's)."""

    domains: tuple[str, ...] = ()


Command = (
    Atrn
    | Helo
    | Mail
    | Rcpt
    | Data
    | Bdat
    | Rset
    | Noop
    | Quit
    | Help
    | Vrfy
    | Expn
    | StartTLS
    | Auth
    | Etrn
)


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A command we know but refuse (TURN, ETRN, SEND...), or one that is plainly not SMTP."""

    reply: Reply
    fatal: bool = False


_NOT_IMPLEMENTED = frozenset({"SEND", "SOML", "SAML", "XCLIENT", "XFORWARD"})
# A browser or proxy talking to the SMTP port (cross-protocol attacks): Postfix's
# smtpd_forbidden_commands. The connection is closed.
_FORBIDDEN = frozenset({"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS"})
# RFC 5322 2.2: a field name (printable ASCII but ":") then ":" (one character class, linear)
_HEADER_FIELD = re.compile(r"[\x21-\x39\x3b-\x7e]+:")

# RFC 3461 4.2 / RFC 1891: xtext is printable ASCII except "+" and "=", with "+XX" hex escapes.
_XTEXT = re.compile(r"^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$")
_DOMAIN_CHARS = re.compile(r"^[A-Za-z0-9.\-_\u0080-\U0010ffff]+$")
_ADDR_LITERAL = re.compile(r"^\[[^\[\]\\\s]+\]$")
MAX_ENVID = 100  # RFC 3461 4.4
MAX_ORCPT = 500  # RFC 3461 4.2


def parse(line: str, esmtp: bool, smtputf8_ok: bool = True) -> Command | Unsupported | Reply:
    """One command line, without its CRLF. `esmtp`: the client said EHLO (parameters allowed)."""
    verb, _, arg = line.partition(" ")
    verb = verb.upper()
    arg = arg.strip(" ")
    if verb == "EHLO" or verb == "HELO":
        return _parse_helo(arg, verb == "EHLO")
    if verb == "MAIL":
        return _parse_mail(arg, esmtp, smtputf8_ok)
    if verb == "RCPT":
        return _parse_rcpt(arg, esmtp)
    if verb == "DATA":
        return Data() if not arg else R.R_501_SYNTAX.with_text("DATA takes no arguments")
    if verb == "BDAT":
        return _parse_bdat(arg)
    if verb == "RSET":
        return Rset() if not arg else R.R_501_SYNTAX.with_text("RSET takes no arguments")
    if verb == "NOOP":
        return Noop()  # RFC 5321 4.1.1.9: a parameter is allowed and ignored
    if verb == "QUIT":
        return Quit() if not arg else R.R_501_SYNTAX.with_text("QUIT takes no arguments")
    if verb == "HELP":
        return Help(arg)
    if verb == "VRFY":
        return Vrfy(arg) if arg else R.R_501_SYNTAX.with_text("Syntax: VRFY address")
    if verb == "EXPN":
        return Expn(arg) if arg else R.R_501_SYNTAX.with_text("Syntax: EXPN list")
    if verb == "STARTTLS":
        return StartTLS() if not arg else R.R_501_SYNTAX.with_text("STARTTLS takes no arguments")
    if verb == "AUTH":
        return _parse_auth(arg)
    if verb == "ETRN":
        return _parse_etrn(arg)
    if verb == "ATRN":
        return _parse_atrn(arg)
    if verb == "TURN":
        # RFC 2645 1: TURN lets anyone claiming a domain take its mail; never offered
        return Unsupported(
            R.R_502_NOT_IMPLEMENTED.with_text(
                "TURN is unsafe and not offered; use ETRN, or ATRN on the ODMR port"
            )  # RFC 2645 1
        )
    if verb in _NOT_IMPLEMENTED:
        return Unsupported(R.R_502_NOT_IMPLEMENTED.with_text(f"{verb} not implemented"))
    if verb in _FORBIDDEN:
        return Unsupported(R.R_421_FORBIDDEN, fatal=True)
    if _HEADER_FIELD.match(verb):
        # A header field where a command belongs: message content sent as commands (DATA was
        # refused after the client pipelined the message with it). Left to run, the message's
        # own lines would act as commands; hang up as Postfix does (its "I can break rules, too").
        return Unsupported(R.R_421_CONTENT_AS_COMMANDS, fatal=True)
    return Unsupported(R.R_500_UNKNOWN)


_GENERAL_LITERAL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?:[\x21-\x5a\x5e-\x7e]+$")


def valid_address_literal(literal: str) -> bool:
    """RFC 5321 4.1.3: "[" IPv4 "]", "[IPv6:" IPv6 "]" or "[" tag ":" dcontent "]"."""
    if not _ADDR_LITERAL.match(literal):
        return False
    inner = literal[1:-1]
    if inner[:5].upper() == "IPV6:":
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        return True
    if re.match(r"^[0-9.]+$", inner):
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    # General-address-literal: Standardized-tag ":" 1*dcontent (none is registered yet)
    return bool(_GENERAL_LITERAL.match(inner))


def valid_helo_name(name: str) -> bool:
    if name.startswith("["):
        return valid_address_literal(name)
    return bool(_DOMAIN_CHARS.match(name)) and ".." not in name and len(name) <= 255


def _parse_helo(arg: str, extended: bool) -> Helo | Reply:
    # RFC 5321 4.1.1.1: one argument, a domain or an address literal. Many clients send bare
    # hostnames; we accept any single token of domain characters.
    if not arg or " " in arg or not valid_helo_name(arg):
        return (
            R.R_501_HELO_SYNTAX
            if extended
            else R.R_501_HELO_SYNTAX.with_text("Syntax: HELO domain")
        )
    return Helo(arg, extended)


BAD_PATH = ("", "\x00")  # _split_path's answer for a malformed path after a good keyword


def _split_path(arg: str, keyword: str) -> tuple[str, str] | None:
    """`FROM:<path> params` -> (path without brackets, params). None when the keyword or the
    path is missing, BAD_PATH when what follows the keyword is not a path: the former is the
    command's syntax (5.5.4), the latter a bad address (RFC 3463 X.1.7/X.1.3, as Postfix)."""
    if arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :].lstrip(" ")  # tolerate "MAIL FROM: <a@b>" (common, harmless)
    if not rest:
        return None
    if not rest.startswith("<"):
        # Some clients omit the brackets; accept a lone address without spaces.
        path, _, params = rest.partition(" ")
        if "<" in path or ">" in path:
            return BAD_PATH
        return path, params.strip(" ")
    # Find the closing ">" outside a quoted local part.
    if '"' not in rest:
        i = rest.find(">")
        if i < 0:
            return BAD_PATH
        params = rest[i + 1 :]
        if params and not params.startswith(" "):
            return BAD_PATH
        return rest[1:i], params.strip(" ")
    i, quoted = 1, False
    while i < len(rest):
        c = rest[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            break
        i += 1
    else:
        return BAD_PATH
    path = rest[1:i]
    params = rest[i + 1 :]
    if params and not params.startswith(" "):
        return BAD_PATH
    return path, params.strip(" ")


_ATEXT_CLASS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ATEXT = rf"{_ATEXT_CLASS}+"
_QUOTED_LOCAL = re.compile(r'^"((?:[^"\\]|\\.)*)"(@[^@]+)?$')
_DOT_STRING = re.compile(rf"^{_ATEXT_CLASS}+(?:\.{_ATEXT_CLASS}+)*$")


def _unquote_local(path: str) -> str:
    """RFC 5321 4.1.2 / RFC 5322 3.4.1: a quoted local part that needs no quoting ("alice"@d)
    names the same mailbox as its dot-string form; use that form."""
    m = _QUOTED_LOCAL.match(path)
    if m is None:
        return path
    local = re.sub(r"\\(.)", r"\1", m.group(1))
    return f"{local}{m.group(2) or ''}" if _DOT_STRING.match(local) else path


def _strip_source_route(path: str) -> str:
    # RFC 5321 4.1.2 / Appendix C: "<@a,@b:user@c>" -> "user@c"; the route is ignored.
    if path.startswith("@"):
        _, colon, rest = path.partition(":")
        if colon:
            return rest
    return path


def _params(text: str) -> list[tuple[str, str | None]] | None:
    out: list[tuple[str, str | None]] = []
    for word in text.split():
        key, eq, value = word.partition("=")
        if not key or not re.match(r"^[A-Za-z0-9][A-Za-z0-9\-]*$", key):
            return None
        out.append((key.upper(), value if eq else None))
    return out


# The common case, plain ASCII dot-atom@domain, checked with one regex; anything else goes through
# core.address.parse_address, which also gives the reason for a refusal.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SIMPLE_ADDRESS = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*$")


MAX_MAILBOX = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets, its "<" ">" included


def valid_address(path: str) -> str | None:
    """None if `path` is a valid mailbox (RFC 5321 4.1.2, RFC 6531), else the reason. Limits
    (RFC 5321 4.5.3.1): domain 255 octets, the whole path 256 with brackets. A local part may
    pass 4.5.3.1.1's 64 octets, as Postfix and Dovecot take it: SRS and VERP senders of
    forwarders and mailing lists do (4.5.3.1: "implementation techniques that impose no limits
    on the length of these objects should be used")."""
    if len(path) <= MAX_MAILBOX and _SIMPLE_ADDRESS.match(path):
        return None
    if len(path.encode("utf-8")) > MAX_MAILBOX:
        return "address too long (RFC 5321 4.5.3.1.3: at most 256 octets with the brackets)"
    domain = path.rpartition("@")[2]
    if domain.startswith("[") and not valid_address_literal(domain):
        return f"bad address literal {domain!r} (RFC 5321 4.1.3)"
    try:
        parse_address(path, max_local=MAX_MAILBOX)
    except AddressError as e:
        return str(e)
    return None


def _check_address(path: str, smtputf8: bool, bad: Reply) -> str | Reply:
    if not path.isascii() and not smtputf8:
        return R.R_553_NEED_SMTPUTF8
    reason = valid_address(path)
    if reason is not None:
        return bad.with_text(f"{bad.text}: {reason}")
    return path


def _parse_mail(arg: str, esmtp: bool, smtputf8_ok: bool) -> Mail | Reply:
    split = _split_path(arg, "FROM:")
    if split is None:
        return R.R_501_SYNTAX.with_text("Syntax: MAIL FROM:<address> [parameters]")
    if split is BAD_PATH:
        return R.R_501_BAD_SENDER
    path, ptext = split
    params = _params(ptext)
    if params is None:
        return R.R_501_SYNTAX.with_text("Bad MAIL parameter syntax")
    if params and not esmtp:
        return R.R_555_PARAM.with_text("Parameters need EHLO")
    size: int | None = None
    body, smtputf8 = "7BIT", False
    ret = envid = auth = None
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            return R.R_501_SYNTAX.with_text(f"Duplicate {key} parameter")
        seen.add(key)
        if key == "SIZE":  # RFC 1870 6
            if value is None or not value.isdigit() or len(value) > 20:
                return R.R_501_SYNTAX.with_text("SIZE needs a number")
            size = int(value)
        elif key == "BODY":  # RFC 6152 2
            if value is not None and value.upper() == "BINARYMIME":
                # RFC 3030 3: only where BINARYMIME is advertised, and it is not (docs/smtp.md);
                # RFC 5321 4.1.1.11: 555 for a parameter we cannot implement
                return R.R_555_PARAM.with_text("BODY=BINARYMIME not supported")
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                return R.R_501_SYNTAX.with_text("BODY must be 7BIT or 8BITMIME")
            body = value.upper()
        elif key == "SMTPUTF8" and smtputf8_ok:  # RFC 6531 3.4
            if value is not None:
                return R.R_501_SYNTAX.with_text("SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "RET":  # RFC 3461 4.3
            if value is None or value.upper() not in ("FULL", "HDRS"):
                return R.R_501_SYNTAX.with_text("RET must be FULL or HDRS")
            ret = value.upper()
        elif key == "ENVID":  # RFC 3461 4.4
            if not value or len(value) > MAX_ENVID or not _XTEXT.match(value):
                return R.R_501_SYNTAX.with_text("ENVID must be xtext of at most 100 characters")
            envid = value
        elif key == "AUTH":  # RFC 4954 5: accepted; we record, never trust it
            if not value or not (value == "<>" or _XTEXT.match(value)):
                return R.R_501_SYNTAX.with_text("AUTH must be xtext or <>")
            auth = value
        else:
            return R.R_555_PARAM.with_text(f"{key} parameter not recognized")
    path = _unquote_local(_strip_source_route(path))
    if path:
        checked = _check_address(path, smtputf8, R.R_501_BAD_SENDER)
        if isinstance(checked, Reply):
            return checked
    return Mail(path, size, body, smtputf8, ret, envid, auth)


def _parse_rcpt(arg: str, esmtp: bool) -> Rcpt | Reply:
    split = _split_path(arg, "TO:")
    if split is None:
        return R.R_501_SYNTAX.with_text("Syntax: RCPT TO:<address> [parameters]")
    if split is BAD_PATH:
        return R.R_501_BAD_RCPT
    path, ptext = split
    params = _params(ptext)
    if params is None:
        return R.R_501_SYNTAX.with_text("Bad RCPT parameter syntax")
    if params and not esmtp:
        return R.R_555_PARAM.with_text("Parameters need EHLO")
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            return R.R_501_SYNTAX.with_text(f"Duplicate {key} parameter")
        seen.add(key)
        if key == "NOTIFY":  # RFC 3461 4.1
            items = tuple(v.upper() for v in (value or "").split(","))
            ok = {"SUCCESS", "FAILURE", "DELAY"}
            if not value or len(set(items)) != len(items):
                return R.R_501_SYNTAX.with_text("Bad NOTIFY value")
            if items != ("NEVER",) and not all(i in ok for i in items):
                return R.R_501_SYNTAX.with_text("NOTIFY is NEVER or SUCCESS,FAILURE,DELAY")
            notify = items
        elif key == "ORCPT":  # RFC 3461 4.2: addr-type ";" xtext
            atype, semi, xt = (value or "").partition(";")
            if (
                not semi
                or not atype
                or not _XTEXT.match(xt)
                or not xt
                or len(value or "") > MAX_ORCPT
            ):
                return R.R_501_SYNTAX.with_text("ORCPT must be addr-type;xtext")
            orcpt = value
        else:
            return R.R_555_PARAM.with_text(f"{key} parameter not recognized")
    if not path:
        return R.R_501_BAD_RCPT.with_text("Empty recipient address")
    path = _unquote_local(_strip_source_route(path))
    if path.lower() == "postmaster":  # RFC 5321 4.1.1.3: must be accepted without a domain
        return Rcpt("postmaster", notify, orcpt)
    reason = valid_address(path)
    if reason is not None:
        return R.R_501_BAD_RCPT.with_text(f"{R.R_501_BAD_RCPT.text}: {reason}")
    return Rcpt(path, notify, orcpt)


def _parse_bdat(arg: str) -> Bdat | Reply:
    # RFC 3030 2: BDAT SP chunk-size [SP end-marker]
    words = arg.split(" ")
    if not words[0].isdigit() or len(words[0]) > 18 or len(words) > 2:
        return R.R_501_SYNTAX.with_text("Syntax: BDAT size [LAST]")
    if len(words) == 2 and words[1].upper() != "LAST":
        return R.R_501_SYNTAX.with_text("Syntax: BDAT size [LAST]")
    return Bdat(int(words[0]), len(words) == 2)


def _parse_etrn(arg: str) -> Etrn | Reply:
    """RFC 1985 5: ETRN <node>, "@" in front for the node's subdomains too, "#" for a queue
    name (not supported: 458)."""
    if not arg:
        return R.R_501_SYNTAX.with_text("Syntax: ETRN domain")
    if arg.startswith("#"):
        return Reply(
            458,
            "4.5.4",
            f"Unable to queue messages for node {arg[:80]}: queue names are not supported",
        )
    sub = arg.startswith("@")
    node = arg[1:] if sub else arg
    if not _DOMAIN_CHARS.match(node) or len(node) > 255 or ".." in node:
        return R.R_501_SYNTAX.with_text("Syntax: ETRN domain")
    return Etrn(node.lower().rstrip("."), sub)


def _parse_atrn(arg: str) -> Atrn | Reply:
    """RFC 2645 4.1: ATRN [domain *("," domain)]."""
    if not arg:
        return Atrn()
    names = [d.strip().lower().rstrip(".") for d in arg.split(",")]
    if len(names) > 100 or any(
        not d or not _DOMAIN_CHARS.match(d) or ".." in d or len(d) > 255 for d in names
    ):
        return R.R_501_SYNTAX.with_text("Syntax: ATRN [domain[,domain]...]")
    return Atrn(tuple(dict.fromkeys(names)))


def _parse_auth(arg: str) -> Auth | Reply:
    # RFC 4954 4: AUTH mechanism [initial-response]
    words = arg.split(" ")
    if not words[0] or len(words) > 2:
        return R.R_501_SYNTAX.with_text("Syntax: AUTH mechanism [initial-response]")
    return Auth(words[0].upper(), words[1] if len(words) == 2 else None)
