"""E-mail address helpers (RFC 5321 4.1.2 paths, RFC 5322 addr-spec, RFC 6531 UTF-8, IDNA domains).

Pure functions; no I/O. An account's canonical form is `local@domain` with both parts lowercased:
carteiro treats local parts case-insensitively (RFC 5321 2.4 allows it for our own domains).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2
MAX_PATH = 256  # RFC 5321 4.5.3.1.3

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$")
_QUOTED = re.compile(r'^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"$')
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)$")
_ADDR_LITERAL = re.compile(r"^\[(?:IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]$")


class AddressError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str  # lowercased; Unicode (U-label) form

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def canonical(self) -> str:
        return f"{self.local.lower()}@{self.domain}"

    @property
    def is_utf8(self) -> bool:
        return not str(self).isascii()


def normalize_domain(domain: str) -> str:
    """Lowercase, strip a trailing dot, and convert A-labels (xn--) to Unicode for comparison."""
    d = domain.strip().rstrip(".").lower()
    if "xn--" in d:
        try:
            d = d.encode("ascii").decode("idna")
        except UnicodeError:
            pass
    return d


def domain_to_ascii(domain: str) -> str:
    """Unicode domain -> A-label form for DNS; raises AddressError."""
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise AddressError(f"bad domain {domain!r}: {e}") from None


def valid_domain(domain: str) -> bool:
    if _ADDR_LITERAL.match(domain):
        return True
    if not domain or len(domain) > MAX_DOMAIN:
        return False
    return all(_LABEL.match(label) for label in domain.rstrip(".").split("."))


def check_domain(text: str) -> str:
    """A domain name an operator typed (config, `domain add`, `init --domain`): its normalised
    Unicode form, or AddressError with the reason. Stricter than `valid_domain`: no address
    literal, every label LDH or a valid IDNA U-label (RFC 5890 2.3.2.1, UTS #46 mapping), and the
    whole name fits DNS once converted to A-labels (RFC 1035 2.3.4)."""
    import idna

    d = text.strip().rstrip(".")
    if not d:
        raise AddressError("empty domain name")
    if any(c.isspace() for c in d):
        raise AddressError(f"{text!r} is not a domain name: it contains a space")
    if "@" in d or "/" in d or "[" in d:
        raise AddressError(f"{text!r} is not a domain name (give only the part after @)")
    for label in d.split("."):
        if not label:
            raise AddressError(f"{text!r} is not a domain name: empty label (two dots in a row?)")
        if label.startswith("-") or label.endswith("-"):
            raise AddressError(f"{text!r} is not a domain name: a label starts or ends with '-'")
    try:
        ascii_form = idna.encode(d, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise AddressError(f"{text!r} is not a valid (IDNA) domain name: {e}") from None
    if len(ascii_form) > 253:
        raise AddressError(f"{text!r} is too long for DNS (253 octets at most)")
    if not valid_domain(ascii_form):
        raise AddressError(f"{text!r} is not a domain name")
    try:
        return normalize_domain(idna.decode(ascii_form))
    except (idna.IDNAError, UnicodeError) as e:  # pragma: no cover - encode succeeded
        raise AddressError(f"{text!r} is not a valid (IDNA) domain name: {e}") from None


def parse_address(text: str, allow_utf8: bool = True, max_local: int = MAX_LOCAL) -> Address:
    """Parse `local@domain` (no angle brackets). Raises AddressError with a reason. `max_local`:
    the SMTP envelope takes longer local parts than RFC 5321 4.5.3.1.1's 64 octets (SRS and VERP
    addresses of forwarders and lists exceed it; 4.5.3.1 asks for no limits where possible)."""
    if not text:
        raise AddressError("empty address")
    if len(text) > MAX_PATH:
        raise AddressError("address too long")
    if not allow_utf8 and not text.isascii():
        raise AddressError("non-ASCII address without SMTPUTF8")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise AddressError("control character in address")
    local, at, domain = text.rpartition("@")
    if not at:
        raise AddressError("address has no domain")
    if not local:
        raise AddressError("address has an empty local part")
    if len(local.encode()) > max_local:
        raise AddressError("local part too long")
    if not (_DOT_ATOM.match(local) or _QUOTED.match(local)):
        raise AddressError("bad local part")
    if not valid_domain(domain):
        raise AddressError(f"bad domain {domain!r}")
    return Address(local, normalize_domain(domain))


def addr_spec(local: str, domain: str) -> str:
    """`local@domain` as RFC 5322 writes it: a local part that is not a dot-atom is quoted
    (`"a b"@example.com`)."""
    if not _DOT_ATOM.match(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"


def canonical(text: str) -> str:
    """`Alice@Example.TEST` -> `alice@example.test`; raises AddressError."""
    return parse_address(text).canonical


def split_detail(local: str, separator: str = "+") -> tuple[str, str]:
    """Plus-addressing (RFC 5233 terms): `alice+tag` -> (`alice`, `tag`)."""
    base, sep, detail = local.partition(separator)
    if not sep or not base:
        return local, ""
    return base, detail
