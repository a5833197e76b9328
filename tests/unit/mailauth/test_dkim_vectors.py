"""DKIM against published test vectors and against another implementation.

- RFC 8463 Appendix A: its keys (A.1), DNS records (A.2) and the message signed with both an
  Ed25519 and an RSA key (A.3), served by the test suite's own DNS server.
- RFC 6376 Appendix A: the example signature (A.2) with the key of A.3. The message as printed in
  the RFC does not verify; with its two verified errata it does (see RFC6376_* below).
- Interop with dkimpy's own signer and verifier, RSA and Ed25519, in both directions.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from carteiro.mailauth import dkim_keys
from carteiro.mailauth.dkim import DKIMSigner
from carteiro.mailauth.dkim_verify import verify
from carteiro.net.dns import DNSResolver
from carteiro.testing.dns import StaticResolver, ZoneServer

# ---- RFC 8463 Appendix A -----------------------------------------------------------------------

# A.1: the Ed25519 secret key (the RFC 8032 7.1 test 1 seed) and the RSA key of the "test"
# selector, a 1024-bit key (the minimum RFC 8301 allows verifiers to accept).
RFC8463_ED25519_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_RSA_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi
Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM
KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB
AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm
6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe
zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy
6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc
uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy
WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd
WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a
licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst
o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe
uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL
-----END RSA PRIVATE KEY-----
"""

# A.2, as published (the RSA record in several character-strings, joined by the verifier)
RFC8463_ZONE = """\
brisbane._domainkey.football.example.com. 60 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
test._domainkey.football.example.com. 60 IN TXT "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR" "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC" "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3" "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
"""

# The message both RFCs sign (RFC 6376 A.1; RFC 8463 A.3 keeps its two spaces in the body, which
# relaxed body canonicalization folds into one).
UNSIGNED = b"\r\n".join(
    [
        b"From: Joe SixPack <joe@football.example.com>",
        b"To: Suzie Q <suzie@shopping.example.net>",
        b"Subject: Is dinner ready?",
        b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
        b"Message-ID: <20030712040037.46341.5F8J@football.example.com>",
        b"",
        b"Hi.",
        b"",
        b"We lost the game.  Are you hungry yet?",
        b"",
        b"Joe.",
        b"",
    ]
)

# A.3: the signed message
RFC8463_SIGNED = (
    b"\r\n".join(
        [
            b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
            b" d=football.example.com; i=@football.example.com;",
            b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
            b" subject : date : message-id : from : subject : date;",
            b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
            b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
            b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
            b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;",
            b" d=football.example.com; i=@football.example.com;",
            b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :",
            b" date : message-id : from : subject : date;",
            b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
            b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3",
            b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz",
            b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=",
        ]
    )
    + b"\r\n"
    + UNSIGNED
)


def brief(sigs: list) -> list[tuple[str, str, str, str]]:  # type: ignore[type-arg]
    return [(s.algorithm, s.selector, s.domain, s.result) for s in sigs]


RFC8463_PASS = [
    ("ed25519-sha256", "brisbane", "football.example.com", "pass"),
    ("rsa-sha256", "test", "football.example.com", "pass"),
]


async def test_rfc8463_appendix_a_through_the_test_dns_server() -> None:
    with ZoneServer(RFC8463_ZONE) as ns:
        resolver = DNSResolver([ns.address], timeout=5.0)
        assert brief(await verify(resolver, RFC8463_SIGNED)) == RFC8463_PASS


async def test_rfc8463_appendix_a_tampering_and_missing_keys() -> None:
    dns = StaticResolver(RFC8463_ZONE)
    assert brief(await verify(dns, RFC8463_SIGNED)) == RFC8463_PASS
    sigs = await verify(dns, RFC8463_SIGNED.replace(b"hungry", b"angry"))
    assert [(s.result, s.reason) for s in sigs] == [("fail", "body hash mismatch")] * 2
    sigs = await verify(dns, RFC8463_SIGNED.replace(b"Is dinner ready?", b"Is lunch ready?"))
    assert [s.result for s in sigs] == ["fail", "fail"]
    # relaxed/relaxed: refolding a header and trailing white space change nothing
    refolded = RFC8463_SIGNED.replace(b"Subject: Is dinner", b"Subject:\r\n\t Is  dinner")
    assert [s.result for s in await verify(dns, refolded)] == ["pass", "pass"]
    # only the Ed25519 key is published: the RSA signature has no key (RFC 6376 6.1.2)
    ed_only = StaticResolver(RFC8463_ZONE.splitlines()[0] + "\n")
    assert [s.result for s in await verify(ed_only, RFC8463_SIGNED)] == ["pass", "permerror"]


