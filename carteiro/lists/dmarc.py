"""The DMARC policy a poster's domain publishes (RFC 7489 6.6.3), enough to decide whether a
list must rewrite From. Behind `PolicySource` so the mail-authentication package's full DMARC
can take over; this one asks DNS through an injected TXT lookup (app.py gives net's resolver)."""

from __future__ import annotations

import logging
from typing import Literal, Protocol

log = logging.getLogger("carteiro.lists")

Policy = Literal["none", "quarantine", "reject"]
TxtStatus = Literal["ok", "nxdomain", "nodata", "temp"]


class TxtLookup(Protocol):
    async def txt(self, name: str) -> tuple[TxtStatus, list[str]]:
        """The TXT strings at `name` (each record's strings joined)."""
        ...


class PolicySource(Protocol):
    async def policy(self, domain: str) -> Policy | None:
        """The policy that applies to mail From: `domain`; None without a DMARC record."""
        ...


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (publicsuffixlist's data)."""
    try:
        from publicsuffixlist import PublicSuffixList
    except ImportError:  # pragma: no cover - a dependency; the two-label guess as a fallback
        return ".".join(domain.split(".")[-2:])
    global _PSL
    if _PSL is None:
        _PSL = PublicSuffixList()
    found = _PSL.privatesuffix(domain)  # type: ignore[attr-defined]
    return str(found) if found else domain


_PSL: object | None = None


def parse_record(text: str) -> dict[str, str] | None:
    """RFC 7489 6.3: tag=value pairs; None unless it starts with v=DMARC1."""
    tags: dict[str, str] = {}
    for i, part in enumerate(text.split(";")):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if i == 0:
            if key != "v" or value.strip() != "DMARC1":
                return None
            continue
        if eq and key:
            tags.setdefault(key, value.strip().lower())
    return tags


class DnsPolicy:
    """PolicySource over DNS: _dmarc.DOMAIN, else _dmarc.ORGDOMAIN with its sp= (6.6.3)."""

    def __init__(self, lookup: TxtLookup) -> None:
        self.lookup = lookup

    async def _record(self, domain: str) -> dict[str, str] | None:
        status, texts = await self.lookup.txt(f"_dmarc.{domain}")
        if status != "ok":
            return None
        records = [r for r in (parse_record(t) for t in texts) if r is not None]
        return records[0] if len(records) == 1 else None  # 6.6.3: more than one is none

    async def policy(self, domain: str) -> Policy | None:
        domain = domain.lower().rstrip(".")
        record = await self._record(domain)
        sub = False
        if record is None:
            org = organizational_domain(domain)
            if org == domain:
                return None
            record = await self._record(org)
            sub = True
            if record is None:
                return None
        value = record.get("sp", record.get("p")) if sub else record.get("p")
        if value in ("none", "quarantine", "reject"):
            return value  # type: ignore[return-value]
        return None
