"""SPF check_host() (RFC 7208) over pyspf with our resolver: the RFC's Appendix A examples, the
processing limits of 4.6.4, every result, and DNS failure as temperror."""

from __future__ import annotations

import pytest

from carteiro.mailauth.lookup import NoResolver
from carteiro.mailauth.spf import check_host
from carteiro.testing.dns import StaticResolver

# RFC 7208 Appendix A: the DNS data the examples use
APPENDIX_A = """
example.com.          60 IN MX 10 mail-a.example.com.
example.com.          60 IN MX 20 mail-b.example.com.
example.com.          60 IN A 192.0.2.10
example.com.          60 IN A 192.0.2.11
amy.example.com.      60 IN A 192.0.2.65
bob.example.com.      60 IN A 192.0.2.66
mail-a.example.com.   60 IN A 192.0.2.129
mail-b.example.com.   60 IN A 192.0.2.130
www.example.com.      60 IN CNAME example.com.
example.org.          60 IN MX 10 mail-c.example.org.
mail-c.example.org.   60 IN A 192.0.2.140
10.2.0.192.in-addr.arpa.  60 IN PTR example.com.
11.2.0.192.in-addr.arpa.  60 IN PTR example.com.
65.2.0.192.in-addr.arpa.  60 IN PTR amy.example.com.
66.2.0.192.in-addr.arpa.  60 IN PTR bob.example.com.
129.2.0.192.in-addr.arpa. 60 IN PTR mail-a.example.com.
130.2.0.192.in-addr.arpa. 60 IN PTR mail-b.example.com.
140.2.0.192.in-addr.arpa. 60 IN PTR mail-c.example.org.
10.0.0.10.in-addr.arpa.   60 IN PTR bob.example.com.
"""

HOSTS = ["192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66", "192.0.2.129", "192.0.2.130",
         "192.0.2.131", "192.0.2.140", "192.0.2.142", "10.0.0.10", "192.0.2.200"]  # fmt: skip

# RFC 7208 A.1: each record, and the hosts it permits (all others get the -all: fail)
EXAMPLES = [
    ("v=spf1 +all", set(HOSTS)),
    ("v=spf1 a -all", {"192.0.2.10", "192.0.2.11"}),
    ("v=spf1 a:example.org -all", set()),
    ("v=spf1 mx -all", {"192.0.2.129", "192.0.2.130"}),
    ("v=spf1 mx:example.org -all", {"192.0.2.140"}),
    ("v=spf1 mx mx:example.org -all", {"192.0.2.129", "192.0.2.130", "192.0.2.140"}),
    (
        "v=spf1 mx/30 mx:example.org/30 -all",
        {"192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.142"},
    ),
    (
        "v=spf1 ptr -all",
        {"192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66", "192.0.2.129", "192.0.2.130"},
    ),
    (
        "v=spf1 ip4:192.0.2.128/28 -all",
        {"192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.142"},
    ),
]


@pytest.mark.parametrize(("record", "permitted"), EXAMPLES)
async def test_rfc7208_appendix_a(record: str, permitted: set[str]) -> None:
    dns = StaticResolver(APPENDIX_A + f'example.com. 60 IN TXT "{record}"\n')
    for ip in HOSTS:
        r = await check_host(dns, ip, "user@example.com", "mx.example.net")
        assert r.result == ("pass" if ip in permitted else "fail"), (record, ip, r)
        assert r.identity == "mailfrom" and r.domain == "example.com"


ZONE = """
soft.test.   60 IN TXT "v=spf1 ~all"
neutral.test. 60 IN TXT "v=spf1 ?all"
two.test.    60 IN TXT "v=spf1 -all"
two.test.    60 IN TXT "v=spf1 +all"
syntax.test. 60 IN TXT "v=spf1 ip4:300.1.1.1 -all"
other.test.  60 IN TXT "some other text"
helo.test.   60 IN TXT "v=spf1 ip4:192.0.2.7 -all"
void.test.   60 IN TXT "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"
exp.test.    60 IN TXT "v=spf1 -all exp=why.exp.test"
why.exp.test. 60 IN TXT "%{i} may not send for %{d}"
inc.test.    60 IN TXT "v=spf1 include:down.test -all"
"""
LOOP = (
    "".join(f'l{i}.test. 60 IN TXT "v=spf1 include:l{i + 1}.test -all"\n' for i in range(12))
    + 'l12.test. 60 IN TXT "v=spf1 +all"\n'
)


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("a@soft.test", "softfail"),
        ("a@neutral.test", "neutral"),
        ("a@nothing.test", "none"),  # NXDOMAIN: no record
        ("a@other.test", "none"),  # TXT but no SPF record
        ("a@two.test", "permerror"),  # RFC 7208 4.5: two records
        ("a@syntax.test", "permerror"),
        ("a@void.test", "permerror"),  # RFC 7208 4.6.4: a third void lookup
        ("a@l0.test", "permerror"),  # RFC 7208 4.6.4: more than 10 DNS-querying terms
        ("a@l2.test", "pass"),  # 10 includes is within the limit
        ("a@inc.test", "temperror"),  # an include's server fails
        ("a@down.test", "temperror"),
    ],
)
async def test_every_result(sender: str, expected: str) -> None:
    dns = StaticResolver(ZONE + LOOP, servfail=("down.test",))
    r = await check_host(dns, "192.0.2.1", sender, "mx.example.net")
    assert r.result == expected, r


async def test_exp_explains_a_fail() -> None:
    r = await check_host(StaticResolver(ZONE), "192.0.2.1", "a@exp.test", "h.test")
    assert r.result == "fail"
    assert r.explanation == "192.0.2.1 may not send for exp.test"


async def test_null_sender_checks_helo() -> None:
    dns = StaticResolver(ZONE)
    r = await check_host(dns, "192.0.2.7", "", "helo.test")
    assert (r.result, r.identity, r.domain) == ("pass", "helo", "helo.test")
    r = await check_host(dns, "192.0.2.8", "", "helo.test")
    assert r.result == "fail"
    # RFC 7208 2.3: an address literal HELO has no SPF
    assert (await check_host(dns, "192.0.2.8", "", "[192.0.2.8]")).result == "none"


async def test_no_resolver_is_temperror_never_a_verdict() -> None:
    r = await check_host(NoResolver(), "192.0.2.1", "a@example.com", "h.test")
    assert r.result == "temperror"


async def test_ipv6_client() -> None:
    dns = StaticResolver('six.test. 60 IN TXT "v=spf1 ip6:2001:db8::/32 -all"\n')
    assert (await check_host(dns, "2001:db8::5", "a@six.test", "h")).result == "pass"
    assert (await check_host(dns, "2001:db9::5", "a@six.test", "h")).result == "fail"
