"""MTA-STS (RFC 8461): the TXT record, the policy text, MX matching, discovery with its cache, and
the router holding MX delivery to an enforce policy."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from queue_fakes import FakeResolver

from carteiro.queue.mta_sts import (
    FAILED_RETRY,
    TXT_MEMO,
    Policies,
    Policy,
    PolicyError,
    mx_matches,
    parse_policy,
    parse_txt,
    valid_pattern,
)
from carteiro.queue.routing import Router, RoutingConfig

# RFC 8461 3.2's example policy, CRLF as served
RFC_POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "mx: backupmx.example.com\r\nmax_age: 604800\r\n"
)

# ---- the TXT record (3.1) -----------------------------------------------------------------------


def test_txt_record_gives_its_id() -> None:
    assert parse_txt(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert parse_txt(["v=STSv1;id=abc123"]) == "abc123"
    assert parse_txt(["v=STSv1; id=abc; ext=whatever;"]) == "abc"


def test_txt_records_of_other_kinds_are_ignored() -> None:
    assert parse_txt(["v=spf1 -all", "v=STSv1; id=x1;", "hello"]) == "x1"


@pytest.mark.parametrize(
    "records",
    [
        [],
        ["v=spf1 -all"],
        ["v=STSv1; id=a;", "v=STSv1; id=b;"],  # two: no policy (3.1)
        ["v=STSv1;"],  # no id
        ["v=STSv1; id=;"],
        ["v=STSv1; id=has-dash;"],  # id is alphanumeric only
        ["v=STSv1; id=" + "a" * 33 + ";"],  # at most 32
        ["v=STSv10; id=a;"],
        ["v=STSv1; id"],
    ],
)
def test_txt_records_that_announce_no_policy(records: list[str]) -> None:
    assert parse_txt(records) is None


# ---- the policy (3.2) ---------------------------------------------------------------------------


def test_rfc_example_policy() -> None:
    p = parse_policy(RFC_POLICY, "id1", 1000.0)
    assert p == Policy(
        "id1",
        "enforce",
        ("mail.example.com", "*.example.net", "backupmx.example.com"),
        604800,
        1000.0,
    )
    assert p.expires == 1000.0 + 604800


def test_policy_with_lf_unknown_keys_and_blank_lines() -> None:
    text = "version: STSv1\nmode: testing\n\nfoo: bar\nmx: MX.Example.ORG.\nmax_age: 86400\n"
    p = parse_policy(text, "i", 0.0)
    assert (p.mode, p.mx, p.max_age) == ("testing", ("mx.example.org",), 86400)


def test_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 60\n", "i", 0.0).mode == "none"


@pytest.mark.parametrize(
    "text",
    [
        "mode: enforce\nmx: a.test\nmax_age: 60\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 60\n",
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmax_age: 60\n",  # enforce without mx
        "version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",  # over a year
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -5\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n",
        "version: STSv1\nmode: enforce\nmx: bad_host!\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: -a.test\nmax_age: 60\n",
        "<html>not found</html>",
    ],
)
def test_invalid_policies(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text, "i", 0.0)


def test_hostile_patterns_are_checked_in_linear_time() -> None:
    for value in ("a" * 100_000, "a." * 50_000, "*." + "-" * 100_000, "a-" * 50_000 + "!"):
        t = time.perf_counter()
        assert not valid_pattern(value)
        assert time.perf_counter() - t < 0.5
    t = time.perf_counter()
    with pytest.raises(PolicyError):
        parse_policy("version: STSv1\nmode: enforce\n" + "mx: " + "a" * 60_000 + "\n", "i", 0.0)
    assert time.perf_counter() - t < 0.5


# ---- MX matching (4.1) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "match"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.net", "mx1.example.net", True),
        ("*.example.net", "example.net", False),  # the "*" is one label, not none
        ("*.example.net", "a.b.example.net", False),  # nor two
        ("*.example.net", ".example.net", False),
        ("*.example.net", "mx1.example.org", False),
    ],
)
def test_mx_matching(pattern: str, host: str, match: bool) -> None:
    assert mx_matches(pattern, host) is match


# ---- discovery and cache (5.1) ------------------------------------------------------------------


class Net:
    """The TXT answers and policy bodies a domain's DNS and web server give."""

    def __init__(self) -> None:
        self.txt: dict[str, tuple[str, list[str]]] = {}
        self.bodies: dict[str, str | Exception] = {}
        self.fetches: list[str] = []
        self.lookups = 0
        self.now = 1_000_000.0
        self.delay = 0.0

    async def lookup(self, name: str) -> tuple[str, list[str]]:
        self.lookups += 1
        return self.txt.get(name, ("nxdomain", []))

    def dns_says(self, answer: tuple[str, list[str]], name: str = "_mta-sts.b.test") -> None:
        """A new TXT answer, seen once the last one's memo (TXT_MEMO seconds) has run out."""
        self.txt[name] = answer
        self.now += TXT_MEMO + 1

    async def fetch(self, domain: str) -> str:
        self.fetches.append(domain)
        if self.delay:
            await asyncio.sleep(self.delay)
        body = self.bodies.get(domain, OSError("connection refused"))
        if isinstance(body, Exception):
            raise body
        return body

    def clock(self) -> float:
        return self.now

    def policies(self, path: Path | None = None) -> Policies:
        return Policies(self.lookup, self.fetch, path, clock=self.clock)


