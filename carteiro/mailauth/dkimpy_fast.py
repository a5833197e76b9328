"""dkimpy made fast where it is slow: its RSA steps done by OpenSSL (through `cryptography`)
instead of in pure Python, and its relaxed body canonicalization without needless regex work.

dkimpy (DKIM, RFC 6376; ARC, RFC 8617) canonicalizes, hashes and folds well, but does RSA with
Python integers: a 2048-bit signature ~7 ms with the GIL held, a verification ~0.4 ms (most of
it turning integers into bytes one octet at a time), and it parses a signing key's PEM again in
pure Python at every signature (~135 us). Measured and replaced here (bench/RESULTS.md,
2026-12-08):
- `OpenSSLRSA` is mixed into dkimpy's DKIM and ARC signers: its `gen_header` is dkimpy's with
  the RSA step done by OpenSSL (`rsa_key`, parsed once by the caller);
- dkimpy's module-level `parse_pem_private_key` becomes a memo of itself (a pure function of the
  PEM's bytes; its result only reaches gen_header, which no longer uses it);
- dkimpy's `evaluate_pk` (a key record's parse) becomes a memo of itself too;
- dkimpy's module-level `RSASSA_PKCS1_v1_5_verify` becomes `rsa_verify`, the same test by
  OpenSSL. It answers as dkimpy's for every key of 1,024 bits or more (smaller ones, and any
  key OpenSSL will not build, go to dkimpy's own): a signature shorter than the modulus is
  left-padded with zeros, as dkimpy's integer arithmetic reads it; one not below the modulus
  is refused (RFC 8017 5.2.2), where dkimpy would reduce it first.
- dkimpy's relaxed body canonicalization (RFC 6376 3.4.4) becomes `relaxed_body`: dkimpy runs
  two regex substitutions over the whole body, and the second (`[\\t ]+` -> one space) replaces
  every single space of the text by itself: 3.6 ms of a 100 KB body's 4.4 (two signatures, two
  passes each). `relaxed_body` skips what cannot change anything (no tab and no space before a
  line end: nothing to strip; tabs made spaces, only runs of two spaces or more to compress).
- dkimpy's `rfc822_parse` becomes `rfc822_parse`, which splits only the header section, and
  its relaxed header canonicalization `relaxed_headers` (string methods, not two regex calls per
  field).
dkimpy's results are checked against these byte for byte (signatures, canonical bodies) and
answer for answer (verification) in tests/unit/mailauth/test_dkimpy_fast.py.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import dkim
import dkim.canonicalization
import dkim.crypto
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

MIN_BITS = 1024  # smaller keys (refused by our verifiers anyway) keep dkimpy's own arithmetic
# larger keys are refused outright (OpenSSL's own ceiling): dkimpy's arithmetic would spend
# seconds on a key of a few hundred thousand bits that a hostile sender publishes
MAX_BITS = 16384
_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}
_pure_verify = dkim.crypto.RSASSA_PKCS1_v1_5_verify


class OpenSSLRSA:
    """dkimpy's `DomainSigner.gen_header` (RFC 6376 3.5 and 3.7: the field, folded, hashed with
    the signed header fields and signed; RFC 8617 5.1 the same for an ARC set's two signatures)
    with the RSA step done by `cryptography` (OpenSSL, ~1 ms a 2048-bit signature, the GIL
    released) instead of dkimpy's pure-Python modular exponentiation (~7 ms, the GIL held). Mixed
    into dkimpy's DKIM and ARC signers; `rsa_key` is set on the instance before `sign`."""

    rsa_key: rsa.RSAPrivateKey

    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: tuple[bytes, ...],
        canon_policy: Any,
        header_name: bytes,
        pk: Any,
        standardize: bool = False,
    ) -> bytes:
        if self.signature_algorithm != b"rsa-sha256":  # type: ignore[attr-defined]
            return super().gen_header(  # type: ignore[misc, no-any-return]
                fields, include_headers, canon_policy, header_name, pk, standardize
            )
        if standardize:  # as dkimpy: tags sorted, values lowercased without spaces (but bh=)
            lower = [(k, v.lower().replace(b" ", b"")) for k, v in fields if k != b"bh"]
            kept = [(k, v.replace(b" ", b"")) for k, v in fields if k == b"bh"]
            fields = sorted(lower + kept, key=lambda kv: kv[0])
        value = b"; ".join(b"=".join(x) for x in fields)
        if not standardize:
            value = dkim.fold(value, namelen=len(header_name), linesep=b"\r\n")
        value = dkim.RE_BTAG.sub(b"\\1", value)
        h = dkim.HashThrough(self.hasher(), self.debug_content)  # type: ignore[attr-defined]
        headers = canon_policy.canonicalize_headers(self.headers)  # type: ignore[attr-defined]
        self.signed_headers = dkim.hash_headers(
            h, canon_policy, headers, include_headers, (header_name, b" " + value), dict(fields)
        )
        signature = self.rsa_key.sign(
            h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        fields = [(k, base64.b64encode(signature) if k == b"b" else v) for k, v in fields]
        linesep: bytes = self.linesep  # type: ignore[attr-defined]
        value = b"; ".join(b"=".join(x) for x in fields) + linesep
        if standardize:
            return value
        folded: bytes = dkim.fold(value, namelen=len(header_name), linesep=linesep)
        return folded


@functools.lru_cache(maxsize=256)
def _public_key(n: int, e: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(e, n).public_key()


def rsa_verify(hash: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """dkimpy's `RSASSA_PKCS1_v1_5_verify(hash, signature, public_key)` by OpenSSL: whether
    `signature` is the RSASSA-PKCS1-v1_5 signature of `hash` (a hashlib-like object) under the
    key {'modulus', 'publicExponent'}."""
    algorithm = _HASHES.get(str(getattr(hash, "name", "")).lower())
    n, e = public_key.get("modulus"), public_key.get("publicExponent")
    if type(n) is int and n.bit_length() > MAX_BITS:
        raise dkim.KeyFormatError(f"public key too large: {n.bit_length()} bits")
    if algorithm is None or type(n) is not int or type(e) is not int or n.bit_length() < MIN_BITS:
        return bool(_pure_verify(hash, signature, public_key))
    size = (n.bit_length() + 7) // 8
    if len(signature) > size:
        return bool(_pure_verify(hash, signature, public_key))
    try:
        key = _public_key(n, e)
    except (ValueError, UnsupportedAlgorithm):
        return bool(_pure_verify(hash, signature, public_key))
    try:
        key.verify(
            signature.rjust(size, b"\0"),
            hash.digest(),
            padding.PKCS1v15(),
            utils.Prehashed(algorithm),
        )
    except InvalidSignature:
        return False
    return True


_TRAILING = re.compile(rb"[\t ]+\r\n")
_WSP = re.compile(rb"[\t ]+")
_SPACES = re.compile(rb"  +")
_pure_relaxed_body = dkim.canonicalization.Relaxed.canonicalize_body


def relaxed_body(body: bytes) -> bytes:
    """dkimpy's `Relaxed.canonicalize_body`: whitespace before each line end removed, every other
    run of spaces and tabs made one space, empty lines at the end dropped (RFC 6376 3.4.4)."""
    tab = b"\t" in body
    if tab or b" \r\n" in body:  # else no line ends with a space or a tab
        body = _TRAILING.sub(b"\r\n", body)
    if tab:  # a run of spaces and tabs is then a run of spaces as long
        body = body.replace(b"\t", b" ")
    if b"  " in body:  # a run of one space is already itself
        body = _SPACES.sub(b" ", body)
    return dkim.canonicalization.correct_empty_body(  # type: ignore[no-any-return]
        dkim.canonicalization.strip_trailing_lines(body)
    )


_pure_relaxed_headers = dkim.canonicalization.Relaxed.canonicalize_headers


def relaxed_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """dkimpy's `Relaxed.canonicalize_headers` (RFC 6376 3.4.2): names lowercased, values
    unfolded, runs of spaces and tabs made one space, stripped, CRLF-ended; two regex calls per
    field in dkimpy (~45 a message signed twice), string methods here unless a value has a tab
    or two spaces in a row."""
    out = []
    for name, value in headers:
        if b"\n" in value:  # dkimpy drops each LF with the CR just before it, if any
            value = value.replace(b"\r\n", b"").replace(b"\n", b"")
        if b"\t" in value or b"  " in value:
            value = _WSP.sub(b" ", value)
        out.append((name.lower().rstrip(), value.strip() + b"\r\n"))
    return out


_pure_rfc822_parse = dkim.rfc822_parse
_BLANK_LINE = re.compile(rb"\n\r?\n")  # a line end, then an empty line
_LINE_END = re.compile(rb"\r?\n")


def rfc822_parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """dkimpy's `rfc822_parse`: ([[name, value + CRLF], ...], body with CRLF line ends). dkimpy
    splits the whole message into lines and joins the body's again (~0.5 ms for 100 KB, once per
    DKIM object); here only the header section is split, by dkimpy's own parser, and the body is
    sliced off, its bare LFs made CRLF only if it has any."""
    if message.startswith(b"\n") or message.startswith(b"\r\n"):
        headers: list[list[bytes]] = []
        rest = message[message.index(b"\n") + 1 :]
    else:
        m = _BLANK_LINE.search(message)
        if m is None:  # no empty line: all header, no body
            return _pure_rfc822_parse(message)  # type: ignore[no-any-return]
        headers, _ = _pure_rfc822_parse(message[: m.start() + 1])
        rest = message[m.end() :]
    if rest.count(b"\n") != rest.count(b"\r\n"):
        rest = _LINE_END.sub(b"\r\n", rest)
    return headers, rest


def install() -> None:
    """Put the replacements into dkimpy's module (once; importing this module does it)."""
    if getattr(dkim, "_carteiro_openssl", False):
        return
    dkim.parse_pem_private_key = functools.lru_cache(maxsize=32)(dkim.parse_pem_private_key)
    dkim.RSASSA_PKCS1_v1_5_verify = rsa_verify
    # a key record's parse (tag list, base64, ASN.1: ~50 us), asked twice per signature (our
    # checks, then dkimpy's) and again for each message of the same sender
    dkim.evaluate_pk = functools.lru_cache(maxsize=512)(dkim.evaluate_pk)
    dkim.canonicalization.Relaxed.canonicalize_body = staticmethod(relaxed_body)
    dkim.canonicalization.Relaxed.canonicalize_headers = staticmethod(relaxed_headers)
    dkim.rfc822_parse = rfc822_parse
    dkim._carteiro_openssl = True


install()
