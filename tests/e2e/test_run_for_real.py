"""Running in production: SIGHUP reloads the certificate without dropping a session, and a server
started as root binds a privileged port then runs as its configured user."""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import smtplib
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from carteiro.net.tls import make_self_signed
from carteiro.testing.server import ServerProcess, closed_to_others, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("run-for-real-e2e")]


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def served_cert(port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        unverified().wrap_socket(raw) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def file_cert(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def test_sighup_reloads_the_certificate_without_dropping_sessions(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=("imaps",), users={"alice@example.test": "pw"})
    with srv:
        assert srv.proc is not None
        cert = srv.data / "tls" / "cert.pem"
        key = srv.data / "tls" / "key.pem"
        port = srv.ports["imaps"]
        old = served_cert(port)
        assert old == file_cert(cert)
        session = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=unverified())
        session.login("alice@example.test", "pw")
        session.select("INBOX")

        # a renewed certificate (as certbot leaves it) and a key that needs a restart
        make_self_signed(tmp_path / "new.pem", tmp_path / "new.key", "mail.example.test")
        os.replace(tmp_path / "new.key", key)
        os.replace(tmp_path / "new.pem", cert)
        cfg = srv.data / "carteiro.toml"
        text = cfg.read_text().replace("[smtp]\n", "[smtp]\nmax_recipients = 7\n", 1)
        cfg.write_text(text + '\n[log]\nlevels = { imap = "debug" }\n')
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: configuration reloaded" in srv.log(), "the reload")
        log = srv.log()
        assert "applied smtp.max_recipients, log.levels" in log
        assert "needs a restart" not in log
        new = served_cert(port)
        assert new != old and new == file_cert(cert)
        # the session that began before the reload goes on, on its old TLS session
        assert session.noop()[0] == "OK"
        assert session.select("INBOX")[0] == "OK"

        # a broken certificate changes nothing: the last good one stays
        cert.write_text("garbage\n")
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "nothing changed, the old certificate stays" in srv.log(), "refusal")
        assert served_cert(port) == new
        assert session.noop()[0] == "OK"
        session.logout()
        assert srv.proc.poll() is None


def _free_low_port() -> int:
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a port below 1024 as root needs root")
def test_started_as_root_binds_a_low_port_then_runs_as_the_configured_user() -> None:
    # not under pytest's tmp dir: it is 0700 root, and the server will be `nobody`
    base = Path(tempfile.mkdtemp(prefix="carteiro-priv-"))
    base.chmod(0o755)
    try:
        srv = ServerProcess(base, services=("smtp", "imap"), users={"alice@example.test": "pw"})
        srv.init()
        low = _free_low_port()
        cfg = srv.data / "carteiro.toml"
        text = cfg.read_text().replace(f"127.0.0.1:{srv.ports['smtp']}", f"127.0.0.1:{low}")
        cfg.write_text(text + '\n[server]\nuser = "nobody"\n')
        srv.ports["smtp"] = low
        # owned by root: refused in one line, with the fix
        r = run_cli(srv.data, "serve", check=False)
        assert r.returncode == 78
        assert f"chown -R nobody: {srv.data}" in r.stderr and "Traceback" not in r.stderr
        shutil.chown(base, "nobody", "nogroup")
        for root, dirs, files in os.walk(srv.data):
            for name in [*dirs, *files]:
                shutil.chown(os.path.join(root, name), "nobody", "nogroup")
        shutil.chown(srv.data, "nobody", "nogroup")
        with srv:
            assert srv.proc is not None
            # the ports accept (into the kernel's backlog) from the moment they are bound, as
            # root: "ready" comes after the switch
            wait_for(lambda: " ready (data dir" in srv.log(), "the server to be ready")
            status = Path(f"/proc/{srv.proc.pid}/status").read_text()
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uids.split()[1:] == ["65534"] * 4  # real, effective, saved, filesystem
            with smtplib.SMTP("127.0.0.1", low, timeout=30) as s:
                s.sendmail(
                    "carol@ext.test", ["alice@example.test"], b"Subject: low port\r\n\r\nhi\r\n"
                )
            imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
            imap.starttls(unverified())
            imap.login("alice@example.test", "pw")
            assert imap.select("INBOX")[1] == [b"1"]
            imap.logout()
        assert "now running as nobody" in srv.log()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _size(ehlo: tuple[int, bytes]) -> int:
    for line in ehlo[1].decode().splitlines():
        if line.startswith("SIZE "):
            return int(line.split()[1])
    raise AssertionError(f"no SIZE in {ehlo!r}")


def _reloads(srv: ServerProcess) -> int:
    return srv.log().count("reload: ")


