"""Parsing a `[transport]` next hop: "host:port" (SMTP), "smtp:host:port", "lmtp:host:port" or
"lmtp:unix:/path" (RFC 2033 delivery to a store or a list manager on this host). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
