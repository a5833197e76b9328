"""DKIM signing of outbound mail for our domains (RFC 6376, rsa-sha256, relaxed/relaxed) with dkimpy.

Keys live in DATA/dkim/DOMAIN.SELECTOR.key (PKCS#1 PEM, mode 0600), made by `carteiro init`
through `ensure_dkim_key`. The signer picks the key of the From: domain (or of the nearest parent
domain we hold a key for, which DMARC's relaxed alignment accepts); no key, no signature. Never
signs for a domain that is not ours: the caller decides which messages may be signed at all.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import email.utils
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

log = logging.getLogger("carteiro.dkim")

KEY_BITS = 2048  # RFC 8301 3.2: at least 1024, 2048 recommended
# Signed when present, beside dkimpy's defaults (RFC 6376 5.4.1, which cover List-Unsubscribe):
# RFC 8058 4 wants List-Unsubscribe-Post under the signature too, or receivers ignore one-click.
EXTRA_SIGNED_FIELDS = (b"list-unsubscribe-post",)
DKIM_DIR = "dkim"


def key_path(data_dir: Path, domain: str, selector: str) -> Path:
    return Path(data_dir) / DKIM_DIR / f"{domain.lower()}.{selector}.key"


def ensure_dkim_key(data_dir: Path, domain: str, selector: str) -> Path:
    """The private key file for `domain`/`selector`, created (RSA 2048, 0600) when missing."""
    path = key_path(data_dir, domain, selector)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what dkimpy reads
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def public_key_b64(path: Path) -> str:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def txt_record(path: Path) -> str:
    """The value of SELECTOR._domainkey.DOMAIN TXT (RFC 6376 3.6.1)."""
    return f"v=DKIM1; k=rsa; p={public_key_b64(path)}"


def from_domain(message: bytes) -> str | None:
    """The domain of the (first) From: address, lowercased; None when there is none."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    head = message if end < 0 else message[: end + 2]
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    values = msg.get_all("From") or []
    for _name, addr in email.utils.getaddresses([str(v) for v in values]):
        if "@" in addr:
            return addr.rpartition("@")[2].strip().rstrip(".").lower() or None
    return None


class _DKIM(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's signer (canonicalization, header hashing, folding: RFC 6376 3.4, 3.7, 3.5) with
    the RSA step done by `cryptography` (OpenSSL, about 1 ms, GIL released) instead of dkimpy's
    pure-Python modular exponentiation (about 25 ms a message with the GIL held)."""

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
        value = b"; ".join(b"=".join(x) for x in fields)
        value = dkim.fold(value, namelen=len(header_name), linesep=b"\r\n")
        value = dkim.RE_BTAG.sub(b"\\1", value)
        h = dkim.HashThrough(self.hasher(), self.debug_content)
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(
            h, canon_policy, headers, include_headers, (header_name, b" " + value), dict(fields)
        )
        signature = self.rsa_key.sign(
            h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        fields = [(k, base64.b64encode(signature) if k == b"b" else v) for k, v in fields]
        value = b"; ".join(b"=".join(x) for x in fields) + self.linesep
        folded: bytes = dkim.fold(value, namelen=len(header_name), linesep=self.linesep)
        return folded


class DKIMSigner:
    """A `Signer` for the spool: message bytes -> a DKIM-Signature field to prepend (or b"")."""

    def __init__(
        self, data_dir: Path, domains: Iterable[str] | Callable[[str], bool], selector: str
    ) -> None:
        self.data_dir = Path(data_dir)
        if callable(domains):
            self.is_ours = domains
        else:
            ours = {d.lower().rstrip(".") for d in domains}
            self.is_ours = ours.__contains__
        self.selector = selector
        self._keys: dict[str, bytes | None] = {}
        self._rsa: dict[str, rsa.RSAPrivateKey] = {}
        self._lock = threading.Lock()

    def _key(self, domain: str) -> bytes | None:
        with self._lock:
            if domain not in self._keys:
                path = key_path(self.data_dir, domain, self.selector)
                try:
                    self._keys[domain] = path.read_bytes()
                except FileNotFoundError:
                    log.warning("dkim: no key %s; mail from %s goes unsigned", path, domain)
                    self._keys[domain] = None
            return self._keys[domain]

    def signing_domain(self, author_domain: str) -> str | None:
        labels = author_domain.split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            if self.is_ours(candidate) and self._key(candidate) is not None:
                return candidate
        return None

    def __call__(self, message: bytes) -> bytes:
        author = from_domain(message)
        if author is None:
            return b""
        domain = self.signing_domain(author)
        if domain is None:
            return b""
        key = self._key(domain)
        assert key is not None
        rsa_key = self._rsa.get(domain)
        if rsa_key is None:
            loaded = serialization.load_pem_private_key(key, password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"DKIM key of {domain} is not an RSA key")
            rsa_key = self._rsa[domain] = loaded
        signer = _DKIM(message, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
        signer.rsa_key = rsa_key
        signer.should_sign.update(EXTRA_SIGNED_FIELDS)
        sig: bytes = signer.sign(
            self.selector.encode("ascii"),
            domain.encode("idna"),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
        )
        return sig
