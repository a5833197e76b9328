"""mailauth/dkimpy_fast.py: dkimpy's RSA verification by OpenSSL answers as dkimpy's own
(`dkim.crypto.RSASSA_PKCS1_v1_5_verify`), except for a signature not below the modulus, which
RFC 8017 5.2.2 refuses and dkimpy's arithmetic reduces first."""

from __future__ import annotations

import hashlib
import os
import random

import dkim
import dkim.canonicalization
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.mailauth import dkim_verify, dkimpy_fast
from carteiro.mailauth.dkimpy_fast import relaxed_body, rsa_verify

pure = dkim.crypto.RSASSA_PKCS1_v1_5_verify
KEYS = {
    bits: rsa.generate_private_key(public_exponent=65537, key_size=bits) for bits in (1024, 2048)
}


def public(key: rsa.RSAPrivateKey) -> dict[str, int]:
    nums = key.public_key().public_numbers()
    return {"modulus": nums.n, "publicExponent": nums.e}


def sign(key: rsa.RSAPrivateKey, data: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    return key.sign(data, padding.PKCS1v15(), algorithm)


def test_installed_into_dkimpy() -> None:
    assert dkim_verify.dkim is dkim
    assert dkim.RSASSA_PKCS1_v1_5_verify is rsa_verify
    assert dkim.parse_pem_private_key.cache_info() is not None  # type: ignore[attr-defined]
    dkimpy_fast.install()  # twice is once
    assert dkim.RSASSA_PKCS1_v1_5_verify is rsa_verify


@pytest.mark.parametrize("bits", [1024, 2048])
@pytest.mark.parametrize(
    ("name", "algorithm"), [("sha256", hashes.SHA256()), ("sha1", hashes.SHA1())]
)
def test_valid_and_tampered_answer_as_dkimpy(
    bits: int, name: str, algorithm: hashes.HashAlgorithm
) -> None:
    key = KEYS[bits]
    sig = sign(key, b"the signed header hash input", algorithm)
    good = hashlib.new(name, b"the signed header hash input")
    bad = hashlib.new(name, b"the signed header hash input, changed")
    for h, expected in ((good, True), (bad, False)):
        assert pure(h, sig, public(key)) is expected
        assert rsa_verify(h, sig, public(key)) is expected
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert rsa_verify(good, flipped, public(key)) is pure(good, flipped, public(key)) is False
    # a key that is not the signer's
    other = KEYS[2048 if bits == 1024 else 1024]
    assert rsa_verify(good, sig, public(other)) is False


def test_signature_without_its_leading_zero_octets_verifies_as_in_dkimpy() -> None:
    key = KEYS[1024]
    for i in range(5000):
        data = b"message %d" % i
        sig = sign(key, data, hashes.SHA256())
        if sig[0] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero octet in 5000")
    short = sig.lstrip(b"\0")
    h = hashlib.sha256(data)
    assert pure(h, short, public(key)) is True
    assert rsa_verify(h, short, public(key)) is True


def test_signature_above_the_modulus_is_refused() -> None:
    """dkimpy reduces s + n to s and says valid; RFC 8017 5.2.2: out of range, invalid."""
    key = KEYS[1024]
    pub = public(key)
    for i in range(200):
        data = b"m %d" % i
        sig = sign(key, data, hashes.SHA256())
        raised = int.from_bytes(sig, "big") + pub["modulus"]
        if raised.bit_length() <= 1024:
            break
    else:
        pytest.fail("no signature with s + n < 2**1024 in 200")
    h = hashlib.sha256(data)
    forged = raised.to_bytes(128, "big")
    assert pure(h, forged, pub) is True
    assert rsa_verify(h, forged, pub) is False


def small_key(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key smaller than `cryptography` will generate (Fermat-tested primes: a test's)."""
    rng = random.Random(bits)

    def prime() -> int:
        while True:
            c = rng.getrandbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if (
                all(pow(a, c - 1, c) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23))
                and (c - 1) % 65537
            ):
                return c

    p, q = prime(), prime()
    d = pow(65537, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(65537, p * q)
    ).private_key(unsafe_skip_rsa_key_validation=True)


def test_small_keys_keep_dkimpy_arithmetic() -> None:
    key = small_key(512)
    sig = sign(key, b"x", hashes.SHA256())
    assert rsa_verify(hashlib.sha256(b"x"), sig, public(key)) is True
    # too small for the digest's encoding: dkimpy's own error, which the caller turns into
    # a key error (permerror), not a plain failure
    tiny = {"modulus": (1 << 255) + 1, "publicExponent": 65537}
    with pytest.raises(dkim.crypto.DigestTooLargeError):
        rsa_verify(hashlib.sha256(b"x"), b"\1" * 32, tiny)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.sampled_from([1024, 2048]))
def test_any_signature_bytes_answer_as_dkimpy(sig: bytes, bits: int) -> None:
    pub = public(KEYS[bits])
    h = hashlib.sha256(b"fixed")
    expected = pure(h, sig, pub)
    if int.from_bytes(sig, "big") >= pub["modulus"]:
        expected = False if len(sig) <= bits // 8 else expected
    assert rsa_verify(h, sig, pub) is expected


def test_random_valid_signatures_over_many_digests() -> None:
    key = KEYS[2048]
    for _ in range(50):
        data = os.urandom(40)
        sig = key.sign(
            hashlib.sha256(data).digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        assert rsa_verify(hashlib.sha256(data), sig, public(key)) is True


def test_pem_parse_is_remembered() -> None:
    pem = KEYS[1024].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    before = dkim.parse_pem_private_key.cache_info().hits  # type: ignore[attr-defined]
    first = dkim.parse_pem_private_key(pem)
    assert dkim.parse_pem_private_key(pem) is first
    assert dkim.parse_pem_private_key.cache_info().hits == before + 1  # type: ignore[attr-defined]


PIECES = [
    b"a",
    b"word",
    b" ",
    b"  ",
    b"\t",
    b" \t ",
    b"\r\n",
    b"\r",
    b"\n",
    b"\r\n\r\n",
    b"\x00",
    b"\xff",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_relaxed_body_is_dkimpy_own(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    assert relaxed_body(body) == dkimpy_fast._pure_relaxed_body(body)


def test_relaxed_body_cases_and_installed() -> None:
    cases = {
        b"": b"",
        b"\r\n": b"",
        b"\r\n\r\n": b"",
        b"a": b"a\r\n",
        b"a  b \r\n": b"a b\r\n",
        b"a\t\tb\t\r\n\r\n\r\n": b"a b\r\n",
        b" a \r\n": b" a\r\n",
        b"a b c\r\n": b"a b c\r\n",
        b"a   \r\nb": b"a\r\nb\r\n",
    }
    for body, want in cases.items():
        assert relaxed_body(body) == want == dkimpy_fast._pure_relaxed_body(body), body
    policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    assert policy.canonicalize_body(b"x  y\r\n") == b"x y\r\n"
    assert dkim.canonicalization.Relaxed.canonicalize_body is relaxed_body


MESSAGE_PIECES = [b"A: b", b"From x", b" cont", b"\tc", b"\r\n", b"\n", b"\r", b"body", b":", b"x"]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(MESSAGE_PIECES), max_size=40))
def test_rfc822_parse_is_dkimpy_own(pieces: list[bytes]) -> None:
    message = b"".join(pieces)
    try:
        want = dkimpy_fast._pure_rfc822_parse(message)
    except Exception as e:  # (a folded line first: dkimpy's IndexError, ours too)
        with pytest.raises(type(e)):
            dkimpy_fast.rfc822_parse(message)
        return
    assert dkimpy_fast.rfc822_parse(message) == want


def test_rfc822_parse_cases_and_installed() -> None:
    for message in (
        b"A: b\r\n\r\nbody\r\n",
        b"A: b\n\nbody\nmore\n",
        b"A: b\r\n c\r\n\nbody\r\nbare\nlf\r\r\n",
        b"\r\nno headers\r\n",
        b"\nno headers",
        b"A: b\r\n",
        b"A: b",
        b"From sender\r\nA: b\r\n\r\n",
        b"",
    ):
        assert dkimpy_fast.rfc822_parse(message) == dkimpy_fast._pure_rfc822_parse(message), message
    assert dkim.rfc822_parse is dkimpy_fast.rfc822_parse


VALUE_PIECES = [
    b"a",
    b" ",
    b"  ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\r\n",
    b"\n\r\n",
    b"\x0b",
    b"x y",
]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"Subject", b"FROM ", b"x-A\t", b"To"]),
            st.lists(st.sampled_from(VALUE_PIECES), max_size=20).map(b"".join),
        ),
        max_size=6,
    )
)
def test_relaxed_headers_are_dkimpy_own(headers: list[tuple[bytes, bytes]]) -> None:
    want = [tuple(h) for h in dkimpy_fast._pure_relaxed_headers(headers)]
    assert dkimpy_fast.relaxed_headers(headers) == want
    assert dkim.canonicalization.Relaxed.canonicalize_headers is dkimpy_fast.relaxed_headers
