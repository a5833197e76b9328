"""ARC (RFC 8617): a chain sealed by a forwarder verifies; a message changed after sealing, a
forged cv=pass and a broken chain fail; a trusted sealer's DMARC pass carries a mailing-list
message that DMARC alone would reject."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import nacl.signing

from carteiro.mailauth.arc import Sealer, verify
from carteiro.mailauth.dkim import ensure_dkim_key, key_path, txt_record
from carteiro.mailauth.inbound import Checker, Settings
from carteiro.mailauth.spf import SPFResult
from carteiro.testing.dns import StaticResolver

SEED = bytes(range(32))
ED_P = base64.b64encode(bytes(nacl.signing.SigningKey(SEED).verify_key)).decode()
MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: list@list.test\r\nSubject: for the list\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <l1@a.test>\r\n\r\nHello, list.\r\n"
)


def txt(name: str, value: str) -> str:
    chunks = " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))
    return f"{name}. 60 IN TXT {chunks}\n"


def setup(tmp_path: Path) -> tuple[bytes, StaticResolver, Sealer, Sealer]:
    """alice's DKIM-signed message, as the list received it; two sealers (list.test, fwd.test)."""
    signed = (
        dkim.sign(
            MESSAGE,
            b"ed",
            b"a.test",
            base64.b64encode(SEED),
            signature_algorithm=b"ed25519-sha256",
            canonicalize=(b"relaxed", b"relaxed"),
        )
        + MESSAGE
    )
    zone = txt("ed._domainkey.a.test", f"v=DKIM1; k=ed25519; p={ED_P}")
    zone += '_dmarc.a.test. 60 IN TXT "v=DMARC1; p=reject"\n'
    sealers = []
    for domain in ("list.test", "fwd.test"):
        ensure_dkim_key(tmp_path, domain, "arc")
        path = key_path(tmp_path, domain, "arc")
        zone += txt(f"arc._domainkey.{domain}", txt_record(path))
        sealers.append(Sealer.from_key_file(path, domain, "arc", f"mx.{domain}"))
    return signed, StaticResolver(zone), sealers[0], sealers[1]


def received_by(sealer: Sealer, message: bytes, results: str) -> bytes:
    """What a forwarder does: record its results, then seal."""
    with_ar = f"Authentication-Results: {sealer.authserv_id}; {results}\r\n".encode() + message
    return sealer.seal(with_ar, timestamp=1700000000) + with_ar


async def test_chain_of_two_verifies_and_tampering_breaks_it(tmp_path: Path) -> None:
    signed, dns, lst, fwd = setup(tmp_path)
    once = received_by(lst, signed, "dkim=pass header.d=a.test; dmarc=pass header.from=a.test")
    r = await verify(dns, once)
    assert (r.result, r.instances, r.sealer) == ("pass", 1, "list.test")
    assert "dmarc=pass" in r.newest_aar
    twice = received_by(fwd, once, "arc=pass; dkim=pass header.d=a.test")
    r = await verify(dns, twice)
    assert (r.result, r.instances, r.sealer) == ("pass", 2, "fwd.test")
    # changed after the newest seal: its ARC-Message-Signature no longer verifies
    assert (await verify(dns, twice.replace(b"Hello, list.", b"Hello, mark."))).result == "fail"


async def test_forged_cv_pass_and_no_chain(tmp_path: Path) -> None:
    signed, dns, lst, _fwd = setup(tmp_path)
    once = received_by(lst, signed, "dmarc=pass header.from=a.test")
    # RFC 8617 5.1.1: i=1 must say cv=none; claiming pass breaks the seal's signature too
    forged = once.replace(b"cv=none", b"cv=pass", 1)
    assert (await verify(dns, forged)).result == "fail"
    assert (await verify(dns, signed)).result == "none"
    # a seal whose key lookup fails is no fail: temperror
    down = StaticResolver("", servfail=("arc._domainkey.list.test",))
    assert (await verify(down, once)).result == "temperror"


async def test_trusted_arc_rescues_a_list_message_from_dmarc_reject(tmp_path: Path) -> None:
    signed, dns, lst, _fwd = setup(tmp_path)
    # the list adds a footer (alice's DKIM breaks) and sends from its own address
    sealed = received_by(lst, signed, "dkim=pass header.d=a.test; dmarc=pass header.from=a.test")
    footer = sealed.replace(b"Hello, list.\r\n", b"Hello, list.\r\n-- \r\nlist footer\r\n")
    resealed = received_by(lst, footer, "arc=pass")  # the list seals what it sends
    spf = SPFResult("pass", "mailfrom", "list.test")
    for trusted, action in (((), "reject"), (("list.test",), "accept")):
        checker = Checker(dns, Settings("mx.b.test", arc_trusted_sealers=trusted))
        verdict = await checker.message(
            resealed, ip="192.0.2.9", helo="mx.list.test", mail_from="bounce@list.test",
            iprev_result=None, spf_result=spf,
        )  # fmt: skip
        assert verdict.action == action, (trusted, verdict.header)
        assert b"arc=pass" in verdict.header and b"dmarc=fail" in verdict.header


def test_seal_is_dkimpy_own_seal_byte_for_byte(tmp_path: Path) -> None:
    """The sealer signs with OpenSSL (mailauth/dkimpy_fast.py OpenSSLRSA); RSA PKCS#1 v1.5 is
    deterministic, so its fields must be exactly those of dkimpy's pure-Python arc_sign, for a
    first instance and for a second one sealing over a chain (cv=pass)."""
    signed, _dns, lst, fwd = setup(tmp_path)

    def pure(sealer: Sealer, message: bytes) -> bytes:
        return b"".join(
            dkim.arc_sign(
                message,
                sealer.selector.encode(),
                sealer.domain.encode(),
                sealer.key_pem,
                sealer.authserv_id.encode(),
                timestamp=1700000000,
            )
        )

    once = received_by(lst, signed, "dkim=pass header.d=a.test; dmarc=pass header.from=a.test")
    first = once[: once.index(b"Authentication-Results: mx.list.test")]
    assert first == pure(lst, once[len(first) :])
    assert b"ARC-Seal: i=1; cv=none; a=rsa-sha256" in first
    twice = received_by(fwd, once, "arc=pass; dkim=pass header.d=a.test")
    second = twice[: twice.index(b"Authentication-Results: mx.fwd.test")]
    assert second == pure(fwd, twice[len(second) :])
    assert b"ARC-Seal: i=2; cv=pass; a=rsa-sha256" in second
