"""DNS for the outbound queue: dnspython's async resolver behind the queue's `Resolver` Protocol.

Answers are cached for their TTL (dnspython's cache). Configured nameservers are "host:port"
strings ([dns] nameservers); none means the system resolver (/etc/resolv.conf). Errors become
values: nxdomain and nodata are answers, timeouts and SERVFAIL are "temp".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.rdatatype
import dns.resolver

from carteiro.core.hostport import parse_hostport
from carteiro.mailauth.lookup import Answer
from carteiro.queue.routing import AddressAnswer, DNSStatus, MXAnswer, TLSAAnswer

log = logging.getLogger("carteiro.dns")

MEMO_MAX = 10_000  # answers kept by DNSResolver's memo
NEGATIVE_MEMO = 1.0  # seconds a "no such name" / "no such record" answer is reused


def make_resolver(
    nameservers: Sequence[str] = (), timeout: float = 5.0, dnssec: bool = False
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
    if dnssec:
        # RFC 6840 5.7: AD in the query asks a validating resolver to say which answers it
        # validated (DANE trusts that bit: the resolver must be a validating one on this host)
        r.flags = dns.flags.RD | dns.flags.AD
    return r


def _ad(response: dns.message.Message | None) -> bool:
    return response is not None and bool(response.flags & dns.flags.AD)


class DNSResolver:
    """Implements carteiro.queue.routing.Resolver (and DANEResolver). With `dnssec`, each answer
    says whether the resolver validated it (its AD bit), for DANE."""

    def __init__(
        self, nameservers: Sequence[str] = (), timeout: float = 5.0, dnssec: bool = False
    ) -> None:
        self.resolver = make_resolver(nameservers, timeout, dnssec)
        self.dnssec = dnssec
        Memo = tuple[float, tuple[DNSStatus, tuple[object, ...], str, bool]]
        self._memo: dict[tuple[str, str], Memo] = {}  # (name, type) -> (until, answer)

    async def _query(self, name: str, rdtype: str) -> tuple[DNSStatus, list[object], str]:
        status, rrs, err, _secure = await self._query_ad(name, rdtype)
        return status, rrs, err

    async def _query_ad(self, name: str, rdtype: str) -> tuple[DNSStatus, list[object], str, bool]:
        """(status, records, error, validated): validated only when asked (dnssec) and the
        resolver set AD on the answer, a denial of existence included.

        Answers are kept in a memo until they expire (a denial: NEGATIVE_MEMO seconds; a
        failure: not at all): dnspython's own cache costs 20-60 us a lookup in its machinery,
        the queue asks MX, AAAA, A and _mta-sts TXT at every delivery attempt, and a denial
        without an SOA (some resolvers') is not cached by dnspython at all."""
        hit = self._remembered(name, rdtype)
        if hit is not None:
            return hit
        now = time.time()
        key = (name, rdtype)
        status, records, err, secure, expires = await self._resolve(name, rdtype)
        if status != "temp":
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            until = expires if status == "ok" else now + NEGATIVE_MEMO
            self._memo[key] = (until, (status, tuple(records), err, secure))
        return status, records, err, secure

    def _remembered(
        self, name: str, rdtype: str
    ) -> tuple[DNSStatus, list[object], str, bool] | None:
        hit = self._memo.get((name, rdtype))
        if hit is None or hit[0] <= time.time():
            return None
        status, rrs, err, secure = hit[1]
        return status, list(rrs), err, secure

    async def _resolve(
        self, name: str, rdtype: str
    ) -> tuple[DNSStatus, list[object], str, bool, float]:
        """One lookup through dnspython (and its cache); the last item: when an answer
        expires (time.time())."""
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN as e:
            responses = e.responses()  # type: ignore[no-untyped-call]
            secure = self.dnssec and all(_ad(r) for r in responses.values())
            return "nxdomain", [], f"{name}: no such domain", secure, 0.0
        except dns.resolver.NoAnswer as e:
            secure = self.dnssec and _ad(e.response())  # type: ignore[no-untyped-call]
            return "nodata", [], f"{name}: no {rdtype} record", secure, 0.0
        except dns.resolver.NoNameservers as e:  # SERVFAIL / REFUSED from every server
            return "temp", [], f"{name} {rdtype}: {e}", False, 0.0
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            return "temp", [], f"{name} {rdtype}: timed out", False, 0.0
        except dns.exception.DNSException as e:
            return "temp", [], f"{name} {rdtype}: {e}", False, 0.0
        secure = self.dnssec and _ad(answer.response)
        return "ok", list(answer), "", secure, float(answer.expiration)

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
        status, rrs, err, secure = await self._query_ad(domain, "MX")
        if status != "ok":
            return MXAnswer(status, (), err, secure)
        records = tuple(
            (int(rr.preference), rr.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
            for rr in rrs
        )
        # RFC 7505: the null MX's exchange is the root, "." (to_text gives "@" or "").
        records = tuple((p, "." if h in ("", "@") else h) for p, h in records)
        return MXAnswer("ok", records, "", secure)

    async def addresses(self, host: str) -> AddressAnswer:
        six, four = self._remembered(host, "AAAA"), self._remembered(host, "A")
        if six is None or four is None:  # (both remembered: no tasks to gather)
            six, four = await asyncio.gather(
                self._query_ad(host, "AAAA"), self._query_ad(host, "A")
            )
        assert six is not None and four is not None
        s6, rr6, e6, ad6 = six
        s4, rr4, e4, ad4 = four
        addrs = tuple(rr.address for rr in rr6 + rr4)  # type: ignore[attr-defined,union-attr]
        secure = ad6 and ad4
        if addrs:
            return AddressAnswer("ok", addrs, "", secure)
        if "temp" in (s6, s4):
            return AddressAnswer("temp", (), e6 if s6 == "temp" else e4)
        if s6 == "nxdomain" or s4 == "nxdomain":
            return AddressAnswer("nxdomain", (), e4 or e6, secure)
        return AddressAnswer("nodata", (), e4 or e6, secure)

    async def tlsa(self, name: str) -> TLSAAnswer:
        status, rrs, err, secure = await self._query_ad(name, "TLSA")
        records = tuple(
            (int(rr.usage), int(rr.selector), int(rr.mtype), bytes(rr.cert))  # type: ignore[attr-defined]
            for rr in rrs
        )
        return TLSAAnswer(status, records, err, secure)
