"""DKIM verification (RFC 6376 6, RSA and Ed25519 per RFC 8463) of every signature of a message,
with dkimpy doing canonicalization and hashing.

Keys are fetched first through our async resolver (one lookup per distinct selector); dkimpy then
verifies against those answers without any DNS of its own. Results follow RFC 8601 2.7.1: a key
lookup that failed temporarily is temperror (never fail), a malformed signature or key permerror,
a signature whose l= leaves part of the body unsigned is "policy" (RFC 6376 8.2: content can be
appended under it) and counts for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Literal

import dkim

from carteiro.mailauth import dkimpy_fast
from carteiro.mailauth.lookup import Answer, Resolver, txt_strings

dkimpy_fast.install()  # dkimpy's slow steps replaced (RSA by OpenSSL, parses, canonicalization)

Result = Literal["pass", "fail", "neutral", "policy", "temperror", "permerror"]
INLINE_MAX = 64 * 1024  # larger messages are verified in a worker thread
MAX_SIGNATURES = 10  # verify at most this many (each costs a lookup and two hashes)
# A key record longer is refused unparsed (permerror): a 16,384-bit RSA key's record is ~2.8 KB,
# and dkimpy's pure-Python parse of a 64 KB one (~390,000 bits) costs a tenth of a second or more
MAX_KEY_RECORD = 4096
_WSP = re.compile(rb"\s+")

_quiet = logging.getLogger("carteiro.dkim.lib")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True, slots=True)
class Signature:
    result: Result
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    identity: str = ""  # i= (defaults to @d)
    reason: str = ""
    b_prefix: str = ""  # the first 8 characters of b= (RFC 6008 header.b)

    @property
    def i_differs_from_d(self) -> bool:
        return bool(self.identity) and self.identity.lower() != f"@{self.domain}"


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return dict(dkim.util.parse_tag_value(value))
    except Exception:
        return {}


def _key_name(sig: dict[bytes, bytes]) -> str | None:
    d, s = sig.get(b"d"), sig.get(b"s")
    if not d or not s:
        return None
    try:
        return f"{s.decode('ascii')}._domainkey.{d.decode('ascii')}".lower().rstrip(".")
    except UnicodeDecodeError:
        return None


def header_fields(message: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, raw value) fields of the header section, parsed as dkimpy parses them, without
    splitting the body into lines (a 100 KB body made that the largest cost of a check)."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 4]
    if end < 0:
        alt = message.find(b"\n\n")
        head = message if alt < 0 else message[: alt + 2]
    try:
        headers, _body = dkim.rfc822_parse(head)
    except Exception:
        return []
    return list(headers)


def signature_headers(
    message: bytes, fields: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """The DKIM-Signature fields, top down; `fields`: the message's header_fields, if known."""
    if fields is None:
        fields = header_fields(message)
    return [(n, v) for n, v in fields if n.lower() == b"dkim-signature"]


async def fetch_keys(resolver: Resolver, sigs: list[tuple[bytes, bytes]]) -> dict[str, Answer]:
    wanted = {n for n in (_key_name(_tags(v)) for _n, v in sigs[:MAX_SIGNATURES]) if n}
    if not wanted:
        return {}
    names_list = sorted(wanted)
    answers = await asyncio.gather(*(resolver.lookup(n, "TXT") for n in names_list))
    return dict(zip(names_list, answers, strict=True))


def _body_length(message: bytes, c_value: bytes) -> int:
    _headers, body = dkim.rfc822_parse(message)
    policy = dkim.CanonicalizationPolicy.from_c_value(c_value or b"simple/simple")
    return len(policy.canonicalize_body(body))


def verify_with_keys(
    message: bytes,
    keys: dict[str, Answer],
    sigs: list[tuple[bytes, bytes]] | None = None,
) -> list[Signature]:
    """Verify every DKIM-Signature (top down) against the fetched `keys`. CPU only. `sigs`:
    the message's signature_headers, if known."""
    if sigs is None:
        sigs = signature_headers(message)
    if not sigs:
        return []
    # one dkimpy object for all of them: it parses the message when made, and each
    # verification sets afresh every field of it that the verification reads
    verifier = dkim.DKIM(message, logger=_quiet, minkey=1024)
    out: list[Signature] = []
    for idx, (_name, value) in enumerate(sigs[:MAX_SIGNATURES]):
        out.append(_verify_one(verifier, message, idx, value, keys))
    return out


