"""Hostile input never crashes a check: random signatures, records, reports and headers give a
result (permerror, fail, none), not an exception."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.mailauth import arc, dkim_verify, dmarc_reports, helo
from carteiro.mailauth.dmarc import parse_record
from carteiro.mailauth.spf import check_host
from carteiro.testing.dns import StaticResolver

TAGS = st.lists(
    st.tuples(
        st.sampled_from(["v", "a", "b", "bh", "c", "d", "h", "i", "l", "q", "s", "t", "x", "cv"]),
        st.text(alphabet="abcdefghij0123456789=+/.-:;@ \t", max_size=30),
    ),
    max_size=12,
)
BODY = b"From: <a@a.test>\r\nSubject: x\r\n\r\nhello\r\n"
KEYS = StaticResolver(
    's._domainkey.a.test. 60 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"\n'
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TAGS, st.sampled_from([b"DKIM-Signature", b"ARC-Seal", b"ARC-Message-Signature"]))
def test_random_signature_fields(tags: list[tuple[str, str]], name: bytes) -> None:
    value = "; ".join(f"{k}={v}" for k, v in tags).encode()
    message = name + b": " + value + b"\r\n" + BODY
    for r in asyncio.run(dkim_verify.verify(KEYS, message)):
        assert r.result in ("fail", "permerror", "temperror", "policy", "neutral")
    assert asyncio.run(arc.verify(KEYS, message)).result in ("none", "fail", "temperror")


@FAST
@given(st.binary(max_size=400))
def test_random_messages(data: bytes) -> None:
    asyncio.run(dkim_verify.verify(KEYS, b"DKIM-Signature: d=a.test; s=s\r\n" + data))
    asyncio.run(arc.verify(KEYS, b"ARC-Seal: i=1; d=a.test; s=s\r\n" + data))
    dmarc_reports.parse_report(data)


@FAST
@given(st.text(max_size=120))
def test_random_dmarc_records(text: str) -> None:
    rec = parse_record("v=DMARC1; " + text)
    assert rec is None or rec.p in ("none", "quarantine", "reject")


@FAST
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:./-+~?%{}_ ", max_size=80))
def test_random_spf_records(record: str) -> None:
    zone = StaticResolver(f'r.test. 60 IN TXT "v=spf1 {record}"\n')
    r = asyncio.run(check_host(zone, "192.0.2.1", "a@r.test", "h.test", timeout=5))
    assert r.result in ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")


HELO_ZONE = StaticResolver("h.test. 60 IN A 192.0.2.1\n")


@FAST
@given(st.text(max_size=300))
def test_random_helo_names(name: str) -> None:
    r = asyncio.run(helo.check(HELO_ZONE, name, "192.0.2.1"))
    assert r.result in ("pass", "fail", "permerror", "temperror")
    assert (r.result == "permerror") == (helo.syntax(name) in ("invalid", "non-fqdn"))


def _huge_key_record(bits: int) -> bytes:
    """A DKIM key record of an RSA modulus of `bits` bits (DER built by hand: no library makes
    such a key)."""
    import base64

    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        size = (n.bit_length() + 7) // 8
        length = bytes([n]) if n < 128 else bytes([0x80 | size]) + n.to_bytes(size, "big")
        return bytes([tag]) + length + body

    def integer(v: int) -> bytes:
        return tlv(0x02, v.to_bytes((v.bit_length() + 8) // 8, "big"))

    modulus = (1 << (bits - 1)) | (12345 << 100) | 1
    rsa_oid = tlv(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00"
    spki = tlv(
        0x30, tlv(0x30, rsa_oid) + tlv(0x03, b"\0" + tlv(0x30, integer(modulus) + integer(65537)))
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)


def test_a_huge_published_key_is_refused_unparsed() -> None:
    """A 262,144-bit key (a 44 KB record, which DNS carries): dkimpy would spend ~0.1 s parsing
    it and ~2 s on its arithmetic, on the event loop for a small message. Refused as a key
    error, and a key too large for OpenSSL is refused before any arithmetic too."""
    import hashlib

    import dkim as dkimpy

    from carteiro.mailauth.dkimpy_fast import MAX_BITS, rsa_verify
    from carteiro.mailauth.lookup import Answer

    record = _huge_key_record(262144)
    assert len(record) > dkim_verify.MAX_KEY_RECORD
    sig = b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=big; c=relaxed/relaxed; h=from:subject; bh=AAAA; b=AAAA\r\n"
    keys = {"big._domainkey.a.test": Answer("ok", ((record,),))}
    (r,) = dkim_verify.verify_with_keys(sig + BODY, keys)
    assert (r.result, r.reason) == ("permerror", f"key record too large ({len(record)} octets)")
    for bits in (MAX_BITS + 1, 65536):
        big = {"modulus": (1 << (bits - 1)) | 1, "publicExponent": 65537}
        try:
            rsa_verify(hashlib.sha256(b"x"), b"\1" * (bits // 8), big)
        except dkimpy.KeyFormatError as e:
            assert "too large" in str(e)
        else:
            raise AssertionError("a key over MAX_BITS was used")
    # ARC: the seal's key is not used (no key: the chain fails)
    seal = (
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=a.test; s=big; t=1; b=AAAA\r\n"
        b"ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=a.test; s=big; t=1;"
        b" h=from:subject; bh=AAAA; b=AAAA\r\n"
        b"ARC-Authentication-Results: i=1; mx.a.test; spf=pass\r\n"
    )
    assert arc.verify_with_keys(seal + BODY, keys).result == "fail"
