"""DKIM verification (RFC 6376, RFC 8463): every signature, RSA and Ed25519, with results per
signature: pass, fail on a changed body or header, permerror without a key, temperror when the
key lookup fails, "policy" for an l= that leaves content unsigned."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import nacl.signing

from carteiro.mailauth.dkim import DKIMSigner, ensure_dkim_key, key_path, txt_record
from carteiro.mailauth.dkim_verify import verify
from carteiro.mailauth.lookup import NoResolver
from carteiro.testing.dns import StaticResolver

MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <s1@a.test>\r\n\r\nHello, Bob.\r\n"
)
SEED = bytes(range(32))


def txt_zone(name: str, record: str) -> str:
    chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
    return f"{name}. 60 IN TXT {chunks}\n"


def ed_record() -> str:
    vk = nacl.signing.SigningKey(SEED).verify_key
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(bytes(vk)).decode()}"


def ed_sign(message: bytes, **kw: object) -> bytes:
    sig: bytes = dkim.sign(
        message,
        b"ed",
        b"a.test",
        base64.b64encode(SEED),
        signature_algorithm=b"ed25519-sha256",
        canonicalize=(b"relaxed", b"relaxed"),
        **kw,
    )
    return sig


def rsa_setup(tmp_path: Path) -> tuple[bytes, str]:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    signed = DKIMSigner(tmp_path, ["a.test"], "carteiro")(MESSAGE) + MESSAGE
    zone = txt_zone(
        "carteiro._domainkey.a.test", txt_record(key_path(tmp_path, "a.test", "carteiro"))
    )
    return signed, zone


async def test_rsa_pass_and_tampering(tmp_path: Path) -> None:
    signed, zone = rsa_setup(tmp_path)
    dns = StaticResolver(zone)
    (s,) = await verify(dns, signed)
    assert (s.result, s.domain, s.selector, s.algorithm) == (
        "pass",
        "a.test",
        "carteiro",
        "rsa-sha256",
    )
    (s,) = await verify(dns, signed.replace(b"Hello, Bob.", b"Hello, Eve."))
    assert s.result == "fail" and "body hash" in s.reason
    (s,) = await verify(dns, signed.replace(b"Subject: signed", b"Subject: pay now"))
    assert s.result == "fail"
    assert await verify(dns, MESSAGE) == []


async def test_ed25519_rfc8463_and_dual_signatures(tmp_path: Path) -> None:
    signed, zone = rsa_setup(tmp_path)
    dual = ed_sign(signed) + signed
    dns = StaticResolver(zone + txt_zone("ed._domainkey.a.test", ed_record()))
    results = await verify(dns, dual)
    assert [(s.algorithm, s.result) for s in results] == [
        ("ed25519-sha256", "pass"),
        ("rsa-sha256", "pass"),
    ]
    tampered = dual.replace(b"Hello, Bob.", b"Hello, Eve.")
    assert [s.result for s in await verify(dns, tampered)] == ["fail", "fail"]


async def test_key_problems(tmp_path: Path) -> None:
    signed, zone = rsa_setup(tmp_path)
    (s,) = await verify(StaticResolver(""), signed)
    assert s.result == "permerror"  # RFC 6376 6.1.2: no key record
    (s,) = await verify(StaticResolver("", servfail=("carteiro._domainkey.a.test",)), signed)
    assert s.result == "temperror"
    (s,) = await verify(NoResolver(), signed)
    assert s.result == "temperror"
    revoked = txt_zone("carteiro._domainkey.a.test", "v=DKIM1; k=rsa; p=")
    (s,) = await verify(StaticResolver(revoked), signed)
    assert s.result == "permerror"
    # an Ed25519 key under an RSA signature
    wrong = txt_zone("carteiro._domainkey.a.test", ed_record())
    (s,) = await verify(StaticResolver(wrong), signed)
    assert s.result in ("permerror", "fail")
    garbage = b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test; b=%%%\r\n" + MESSAGE
    (s,) = await verify(StaticResolver(zone), garbage)
    assert s.result == "permerror"


async def test_body_length_tag_with_appended_content_is_policy() -> None:
    dns = StaticResolver(txt_zone("ed._domainkey.a.test", ed_record()))
    signed = ed_sign(MESSAGE, length=True) + MESSAGE
    (s,) = await verify(dns, signed)
    assert s.result == "pass"  # l= covers the whole body
    (s,) = await verify(dns, signed + b"Click http://evil.test/\r\n")
    assert s.result == "policy" and "unsigned" in s.reason


async def test_rsa_sha1_is_not_accepted(tmp_path: Path) -> None:
    """RFC 8301 3.1: rsa-sha1 MUST NOT be used for verifying, though the signature is good."""
    _signed, zone = rsa_setup(tmp_path)
    pem = key_path(tmp_path, "a.test", "carteiro").read_bytes()
    sha1 = dkim.sign(
        MESSAGE, b"carteiro", b"a.test", pem, signature_algorithm=b"rsa-sha1",
        canonicalize=(b"relaxed", b"relaxed"),
    )  # fmt: skip
    assert dkim.verify(
        sha1 + MESSAGE,
        dnsfunc=lambda *_a, **_k: zone.split('"', 1)[1].replace('" "', "").rstrip('"\n').encode(),
    )
    (s,) = await verify(StaticResolver(zone), sha1 + MESSAGE)
    assert (s.result, s.algorithm, s.reason) == (
        "permerror",
        "rsa-sha1",
        "rsa-sha1 is not accepted (RFC 8301)",
    )
