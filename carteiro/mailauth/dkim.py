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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from carteiro.mailauth import dkim_keys
from carteiro.mailauth.dkim_keys import DKIM_DIR, KEY_BITS, key_path
from carteiro.mailauth.dkimpy_fast import OpenSSLRSA

log = logging.getLogger("carteiro.dkim")

__all__ = ["DKIM_DIR", "KEY_BITS", "DKIMSigner", "ensure_dkim_key", "key_path", "txt_record"]
# Signed when present, beside dkimpy's defaults (RFC 6376 5.4.1, which cover List-Unsubscribe):
# RFC 8058 4 wants List-Unsubscribe-Post under the signature too, or receivers ignore one-click.
EXTRA_SIGNED_FIELDS = (b"list-unsubscribe-post",)


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
    """The value of SELECTOR._domainkey.DOMAIN TXT (RFC 6376 3.6.1; RFC 8463 for Ed25519)."""
    return dkim_keys.txt_record(path)


_NAME_OCTETS = frozenset(range(0x21, 0x7F)) - {ord(":")}  # a field name (email's headerRE)
_LETDIG = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ATEXT = frozenset(_LETDIG + b"!#$%&'*+-/=?^_`{|}~.")  # RFC 5322 atext, and the dots between
_PHRASE = _ATEXT | frozenset(b" \t")
_DOMAIN_LABEL = frozenset(_LETDIG + b"-")