def enforce(mx: str = "mx.b.test", age: int = 86400) -> str:
    return f"version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: {age}\n"


async def test_no_txt_record_no_policy_and_no_fetch() -> None:
    net = Net()
    assert await net.policies().policy("b.test") is None
    assert net.fetches == []


async def test_policy_fetched_once_then_cached_while_the_id_stays() -> None:
    net = Net()
    net.txt["_mta-sts.b.test"] = ("ok", ["v=STSv1; id=one;"])
    net.bodies["b.test"] = enforce()
    pol = net.policies()
    p = await pol.policy("B.test.")
    assert p is not None and (p.mode, p.mx, p.id) == ("enforce", ("mx.b.test",), "one")
    assert await pol.policy("b.test") == p
    assert net.fetches == ["b.test"]
    # a new id: fetched again
    net.dns_says(("ok", ["v=STSv1; id=two;"]))
    net.bodies["b.test"] = enforce("*.b.test")
    p2 = await pol.policy("b.test")
    assert p2 is not None and (p2.mx, p2.id) == (("*.b.test",), "two")
    assert net.fetches == ["b.test", "b.test"]


async def test_cached_policy_outlives_dns_and_web_failures_until_it_expires() -> None:
    """5.1: an attacker who blocks the TXT lookup or the web server must not switch the policy
    off; an expired policy is gone."""
    net = Net()
    net.txt["_mta-sts.b.test"] = ("ok", ["v=STSv1; id=one;"])
    net.bodies["b.test"] = enforce(age=3600)
    pol = net.policies()
    assert await pol.policy("b.test") is not None
    for answer in (("nxdomain", []), ("temp", []), ("ok", ["v=STSv1; id=bad id;"])):
        net.dns_says(answer)  # type: ignore[arg-type]
        assert (await pol.policy("b.test")) is not None, answer
    # a new id whose policy cannot be fetched: the old one stays
    net.dns_says(("ok", ["v=STSv1; id=two;"]))
    net.bodies["b.test"] = OSError("connection refused")
    p = await pol.policy("b.test")
    assert p is not None and p.id == "one"
    net.now += 3601
    net.dns_says(("temp", []))
    assert await pol.policy("b.test") is None


async def test_the_txt_answer_is_reused_for_a_minute() -> None:
    net = Net()
    pol = net.policies()
    for _ in range(5):
        assert await pol.policy("b.test") is None
    assert net.lookups == 1
    net.dns_says(("ok", ["v=STSv1; id=one;"]))
    net.bodies["b.test"] = enforce()
    assert await pol.policy("b.test") is not None
    assert net.lookups == 2
    # a DNS failure is not kept: the next attempt asks again
    net.dns_says(("temp", []))
    await pol.policy("b.test")
    await pol.policy("b.test")
    assert net.lookups == 4


async def test_failed_fetch_is_not_retried_at_every_delivery() -> None:
    net = Net()
    net.txt["_mta-sts.b.test"] = ("ok", ["v=STSv1; id=one;"])
    net.bodies["b.test"] = "version: STSv1\nmode: enforce\n"  # invalid: no mx, no max_age
    pol = net.policies()
    assert await pol.policy("b.test") is None
    assert await pol.policy("b.test") is None
    assert net.fetches == ["b.test"]
    net.now += FAILED_RETRY + 1
    net.bodies["b.test"] = enforce()
    assert await pol.policy("b.test") is not None
    assert net.fetches == ["b.test", "b.test"]


async def test_mode_none_is_no_policy() -> None:
    net = Net()
    net.txt["_mta-sts.b.test"] = ("ok", ["v=STSv1; id=one;"])
    net.bodies["b.test"] = "version: STSv1\nmode: none\nmax_age: 86400\n"
    pol = net.policies()
    assert await pol.policy("b.test") is None
    assert await pol.policy("b.test") is None
    assert net.fetches == ["b.test"]  # (but it is cached: a domain stepping down is remembered)


async def test_parallel_deliveries_share_one_fetch() -> None:
    net = Net()
    net.txt["_mta-sts.b.test"] = ("ok", ["v=STSv1; id=one;"])
    net.bodies["b.test"] = enforce()
    net.delay = 0.05
    pol = net.policies()
    got = await asyncio.gather(*(pol.policy("b.test") for _ in range(10)))
    assert all(p is not None and p.id == "one" for p in got)
    assert net.fetches == ["b.test"]


