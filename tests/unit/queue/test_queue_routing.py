"""Routing: MX order (RFC 5321 5.1), implicit MX, null MX (RFC 7505), overrides, local domains."""

from __future__ import annotations

import random
from collections import Counter

from queue_fakes import FakeResolver

from carteiro.queue.routing import AddressAnswer, MXAnswer, Router, RoutingConfig
from carteiro.queue.transport import Hop


def router(
    resolver: FakeResolver, seed: int = 1, local: tuple[str, ...] = ("a.test",), **cfg: object
) -> Router:
    config = RoutingConfig(hostname="mx.a.test", **cfg)  # type: ignore[arg-type]
    return Router(resolver, config, is_local=lambda d: d in local, rng=random.Random(seed))


async def test_lowest_preference_first() -> None:
    r = FakeResolver()
    r.mx_for("b.test", (20, "backup.b.test"), (10, "mx.b.test"))
    r.host("mx.b.test", "192.0.2.1")
    r.host("backup.b.test", "192.0.2.2")
    rt = router(r)
    route = await rt.route(rt.destination("b.test"))
    assert route.error is None
    assert [(h.host, h.address, h.port) for h in route.hops] == [
        ("mx.b.test", "192.0.2.1", 25),
        ("backup.b.test", "192.0.2.2", 25),
    ]


async def test_random_order_among_equal_preferences() -> None:
    r = FakeResolver()
    r.mx_for(
        "b.test", (10, "mx1.b.test"), (10, "mx2.b.test"), (10, "mx3.b.test"), (5, "first.b.test")
    )
    for i, h in enumerate(("mx1.b.test", "mx2.b.test", "mx3.b.test", "first.b.test")):
        r.host(h, f"192.0.2.{i + 1}")
    firsts: Counter[str] = Counter()
    for seed in range(60):
        rt = router(r, seed=seed)
        route = await rt.route(rt.destination("b.test"))
        hosts = [h.host for h in route.hops]
        assert hosts[0] == "first.b.test"
        assert sorted(hosts[1:]) == ["mx1.b.test", "mx2.b.test", "mx3.b.test"]
        firsts[hosts[1]] += 1
    assert set(firsts) == {"mx1.b.test", "mx2.b.test", "mx3.b.test"}


async def test_prefers_a_host_with_an_idle_connection_among_equals() -> None:
    r = FakeResolver()
    r.mx_for("b.test", (10, "mx1.b.test"), (10, "mx2.b.test"))
    r.host("mx1.b.test", "192.0.2.1")
    r.host("mx2.b.test", "192.0.2.2")
    for seed in range(10):
        rt = Router(
            r,
            RoutingConfig(hostname="mx.a.test"),
            is_local=lambda d: False,
            rng=random.Random(seed),
            prefer=lambda h: h.host == "mx2.b.test",
        )
        route = await rt.route(rt.destination("b.test"))
        assert route.hops[0].host == "mx2.b.test"


async def test_no_mx_falls_back_to_a_and_aaaa() -> None:
    r = FakeResolver()
    r.host("b.test", "192.0.2.7", "2001:db8::7", "192.0.2.8")
    rt = router(r)
    route = await rt.route(rt.destination("b.test"))
    # RFC 5321 5.1 implicit MX; IPv6 and IPv4 alternate, IPv6 first
    assert [h.address for h in route.hops] == ["2001:db8::7", "192.0.2.7", "192.0.2.8"]
    assert all(h.host == "b.test" for h in route.hops)


async def test_inet_protocols_filter() -> None:
    r = FakeResolver()
    r.host("b.test", "192.0.2.7", "2001:db8::7")
    for inet, want in (("ipv4", ["192.0.2.7"]), ("ipv6", ["2001:db8::7"])):
        rt = router(r, inet_protocols=inet)
        route = await rt.route(rt.destination("b.test"))
        assert [h.address for h in route.hops] == want


async def test_null_mx_fails_permanently() -> None:
    r = FakeResolver()
    r.mx_for("b.test", (0, "."))
    rt = router(r)
    route = await rt.route(rt.destination("b.test"))
    assert route.hops == ()
    assert route.error is not None
    assert (route.error.code, route.error.status) == (556, "5.1.10")


async def test_nxdomain_bounces_and_servfail_retries() -> None:
    r = FakeResolver()
    rt = router(r)
    route = await rt.route(rt.destination("nowhere.test"))
    assert route.error is not None and route.error.permanent and route.error.status == "5.1.2"
    r.mx_answers["flaky.test"] = MXAnswer("temp", (), "SERVFAIL")
    route = await rt.route(rt.destination("flaky.test"))
    assert route.error is not None and route.error.temporary and route.error.status == "4.4.3"