def _simple_from_domain(message: bytes) -> str | None:
    """The quick road of from_domain: one unfolded ASCII From field of the plainest shapes
    (`a@b` or `Phrase <a@b>`) in a header section with nothing unusual. None: anything else,
    left to the full parse, whose answer this must equal (tests/unit/mailauth/test_dkim_author.py)."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    head = message if end < 0 else message[: end + 2]
    if b"\r" in head.replace(b"\r\n", b""):
        return None  # a bare CR is a line break to email's parser
    value: bytes | None = None
    in_from = False  # the last field line was From
    for n, line in enumerate(head.split(b"\n")):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            break
        if line[0] == 0x20 or line[0] == 0x09:  # a continuation line
            if n == 0 or in_from:
                return None  # a header starting folded, or a folded From field
            continue
        colon = line.find(b":")
        if colon < 0 or line.startswith(b"From ") or not _NAME_OCTETS.issuperset(line[:colon]):
            return None  # not a field, or an mbox "From " line: the full parse decides
        in_from = line[:colon].lower() == b"from"
        if in_from:
            if value is not None:
                return None  # a second From field
            value = line[colon + 1 :]
    return None if value is None else _domain_of_simple(value)


def _domain_of_simple(value: bytes) -> str | None:
    if not value.isascii():
        return None
    v = value.strip(b" \t")
    lt = v.find(b"<")
    if lt >= 0:
        if not v.endswith(b">") or v.count(b"<") != 1 or v.count(b">") != 1:
            return None
        phrase, addr = v[:lt], v[lt + 1 : -1]
        if not _PHRASE.issuperset(phrase):
            return None
    else:
        addr = v
    local, at, domain = addr.partition(b"@")
    if not at or not local or not domain or not _ATEXT.issuperset(local):
        return None
    if local.startswith(b".") or local.endswith(b".") or b".." in local:
        return None
    labels = domain[:-1].split(b".") if domain.endswith(b".") else domain.split(b".")
    if not all(label and _DOMAIN_LABEL.issuperset(label) for label in labels):
        return None
    return domain.rstrip(b".").lower().decode("ascii")


def from_domain(message: bytes) -> str | None:
    """The domain of the (first) From: address, lowercased; None when there is none. The queue
    asks for every message it may sign: a plain From field is read without email's parser
    (~150 us a message), anything else gets the full parse."""
    quick = _simple_from_domain(message)
    if quick is not None:
        return quick
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


class _DKIM(OpenSSLRSA, dkim.DKIM):  # type: ignore[misc]
    """dkimpy's DKIM signer (canonicalization, header hashing, folding) with OpenSSL's RSA."""


@dataclass(frozen=True, slots=True)
class _Key:
    selector: str
    rsa_key: rsa.RSAPrivateKey | None
    pem: bytes  # RSA: the PEM dkimpy reads; Ed25519: the base64 seed dkimpy reads


class DKIMSigner:
    """A `Signer` for the spool: message bytes -> the DKIM-Signature fields to prepend (or b"").

    Signs with every active key of the domain (dkim_keys): an RSA and an Ed25519 signature
    (RFC 8463 6: sign with both while verifiers learn Ed25519). Key changes (`carteiro dkim
    activate`) are seen within a second, without a restart."""

    RECHECK = 1.0  # seconds between looks at a domain's key state

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
        # domain -> (next check, state file mtime, keys)
        self._keys: dict[str, tuple[float, float, tuple[_Key, ...]]] = {}
        self._lock = threading.Lock()

    def _state_mtime(self, domain: str) -> float:
        try:
            return dkim_keys.state_path(self.data_dir, domain).stat().st_mtime
        except FileNotFoundError:
            return -1.0

    def _keys_for(self, domain: str) -> tuple[_Key, ...]:
        now = time.monotonic()
        with self._lock:
            hit = self._keys.get(domain)
            if hit is not None and hit[0] > now:
                return hit[2]
            mtime = self._state_mtime(domain)
            if hit is not None and hit[1] == mtime and hit[2]:
                self._keys[domain] = (now + self.RECHECK, mtime, hit[2])
                return hit[2]
            keys = self._load(domain)
            self._keys[domain] = (now + self.RECHECK, mtime, keys)
            return keys

    def _load(self, domain: str) -> tuple[_Key, ...]:
        out: list[_Key] = []
        try:
            active = dkim_keys.active(self.data_dir, domain, self.selector)
        except dkim_keys.KeyError_ as e:
            log.error("dkim: %s; mail from %s goes unsigned", e, domain)
            return ()
        for entry in active:
            path = key_path(self.data_dir, domain, entry.selector)
            try:
                key = dkim_keys.load_private(path)
            except FileNotFoundError:
                log.warning("dkim: no key %s; mail from %s goes unsigned with it", path, domain)
                continue
            except (ValueError, dkim_keys.KeyError_) as e:
                log.error("dkim: unusable key %s: %s", path, e)
                continue
            if isinstance(key, ed25519.Ed25519PrivateKey):
                seed = key.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
                out.append(_Key(entry.selector, None, base64.b64encode(seed)))
            else:
                out.append(_Key(entry.selector, key, path.read_bytes()))
        return tuple(out)

    def signing_domain(self, author_domain: str) -> str | None:
        labels = author_domain.split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            if self.is_ours(candidate) and self._keys_for(candidate):
                return candidate
        return None

    def signs(self, message: bytes) -> bool:
        """Whether `message` gets a signature: its author's domain (or a parent) is ours and
        has an active key. A header parse and cached key state: cheap enough for the event loop,
        where the queue asks before handing a message to a thread to be signed."""
        author = from_domain(message)
        return author is not None and self.signing_domain(author) is not None

    def __call__(self, message: bytes) -> bytes:
        author = from_domain(message)
        if author is None:
            return b""
        domain = self.signing_domain(author)
        if domain is None:
            return b""
        fields = b""
        for key in self._keys_for(domain):
            if key.rsa_key is not None:
                signer = _DKIM(message, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
                signer.rsa_key = key.rsa_key
                signer.should_sign.update(EXTRA_SIGNED_FIELDS)
                sig: bytes = signer.sign(
                    key.selector.encode("ascii"),
                    domain.encode("idna"),
                    key.pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                )
            else:
                ed = dkim.DKIM(message, signature_algorithm=b"ed25519-sha256", linesep=b"\r\n")
                ed.should_sign.update(EXTRA_SIGNED_FIELDS)
                sig = ed.sign(
                    key.selector.encode("ascii"),
                    domain.encode("idna"),
                    key.pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                )
            fields += sig
        return fields
