"""The dnspython resolver against a dnslib server on loopback: MX, null MX, NXDOMAIN, NODATA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carteiro.net.dns import DNSResolver
from carteiro.testing.dns import ZoneServer
from carteiro.testing.server import free_port

ZONE = """
b.test.        60 IN MX 10 mx1.b.test.
b.test.        60 IN MX 20 mx2.b.test.
mx1.b.test.    60 IN A 127.0.0.3
mx1.b.test.    60 IN AAAA ::1
mx2.b.test.    60 IN A 127.0.0.4
nomail.test.   60 IN MX 0 .
plain.test.    60 IN A 127.0.0.5
"""


@pytest.fixture
def nameserver() -> Iterator[str]:
    server = ZoneServer(ZONE, servfail=("broken.test",)).start()
    try:
        yield server.address
    finally:
        server.stop()


async def test_mx_records(nameserver: str) -> None:
    r = DNSResolver([nameserver], timeout=2)
    ans = await r.mx("b.test")
    assert ans.status == "ok"
    assert sorted(ans.records) == [(10, "mx1.b.test"), (20, "mx2.b.test")]


async def test_null_mx(nameserver: str) -> None:
    ans = await DNSResolver([nameserver], timeout=2).mx("nomail.test")
    assert ans.records == ((0, "."),)


async def test_nxdomain_nodata_and_servfail(nameserver: str) -> None:
    r = DNSResolver([nameserver], timeout=2)
    assert (await r.mx("nowhere.test")).status == "nxdomain"
    assert (await r.mx("plain.test")).status == "nodata"
    assert (await r.mx("broken.test")).status == "temp"


async def test_addresses_ipv4_and_ipv6(nameserver: str) -> None:
    r = DNSResolver([nameserver], timeout=2)
    ans = await r.addresses("mx1.b.test")
    assert ans.status == "ok" and sorted(ans.addresses) == ["127.0.0.3", "::1"]
    assert (await r.addresses("nowhere.test")).status == "nxdomain"
    assert (await r.addresses("b.test")).status == "nodata"


async def test_unreachable_nameserver_is_temporary() -> None:
    r = DNSResolver([f"127.0.0.1:{free_port()}"], timeout=0.5)
    assert (await r.mx("b.test")).status == "temp"
