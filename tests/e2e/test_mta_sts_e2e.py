"""MTA-STS (RFC 8461) end to end: server A delivers to domains whose policies it fetches over HTTPS
after the test DNS announces them; server B takes the mail.

- b.test (enforce, mx: mx.b.test): B publishes it itself ([mta_sts], its web listener, the id
  `carteiro dns-records` prints); delivered, over TLS verified against mx.b.test.
- c.test (enforce, mx: *.elsewhere.test, MX mx.b.test): not delivered; stays queued, 4.7.5.
- d.test (enforce, mx: mx.d.test; MX mx.d.test is B, whose certificate names mx.b.test): not
  delivered; the TLS failure is queued with the policy named.
- e.test (no policy, MX mx.d.test): delivered over opportunistic TLS, the control for d.test.
- f.test (testing, mx: *.elsewhere.test, MX mx.d.test): delivered anyway, as testing says.
- TLS reports (RFC 8460) of A's sessions go to b.test and d.test by mail; d.test's record also
  names an https: URI, where the same report is posted.

The policies of c.test, d.test and f.test come from a web server in this process, on WEB_IP and
the port of B's web listener (A fetches every policy from one port, as from 443).
"""

from __future__ import annotations

import gzip
import http.server
import json
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
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

from carteiro.net.tls import make_self_signed
from carteiro.testing.dns import ZoneServer
from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mta-sts-e2e")]

USERS = {f"{u}@{d}.test": f"{u}-pw" for u, d in (("bob", "b"), ("carol", "c"), ("dave", "d"))}
USERS |= {"erin@e.test": "erin-pw", "frank@f.test": "frank-pw", "tlsrpt@b.test": "tlsrpt-pw"}
WEB_IP = "127.0.0.24"  # (no other test uses it)
POLICIES = {  # (mta-sts.b.test's is B's own)
    "mta-sts.c.test": "version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n",
    "mta-sts.d.test": "version: STSv1\nmode: enforce\nmx: mx.d.test\nmax_age: 86400\n",
    "mta-sts.f.test": "version: STSv1\nmode: testing\nmx: *.elsewhere.test\nmax_age: 86400\n",
}