def _verify_one(
    verifier: dkim.DKIM, message: bytes, idx: int, value: bytes, keys: dict[str, Answer]
) -> Signature:
    tags = _tags(value)
    d = tags.get(b"d", b"").decode("ascii", "replace").lower()
    s = tags.get(b"s", b"").decode("ascii", "replace")
    a = tags.get(b"a", b"").decode("ascii", "replace")
    i = tags.get(b"i", b"").decode("ascii", "replace")
    b = _WSP.sub(b"", tags.get(b"b", b"")).decode("ascii", "replace")[:8]

    def res(result: Result, reason: str) -> Signature:
        return Signature(result, d, s, a, i, reason, b)

    try:
        prep = verifier.verify_headerprep(idx)
    except dkim.DKIMException as e:
        return res("permerror", f"bad signature: {e}")
    if not prep:
        return res("permerror", "no signature")
    sig, include_headers, sigheaders = prep
    if sig.get(b"a", b"").strip().lower() == b"rsa-sha1":
        # RFC 8301 3.1: "rsa-sha1 MUST NOT be used for signing or verifying" (SHA-1 collisions)
        return res("permerror", "rsa-sha1 is not accepted (RFC 8301)")
    name = _key_name(sig)
    answer = keys.get(name or "")
    if name is None or answer is None:
        return res("permerror", "no key name")
    if answer.status == "temp":
        return res("temperror", f"key lookup failed: {answer.error}")
    records = txt_strings(answer)
    if not records:
        # RFC 6376 6.1.2: no key record is a PERMFAIL
        return res("permerror", "no key for signature")
    record = records[0]
    if len(record) > MAX_KEY_RECORD:
        return res("permerror", f"key record too large ({len(record)} octets)")
    try:
        pk, _keysize, ktag, _tlsrpt = dkim.evaluate_pk(name.encode(), record)
    except dkim.DKIMException as e:
        return res("permerror", f"bad key: {e}")
    except Exception as e:
        return res("permerror", f"bad key: {e}")
    if pk is None:
        return res("permerror", "key not for e-mail (s= tag)")
    if not dict(_tags(record)).get(b"p", b"x"):
        # RFC 6376 3.6.1: an empty p= means the key was revoked
        return res("permerror", "key revoked")
    if (ktag == b"ed25519") != a.startswith("ed25519"):
        return res("permerror", "key type does not match a=")

    def dnsfunc(_name: bytes, timeout: float = 5) -> bytes:
        return record

    try:
        ok = verifier.verify_sig(sig, include_headers, sigheaders[idx], dnsfunc)
    except dkim.ValidationError as e:
        text = str(e)
        return res("fail", "body hash mismatch" if "body hash" in text else text[:120])
    except dkim.DKIMException as e:
        return res("permerror", str(e)[:120])
    except Exception as e:  # dkimpy on hostile input: never crash the session
        return res("permerror", f"cannot verify: {type(e).__name__}")
    if not ok:
        return res("fail", "signature did not verify")
    if b"l" in sig:
        try:
            covered = int(sig[b"l"])
            total = _body_length(message, sig.get(b"c", b""))
        except (ValueError, dkim.DKIMException):
            return res("permerror", "bad l= tag")
        if covered < total:
            # RFC 6376 8.2: anyone can append content under such a signature
            return res("policy", f"l={covered} leaves {total - covered} body octets unsigned")
    return res("pass", "")


async def verify(
    resolver: Resolver, message: bytes, fields: list[tuple[bytes, bytes]] | None = None
) -> list[Signature]:
    """Every signature's result; [] when the message has none (DKIM result "none").
    `fields`: the message's header_fields, when the caller has them already."""
    sigs = signature_headers(message, fields)
    if not sigs:
        return []
    keys = await fetch_keys(resolver, sigs)
    if len(message) > INLINE_MAX:
        # canonicalizing a large body takes milliseconds: let the loop serve others meanwhile
        return await asyncio.to_thread(verify_with_keys, message, keys, sigs)
    return verify_with_keys(message, keys, sigs)


def result_summary(signatures: list[Signature]) -> str:
    return ", ".join(f"{s.domain}:{s.result}" for s in signatures) or "none"


def aligned_pass(signatures: list[Signature]) -> list[str]:
    return [s.domain for s in signatures if s.result == "pass"]