async def test_mx_hosts_without_addresses() -> None:
    r = FakeResolver()
    r.mx_for("b.test", (10, "gone.b.test"))
    rt = router(r)
    route = await rt.route(rt.destination("b.test"))
    assert route.error is not None and route.error.status == "5.4.4"
    r.hosts["gone.b.test"] = AddressAnswer("temp", (), "timeout")
    route = await rt.route(rt.destination("b.test"))
    assert route.error is not None and route.error.temporary


async def test_our_own_name_in_the_mx_list_drops_it_and_worse() -> None:
    r = FakeResolver()
    r.mx_for("b.test", (10, "primary.b.test"), (20, "mx.a.test"), (30, "worse.b.test"))
    r.host("primary.b.test", "192.0.2.1")
    r.host("worse.b.test", "192.0.2.3")
    rt = router(r)
    route = await rt.route(rt.destination("b.test"))
    assert [h.host for h in route.hops] == ["primary.b.test"]
    r.mx_for("loop.test", (10, "mx.a.test"))
    route = await rt.route(rt.destination("loop.test"))
    assert route.error is not None and route.error.status == "5.4.6"


async def test_local_domains_and_overrides() -> None:
    r = FakeResolver()
    rt = router(
        r,
        transport={"b.test": "127.0.0.3:2525", ".c.test": "127.0.0.4"},
        remote_port=2526,
    )
    assert rt.destination("a.test").kind == "local"
    assert rt.destination("A.TEST").kind == "local"
    d = rt.destination("b.test")
    assert (d.kind, d.host, d.port) == ("transport", "127.0.0.3", 2525)
    d = rt.destination("x.c.test")
    assert (d.kind, d.host, d.port) == ("transport", "127.0.0.4", 2526)
    route = await rt.route(d)
    assert [h.address for h in route.hops] == ["127.0.0.4"]
    assert r.queries == []  # no DNS for an IP override
    assert rt.destination("c.test").kind == "mx"


async def test_smarthost_takes_everything_not_local() -> None:
    r = FakeResolver()
    r.host("relay.example", "192.0.2.9")
    rt = router(
        r,
        smarthost="relay.example:587",
        relay_tls="starttls",
        relay_username="u",
        relay_password="p",
    )
    assert rt.destination("a.test").kind == "local"
    d1, d2 = rt.destination("b.test"), rt.destination("c.test")
    assert d1 == d2 and d1.kind == "smarthost"
    route = await rt.route(d1)
    assert route.hops == (Hop("relay.example", "192.0.2.9", 587, "starttls", False, "u", "p"),)
    assert ("MX", "b.test") not in r.queries


async def test_address_literal() -> None:
    rt = router(FakeResolver())
    d = rt.destination("[192.0.2.5]")
    route = await rt.route(d)
    assert [h.address for h in route.hops] == ["192.0.2.5"]
    route = await rt.route(rt.destination("[IPv6:2001:db8::1]"))
    assert [h.address for h in route.hops] == ["2001:db8::1"]
    route = await rt.route(rt.destination("[bogus]"))
    assert route.error is not None and route.error.permanent


async def test_verified_tls_policy_for_mx_hosts() -> None:
    r = FakeResolver()
    r.host("b.test", "192.0.2.7")
    rt = router(r, tls_verify=True)
    route = await rt.route(rt.destination("b.test"))
    assert route.hops[0].tls == "starttls" and route.hops[0].verify


def test_a_domains_destination_is_asked_of_the_directory_once_a_second(
    monkeypatch: object,
) -> None:
    """is_local and is_held are directory queries: not made for every message (issue 10), but
    a domain added or held meanwhile counts within DEST_TTL."""
    import pytest

    from carteiro.queue import routing

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    now = [1000.0]
    monkeypatch.setattr(routing.time, "monotonic", lambda: now[0])
    local: set[str] = set()
    held: set[str] = set()
    asked: list[str] = []

    def is_local(d: str) -> bool:
        asked.append(d)
        return d in local

    rt = Router(
        FakeResolver(),
        RoutingConfig(hostname="mx.a.test", transport={"b.test": "127.0.0.1:9"}),
        is_local=is_local,
        is_held=lambda d: d in held,
    )
    first = rt.destination_for("bob@b.test")
    assert first.kind == "transport" and first.port == 9
    assert rt.destination_for("carol@B.test.").key == first.key
    assert rt.destination_for("bob@b.test") is first
    assert asked == ["b.test", "b.test"]  # "B.test." once, "b.test" once
    local.add("b.test")
    now[0] += 0.5
    assert rt.destination_for("bob@b.test").kind == "transport"  # within the second
    now[0] += 0.6
    assert rt.destination_for("bob@b.test").kind == "local"
    local.clear()
    held.add("b.test")
    now[0] += 1.1
    assert rt.destination_for("bob@b.test").kind == "held"
    assert rt.destination_for("bob@b.test", release=True).kind == "transport"  # ETRN: asked now
