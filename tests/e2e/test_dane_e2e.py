"""DANE (RFC 7672) end to end: server A, with `[queue] dane = true`, delivers to server B's domains
through a test DNS that answers for the "signed" zones with the AD bit, as a local validating
resolver does. B's certificate is self-signed, so nothing but DANE can authenticate it.

- b.test (signed): a TLSA 3 1 1 record of B's key: delivered, over TLS.
- c.test (signed): a TLSA record of another key: not delivered, queued with the DANE reason.
- d.test (not signed): the same wrong record, not validated, so not used: delivered.
- e.test (signed): its TLSA lookup fails (SERVFAIL): not delivered (the records may be hidden).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_relay import (
    A_IP,
    ALICE,
    B_IP,
    need_addresses,
    pop_messages,
    queued_error,
    serve_pair,
    subjects,
    submit,
    wait_for,
)

from carteiro.testing.dns import ZoneServer
from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dane-e2e")]

USERS = {f"{u}@{d}.test": f"{u}-pw" for u, d in (("bob", "b"), ("carol", "c"), ("dave", "d"))}
USERS["erin@e.test"] = "erin-pw"


def spki_sha256(pem: bytes) -> str:
    key = x509.load_pem_x509_certificate(pem).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    need_addresses(A_IP, B_IP)
    root = tmp_path_factory.mktemp("dane")
    b = ServerProcess(
        root / "b",
        domains=["b.test", "c.test", "d.test", "e.test"],
        hostname="mx.b.test",
        users=USERS,
        host=B_IP,
        services=("smtp", "pop3"),
    )
    b.init()
    port = b.ports["smtp"]
    good = spki_sha256((b.data / "tls" / "cert.pem").read_bytes())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    bad = hashlib.sha256(
        other.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).hexdigest()
    zone = "".join(
        f"{d}.test. 60 IN MX 10 mx.{d}.test.\nmx.{d}.test. 60 IN A {B_IP}\n" for d in "bcde"
    )
    zone += f"_{port}._tcp.mx.b.test. 60 IN TLSA 3 1 1 {good}\n"
    zone += f"_{port}._tcp.mx.c.test. 60 IN TLSA 3 1 1 {bad}\n"
    zone += f"_{port}._tcp.mx.d.test. 60 IN TLSA 3 1 1 {bad}\n"
    dns_port = free_port()
    dns = ZoneServer(
        zone,
        port=dns_port,
        signed=("b.test", "c.test", "e.test"),
        servfail=(f"_{port}._tcp.mx.e.test",),
    ).start()
    a = ServerProcess(
        root / "a",
        domains=["a.test"],
        hostname="mx.a.test",
        users=dict([ALICE]),
        host=A_IP,
        services=("smtp", "submission"),
        extra_config=f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        f"[queue]\nremote_port = {port}\nretry_schedule = [1.0, 1.0, 2.0]\n"
        "connect_timeout = 5.0\ndane = true\nmta_sts = false\n",
    )
    yield from serve_pair(a, b, dns.stop)


def test_dane(net: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = net
    for user in USERS:
        submit(a, [user], f"to {user}")
    wait_for(lambda: subjects(b, ("bob@b.test", "bob-pw")) == ["to bob@b.test"], what="bob")
    (msg,) = pop_messages(b, "bob@b.test", "bob-pw")
    assert "ESMTPS" in str(msg.get_all("Received"))
    wait_for(lambda: subjects(b, ("dave@d.test", "dave-pw")) == ["to dave@d.test"], what="dave")
    wait_for(lambda: "DANE" in queued_error(a, "carol@c.test"), what="carol's deferral")
    err = queued_error(a, "carol@c.test")
    assert "4.7.5" in err and "matches none of the TLSA records" in err, err
    assert "DANE TLSA of mx.c.test" in err, err
    wait_for(lambda: "TLSA lookup failed" in queued_error(a, "erin@e.test"), what="erin's deferral")
    assert subjects(b, ("carol@c.test", "carol-pw")) == []
    assert subjects(b, ("erin@e.test", "erin-pw")) == []
