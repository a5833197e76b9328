"""The `carteiro` command as a user runs it: init, accounts, aliases, domains, serve and its errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess, carteiro_cmd, free_port, run_cli


def test_init_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "d"
    out = run_cli(data, "init", "--domain", "Example.TEST").stdout
    assert "self-signed" in out
    cfg = (data / "carteiro.toml").read_text()
    cert = (data / "tls" / "cert.pem").read_bytes()
    assert 'domains = ["example.test"]' in cfg
    assert 'hostname = "mail.example.test"' in cfg
    assert oct((data / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    run_cli(data, "init", "--domain", "example.test")
    assert (data / "carteiro.toml").read_text() == cfg
    assert (data / "tls" / "cert.pem").read_bytes() == cert


def test_init_needs_domain_first_time(tmp_path: Path) -> None:
    r = run_cli(tmp_path / "d", "init", check=False)
    assert r.returncode != 0 and "--domain" in r.stderr


def test_data_from_environment(tmp_path: Path) -> None:
    env = {**os.environ, "CARTEIRO_DATA": str(tmp_path / "envdata")}
    subprocess.run(
        carteiro_cmd("init", "--domain", "example.test"), env=env, check=True, capture_output=True
    )
    assert (tmp_path / "envdata" / "carteiro.toml").exists()


def test_users_aliases_domains(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_cli(data, "init", "--domain", "example.test")
    run_cli(data, "user", "add", "Alice@Example.test", "--password-stdin", stdin="pw1\n")
    r = run_cli(
        data, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n", check=False
    )
    assert r.returncode != 0 and "exists" in r.stderr
    r = run_cli(
        data, "user", "add", "x@elsewhere.test", "--password-stdin", stdin="pw\n", check=False
    )
    assert r.returncode != 0 and "not one of our domains" in r.stderr
    assert run_cli(data, "user", "list").stdout.split() == ["alice@example.test", "store"]
    run_cli(data, "user", "passwd", "alice@example.test", "--password-stdin", stdin="pw2\n")
    run_cli(data, "domain", "add", "Other.test")
    assert run_cli(data, "domain", "list").stdout.split("\n")[:2] == [
        "example.test  (carteiro.toml)",
        "other.test",
    ]
    run_cli(data, "alias", "add", "postmaster@example.test", "alice@example.test")
    run_cli(data, "alias", "add", "@other.test", "alice@example.test")
    assert "postmaster@example.test -> alice@example.test" in run_cli(data, "alias", "list").stdout
    run_cli(data, "alias", "del", "@other.test")
    r = run_cli(data, "alias", "del", "@other.test", check=False)
    assert r.returncode != 0
    run_cli(data, "user", "del", "alice@example.test")
    assert run_cli(data, "user", "list").stdout.strip() == ""
    r = run_cli(data, "user", "del", "alice@example.test", check=False)
    assert r.returncode != 0 and "no account" in r.stderr
    # the password is never stored in clear
    assert b"pw2" not in (data / "directory.sqlite").read_bytes()


def test_config_error_names_key_and_file(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_cli(data, "init", "--domain", "example.test")
    cfg = data / "carteiro.toml"
    cfg.write_text(cfg.read_text() + "\n[imap]\nmax_line_lenght = 5\n")
    r = run_cli(data, "serve", check=False)
    assert r.returncode == 78
    assert "imap.max_line_lenght: unknown key" in r.stderr and str(cfg) in r.stderr


@pytest.mark.parametrize(
    ("services", "taken"),
    [
        (("smtp",), "smtp"),
        # the webmail's listener binds its own socket: its refusal reads as the others' (it read
        # "[Errno 98] web: cannot listen on ...", which the test harness did not take for a port
        # taken by a parallel test, and did not retry)
        (("imaps", "submissions", "web"), "web"),
    ],
)
def test_port_in_use_is_one_line(tmp_path: Path, services: tuple[str, ...], taken: str) -> None:
    srv = ServerProcess(tmp_path, services=services, users={})
    srv.init()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", srv.ports[taken]))
        s.listen()
        r = run_cli(srv.data, "serve", check=False)
    assert r.returncode == 78
    err = [line for line in r.stderr.splitlines() if line.startswith("carteiro:")]
    assert err == [f"carteiro: {taken}: 127.0.0.1:{srv.ports[taken]} is already in use"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    srv = ServerProcess(tmp_path, services=("smtp", "imap", "pop3"), users={})
    srv.start()
    assert srv.proc is not None
    proc = srv.proc
    proc.send_signal(sig)
    assert proc.wait(20) == 0
    srv.proc = None
    assert "stopped" in srv.log()


def test_serve_prints_listeners_and_demo(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_cli(data, "init", "--domain", "example.test", "--demo")
    port = free_port()
    cfg = data / "carteiro.toml"
    text = cfg.read_text()
    for svc in (
        "submission",
        "submissions",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "web",
        "lmtp",
        "odmr",
    ):
        text = text.replace(f'{svc} = "127.0.0.1:', f'{svc} = "" # 127.0.0.1:', 1)
    text = text.replace('smtp = "127.0.0.1:2525"', f'smtp = "127.0.0.1:{port}"')
    cfg.write_text(text)
    proc = subprocess.Popen(
        carteiro_cmd("serve", "--data", str(data)), stderr=subprocess.PIPE, text=True
    )
    try:
        seen = ""
        assert proc.stderr is not None
        for line in proc.stderr:
            seen += line
            if "ready" in line:
                break
        assert f"listening on 127.0.0.1:{port}" in seen
        assert "demo account: demo@example.test" in seen
    finally:
        proc.terminate()
        proc.wait(20)


def test_user_quota(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_cli(data, "init", "--domain", "example.test")
    cfg = data / "carteiro.toml"
    cfg.write_text(cfg.read_text() + "\n[quota]\nmessages = 1000\n")
    run_cli(data, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    out = run_cli(data, "user", "quota", "alice@example.test").stdout
    assert out.strip() == (
        "alice@example.test: storage 0 of no limit octets, 0 of 1000 messages"
    )  # the [quota] default
    out = run_cli(data, "user", "quota", "alice@example.test", "--storage", "2M").stdout
    assert "storage 0 of 2097152 octets, 0 of 1000 messages" in out
    out = run_cli(
        data, "user", "quota", "alice@example.test", "--storage", "0", "--messages", "default"
    ).stdout
    assert "storage 0 of no limit octets, 0 of 1000 messages" in out
    r = run_cli(data, "user", "quota", "alice@example.test", "--storage", "lots", check=False)
    assert r.returncode != 0 and "not a size" in r.stderr
    r = run_cli(data, "user", "quota", "nobody@example.test", check=False)
    assert r.returncode != 0 and "no account" in r.stderr
