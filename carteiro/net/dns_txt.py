"""TXT lookups (for DMARC policies) with the resolver net/dns.py configures from [dns]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import dns.exception
import dns.resolver

from carteiro.net.dns import make_resolver

Status = Literal["ok", "nxdomain", "nodata", "temp"]


class DNSTxt:
    """Implements carteiro.lists.dmarc.TxtLookup."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 5.0) -> None:
        self.resolver = make_resolver(nameservers, timeout)

    async def txt(self, name: str) -> tuple[Status, list[str]]:
        try:
            answer = await self.resolver.resolve(name, "TXT", search=False)
        except dns.resolver.NXDOMAIN:
            return "nxdomain", []
        except dns.resolver.NoAnswer:
            return "nodata", []
        except dns.exception.DNSException:
            return "temp", []
        # RFC 7208 3.3 / RFC 7489 6.6.3: a record's strings are joined without a separator
        return "ok", [
            b"".join(rr.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for rr in answer
        ]