def web_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate naming every mta-sts.<domain> host (the test's only web server)."""
    make_self_signed(cert, key, "mta-sts.b.test", days=2, also=[*POLICIES, "report.d.test"])


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    fetched: list[str] = []
    posted: list[tuple[str, str, str, bytes]] = []  # (host, path, Content-Type, body)

    def do_POST(self) -> None:  # d.test's TLS reports (RFC 8460 5.3.2)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host = self.headers.get("Host") or ""
        PolicyHandler.posted.append((host, self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        body = POLICIES.get(host)
        if self.path != "/.well-known/mta-sts.txt" or body is None:
            self.send_error(404)
            return
        PolicyHandler.fetched.append(host)
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    need_addresses(A_IP, B_IP, WEB_IP)
    root = tmp_path_factory.mktemp("mta-sts")
    web_cert, web_key = root / "web.pem", root / "web.key"
    web_certificate(web_cert, web_key)
    dns_port = free_port()
    zone = f"""
b.test.      60 IN MX 10 mx.b.test.
c.test.      60 IN MX 10 mx.b.test.
d.test.      60 IN MX 10 mx.d.test.
e.test.      60 IN MX 10 mx.d.test.
f.test.      60 IN MX 10 mx.d.test.
mx.b.test.   60 IN A {B_IP}
mx.d.test.   60 IN A {B_IP}
_mta-sts.c.test. 60 IN TXT "v=STSv1; id=c1;"
_smtp._tls.b.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@b.test"
_mta-sts.d.test. 60 IN TXT "v=STSv1; id=d1;"
_mta-sts.f.test. 60 IN TXT "v=STSv1; id=f1;"
mta-sts.b.test. 60 IN A {B_IP}
mta-sts.c.test. 60 IN A {WEB_IP}
mta-sts.d.test. 60 IN A {WEB_IP}
mta-sts.f.test. 60 IN A {WEB_IP}
report.d.test. 60 IN A {WEB_IP}
"""
    b = ServerProcess(
        root / "b",
        domains=["b.test", "c.test", "d.test", "e.test", "f.test"],
        hostname="mx.b.test",  # its self-signed certificate names mx.b.test (not mx.d.test)
        users=USERS,
        host=B_IP,
        services=("smtp", "pop3", "imaps", "submissions", "web"),
        # B publishes an enforce policy naming its MX, served by its web listener
        extra_config=f'[mta_sts]\nmode = "enforce"\nmax_age = 86400\n'
        f'[web]\ncert = "{web_cert}"\nkey = "{web_key}"\n',
    )
    b.init()
    web_port = b.ports["web"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(web_cert, web_key)
    httpd = http.server.ThreadingHTTPServer((WEB_IP, web_port), PolicyHandler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    zone += (
        '_smtp._tls.d.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@b.test,'
        f'https://report.d.test:{web_port}/tlsrpt?from=a,ftp://report.d.test/"\n'
    )
    # the TXT record B's `carteiro dns-records` says to publish
    printed = b.cli("dns-records", "b.test").stdout
    (txt_line,) = [line for line in printed.splitlines() if line.startswith("_mta-sts.b.test.")]
    zone += txt_line.split("#")[0].strip() + "\n"
    assert "v=STSv1; id=" in zone
    dns = ZoneServer(zone, port=dns_port).start()
    # A trusts B's certificate and the policy server's, as it would trust public CAs
    bundle = root / "trusted.pem"
    bundle.write_bytes((b.data / "tls" / "cert.pem").read_bytes() + web_cert.read_bytes())
    a = ServerProcess(
        root / "a",
        domains=["a.test"],
        hostname="mx.a.test",
        users=dict([ALICE]),
        host=A_IP,
        services=("smtp", "submission"),
        extra_config=f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        f"[queue]\nremote_port = {b.ports['smtp']}\nretry_schedule = [1.0, 1.0, 2.0]\n"
        f'connect_timeout = 5.0\ntls_cafile = "{bundle}"\nmta_sts_port = {web_port}\n'
        "tls_report_period = 2\n",  # TLS reports every 2 s instead of daily
    )
    yield from serve_pair(a, b, dns.stop, httpd.shutdown)


def test_enforced_policies(net: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = net
    for user in USERS:
        if user != "tlsrpt@b.test":
            submit(a, [user], f"to {user}")
    # b.test: enforce, its MX named and its certificate valid: delivered, over TLS
    wait_for(lambda: "to bob@b.test" in subjects(b, ("bob@b.test", "bob-pw")), what="bob's copy")
    (msg,) = pop_messages(b, "bob@b.test", "bob-pw")
    assert "ESMTPS" in str(msg.get_all("Received"))
    # e.test: no policy, so the MX whose certificate names another host still gets it
    wait_for(lambda: subjects(b, ("erin@e.test", "erin-pw")) == ["to erin@e.test"], what="erin")
    # f.test: testing mode: delivered although its MX is not in the policy
    wait_for(lambda: subjects(b, ("frank@f.test", "frank-pw")) == ["to frank@f.test"], what="f")
    # c.test: its policy names none of its MX hosts: deferred, never tried
    wait_for(lambda: "MTA-STS" in queued_error(a, "carol@c.test"), what="carol's deferral")
    err = queued_error(a, "carol@c.test")
    assert "4.7.5" in err and "names none of its MX hosts" in err, err
    # d.test: its MX's certificate does not verify for mx.d.test: deferred, the policy named
    wait_for(lambda: "MTA-STS" in queued_error(a, "dave@d.test"), what="dave's deferral")
    err = queued_error(a, "dave@d.test")
    assert "TLS with mx.d.test" in err and "MTA-STS policy of d.test" in err, err
    assert subjects(b, ("carol@c.test", "carol-pw")) == []
    assert subjects(b, ("dave@d.test", "dave-pw")) == []
    # each policy fetched once, whatever the retries; cached on disk for the next start
    assert sorted(set(PolicyHandler.fetched)) == sorted(POLICIES)
    assert len(PolicyHandler.fetched) == len(POLICIES)
    cached = json.loads((a.data / "queue" / "mta-sts.json").read_text())
    assert cached["b.test"]["mode"] == "enforce" and cached["b.test"]["mx"] == ["mx.b.test"]
    log = a.log_path.read_text()
    assert "mta-sts: b.test: mode enforce" in log
    assert "mta-sts: f.test (testing): MX mx.d.test not in its policy" in log


def tls_reports(b: ServerProcess) -> dict[str, list[dict[str, object]]]:
    """The JSON of each TLS report (RFC 8460) in tlsrpt@b.test's INBOX, by policy domain."""
    out: dict[str, list[dict[str, object]]] = {}
    for m in pop_messages(b, "tlsrpt@b.test", "tlsrpt-pw"):
        assert m.get_content_type() == "multipart/report"
        assert m.get_param("report-type") == "tlsrpt"
        (att,) = [p for p in m.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
        doc = json.loads(gzip.decompress(att.get_payload(decode=True)))
        out.setdefault(str(m["TLS-Report-Domain"]), []).append(doc)
    return out


def test_tls_reports(net: tuple[ServerProcess, ServerProcess]) -> None:
    """A's sessions with b.test's and d.test's MX hosts come back as RFC 8460 reports to the
    address their _smtp._tls records name (reports are every 2 s in this test, daily by
    default); e.test and f.test ask for none and get none."""
    a, b = net
    submit(a, ["dave@d.test"], "for the d.test report")
    wait_for(lambda: {"b.test", "d.test"} <= set(tls_reports(b)), what="TLS reports")
    reports = tls_reports(b)
    assert set(reports) <= {"b.test", "d.test"}

    def policies(domain: str) -> list[dict[str, object]]:
        return [p for doc in reports[domain] for p in doc["policies"]]  # type: ignore[attr-defined]

    ok = [p for p in policies("b.test") if p["policy"]["policy-type"] == "sts"]  # type: ignore[index]
    assert ok and ok[0]["policy"]["mx-host"] == ["mx.b.test"]  # type: ignore[index]
    assert sum(p["summary"]["total-successful-session-count"] for p in ok) >= 1  # type: ignore[index]
    failed = [
        d
        for p in policies("d.test")
        for d in p.get("failure-details", [])  # type: ignore[attr-defined]
    ]
    assert failed, reports["d.test"]
    assert {d["result-type"] for d in failed} == {"certificate-host-mismatch"}
    assert {d["receiving-mx-hostname"] for d in failed} == {"mx.d.test"}
    assert all(d["sending-mta-ip"] and d["receiving-ip"] == B_IP for d in failed)
    doc = reports["d.test"][0]
    assert doc["organization-name"] == "mx.a.test" and doc["contact-info"] == "postmaster@a.test"
    # d.test's record also names an https: URI: the same report was posted there, gzipped
    wait_for(lambda: bool(PolicyHandler.posted), what="a TLS report posted to d.test")
    host, path, ctype, body = PolicyHandler.posted[0]
    assert (host.split(":")[0], path, ctype) == (
        "report.d.test",
        "/tlsrpt?from=a",
        "application/tlsrpt+gzip",
    )
    posted = json.loads(gzip.decompress(body))
    assert posted["policies"][0]["policy"]["policy-domain"] == "d.test"
    assert posted["organization-name"] == "mx.a.test"
    assert "asks for reports at ftp://report.d.test/: not used" in a.log_path.read_text()
    # and B's operator reads them with `carteiro tls-report`
    out = b.cli("tls-report", "--account", "tlsrpt@b.test").stdout
    assert re.search(r"^d\.test: mx\.a\.test \(.*, sts\): \d+ sessions with TLS, [1-9]", out, re.M)
    assert re.search(r"^  certificate-host-mismatch: \d+ at mx\.d\.test from ", out, re.M), out
