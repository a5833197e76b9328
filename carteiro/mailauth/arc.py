"""ARC (RFC 8617): verify the chain of a received message, and seal one we send on (mailing lists,
forwards) so the next receiver can trust the results we saw.

dkimpy does the cryptography; the keys of every ARC-Seal and ARC-Message-Signature are fetched
first through our async resolver. A key lookup that failed for now makes the result temperror,
never fail (a fail would end the chain when we seal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from carteiro.mailauth.dkim_verify import (
    INLINE_MAX,
    MAX_KEY_RECORD,
    MAX_SIGNATURES,
    _key_name,
    _tags,
    header_fields,
)
from carteiro.mailauth.dkimpy_fast import OpenSSLRSA
from carteiro.mailauth.lookup import Answer, Resolver, txt_strings

Result = Literal["none", "pass", "fail", "temperror"]
ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")

_quiet = logging.getLogger("carteiro.arc.lib")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True, slots=True)
class ARCResult:
    result: Result
    instances: int = 0
    sealer: str = ""  # d= of the newest ARC-Seal
    reason: str = ""
    newest_aar: str = ""  # the newest ARC-Authentication-Results value (the sealer's results)
    trusted: bool = False  # the sealer is in the configured trusted list

    @property
    def trusted_pass(self) -> bool:
        """RFC 8617 7.2: the chain validates, the newest sealer is one we trust, and it saw the
        author's domain pass DMARC before it changed the message."""
        return self.result == "pass" and self.trusted and "dmarc=pass" in self.newest_aar.lower()

    def properties(self) -> tuple[tuple[str, str], ...]:
        if not self.instances:
            return ()
        return (("header.oldest-pass", "0"),) if self.result == "pass" else ()


def _arc_headers(
    message: bytes, fields: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    if fields is None:
        fields = header_fields(message)
    return [(n.lower(), v) for n, v in fields if n.lower() in ARC_FIELDS]


async def verify(
    resolver: Resolver,
    message: bytes,
    trusted_sealers: Iterable[str] = (),
    fields: list[tuple[bytes, bytes]] | None = None,
) -> ARCResult:
    """The chain's result. `fields`: the message's header_fields, when the caller has them."""
    headers = _arc_headers(message, fields)
    if not headers:
        return ARCResult("none")
    names = sorted(
        {n for n in (_key_name(_tags(v)) for name, v in headers if name != ARC_FIELDS[2]) if n}
    )[: 2 * MAX_SIGNATURES]
    answers = await asyncio.gather(*(resolver.lookup(n, "TXT") for n in names))
    keys: dict[str, Answer] = dict(zip(names, answers, strict=True))
    for name, answer in keys.items():
        if answer.temporary:
            return ARCResult("temperror", reason=f"key {name}: {answer.error}")
    if len(message) > INLINE_MAX:
        return await asyncio.to_thread(verify_with_keys, message, keys, tuple(trusted_sealers))
    return verify_with_keys(message, keys, trusted_sealers)


def verify_with_keys(
    message: bytes, keys: dict[str, Answer], trusted_sealers: Iterable[str] = ()
) -> ARCResult:
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        answer = keys.get(name.decode("ascii", "replace").lower().rstrip("."))
        records = txt_strings(answer) if answer else []
        if not records or len(records[0]) > MAX_KEY_RECORD:
            return None  # none, or too large to parse (dkim_verify.MAX_KEY_RECORD): no key
        return records[0]

    try:
        cv, results, reason = dkim.ARC(message, logger=_quiet, minkey=1024).verify(dnsfunc=dnsfunc)
    except Exception as e:  # dkimpy on hostile input: the chain is broken, the session goes on
        return ARCResult("fail", reason=f"cannot verify: {type(e).__name__}")
    instances = max((int(r.get("instance", 0)) for r in results), default=0)
    sealer, aar = _newest(message, instances)
    trusted = sealer.lower() in {s.lower().rstrip(".") for s in trusted_sealers}
    if cv == dkim.CV_Pass:
        return ARCResult("pass", instances, sealer, "", aar, trusted)
    if cv == dkim.CV_None:
        return ARCResult("none")
    return ARCResult("fail", instances, sealer, str(reason)[:120], aar, trusted)


def _newest(message: bytes, instance: int) -> tuple[str, str]:
    sealer, aar = "", ""
    for name, value in _arc_headers(message):
        tags = _tags(value) if name != ARC_FIELDS[2] else {}
        if name == b"arc-seal" and tags.get(b"i", b"").strip() == str(instance).encode():
            sealer = tags.get(b"d", b"").decode("ascii", "replace").lower()
        if name == ARC_FIELDS[2]:
            i, _sep, rest = value.partition(b";")
            if i.strip().replace(b" ", b"") == f"i={instance}".encode():
                aar = rest.decode("utf-8", "replace")
    return sealer, aar


class Sealer:
    """Adds our ARC set (RFC 8617 5.1) to a message that carries our Authentication-Results:
    for mail we send on after changing it (list footers, subject tags) or forward."""

    def __init__(self, key_pem: bytes, domain: str, selector: str, authserv_id: str) -> None:
        self.key_pem = key_pem
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("an ARC set is signed with an RSA key (RFC 8617 uses rsa-sha256)")
        self.rsa_key = key  # parsed once; dkimpy would redo it in pure Python at every seal
        self.domain = domain.lower().rstrip(".")
        self.selector = selector
        self.authserv_id = authserv_id

    @classmethod
    def from_key_file(cls, path: Path, domain: str, selector: str, authserv_id: str) -> Sealer:
        return cls(path.read_bytes(), domain, selector, authserv_id)

    @classmethod
    def for_domain(
        cls, data_dir: Path, domain: str, selector: str, authserv_id: str
    ) -> Sealer | None:
        """The sealer for `domain` with its RSA DKIM key at `selector` (RFC 8617 sets use
        rsa-sha256 only); None when there is no such key."""
        from carteiro.mailauth import dkim_keys

        path = dkim_keys.key_path(data_dir, domain, selector)
        try:
            if dkim_keys.algorithm_of(path) != "rsa":
                return None
            return cls.from_key_file(path, domain, selector, authserv_id)  # (parses the key)
        except (OSError, ValueError, TypeError, dkim_keys.KeyError_):
            return None

    def seal(self, message: bytes, timestamp: int | None = None) -> bytes:
        """The ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results fields to put on
        top of `message`; b"" when the message has no Authentication-Results of ours (then
        there is nothing to vouch for, RFC 8617 5.1.1). Two RSA signatures by OpenSSL (~2 ms,
        the GIL mostly released) rather than dkimpy's pure Python (~14 ms, the GIL held)."""
        sealer = _ARC(message, logger=_quiet, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
        sealer.rsa_key = self.rsa_key
        fields = sealer.sign(
            self.selector.encode("ascii"),
            self.domain.encode("idna"),
            self.key_pem,
            self.authserv_id.encode("utf-8"),
            include_headers=sealer.default_sign_headers(),
            timestamp=timestamp if timestamp is not None else int(time.time()),
        )
        return b"".join(fields)


class _ARC(OpenSSLRSA, dkim.ARC):  # type: ignore[misc]
    """dkimpy's ARC sealer (RFC 8617 5.1) with OpenSSL's RSA (mailauth/dkimpy_fast.py)."""
