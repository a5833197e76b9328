"""A small authoritative DNS server on loopback (dnslib), for tests and benchmarks of MX routing.

    with ZoneServer("b.test. 60 IN MX 10 mx.b.test.\\nmx.b.test. 60 IN A 127.0.0.3") as ns:
        ... ns.address ...  # "127.0.0.1:PORT" for [dns] nameservers

Unknown names answer NXDOMAIN, known names without the asked type answer NODATA, and names in
`servfail` answer SERVFAIL. Names at or under a `signed` domain are answered as a validating
resolver answers for a DNSSEC-signed zone: with the AD bit, when the query asks for it (RFC 6840
5.7), denials included; DANE's tests use that. dnslib is a test dependency; import this module only
from tests/bench.
"""

from __future__ import annotations

from types import TracebackType

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from carteiro.mailauth.lookup import Answer
from carteiro.testing.server import free_port


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(
        self, text: str, servfail: tuple[str, ...] = (), signed: tuple[str, ...] = ()
    ) -> None:
        self.rrs = RR.fromZone(text)
        self.servfail = servfail
        self.signed = tuple(d.lower().rstrip(".") for d in signed)

    def _signed(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return any(name == d or name.endswith("." + d) for d in self.signed)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        # (reply() copies the query's flags, AD included: a name outside the signed zones must
        # not come back "validated")
        reply.header.ad = int(bool(request.header.ad) and self._signed(str(request.q.qname)))
        qname = request.q.qname
        if str(qname).rstrip(".") in self.servfail:
            reply.header.ad = 0
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        known = False
        for rr in self.rrs:
            if rr.rname == qname:
                known = True
                if rr.rtype == request.q.qtype:
                    reply.add_answer(rr)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class ZoneServer:
    """Serves `zone` on 127.0.0.1 (UDP and TCP) from a thread until stop()."""

    def __init__(
        self,
        zone: str,
        servfail: tuple[str, ...] = (),
        port: int | None = None,
        signed: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server = DNSServer(
            Zone(zone, servfail, signed),
            port=self.port,
            address="127.0.0.1",
            logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
        )

    def start(self) -> ZoneServer:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ZoneServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class StaticResolver:
    """carteiro.mailauth.lookup.Resolver over zone text, in memory (no sockets): for unit tests
    of the mail-authentication checks. CNAMEs are followed as a recursive resolver would; names
    in `servfail` fail temporarily; `queries` counts the lookups made."""

    def __init__(self, zone: str, servfail: tuple[str, ...] = ()) -> None:
        self.rrs = RR.fromZone(zone)
        self.servfail = {s.lower().rstrip(".") for s in servfail}
        self.queries: list[tuple[str, str]] = []

    async def lookup(self, name: str, rdtype: str) -> Answer:
        self.queries.append((name, rdtype))
        return self._lookup(name.lower().rstrip("."), rdtype, 0)

    def _lookup(self, name: str, rdtype: str, depth: int) -> Answer:
        if name in self.servfail:
            return Answer("temp", (), f"{name}: SERVFAIL")
        known = False
        values: list[object] = []
        for rr in self.rrs:
            if str(rr.rname).lower().rstrip(".") != name:
                continue
            known = True
            kind = QTYPE[rr.rtype]
            if kind == "CNAME" and rdtype != "CNAME" and depth < 8:
                return self._lookup(str(rr.rdata.label).lower().rstrip("."), rdtype, depth + 1)
            if kind != rdtype:
                continue
            if kind in ("A", "AAAA"):
                values.append(str(rr.rdata))
            elif kind == "MX":
                values.append((int(rr.rdata.preference), str(rr.rdata.label).rstrip(".")))
            elif kind == "PTR":
                values.append(str(rr.rdata.label).rstrip("."))
            elif kind == "TXT":
                values.append(tuple(bytes(s) for s in rr.rdata.data))
        if values:
            return Answer("ok", tuple(values))
        return Answer("nodata" if known else "nxdomain", (), f"{name}: no {rdtype}")