def test_sighup_applies_the_new_config_to_new_sessions_while_open_ones_go_on(
    tmp_path: Path,
) -> None:
    srv = ServerProcess(
        tmp_path, services=("smtp", "imap", "imaps"), users={"alice@example.test": "pw"}
    )
    with srv:
        assert srv.proc is not None
        imap = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=unverified())
        imap.login("alice@example.test", "pw")
        assert imap.select("INBOX")[0] == "OK"
        before = smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30)
        assert _size(before.ehlo()) == 50 * 1024 * 1024
        plain = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        assert "LOGINDISABLED" in plain.capabilities
        plain.logout()

        cfg = srv.data / "carteiro.toml"
        good = cfg.read_text()
        edited = good.replace("[smtp]\n", "[smtp]\nmax_message_size = 1000000\n", 1)
        edited = edited.replace('sieve = ""', 'sieve = "127.0.0.1:1"', 1)
        cfg.write_text(edited + "\n[imap]\nallow_plaintext_auth = true\n")
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: configuration reloaded" in srv.log(), "the reload")
        log = srv.log()
        assert "smtp.max_message_size" in log and "imap.allow_plaintext_auth" in log
        needs = [line for line in log.splitlines() if "needs a restart" in line]
        assert len(needs) == 1 and "listen.sieve" in needs[0], log

        # a new connection sees the new limits ...
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            assert _size(s.ehlo()) == 1000000
            code, _ = s.mail("carol@ext.test", ["SIZE=2000000"])
            assert code == 552
        plain = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        assert "AUTH=PLAIN" in plain.capabilities and "LOGINDISABLED" not in plain.capabilities
        plain.logout()
        # ... the sessions open across the reload keep theirs and keep working
        assert _size(before.ehlo()) == 50 * 1024 * 1024
        before.sendmail("carol@ext.test", ["alice@example.test"], b"Subject: x\r\n\r\nhi\r\n")
        before.quit()
        assert imap.noop()[0] == "OK"
        assert imap.select("INBOX")[1] == [b"1"]

        # a file that does not load, or a value that does not validate, changes nothing
        for bad in ("[smtp\n", good + '\n[relay]\ntls = "sometimes"\n'):
            cfg.write_text(bad)
            n, seen = _reloads(srv), len(srv.log())
            srv.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: _reloads(srv) > n, "the refusal")  # noqa: B023
            refused = [line for line in srv.log()[seen:].splitlines() if "reload: " in line]
            assert len(refused) == 1 and "nothing changed" in refused[0], refused
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
                assert _size(s.ehlo()) == 1000000
        assert "relay.tls" in srv.log()
        assert imap.noop()[0] == "OK"
        imap.logout()
        assert srv.proc.poll() is None


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to start it as another user with one capability",
)
def test_an_unprivileged_user_with_cap_net_bind_service_binds_a_low_port() -> None:
    """What contrib/carteiro.service does (AmbientCapabilities=CAP_NET_BIND_SERVICE), with
    setpriv: as `nobody` with only that capability it binds port < 1024; without, one line."""
    import pwd
    import subprocess

    import carteiro
    from carteiro.testing.server import carteiro_cmd

    nobody = pwd.getpwnam("nobody")
    as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                 "--clear-groups"]  # fmt: skip
    # nobody runs this checkout's package: a checkout made by `mktemp -d` (0700, as CI's fresh
    # clones can be) does not let it in
    probe = [*as_nobody, sys.executable, "-c", "import carteiro"]
    if subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
        closed = closed_to_others(carteiro.__file__)
        pytest.skip(f"this checkout ({closed or 'its directory'}) is not reachable by nobody")
    base = Path(tempfile.mkdtemp(prefix="carteiro-cap-"))
    base.chmod(0o755)
    try:
        srv = ServerProcess(base, services=("smtp",), users={})
        srv.init()
        low = _free_low_port()
        cfg = srv.data / "carteiro.toml"
        cfg.write_text(
            cfg.read_text().replace(f"127.0.0.1:{srv.ports['smtp']}", f"127.0.0.1:{low}")
        )
        for root, dirs, files in os.walk(base):
            for name in [root, *(os.path.join(root, n) for n in [*dirs, *files])]:
                os.chown(name, nobody.pw_uid, nobody.pw_gid)
        serve = carteiro_cmd("serve", "--data", str(srv.data))
        r = subprocess.run([*as_nobody, *serve], capture_output=True, text=True, timeout=60)
        assert r.returncode == 78, r.stderr
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, r.stderr
        line = lines[0]
        assert "Permission denied" in line and "CAP_NET_BIND_SERVICE" in line
        caps = ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
        log = open(base / "server.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([*as_nobody, *caps, *serve], stdout=log, stderr=log)
        try:
            wait_for(lambda: " ready (data dir" in (base / "server.log").read_text(), "ready")
            status = Path(f"/proc/{proc.pid}/status").read_text()
            uids = next(x for x in status.splitlines() if x.startswith("Uid:"))
            assert uids.split()[1:] == [str(nobody.pw_uid)] * 4
            with smtplib.SMTP("127.0.0.1", low, timeout=30) as s:
                assert s.ehlo()[0] == 250
        finally:
            proc.terminate()
            proc.wait(20)
            log.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