async def test_cache_survives_a_restart(tmp_path: Path) -> None:
    net = Net()
    net.txt["_mta-sts.b.test"] = ("ok", ["v=STSv1; id=one;"])
    net.bodies["b.test"] = enforce()
    path = tmp_path / "queue" / "mta-sts.json"
    assert await net.policies(path).policy("b.test") is not None
    # restarted, and the policy's web server is down: the cached policy is in force
    net.bodies["b.test"] = OSError("down")
    net.txt["_mta-sts.b.test"] = ("temp", [])
    p = await net.policies(path).policy("b.test")
    assert p is not None and p.mx == ("mx.b.test",)
    assert net.fetches == ["b.test"]


async def test_unreadable_cache_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "mta-sts.json"
    path.write_text("{not json")
    net = Net()
    assert await net.policies(path).policy("b.test") is None


# ---- the router under a policy (4.2) ------------------------------------------------------------


class FixedPolicies:
    def __init__(self, policy: Policy | None) -> None:
        self.p = policy
        self.asked: list[str] = []

    async def policy(self, domain: str) -> Policy | None:
        self.asked.append(domain)
        return self.p


def sts_router(resolver: FakeResolver, policy: Policy | None, **cfg: object) -> Router:
    config = RoutingConfig(hostname="mx.a.test", **cfg)  # type: ignore[arg-type]
    return Router(
        resolver,
        config,
        is_local=lambda d: d == "a.test",
        rng=random.Random(1),
        sts=FixedPolicies(policy),  # type: ignore[arg-type]
    )


def resolver_b() -> FakeResolver:
    r = FakeResolver()
    r.mx_for("b.test", (10, "mx.b.test"), (20, "rogue.evil.test"))
    r.host("mx.b.test", "192.0.2.1")
    r.host("rogue.evil.test", "192.0.2.66")
    return r


async def test_enforce_keeps_named_hosts_only_and_requires_verified_tls() -> None:
    pol = Policy("i", "enforce", ("mx.b.test",), 86400, 0.0)
    rt = sts_router(resolver_b(), pol, cafile="/ca.pem")
    route = await rt.route(rt.destination("b.test"))
    assert route.error is None
    assert [(h.host, h.tls, h.verify, h.cafile) for h in route.hops] == [
        ("mx.b.test", "starttls", True, "/ca.pem")
    ]
    assert route.hops[0].required_by == "MTA-STS policy of b.test"


async def test_enforce_with_no_named_host_defers_never_bounces() -> None:
    pol = Policy("i", "enforce", ("*.elsewhere.test",), 86400, 0.0)
    rt = sts_router(resolver_b(), pol)
    route = await rt.route(rt.destination("b.test"))
    assert not route.hops
    assert route.error is not None and route.error.code == 451
    assert route.error.status == "4.7.5" and "MTA-STS" in route.error.text


async def test_testing_mode_delivers_as_before() -> None:
    pol = Policy("i", "testing", ("mx.b.test",), 86400, 0.0)
    rt = sts_router(resolver_b(), pol)
    route = await rt.route(rt.destination("b.test"))
    assert [(h.host, h.tls, h.verify, h.required_by) for h in route.hops] == [
        ("mx.b.test", "opportunistic", False, ""),
        ("rogue.evil.test", "opportunistic", False, ""),
    ]


async def test_implicit_mx_is_matched_as_the_domain_itself() -> None:
    r = FakeResolver()
    r.host("b.test", "192.0.2.7")  # no MX: the domain is its own (implicit) MX
    rt = sts_router(r, Policy("i", "enforce", ("b.test",), 86400, 0.0))
    route = await rt.route(rt.destination("b.test"))
    assert [(h.host, h.verify) for h in route.hops] == [("b.test", True)]
    rt = sts_router(r, Policy("i", "enforce", ("mx.b.test",), 86400, 0.0))
    route = await rt.route(rt.destination("b.test"))
    assert route.error is not None and route.error.status == "4.7.5"


async def test_no_policy_and_other_destinations_are_untouched() -> None:
    r = resolver_b()
    rt = sts_router(r, None)
    route = await rt.route(rt.destination("b.test"))
    assert [h.host for h in route.hops] == ["mx.b.test", "rogue.evil.test"]
    # a smarthost or a [transport] entry is not MX delivery: no policy is asked for
    r.host("relay.test", "192.0.2.9")
    pol = Policy("i", "enforce", ("nothing.test",), 86400, 0.0)
    rt = sts_router(r, pol, smarthost="relay.test:587")
    route = await rt.route(rt.destination("b.test"))
    assert [h.host for h in route.hops] == ["relay.test"]
    assert rt.sts.asked == []  # type: ignore[union-attr]


async def test_a_mismatch_is_logged_once_an_hour_not_at_every_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pol = Policy("i", "testing", ("mx.b.test",), 86400, 0.0)
    rt = sts_router(resolver_b(), pol)
    with caplog.at_level("WARNING", logger="carteiro.queue.routing"):
        for _ in range(5):
            await rt.route(rt.destination("b.test"))
    lines = [r.getMessage() for r in caplog.records if "mta-sts" in r.getMessage()]
    assert lines == [
        "mta-sts: b.test (testing): MX rogue.evil.test not in its policy (mx: mx.b.test);"
        " used anyway (testing)"
    ]