def rfc8463_data_dir(tmp_path: Path) -> Path:
    """A data directory holding the RFC 8463 A.1 keys as carteiro's own DKIM keys of
    football.example.com (both active), in the formats `carteiro dkim` writes."""
    seed = base64.b64decode(RFC8463_ED25519_SEED)
    ed_pem = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    dkim_keys._write_private(
        dkim_keys.key_path(tmp_path, "football.example.com", "brisbane"), ed_pem
    )
    dkim_keys._write_private(
        dkim_keys.key_path(tmp_path, "football.example.com", "test"), RFC8463_RSA_KEY
    )
    state = {
        "keys": [
            {"selector": "test", "algorithm": "rsa", "state": "active", "created": 0.0},
            {"selector": "brisbane", "algorithm": "ed25519", "state": "active", "created": 0.0},
        ]
    }
    dkim_keys.state_path(tmp_path, "football.example.com").write_text(json.dumps(state))
    return tmp_path


def test_our_records_of_the_rfc8463_keys_are_the_published_ones(tmp_path: Path) -> None:
    data = rfc8463_data_dir(tmp_path)
    zone = StaticResolver(RFC8463_ZONE)
    for selector in ("brisbane", "test"):
        name = f"{selector}._domainkey.football.example.com"
        published = b"".join(zone._lookup(name, "TXT", 0).values[0])  # type: ignore[arg-type]
        ours = dkim_keys.txt_record(dkim_keys.key_path(data, "football.example.com", selector))
        assert ours.encode() == published


def rfc8463_dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
    """dkimpy's lookup function over the RFC 8463 A.2 records."""
    zone = StaticResolver(RFC8463_ZONE)
    answer = zone._lookup(name.decode().rstrip("."), "TXT", 0)
    return b"".join(answer.values[0]) if answer.values else None  # type: ignore[arg-type]


async def test_our_signer_with_the_rfc8463_keys_verifies_here_and_in_dkimpy(
    tmp_path: Path,
) -> None:
    data = rfc8463_data_dir(tmp_path)
    fields = DKIMSigner(data, ["football.example.com"], "test")(UNSIGNED)
    signed = fields + UNSIGNED
    ours = await verify(StaticResolver(RFC8463_ZONE), signed)
    assert sorted((s.algorithm, s.selector, s.result) for s in ours) == [
        ("ed25519-sha256", "brisbane", "pass"),
        ("rsa-sha256", "test", "pass"),
    ]
    # dkimpy, another implementation, verifies each of the two signatures
    for idx in range(2):
        checker = dkim.DKIM(signed, minkey=1024)
        assert checker.verify(idx=idx, dnsfunc=rfc8463_dnsfunc), idx
    # the body hash is the one the RFC published for this message
    assert fields.count(b"bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=") == 2


def test_dkimpy_verifies_the_rfc8463_example_too() -> None:
    # the same vector through dkimpy alone: our verifier and the library agree on it
    for idx in range(2):
        assert dkim.DKIM(RFC8463_SIGNED, minkey=1024).verify(idx=idx, dnsfunc=rfc8463_dnsfunc)


# ---- RFC 6376 Appendix A -----------------------------------------------------------------------

# A.3: the public key of brisbane._domainkey.example.com (the RFC publishes no private key)
RFC6376_ZONE = (
    'brisbane._domainkey.example.com. 60 IN TXT "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQ"'
    ' "KBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v"'
    ' "/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB"\n'
)


def rfc6376_signed(body_line: bytes) -> bytes:
    """A.2 (c=simple/simple), its continuation lines indented by six spaces as they were when
    the message was signed."""
    i = b"      "
    return b"\r\n".join(
        [
            b"DKIM-Signature: v=1; a=rsa-sha256; s=brisbane; d=example.com;",
            i + b"c=simple/simple; q=dns/txt; i=joe@football.example.com;",
            i + b"h=Received : From : To : Subject : Date : Message-ID;",
            i + b"bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
            i + b"b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB",
            i + b"4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHut",
            i + b"KVdkLLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV",
            i + b"4bmp/YzhwvcubU4=;",
            b"Received: from client1.football.example.com  [192.0.2.1]",
            i + b"by submitserver.example.com with SUBMISSION;",
            i + b"Fri, 11 Jul 2003 21:01:54 -0700 (PDT)",
            b"From: Joe SixPack <joe@football.example.com>",
            b"To: Suzie Q <suzie@shopping.example.net>",
            b"Subject: Is dinner ready?",
            b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
            b"Message-ID: <20030712040037.46341.5F8J@football.example.com>",
            b"",
            b"Hi.",
            b"",
            body_line,
            b"",
            b"Joe.",
            b"",
        ]
    )


