"""DANE for SMTP (RFC 7672, RFC 7671, RFC 6698): does the certificate chain an MX host presented
match one of its DNSSEC-validated TLSA records?

Only the usages RFC 7672 3.1 keeps for SMTP: DANE-EE(3), the server's own certificate or public key,
with no name and no date checks (the DNS vouches for the key itself); and DANE-TA(2), a trust
anchor the server sends in its chain, below which the chain must verify (signatures and dates) and
the server certificate must name the MX host. PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP and
are dropped by the router (routing.usable_tlsa) before they get here. Selectors: the whole certificate (0) or its
SubjectPublicKeyInfo (1); matching types: the data itself (0), SHA-256 (1), SHA-512 (2).

OpenSSL has DANE built in, but Python's ssl module does not expose it: the handshake is made
without verification and the chain is checked here, with `cryptography`, before any mail is sent.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from carteiro.queue.mta_sts import mx_matches
from carteiro.queue.transport import TLSARecord

DANE_TA, DANE_EE = 2, 3


def _association(cert: x509.Certificate, selector: int, mtype: int) -> bytes:
    if selector == 0:
        data = cert.public_bytes(serialization.Encoding.DER)
    else:
        data = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def _matches(cert: x509.Certificate, records: Sequence[TLSARecord]) -> bool:
    return any(hmac.compare_digest(_association(cert, s, m), d) for _u, s, m, d in records)


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return list(san.get_values_for_type(x509.DNSName))


def verify(
    chain_der: Sequence[bytes],
    records: Sequence[TLSARecord],
    host: str,
    now: datetime.datetime | None = None,
) -> str:
    """Why the chain (server certificate first, as sent) is not authenticated by `records` for
    the MX host `host`, in a few words; "" when it is."""
    if not chain_der:
        return "no certificate"
    try:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der]
    except ValueError:
        return "an unreadable certificate"
    leaf = chain[0]
    ee = [r for r in records if r[0] == DANE_EE]
    if ee and _matches(leaf, ee):
        return ""
    ta = [r for r in records if r[0] == DANE_TA]
    if not ta:
        return "the certificate matches none of the TLSA records"
    when = now or datetime.datetime.now(datetime.UTC)
    for i in range(1, len(chain)):
        if not _matches(chain[i], ta):
            continue
        # (the anchor's own dates are not checked: the DNS vouches for it)
        return _below(chain[:i], when, issuer=chain[i]) or _named(leaf, host)
    # a trust anchor published as its whole public key (2 1 0), which the server need not send
    # (RFC 7671 5.2.2): a certificate of the chain signed by that key anchors it
    for _u, sel, mtype, data in ta:
        if sel != 1 or mtype != 0:
            continue
        try:
            key = serialization.load_der_public_key(data)
        except ValueError:
            continue
        for i, cert in enumerate(chain):
            if _signed_by(cert, key):
                return _below(chain[: i + 1], when) or _named(leaf, host)
    return "no certificate of the chain matches the TLSA trust anchor records"


def _named(leaf: x509.Certificate, host: str) -> str:
    """RFC 7672 3.2.3: with a trust anchor, the server certificate must name the MX host."""
    if any(mx_matches(name, host) for name in _names(leaf) if name):
        return ""
    return f"the certificate does not name {host}"


def _below(
    chain: Sequence[x509.Certificate],
    when: datetime.datetime,
    issuer: x509.Certificate | None = None,
) -> str:
    """The certificates below a trust anchor (leaf first): each signed by the next one (the
    last by `issuer`, when given), each within its dates. "" or why not."""
    for j, cert in enumerate(chain):
        up = chain[j + 1] if j + 1 < len(chain) else issuer
        if up is not None:
            try:
                cert.verify_directly_issued_by(up)
            except (ValueError, TypeError, InvalidSignature):
                return "the chain below the TLSA trust anchor does not verify"
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return "a certificate below the TLSA trust anchor is expired or not yet valid"
    return ""


def _signed_by(cert: x509.Certificate, key: object) -> bool:
    """Whether `key` made the certificate's signature (PKCS#1 v1.5, ECDSA, EdDSA)."""
    algorithm = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
