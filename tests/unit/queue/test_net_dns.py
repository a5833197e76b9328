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


async def test_answers_are_remembered_until_they_expire(
    nameserver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue asks the same names at every delivery attempt: an answer is kept for its TTL
    (a denial for a second, a failure not at all) without going through dnspython again."""
    import time

    import carteiro.net.dns as netdns

    r = DNSResolver([nameserver], timeout=2)
    asked: list[tuple[str, str]] = []
    real = r._resolve

    async def counting(name: str, rdtype: str):  # type: ignore[no-untyped-def]
        asked.append((name, rdtype))
        return await real(name, rdtype)

    monkeypatch.setattr(r, "_resolve", counting)
    for _ in range(3):
        assert (await r.mx("b.test")).status == "ok"
        assert (await r.addresses("mx2.b.test")).addresses == ("127.0.0.4",)  # AAAA: none
        assert (await r.mx("nowhere.test")).status == "nxdomain"
        assert (await r.mx("broken.test")).status == "temp"
    assert asked.count(("b.test", "MX")) == 1
    assert asked.count(("mx2.b.test", "AAAA")) == 1
    assert asked.count(("nowhere.test", "MX")) == 1
    assert asked.count(("broken.test", "MX")) == 3  # a failure is asked again
    # a second later the denials are asked again; the 60 s answers are still good
    now = time.time() + netdns.NEGATIVE_MEMO + 0.5
    monkeypatch.setattr(netdns.time, "time", lambda: now)
    await r.mx("b.test")
    await r.mx("nowhere.test")
    assert asked.count(("b.test", "MX")) == 1
    assert asked.count(("nowhere.test", "MX")) == 2
