"""Parsing a `[transport]` next hop: "host:port" (SMTP), "smtp:host:port", "lmtp:host:port" or
"lmtp:unix:/path" (RFC 2033 delivery to a store or a list manager on this host). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from carteiro.core.address import normalize_domain
from carteiro.core.hostport import parse_hostport

LMTP_DEFAULT_PORT = 24  # RFC 2033 6 (carteiro's own LMTP listener defaults to 2024)


@dataclass(frozen=True, slots=True)
class NextHop:
    protocol: Literal["smtp", "lmtp"]
    host: str = ""
    port: int = 0
    path: str = ""  # a Unix socket (LMTP only)

    @property
    def key(self) -> str:
        where = f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{self.protocol}:{where}"


def parse_nexthop(value: str, default_port: int = 25) -> NextHop:
    """Raises ValueError with the reason."""
    if value.startswith("lmtp:"):
        rest = value[5:]
        if rest.startswith("unix:"):
            path = rest[5:]
            if not path.startswith("/"):
                raise ValueError(f"{value!r}: the socket path must be absolute")
            return NextHop("lmtp", path=path)
        host, port = parse_hostport(rest, LMTP_DEFAULT_PORT)
        if not host:
            raise ValueError(f"{value!r} has no host")
        return NextHop("lmtp", host, port)
    if value.startswith("smtp:"):
        value = value[5:]
    host, port = parse_hostport(value, default_port)
    if not host:
        raise ValueError(f"{value!r} has no host")
    return NextHop("smtp", host, port)


def _key(key: str) -> str:
    if "@" in key:  # one address (Mailman's per-list entries in a shared domain)
        local, _, domain = key.rpartition("@")
        return f"{local.lower()}@{normalize_domain(domain)}"
    if key.startswith("."):
        return "." + normalize_domain(key[1:])
    return normalize_domain(key)


def transport_table(entries: Mapping[str, str]) -> dict[str, str]:
    """`[transport]` with its keys normalized: "user@domain", "domain" or ".parent" (every
    subdomain)."""
    return {_key(k): v for k, v in entries.items()}


def address_entry(table: Mapping[str, str], address: str) -> str | None:
    """The next hop `table` names for this one address: "user+detail@domain", else
    "user@domain" (as Postfix with recipient_delimiter "+": Mailman's dev-bounces+VERP and
    dev-confirm+TOKEN forms go where dev-bounces@ and dev-confirm@ go). Never the domain's."""
    if "@" not in address:
        return None
    key = _key(address)
    if key in table:
        return table[key]
    local, _, domain = key.rpartition("@")
    base = local.partition("+")[0]
    return table.get(f"{base}@{domain}") if base != local else None


def transport_entry(table: Mapping[str, str], domain: str) -> str | None:
    """The next hop `table` (from `transport_table`) names for `domain`: its own entry, else the
    nearest ".parent" one, as Postfix's transport_maps (parent_domain_matches_subdomains)."""
    if domain in table:
        return table[domain]
    labels = domain.split(".")
    for i in range(1, len(labels)):
        parent = "." + ".".join(labels[i:])
        if parent in table:
            return table[parent]
    return None


def is_lmtp_domain(table: Mapping[str, str], domain: str) -> bool:
    """Whether `domain`'s mail is handed over LMTP (a list manager, another store): final
    delivery that this server accepts for anyone, as Postfix's relay_domains to Mailman."""
    entry = transport_entry(table, normalize_domain(domain))
    return entry is not None and entry.startswith("lmtp:")


def is_lmtp_address(table: Mapping[str, str], address: str) -> bool:
    """Whether this address has an `lmtp:` entry of its own (a list handed to Mailman)."""
    entry = address_entry(table, address)
    return entry is not None and entry.startswith("lmtp:")
