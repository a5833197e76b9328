"""TrustedPeers and the ID x-originating-* values (carteiro/net/trust.py)."""

from __future__ import annotations

import gc
import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.net.trust import TrustedPeers, originating_address, originating_port


def test_networks_match_addresses_and_mapped_ipv4() -> None:
    t = TrustedPeers(["10.0.0.0/8", "2001:db8::/64", "192.0.2.7"])
    assert t.trusts("10.9.8.7", 1234) and t.trusts("::ffff:10.1.1.1", 1)
    assert t.trusts("2001:db8::42", 5) and t.trusts("192.0.2.7", 9)
    assert not t.trusts("192.0.2.8", 9) and not t.trusts("2001:db8:0:1::1", 5)
    assert not t.trusts("", 0) and not t.trusts("junk", 1)
    assert not TrustedPeers().trusts("127.0.0.1", 1)  # the default trusts nobody


def test_a_registered_socket_is_trusted_while_it_lives() -> None:
    t = TrustedPeers()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    ip, port = sock.getsockname()
    withdraw = t.register(sock)
    assert t.trusts(ip, port)
    assert not t.trusts(ip, port + 1 if port < 65535 else port - 1)  # that socket only
    sock.close()  # closed without withdrawing: the port may go to anyone now
    assert not t.trusts(ip, port)
    withdraw()  # harmless afterwards

    again = socket.socket()
    again.bind(("127.0.0.1", 0))
    name = again.getsockname()
    t.register(again)
    del again
    gc.collect()
    assert not t.trusts(*name) and not t._sockets  # a dropped socket leaves nothing behind


def test_register_refuses_an_unbound_socket() -> None:
    with socket.socket() as sock, pytest.raises(ValueError):
        TrustedPeers().register(sock)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 2001:DB8::1 ", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("", None),
        (None, None),
        ("unknown", None),
        ("192.0.2.1:8080", None),
        ("1" * 100, None),
    ],
)
def test_originating_address(value: str | None, expected: str | None) -> None:
    assert originating_address(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("443", 443), ("65535", 65535), ("0", None), ("65536", None), ("-1", None), ("٣", None)],
)
def test_originating_port(value: str, expected: int | None) -> None:
    assert originating_port(value) == expected


@given(st.text(max_size=200))
def test_any_id_value_is_an_address_or_nothing(value: str) -> None:
    """RFC 2971 values are free text from the peer: never an exception, never a key that is not
    a canonical IP address (what the throttle and the logs then use)."""
    got = originating_address(value)
    assert got is None or str(ipaddress.ip_address(got)) == got
    port = originating_port(value)
    assert port is None or 0 < port < 65536