async def test_rfc6376_appendix_a_with_its_errata() -> None:
    """RFC 6376's example is known not to verify as printed: the body hash is of a body with one
    space in "game. Are" (errata 3192; the printed body has two, which simple canonicalization
    keeps), and the signed header fields were indented differently from the printed text
    (errata 4926). With both corrections, the RFC's own signature passes; as printed, its body
    hash does not match."""
    with ZoneServer(RFC6376_ZONE) as ns:
        resolver = DNSResolver([ns.address], timeout=5.0)
        corrected = rfc6376_signed(b"We lost the game. Are you hungry yet?")
        (sig,) = await verify(resolver, corrected)
        assert (sig.result, sig.domain, sig.selector, sig.identity) == (
            "pass",
            "example.com",
            "brisbane",
            "joe@football.example.com",
        )
        assert sig.i_differs_from_d
        (sig,) = await verify(resolver, rfc6376_signed(b"We lost the game.  Are you hungry yet?"))
        assert (sig.result, sig.reason) == ("fail", "body hash mismatch")
        # simple header canonicalization: a refolded signed field breaks it
        refolded = corrected.replace(b"Subject: Is dinner", b"Subject:  Is dinner")
        (sig,) = await verify(resolver, refolded)
        assert sig.result == "fail"


# ---- interop with dkimpy, both key types, both directions -------------------------------------

MESSAGE = (
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: interop\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <i1@a.test>\r\n\r\n"
    b"Hello, Bob.\r\n\r\nTrailing white space   \r\n\r\n\r\n"
)


def zone_of(data: Path, domain: str = "a.test") -> str:
    out = []
    for e in dkim_keys.entries(data, domain, "carteiro"):
        record = dkim_keys.txt_record(dkim_keys.key_path(data, domain, e.selector))
        chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
        out.append(f"{e.selector}._domainkey.{domain}. 60 IN TXT {chunks}")
    return "\n".join(out) + "\n"


def dnsfunc_of(zone: str):  # type: ignore[no-untyped-def]
    static = StaticResolver(zone)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        answer = static._lookup(name.decode().rstrip("."), "TXT", 0)
        return b"".join(answer.values[0]) if answer.values else None  # type: ignore[arg-type]

    return dnsfunc


def test_our_rsa_and_ed25519_signatures_verify_in_dkimpy(tmp_path: Path) -> None:
    dkim_keys.ensure_defaults(tmp_path, "a.test", "carteiro")
    signed = DKIMSigner(tmp_path, ["a.test"], "carteiro")(MESSAGE) + MESSAGE
    dnsfunc = dnsfunc_of(zone_of(tmp_path))
    algorithms = []
    for idx in range(2):
        checker = dkim.DKIM(signed)
        assert checker.verify(idx=idx, dnsfunc=dnsfunc), idx
        algorithms.append(checker.signature_fields[b"a"])
    assert sorted(algorithms) == [b"ed25519-sha256", b"rsa-sha256"]
    tampered = signed.replace(b"Hello, Bob.", b"Hello, Eve.")
    for idx in range(2):
        with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
            dkim.DKIM(tampered).verify(idx=idx, dnsfunc=dnsfunc)


@pytest.mark.parametrize("canon", [(b"relaxed", b"relaxed"), (b"simple", b"simple")])
async def test_dkimpy_rsa_and_ed25519_signatures_verify_here(
    tmp_path: Path, canon: tuple[bytes, bytes]
) -> None:
    dkim_keys.ensure_defaults(tmp_path, "a.test", "carteiro")
    rsa_pem = dkim_keys.key_path(tmp_path, "a.test", "carteiro").read_bytes()
    ed_key = dkim_keys.load_private(dkim_keys.key_path(tmp_path, "a.test", "carteiro-ed"))
    assert isinstance(ed_key, ed25519.Ed25519PrivateKey)
    seed = ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    signed = dkim.sign(MESSAGE, b"carteiro", b"a.test", rsa_pem, canonicalize=canon) + MESSAGE
    signed = (
        dkim.sign(
            signed,
            b"carteiro-ed",
            b"a.test",
            base64.b64encode(seed),
            canonicalize=canon,
            signature_algorithm=b"ed25519-sha256",
        )
        + signed
    )
    dns = StaticResolver(zone_of(tmp_path))
    assert [(s.algorithm, s.result) for s in await verify(dns, signed)] == [
        ("ed25519-sha256", "pass"),
        ("rsa-sha256", "pass"),
    ]
    tampered = signed.replace(b"Subject: interop", b"Subject: interop!")
    assert [s.result for s in await verify(dns, tampered)] == ["fail", "fail"]
