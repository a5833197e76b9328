"""DANE for SMTP (RFC 7672): matching a chain against TLSA records (DANE-EE, DANE-TA), and the
router choosing DANE hosts from DNSSEC-validated answers."""

from __future__ import annotations

import datetime
import hashlib
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from queue_fakes import FakeResolver

from carteiro.net.dane import verify
from carteiro.queue.mta_sts import Policy
from carteiro.queue.routing import (
    AddressAnswer,
    MXAnswer,
    Router,
    RoutingConfig,
    TLSAAnswer,
    usable_tlsa,
)
from carteiro.queue.tlsrpt import classify, policy_key

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    days: tuple[int, int] = (-1, 30),
    ca: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    iname, ikey = issuer if issuer else (name, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, iname)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=days[0]))
        .not_valid_after(NOW + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return b.sign(ikey, hashes.SHA256())


def der(c: x509.Certificate) -> bytes:
    return c.public_bytes(DER)


def spki(c: x509.Certificate) -> bytes:
    return c.public_key().public_bytes(DER, SPKI)


CA_KEY, LEAF_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
CA = cert("Test CA", CA_KEY, ca=True)
LEAF = cert("mx.b.test", LEAF_KEY, issuer=("Test CA", CA_KEY))
CHAIN = [der(LEAF), der(CA)]


@pytest.mark.parametrize(
    "record",
    [
        (3, 1, 1, hashlib.sha256(spki(LEAF)).digest()),
        (3, 0, 1, hashlib.sha256(der(LEAF)).digest()),
        (3, 1, 2, hashlib.sha512(spki(LEAF)).digest()),
        (3, 1, 0, spki(LEAF)),
        (2, 0, 1, hashlib.sha256(der(CA)).digest()),
        (2, 1, 1, hashlib.sha256(spki(CA)).digest()),
    ],
)
def test_a_matching_record_authenticates(record: tuple[int, int, int, bytes]) -> None:
    assert verify(CHAIN, [record], "mx.b.test", NOW) == ""


def test_dane_ee_ignores_names_and_dates() -> None:
    """RFC 7672 3.1.1: the DNS vouches for the key itself."""
    old = cert("something.else", LEAF_KEY, days=(-400, -30))
    rec = (3, 1, 1, hashlib.sha256(spki(old)).digest())
    assert verify([der(old)], [rec], "mx.b.test", NOW) == ""


def test_dane_ee_mismatch() -> None:
    other = cert("mx.b.test", OTHER_KEY)
    rec = (3, 1, 1, hashlib.sha256(spki(other)).digest())
    assert "matches none" in verify(CHAIN, [rec], "mx.b.test", NOW)
    assert verify([], [rec], "mx.b.test", NOW) == "no certificate"
    assert verify([b"junk"], [rec], "mx.b.test", NOW) == "an unreadable certificate"


def test_dane_ta_checks_the_chain_the_name_and_the_dates() -> None:
    ta = (2, 0, 1, hashlib.sha256(der(CA)).digest())
    assert "does not name mx.c.test" in verify(CHAIN, [ta], "mx.c.test", NOW)
    expired = cert("mx.b.test", LEAF_KEY, issuer=("Test CA", CA_KEY), days=(-60, -1))
    assert "expired" in verify([der(expired), der(CA)], [ta], "mx.b.test", NOW)
    # a leaf some other key signed, presented with the trust anchor
    forged = cert("mx.b.test", LEAF_KEY, issuer=("Test CA", OTHER_KEY))
    assert "does not verify" in verify([der(forged), der(CA)], [ta], "mx.b.test", NOW)
    # the anchor not sent: RFC 7672 3.1.2 wants it in the chain
    assert "trust anchor" in verify([der(LEAF)], [ta], "mx.b.test", NOW)
    # a trust-anchor record never matches the server's own certificate as its anchor
    own = (2, 0, 1, hashlib.sha256(der(LEAF)).digest())
    assert verify(CHAIN, [own], "mx.b.test", NOW) != ""


def test_dane_ta_as_a_bare_public_key_the_server_need_not_send() -> None:
    """2 1 0: the anchor's whole key in the DNS (RFC 7671 5.2.2)."""
    ta = (2, 1, 0, spki(CA))
    assert verify([der(LEAF)], [ta], "mx.b.test", NOW) == ""
    assert verify(CHAIN, [ta], "mx.b.test", NOW) == ""
    assert "does not name" in verify([der(LEAF)], [ta], "mx.c.test", NOW)
    expired = cert("mx.b.test", LEAF_KEY, issuer=("Test CA", CA_KEY), days=(-60, -1))
    assert "expired" in verify([der(expired)], [ta], "mx.b.test", NOW)
    other = (2, 1, 0, OTHER_KEY.public_key().public_bytes(DER, SPKI))
    assert "matches the TLSA trust anchor" in verify([der(LEAF)], [other], "mx.b.test", NOW)
    assert verify([der(LEAF)], [(2, 1, 0, b"not a key")], "mx.b.test", NOW) != ""


def test_only_dane_usages_are_usable() -> None:
    recs = ((0, 1, 1, b"a"), (1, 1, 1, b"b"), (2, 1, 1, b"c"), (3, 1, 1, b"d"), (3, 2, 1, b"e"))
    assert usable_tlsa(recs) == ((2, 1, 1, b"c"), (3, 1, 1, b"d"))


def test_tls_report_names() -> None:
    assert classify("4.7.5", "DANE: mx[1.2.3.4]:25: the certificate matches none") == (
        "tlsa-invalid"
    )
    assert policy_key(((3, 1, 1, b"\xab\xcd"),)) == '["tlsa", ["3 1 1 ABCD"], []]'


# ---- routing ------------------------------------------------------------------------------------


class SecureResolver(FakeResolver):
    """FakeResolver whose answers say whether they were validated, with TLSA records."""

    def __init__(self, signed: set[str]) -> None:
        super().__init__()
        self.signed = signed
        self.tlsas: dict[str, TLSAAnswer] = {}

    def _secure(self, name: str) -> bool:
        return any(name == d or name.endswith("." + d) for d in self.signed)

    async def mx(self, domain: str) -> MXAnswer:
        a = await super().mx(domain)
        return MXAnswer(a.status, a.records, a.error, self._secure(domain))

    async def addresses(self, host: str) -> AddressAnswer:
        a = await super().addresses(host)
        return AddressAnswer(a.status, a.addresses, a.error, self._secure(host))

    async def tlsa(self, name: str) -> TLSAAnswer:
        self.queries.append(("TLSA", name))
        t = self.tlsas.get(name, TLSAAnswer("nxdomain"))
        return TLSAAnswer(t.status, t.records, t.error, self._secure(name) and t.status != "temp")


REC = (3, 1, 1, b"\x01" * 32)


def dane_router(r: FakeResolver, dane: bool = True, sts: Policy | None = None) -> Router:
    class Fixed:
        async def policy(self, domain: str) -> Policy | None:
            return sts

    return Router(
        r,
        RoutingConfig(hostname="mx.a.test", dane=dane),
        is_local=lambda d: d == "a.test",
        rng=random.Random(1),
        sts=Fixed(),  # type: ignore[arg-type]
    )


def b_test(signed: set[str]) -> SecureResolver:
    r = SecureResolver(signed)
    r.mx_for("b.test", (10, "mx1.b.test"), (20, "mx2.b.test"))
    r.host("mx1.b.test", "192.0.2.1")
    r.host("mx2.b.test", "192.0.2.2")
    return r


async def test_validated_tlsa_records_make_a_dane_host() -> None:
    r = b_test({"b.test"})
    r.tlsas["_25._tcp.mx1.b.test"] = TLSAAnswer("ok", (REC, (1, 1, 1, b"pkix")))
    # an enforce MTA-STS policy naming neither host: DANE takes precedence
    sts = Policy("i", "enforce", ("elsewhere.test",), 86400, 0.0)
    rt = dane_router(r, sts=sts)
    route = await rt.route(rt.destination("b.test"))
    assert route.error is None
    one, two = route.hops
    assert (one.host, one.tls, one.verify, one.tlsa) == ("mx1.b.test", "starttls", False, (REC,))
    assert one.required_by == "DANE TLSA of mx1.b.test"
    # no TLSA for mx2: opportunistic, as without DANE
    assert (two.host, two.tls, two.tlsa) == ("mx2.b.test", "opportunistic", ())


async def test_unusable_records_still_require_tls() -> None:
    r = b_test({"b.test"})
    r.tlsas["_25._tcp.mx1.b.test"] = TLSAAnswer("ok", ((1, 1, 1, b"pkix"),))
    rt = dane_router(r)
    route = await rt.route(rt.destination("b.test"))
    first = route.hops[0]
    assert (first.tls, first.verify, first.tlsa) == ("starttls", False, ())
    assert "unusable" in first.required_by


async def test_a_failed_tlsa_lookup_skips_the_host() -> None:
    r = b_test({"b.test"})
    r.tlsas["_25._tcp.mx1.b.test"] = TLSAAnswer("temp", error="SERVFAIL")
    r.tlsas["_25._tcp.mx2.b.test"] = TLSAAnswer("ok", (REC,))
    rt = dane_router(r)
    route = await rt.route(rt.destination("b.test"))
    assert [h.host for h in route.hops] == ["mx2.b.test"]
    assert route.dnssec_failed == ("mx1.b.test",)  # (for the TLS report: dnssec-invalid)
    r.tlsas["_25._tcp.mx2.b.test"] = TLSAAnswer("temp", error="SERVFAIL")
    route = await rt.route(rt.destination("b.test"))
    # every TLSA lookup failed: the records may be hidden by an attacker, so no downgrade to
    # opportunistic TLS: the mail waits (RFC 7672 2.2)
    assert not route.hops
    assert route.error is not None and route.error.code == 451
    assert route.error.status == "4.7.5" and "TLSA lookup failed" in route.error.text


async def test_a_host_without_validated_addresses_gets_no_tlsa_lookup() -> None:
    """RFC 7672 2.2.2: TLSA records are looked up only for hosts whose addresses validated."""
    r = b_test({"b.test"})
    r.mx_for("b.test", (10, "mx.other.test"))
    r.host("mx.other.test", "192.0.2.7")
    r.tlsas["_25._tcp.mx.other.test"] = TLSAAnswer("ok", (REC,))
    rt = dane_router(r)
    route = await rt.route(rt.destination("b.test"))
    assert [(h.tls, h.tlsa) for h in route.hops] == [("opportunistic", ())]
    assert ("TLSA", "_25._tcp.mx.other.test") not in r.queries


@pytest.mark.parametrize(
    ("signed", "dane"),
    [
        (set(), True),  # nothing validated
        ({"mx1.b.test", "mx2.b.test"}, True),  # the MX records themselves not validated
        ({"b.test"}, False),  # DANE off
    ],
)
async def test_no_dane_without_validated_answers_or_when_off(signed: set[str], dane: bool) -> None:
    r = b_test(signed)
    r.tlsas["_25._tcp.mx1.b.test"] = TLSAAnswer("ok", (REC,))
    rt = dane_router(r, dane=dane)
    route = await rt.route(rt.destination("b.test"))
    assert [(h.tls, h.tlsa) for h in route.hops] == [("opportunistic", ())] * 2
    assert not [q for q in r.queries if q[0] == "TLSA"]  # not even looked up


async def test_insecure_tlsa_records_are_ignored() -> None:
    r = b_test({"b.test"})
    r.signed = {"b.test"}
    r.tlsas["_25._tcp.mx1.b.test"] = TLSAAnswer("ok", (REC,))
    r.host("mx1.b.test", "192.0.2.1")
    rt = dane_router(r)

    async def insecure(name: str) -> TLSAAnswer:
        return TLSAAnswer("ok", (REC,), "", False)

    r.tlsa = insecure  # type: ignore[method-assign]
    route = await rt.route(rt.destination("b.test"))
    assert all(h.tlsa == () and h.tls == "opportunistic" for h in route.hops)


async def test_tlsa_name_uses_the_delivery_port() -> None:
    r = b_test({"b.test"})
    r.tlsas["_2525._tcp.mx1.b.test"] = TLSAAnswer("ok", (REC,))
    rt = Router(
        r,
        RoutingConfig(hostname="mx.a.test", dane=True, remote_port=2525),
        is_local=lambda d: False,
        rng=random.Random(1),
    )
    route = await rt.route(rt.destination("b.test"))
    assert route.hops[0].tlsa == (REC,)
