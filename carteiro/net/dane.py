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
    """ "" when the chain (server certificate first, as sent) is authenticated by `records`
    for the MX host `host`; else why not, in a few words."""
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
        for j in range(i):  # each certificate below the anchor signed by the next one up
            cert = chain[j]
            try:
                cert.verify_directly_issued_by(chain[j + 1])
            except (ValueError, TypeError, InvalidSignature):
                return "the chain below the TLSA trust anchor does not verify"
            if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
                return "a certificate below the TLSA trust anchor is expired or not yet valid"
        if not any(mx_matches(name, host) for name in _names(leaf) if name):
            return f"the certificate does not name {host}"
        return ""
    return "no certificate of the chain matches the TLSA trust anchor records"
