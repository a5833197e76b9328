"""HELO/EHLO name checks (RFC 5321 4.1.1.1, 4.1.4; Postfix's reject_invalid_helo_hostname,
reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname): syntax, address literals against
the client's address, forward confirmation; and the policy levels that may refuse on them."""

from __future__ import annotations

import pytest

from carteiro.mailauth import helo
from carteiro.mailauth.inbound import Checker, Settings
from carteiro.mailauth.lookup import NoResolver
from carteiro.testing.dns import StaticResolver

ZONE = """
mx.sender.test. 60 IN A 192.0.2.1
mx.sender.test. 60 IN AAAA 2001:db8::1
elsewhere.sender.test. 60 IN A 198.51.100.9
mxonly.sender.test. 60 IN MX 10 mx.sender.test.
v6only.sender.test. 60 IN AAAA 2001:db8::7
"""


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("mx.sender.test", "fqdn"),
        ("MX.Sender.Test.", "fqdn"),
        ("mail_relay.example.com", "fqdn"),  # underscores: accepted, as Postfix does
        ("xn--bcher-kva.example", "fqdn"),
        ("bücher.example", "fqdn"),  # RFC 6531: a U-label name
        ("localhost", "non-fqdn"),
        ("EXCHANGE01", "non-fqdn"),
        ("[192.0.2.1]", "literal"),
        ("[IPv6:2001:db8::1]", "literal"),
        ("192.0.2.1", "invalid"),  # an address must be a literal: [192.0.2.1]
        ("-bad.example", "invalid"),
        ("bad-.example", "invalid"),
        ("a..example", "invalid"),
        ("x" * 64 + ".example", "invalid"),
        (".example", "invalid"),
        ("example.123", "invalid"),  # a numeric top-level label
        ("[300.1.1.1]", "invalid"),
        ("[tag:whatever]", "invalid"),  # a general literal names no address of the client
        ("", "invalid"),
    ],
)
def test_syntax(name: str, kind: str) -> None:
    assert helo.syntax(name) == kind


async def check(name: str, ip: str = "192.0.2.1", resolver: object = None) -> helo.HeloResult:
    return await helo.check(resolver or StaticResolver(ZONE), name, ip)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "ip", "result", "kind"),
    [
        ("mx.sender.test", "192.0.2.1", "pass", "confirmed"),
        ("mx.sender.test.", "192.0.2.1", "pass", "confirmed"),
        ("mx.sender.test", "2001:db8::1", "pass", "confirmed"),
        ("mx.sender.test", "::ffff:192.0.2.1", "pass", "confirmed"),
        ("elsewhere.sender.test", "192.0.2.1", "fail", "mismatch"),
        ("v6only.sender.test", "192.0.2.1", "fail", "mismatch"),  # exists, not this address
        ("mxonly.sender.test", "192.0.2.1", "fail", "mismatch"),
        ("nowhere.sender.test", "192.0.2.1", "fail", "unknown"),
        ("[192.0.2.1]", "192.0.2.1", "pass", "literal"),
        ("[192.0.2.1]", "::ffff:192.0.2.1", "pass", "literal"),
        ("[IPv6:2001:DB8:0::1]", "2001:db8::1", "pass", "literal"),
        ("[192.0.2.99]", "192.0.2.1", "fail", "literal-mismatch"),
        ("localhost", "192.0.2.1", "permerror", "non-fqdn"),
        ("192.0.2.1", "192.0.2.1", "permerror", "invalid"),
    ],
)
async def test_check(name: str, ip: str, result: str, kind: str) -> None:
    r = await check(name, ip)
    assert (r.result, r.kind) == (result, kind), r


async def test_dns_failure_is_temperror_never_a_verdict() -> None:
    r = await check("mx.sender.test", resolver=NoResolver())
    assert (r.result, r.kind) == ("temperror", "dns")
    down = StaticResolver(ZONE, servfail=("nowhere.sender.test",))
    assert (await check("nowhere.sender.test", resolver=down)).result == "temperror"
    # a literal needs no DNS
    assert (await check("[192.0.2.1]", resolver=NoResolver())).result == "pass"


def refusal(level: str, r: helo.HeloResult, temperror: str = "defer") -> tuple[int, str] | None:
    settings = Settings(authserv_id="mx.test", require_helo=level, temperror=temperror)
    got = Checker(NoResolver(), settings).helo_refusal(r)
    return None if got is None else (got.code, got.status)


async def test_policy_levels() -> None:
    confirmed = await check("mx.sender.test")
    mismatch = await check("elsewhere.sender.test")
    unknown = await check("nowhere.sender.test")
    literal_wrong = await check("[192.0.2.99]")
    non_fqdn = await check("localhost")
    invalid = await check("192.0.2.1")
    temp = await check("mx.sender.test", resolver=NoResolver())
    every = [confirmed, mismatch, unknown, literal_wrong, non_fqdn, invalid, temp]
    # the default: everything is recorded, nothing refused (RFC 5321 4.1.4)
    assert [refusal("none", r) for r in every] == [None] * 7
    assert [refusal("valid", r) for r in every] == [
        None,
        None,
        None,
        (550, "5.7.1"),
        (504, "5.5.2"),
        (501, "5.5.2"),
        None,
    ]
    assert [refusal("known", r) for r in every] == [
        None,
        None,
        (450, "4.7.1"),
        (550, "5.7.1"),
        (504, "5.5.2"),
        (501, "5.5.2"),
        (450, "4.7.1"),
    ]
    assert [refusal("confirmed", r) for r in every] == [
        None,
        (550, "5.7.1"),
        (450, "4.7.1"),
        (550, "5.7.1"),
        (504, "5.5.2"),
        (501, "5.5.2"),
        (450, "4.7.1"),
    ]
    assert refusal("confirmed", temp, temperror="accept") is None


async def test_a_stranger_claiming_our_name_is_recorded_and_refused_from_valid_on() -> None:
    """HELO with our own host name or one of our domains, from an address the name does not
    resolve to: a forgery (Postfix admins refuse it with check_helo_access). Our own programs
    on loopback, and a host the name does resolve to (a second MX of ours), are not strangers."""
    zone = ZONE + "mx.ours.test. 60 IN A 192.0.2.50\nours.test. 60 IN MX 10 mx.ours.test.\n"
    names = {"mx.ours.test", "ours.test"}.__contains__

    async def claim(name: str, ip: str) -> helo.HeloResult:
        return await helo.check(StaticResolver(zone), name, ip, names)  # type: ignore[arg-type]

    forged = await claim("mx.ours.test", "192.0.2.1")
    assert (forged.result, forged.kind) == ("fail", "ours")
    assert (await claim("OURS.test.", "192.0.2.1")).kind == "ours"
    assert (await claim("mx.ours.test", "192.0.2.50")).kind == "confirmed"  # really ours
    assert (await claim("mx.ours.test", "127.0.0.1")).kind == "mismatch"  # this host
    assert (await claim("mx.sender.test", "192.0.2.1")).kind == "confirmed"  # not our name
    assert refusal("none", forged) is None  # recorded only, by default
    assert refusal("valid", forged) == (550, "5.7.1")
    assert refusal("confirmed", forged) == (550, "5.7.1")
