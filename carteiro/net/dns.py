"""DNS for the outbound queue: dnspython's async resolver behind the queue's `Resolver` Protocol.

Answers are cached for their TTL (dnspython's cache). Configured nameservers are "host:port"
strings ([dns] nameservers); none means the system resolver (/etc/resolv.conf). Errors become
values: nxdomain and nodata are answers, timeouts and SERVFAIL are "temp".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from carteiro.core.hostport import parse_hostport
from carteiro.mailauth.lookup import Answer
from carteiro.queue.routing import AddressAnswer, DNSStatus, MXAnswer

log = logging.getLogger("carteiro.dns")


def make_resolver(
    nameservers: Sequence[str] = (), timeout: float = 5.0
) -> dns.asyncresolver.Resolver:
    if nameservers:
        r = dns.asyncresolver.Resolver(configure=False)
        servers: list[str | dns.nameserver.Nameserver] = []
        for ns in nameservers:
            host, port = parse_hostport(ns, 53)
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        r.nameservers = servers
    else:
        r = dns.asyncresolver.Resolver()
    r.timeout = min(timeout, 2.0)  # per nameserver try
    r.lifetime = timeout  # the whole query
    r.cache = dns.resolver.LRUCache(10_000)
    return r


class DNSResolver:
    """Implements carteiro.queue.routing.Resolver."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 5.0) -> None:
        self.resolver = make_resolver(nameservers, timeout)

    async def _query(self, name: str, rdtype: str) -> tuple[DNSStatus, list[object], str]:
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return "nxdomain", [], f"{name}: no such domain"
        except dns.resolver.NoAnswer:
            return "nodata", [], f"{name}: no {rdtype} record"
        except dns.resolver.NoNameservers as e:  # SERVFAIL / REFUSED from every server
            return "temp", [], f"{name} {rdtype}: {e}"
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            return "temp", [], f"{name} {rdtype}: timed out"
        except dns.exception.DNSException as e:
            return "temp", [], f"{name} {rdtype}: {e}"
        return "ok", list(answer), ""

    async def lookup(self, name: str, rdtype: str) -> Answer:
        """carteiro.mailauth.lookup.Resolver: A, AAAA, MX, PTR and TXT answers as plain values."""
        status, rrs, err = await self._query(name, rdtype)
        if status != "ok":
            return Answer(status, (), err)
        values: list[object] = []
        for rr in rrs:
            if rdtype in ("A", "AAAA"):
                values.append(rr.address)  # type: ignore[attr-defined]
            elif rdtype == "MX":
                values.append(
                    (int(rr.preference), rr.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
                )
            elif rdtype == "PTR":
                values.append(rr.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
            elif rdtype == "TXT":
                values.append(tuple(rr.strings))  # type: ignore[attr-defined]
        return Answer("ok", tuple(values))

    async def mx(self, domain: str) -> MXAnswer:
        status, rrs, err = await self._query(domain, "MX")
        if status != "ok":
            return MXAnswer(status, (), err)
        records = tuple(
            (int(rr.preference), rr.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
            for rr in rrs
        )
        # RFC 7505: the null MX's exchange is the root, "." (to_text gives "@" or "").
        records = tuple((p, "." if h in ("", "@") else h) for p, h in records)
        return MXAnswer("ok", records)

    async def addresses(self, host: str) -> AddressAnswer:
        (s6, rr6, e6), (s4, rr4, e4) = await asyncio.gather(
            self._query(host, "AAAA"), self._query(host, "A")
        )
        addrs = tuple(rr.address for rr in rr6 + rr4)  # type: ignore[attr-defined]
        if addrs:
            return AddressAnswer("ok", addrs)
        if "temp" in (s6, s4):
            return AddressAnswer("temp", (), e6 if s6 == "temp" else e4)
        if s6 == "nxdomain" or s4 == "nxdomain":
            return AddressAnswer("nxdomain", (), e4 or e6)
        return AddressAnswer("nodata", (), e4 or e6)
