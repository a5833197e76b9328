"""/healthz and `carteiro status` say what is wrong (issue 12 Add 4): each failure that stops mail
is a problem (ok false, 503), what will soon is a warning, both measured on a running App."""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from carteiro.app import App
from carteiro.config import load
from carteiro.net.tls import make_self_signed
from carteiro.testing.server import ServerProcess


def _expired(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_health_names_each_problem_and_warning(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=("smtp", "imap"))
    srv.init()
    cert = srv.data / "tls" / "cert.pem"

    async def run() -> None:
        app = App(load(srv.data))
        await app.start()
        try:
            h = await app.health()
            assert h["ok"] and h["problems"] == [] and h["warnings"] == []
            assert h["store"]["answering"] and h["queue"]["running"]
            # a certificate due within 14 days: a warning, still ok
            make_self_signed(cert, tmp_path / "k.pem", "mail.example.test", days=3)
            h = await app.health()
            assert h["ok"] and h["warnings"] == ["the certificate expires in 3 days"]
            # expired: mail cannot flow over TLS any more
            _expired(cert)
            h = await app.health()
            assert not h["ok"] and h["problems"][0].startswith("the certificate expired on")
            cert.write_text("garbage")
            assert (await app.health())["problems"][0].startswith("certificate unreadable")
            # a listener that stopped accepting, and the queue stopped
            imap = next(lst for lst in app.listeners if lst.service == "imap")
            for server in imap.servers:
                server.close()
            assert app.queue is not None
            await app.queue.stop()
            problems = (await app.health())["problems"]
            assert "imap is not accepting connections" in problems
            assert "the outbound queue is not running" in problems
            assert "smtp is not accepting connections" not in problems
        finally:
            await app.stop(grace=0)

    started = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - started < 30
