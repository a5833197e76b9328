"""Which peers may speak for another client: Dovecot's login_trusted_networks.

A proxy or webmail in front of carteiro connects from its own address; from a trusted peer, the
original client's address it passes (IMAP ID x-originating-ip, RFC 2971) becomes the one the
login throttle and the logs use, and the per-IP connection cap does not apply to the peer.
"""

from __future__ import annotations

import ipaddress
import socket
import weakref
from collections.abc import Callable, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])  # a scoped IPv6 address: drop the zone
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedPeers:
    """The configured networks (`[auth] trusted_networks`), plus single in-process sockets.

    A network trusts every process that can connect from it; `register` trusts one socket
    instead: the source of a connection this process is itself opening (the in-process webmail),
    known by its (address, port). Nobody else can connect from that pair while the socket holds
    it, and the trust ends when the socket is closed (even if nobody withdraws it), so a port
    freed and reused by another process is not trusted.
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )
        self._sockets: dict[tuple[str, int], weakref.ref[socket.socket]] = {}

    def trusts(self, ip: str, port: int) -> bool:
        addr = _address(ip)
        if addr is None:
            return False
        ref = self._sockets.get((str(addr), port))
        if ref is not None:
            sock = ref()
            if sock is not None and sock.fileno() != -1:
                return True
            del self._sockets[(str(addr), port)]
        return any(addr in net for net in self.networks)

    def register(self, sock: socket.socket) -> Callable[[], None]:
        """Trust connections from this bound socket's address and port until the returned
        function is called or the socket is closed."""
        name = sock.getsockname()
        addr = _address(str(name[0]))
        if addr is None or not name[1]:
            raise ValueError(f"not a bound IP socket: {name!r}")
        key = (str(addr), int(name[1]))

        def gone(r: weakref.ref[socket.socket]) -> None:
            if self._sockets.get(key) is r:
                del self._sockets[key]

        ref = weakref.ref(sock, gone)
        self._sockets[key] = ref

        return lambda: gone(ref)


def originating_address(value: str | None) -> str | None:
    """An ID x-originating-ip value as a canonical address, or None when it is not one (RFC 2971
    values are free text: anything else is ignored, never used as a throttle key)."""
    if not value or len(value) > 64:
        return None
    addr = _address(value.strip().strip("[]"))
    return None if addr is None else str(addr)


def originating_port(value: str | None) -> int | None:
    if not value or not value.isascii() or not value.isdigit() or len(value) > 5:
        return None
    port = int(value)
    return port if 0 < port < 65536 else None
