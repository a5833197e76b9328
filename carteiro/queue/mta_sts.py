"""MTA-STS (RFC 8461): a recipient domain's published promise that its MX hosts take mail over TLS
with a certificate that verifies, which the queue then holds them to.

Discovery (RFC 8461 3, 5): a TXT record at `_mta-sts.<domain>` ("v=STSv1; id=...") says a policy
exists and names its version; the policy itself comes over HTTPS from
`https://mta-sts.<domain>/.well-known/mta-sts.txt` (the fetch is injected: carteiro/net/mta_sts.py).
A policy is cached for its max_age and refetched only when the TXT id changes or it expires; while
the TXT record or the web server is unreachable the cached policy stays in force (5.1), which is the
point: an attacker on the path who blocks either must not switch the protection off.

Applying it (4, 5): in "enforce" mode only MX hosts that match one of the policy's `mx` patterns are
tried, with STARTTLS required and the certificate verified against the MX name; a message that
cannot be delivered so waits in the queue (never bounces for it before the policy is refetched).
"testing" mode delivers as before and logs what enforce would have refused; "none" is no policy.

No sockets here: the TXT lookup and the HTTPS fetch are injected, the cache is one JSON file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("carteiro.queue.mta_sts")

Mode = Literal["enforce", "testing", "none"]
_MODES: dict[str, Mode] = {"enforce": "enforce", "testing": "testing", "none": "none"}
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: at most a year
MAX_POLICY_OCTETS = 64 * 1024  # RFC 8461 3.3: senders may limit the body (e.g. 64 KB)
FAILED_RETRY = 300.0  # seconds before a failed fetch of the same policy id is tried again
CACHE_MAX = 10_000  # domains kept (the oldest fetched go first)
TXT_MEMO = 60.0  # seconds a domain's _mta-sts TXT answer is reused

_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # RFC 8461 3.1 sts-id
_MAX_AGE = re.compile(r"[0-9]{1,10}")  # RFC 8461 3.2
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def valid_pattern(value: str) -> bool:
    """RFC 8461 3.2 mx: a domain name whose first label may be "*" (checked label by label,
    no regular expression: the policy is a stranger's text)."""
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return (
        0 < len(name) <= 253
        and bool(labels)
        and all(
            0 < len(label) <= 63
            and label[0] != "-"
            and label[-1] != "-"
            and all(c in _LDH for c in label)
            for label in labels
        )
    )


class PolicyError(ValueError):
    """A policy body that is not a valid STSv1 policy (the reason, for the log)."""


@dataclass(frozen=True, slots=True)
class Policy:
    id: str  # the TXT record's id this policy was fetched under
    mode: Mode
    mx: tuple[str, ...]  # patterns, lower case, without a trailing dot
    max_age: int  # seconds
    fetched: float  # time.time() of the fetch

    @property
    def expires(self) -> float:
        return self.fetched + self.max_age

    def matches(self, host: str) -> bool:
        """Is the MX host `host` one this policy names (RFC 8461 4.1)?"""
        return any(mx_matches(p, host) for p in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: an exact name, or "*.example.com", whose "*" stands for exactly one
    leftmost label ("mail.example.com", not "example.com" nor "a.b.example.com")."""
    host = host.rstrip(".").lower()
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def parse_txt(records: list[str]) -> str | None:
    """The policy id of `_mta-sts` TXT records (each record's strings already joined), or None
    when they do not announce exactly one valid STSv1 policy (RFC 8461 3.1)."""
    ours = [r for r in records if r.startswith("v=STSv1")]
    if len(ours) != 1:
        return None
    fields: dict[str, str] = {}
    for part in ours[0].split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            return None
        fields.setdefault(key.strip(" \t"), value.strip(" \t"))
    if fields.get("v") != "STSv1":
        return None
    ident = fields.get("id", "")
    return ident if _ID.fullmatch(ident) else None


def parse_policy(text: str, ident: str, now: float) -> Policy:
    """A policy body (RFC 8461 3.2): "key: value" lines (CRLF or LF); version STSv1, a mode, a
    max_age and, unless the mode is none, at least one mx. Unknown keys are ignored."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"line without a colon: {line[:60]!r}")
        key, value = key.strip(), value.strip(" \t")
        if key == "mx":
            if not valid_pattern(value):
                raise PolicyError(f"bad mx pattern {value[:60]!r}")
            mx.append(value.rstrip(".").lower())
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("no version: STSv1")
    mode = _MODES.get(fields.get("mode", ""))
    if mode is None:
        raise PolicyError(f"bad mode {fields.get('mode', '')[:20]!r}")
    age = fields.get("max_age", "")
    if not _MAX_AGE.fullmatch(age) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"bad max_age {age[:20]!r}")
    if mode != "none" and not mx:
        raise PolicyError(f"mode {mode} without any mx")
    return Policy(ident, mode, tuple(mx), int(age), now)


def policy_text(mode: str, mx: list[str], max_age: int) -> str:
    """The policy we publish (3.2), CRLF lines in the RFC's order."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def policy_id(text: str) -> str:
    """The TXT record's id for a published policy: from its text, so that it changes whenever
    the policy does (senders refetch only on a new id)."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _failure_type(e: BaseException) -> str:
    """RFC 8460 4.3.2.2's name for a failed policy discovery."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return "sts-webpki-invalid"
    if isinstance(e, ValueError):  # (PolicyError, not text/plain, too large, not UTF-8)
        return "sts-policy-invalid"
    return "sts-policy-fetch-error"


def _in_force(p: Policy | None) -> Policy | None:
    return None if p is None or p.mode == "none" else p


# ---- discovery and cache ----------------------------------------------------------------------

TxtLookup = Callable[[str], Awaitable[tuple[str, list[str]]]]  # name -> (status, records)
Fetch = Callable[[str], Awaitable[str]]  # policy domain -> body; raises OSError/ValueError


class Policies:
    """Policies of recipient domains, discovered, fetched and cached (RFC 8461 5.1).

    `txt(name)` answers ("ok"|"nxdomain"|"nodata"|"temp", records); `fetch(domain)` returns the
    policy body or raises. `path`: the cache file (None: memory only)."""

    def __init__(
        self,
        txt: TxtLookup,
        fetch: Fetch,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._txt = txt
        self._fetch = fetch
        self._path = path
        self._clock = clock
        self._cache: dict[str, Policy] = self._load()
        self._failed: dict[tuple[str, str], float] = {}  # (domain, id) -> retry after
        self._txt_memo: dict[str, tuple[float, str, list[str]]] = {}  # domain -> (until, answer)
        self._write_lock = threading.Lock()
        self._snapshots = 0  # cache snapshots taken; the file holds number _written
        self._written = 0
        self._inflight: dict[str, asyncio.Future[Policy | None]] = {}
        # told of each failed discovery (TLS reports, RFC 8460): (domain, policy in force, type)
        self.on_failure: Callable[[str, Policy | None, str], None] | None = None

    async def policy(self, domain: str) -> Policy | None:
        """The policy in force for `domain` (A-label form, lower case), or None (no policy, or
        mode none). Never raises: a failed discovery keeps a cached policy or gives None."""
        domain = domain.rstrip(".").lower()
        pending = self._inflight.get(domain)
        if pending is not None:  # one discovery per domain at a time; the others wait for it
            return _in_force(await asyncio.shield(pending))
        fut: asyncio.Future[Policy | None] = asyncio.get_running_loop().create_future()
        self._inflight[domain] = fut
        got = self._cached(domain)  # (what the waiters get if this task is cancelled)
        try:
            got = await self._discover(domain)
        except Exception:  # a bug must not stop the queue: as if no new policy was found
            log.exception("mta-sts: discovery for %s failed", domain)
        finally:
            del self._inflight[domain]
            fut.set_result(got)
        return _in_force(got)

    def _cached(self, domain: str) -> Policy | None:
        p = self._cache.get(domain)
        if p is not None and p.expires <= self._clock():
            return None
        return p

    async def _lookup(self, domain: str) -> tuple[str, list[str]]:
        """The `_mta-sts` TXT answer, kept TXT_MEMO seconds (not a failure): the queue asks at
        every delivery attempt, and a domain without a policy answers NXDOMAIN, which resolvers
        do not always let dnspython cache (no SOA), so each attempt cost a query."""
        now = self._clock()
        hit = self._txt_memo.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        status, records = await self._txt("_mta-sts." + domain)
        if status != "temp":
            if len(self._txt_memo) >= CACHE_MAX:
                self._txt_memo.clear()
            self._txt_memo[domain] = (now + TXT_MEMO, status, records)
        return status, records

    async def _discover(self, domain: str) -> Policy | None:
        status, records = await self._lookup(domain)
        cached = self._cached(domain)
        if status != "ok":
            # no record (or DNS trouble): a cached policy stays in force until it expires
            return cached
        ident = parse_txt(records)
        if ident is None:
            if cached is None and any(r.startswith("v=STSv1") for r in records):
                log.info("mta-sts: %s: invalid _mta-sts record(s); no policy", domain)
            return cached
        if cached is not None and cached.id == ident:
            return cached
        now = self._clock()
        if self._failed.get((domain, ident), 0.0) > now:
            return cached
        try:
            body = await self._fetch(domain)
            policy = parse_policy(body, ident, now)
        except (OSError, ValueError, TimeoutError) as e:
            if self.on_failure is not None:
                self.on_failure(domain, cached, _failure_type(e))
            self._failed[(domain, ident)] = now + FAILED_RETRY
            if len(self._failed) > CACHE_MAX:
                self._failed.clear()
            log.warning(
                "mta-sts: policy of %s (id %s) not fetched: %s%s",
                domain,
                ident,
                e,
                "; the cached one stays in force" if cached is not None else "",
            )
            return cached
        self._failed.pop((domain, ident), None)
        self._cache[domain] = policy
        log.info(
            "mta-sts: %s: mode %s, mx %s, max_age %d (id %s)",
            domain,
            policy.mode,
            " ".join(policy.mx) or "-",
            policy.max_age,
            ident,
        )
        await self._save()
        return policy

    # ---- the cache file -----------------------------------------------------------------------

    def _load(self) -> dict[str, Policy]:
        if self._path is None:
            return {}
        try:
            raw = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("mta-sts: cache %s unreadable (%s); starting empty", self._path, e)
            return {}
        out: dict[str, Policy] = {}
        if not isinstance(raw, dict):
            return out
        for domain, p in raw.items():
            try:
                out[domain] = Policy(
                    str(p["id"]),
                    _MODES.get(p["mode"], "none"),
                    tuple(str(m) for m in p["mx"]),
                    int(p["max_age"]),
                    float(p["fetched"]),
                )
            except (KeyError, TypeError, ValueError):
                continue
        return out

    async def _save(self) -> None:
        """Write the cache file, off the event loop (an fsync), newest snapshot last."""
        if self._path is None:
            return
        now = self._clock()
        live = {d: p for d, p in self._cache.items() if p.expires > now}
        if len(live) > CACHE_MAX:
            keep = sorted(live.items(), key=lambda kv: kv[1].fetched)[-CACHE_MAX:]
            live = dict(keep)
        self._cache = live
        data = {
            d: {
                "id": p.id,
                "mode": p.mode,
                "mx": list(p.mx),
                "max_age": p.max_age,
                "fetched": p.fetched,
            }
            for d, p in live.items()
        }
        self._snapshots += 1
        await asyncio.to_thread(self._write, self._path, data, self._snapshots)

    def _write(self, path: Path, data: dict[str, dict[str, object]], seq: int) -> None:
        with self._write_lock:
            if seq <= self._written:
                return  # a newer snapshot is already on disk
            tmp = path.with_name(path.name + ".tmp")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "w") as f:
                    json.dump(data, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                self._written = seq
            except OSError as e:
                log.warning("mta-sts: cannot write the cache %s: %s", path, e)
