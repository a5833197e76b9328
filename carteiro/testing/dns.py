"""A small authoritative DNS server on loopback (dnslib), for tests and benchmarks of MX routing.

    with ZoneServer("b.test. 60 IN MX 10 mx.b.test.\\nmx.b.test. 60 IN A 127.0.0.3") as ns:
        ... ns.address ...  # "127.0.0.1:PORT" for [dns] nameservers

Unknown names answer NXDOMAIN, known names without the asked type answer NODATA, and names in
`servfail` answer SERVFAIL. dnslib is a test dependency; import this module only from tests/bench.
"""

from __future__ import annotations

from types import TracebackType

from dnslib import RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from carteiro.testing.server import free_port


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self, text: str, servfail: tuple[str, ...] = ()) -> None:
        self.rrs = RR.fromZone(text)
        self.servfail = servfail

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = request.q.qname
        if str(qname).rstrip(".") in self.servfail:
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

    def __init__(self, zone: str, servfail: tuple[str, ...] = (), port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server = DNSServer(
            Zone(zone, servfail),
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
