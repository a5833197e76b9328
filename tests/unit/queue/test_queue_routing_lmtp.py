"""`[transport]` entries naming LMTP: the router gives LMTP hops (TCP or a Unix socket, no TLS)."""

from __future__ import annotations

from carteiro.queue.routing import Router, RoutingConfig


class NoDNS:
    async def mx(self, domain: str) -> object:
        raise AssertionError("no MX lookup for a transport")

    async def addresses(self, host: str) -> object:
        raise AssertionError("no address lookup for an IP or a socket")


async def test_lmtp_transport_routes() -> None:
    cfg = RoutingConfig(
        transport={
            "lists.test": "lmtp:unix:/run/mailman/lmtp",
            ".ml.test": "lmtp:127.0.0.1:8024",
            "other.test": "smtp:127.0.0.1:2526",
        }
    )
    router = Router(NoDNS(), cfg, lambda d: False)  # type: ignore[arg-type]
    d = router.destination("lists.test")
    assert (d.kind, d.protocol, d.path) == ("transport", "lmtp", "/run/mailman/lmtp")
    (hop,) = (await router.route(d)).hops
    assert (hop.protocol, hop.address, hop.tls) == ("lmtp", "unix:/run/mailman/lmtp", "none")
    d = router.destination("a.ml.test")
    assert d.key == "transport:lmtp:127.0.0.1:8024"
    (hop,) = (await router.route(d)).hops
    assert (hop.protocol, hop.address, hop.port, hop.tls) == ("lmtp", "127.0.0.1", 8024, "none")
    d = router.destination("other.test")
    (hop,) = (await router.route(d)).hops
    assert (hop.protocol, hop.port) == ("smtp", 2526)


async def test_address_entries_route_one_recipient_of_a_local_domain() -> None:
    # Mailman 3 in a shared domain: its lists' addresses go to it, every other address is local
    cfg = RoutingConfig(
        transport={"dev@example.test": "lmtp:127.0.0.1:8024", "dev-bounces@example.test": "lmtp:h"}
    )
    router = Router(NoDNS(), cfg, lambda d: d == "example.test")  # type: ignore[arg-type]
    assert router.destination_for("alice@example.test").kind == "local"
    d = router.destination_for("Dev@Example.test")
    assert (d.kind, d.protocol, d.port, d.domain) == ("transport", "lmtp", 8024, "example.test")
    d = router.destination_for("dev-bounces+bob=b.test@example.test")
    assert (d.kind, d.host, d.port) == ("transport", "h", 24)
    assert router.destination_for("x@[127.0.0.1]").kind == "literal"
