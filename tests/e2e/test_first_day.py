"""Issue 12, "Found": what a new administrator met on the first day, each through the real CLI
(stderr and the sysexits status), and the server where it takes one."""

from __future__ import annotations

import imaplib
import mailbox
import os
import poplib
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from carteiro.net.tls import make_self_signed
from carteiro.testing.server import ServerProcess, carteiro_cmd, run_cli

EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _init(tmp_path: Path) -> Path:
    data = tmp_path / "d"
    run_cli(data, "init", "--domain", "example.test")
    return data


def test_second_server_on_a_data_dir_says_who_holds_it(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=("smtp",), users={})
    with srv:
        assert srv.proc is not None
        # was: silent for ~11 s (the queue lock's wait), then a 40-line QueueBusy traceback;
        # the timeout stays below that wait
        r = subprocess.run(
            carteiro_cmd("serve", "--data", str(srv.data)),
            capture_output=True,
            text=True,
            timeout=8,
        )
        assert r.returncode == EX_TEMPFAIL
        assert _errors(r.stderr) == [
            f"carteiro: another carteiro server (pid {srv.proc.pid}) is already serving "
            f"{srv.data}; stop it first, or give another --data"
        ]
    # the lock went with the server: a new one starts
    srv.start()
    assert srv.stop() == 0


def test_tls_file_errors_name_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    data = _init(tmp_path)
    cert, key = data / "tls" / "cert.pem", data / "tls" / "key.pem"
    good = cert.read_bytes(), key.read_bytes()
    make_self_signed(tmp_path / "other.pem", tmp_path / "other.key", "other.test")
    cases = {
        "no-cert": [f"tls.cert: {cert} does not exist", "carteiro init"],
        "no-key": [f"tls.key: {key} does not exist", "[tls] key"],
        "garbage-cert": [f"tls.cert: {cert} holds no PEM certificate", "carteiro init"],
        "garbage-key": [f"tls.key: {key} holds no PEM private key"],
        "mismatch": [f"tls.key: {key} is not the key of the certificate {cert}"],
        "directory": [f"tls.cert: {cert} is a directory, not a PEM file"],
        "encrypted": [f"tls.key: {key} is encrypted with a passphrase", "openssl pkey"],
    }
    for case, want in cases.items():
        if cert.is_dir():
            cert.rmdir()
        cert.write_bytes(good[0])
        key.write_bytes(good[1])
        if case == "no-cert":
            cert.unlink()
        elif case == "no-key":
            key.unlink()
        elif case == "garbage-cert":
            cert.write_text("not a certificate\n")
        elif case == "garbage-key":
            key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        elif case == "directory":
            cert.unlink()
            cert.mkdir()
        elif case == "encrypted":
            pem = serialization.load_pem_private_key(good[1], password=None)
            key.write_bytes(
                pem.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            )
        else:
            key.write_bytes((tmp_path / "other.key").read_bytes())
        r = run_cli(data, "serve", check=False)
        assert r.returncode == EX_CONFIG, case
        (line,) = _errors(r.stderr)  # one line, no traceback
        assert line.startswith("carteiro: "), case
        for w in want:
            assert w in line, case


def test_bad_domain_names_are_refused_everywhere(tmp_path: Path) -> None:
    data = _init(tmp_path)
    for bad in ("bad domain", "ex..ample", "-", "a-.test", "xn--zz.test"):
        r = run_cli(data, "domain", "add", bad, check=False)
        assert r.returncode == EX_DATAERR and "not a" in r.stderr, bad
        assert "Traceback" not in r.stderr
    # held domains (ETRN/ATRN) enter through the same door
    for bad in ("bad domain", "ex..ample"):
        r = run_cli(data, "domain", "add", bad, "--hold", check=False)
        assert r.returncode == EX_DATAERR and "not a" in r.stderr, bad
    # removing a domain that is not there says so, and never "removed"
    for absent in ("nope.test", "bad domain"):
        r = run_cli(data, "domain", "del", absent, check=False)
        assert r.returncode == EX_DATAERR and "removed" not in r.stdout, absent
        assert "no domain" in r.stderr or "not a" in r.stderr, absent
    assert run_cli(data, "domain", "list").stdout.split() == ["example.test", "(carteiro.toml)"]
    # only the configured domain has keys (RSA, Ed25519 and their state file): no bad name left one
    assert {
        p.name.split(".carteiro")[0].removesuffix(".json") for p in (data / "dkim").iterdir()
    } == {"example.test"}
    r = run_cli(tmp_path / "d2", "init", "--domain", "ex..ample", check=False)
    assert r.returncode == EX_DATAERR and "--domain" in r.stderr
    assert not (tmp_path / "d2" / "carteiro.toml").exists()
    cfg = data / "carteiro.toml"
    cfg.write_text(cfg.read_text().replace('["example.test"]', '["example.test", "bad domain"]'))
    r = run_cli(data, "user", "list", check=False)
    assert r.returncode == EX_CONFIG and "domains[1]" in r.stderr


def test_idna_domains_are_one_domain_in_either_form(tmp_path: Path) -> None:
    data = _init(tmp_path)
    out = run_cli(data, "domain", "add", "Bücher.Example").stdout
    assert "added bücher.example" in out and "bücher.example.carteiro.key" in out
    run_cli(data, "domain", "add", "xn--bcher-kva.example")  # the same domain, A-label form
    assert run_cli(data, "domain", "list").stdout.count("bücher.example") == 1
    records = run_cli(data, "dns-records", "bücher.example").stdout
    assert "v=DKIM1" in records


def test_empty_message_is_refused_and_return_path_always_written(tmp_path: Path) -> None:
    data = _init(tmp_path)
    run_cli(data, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    for empty in ("", "From someone@example.org Mon Dec  7 01:02:03 2026\n"):
        r = run_cli(data, "deliver", "--to", "alice@example.test", stdin=empty, check=False)
        assert r.returncode == EX_DATAERR and "empty message" in r.stderr
    msg = "Subject: no sender given\n\nbody\n"
    run_cli(data, "deliver", "--to", "alice@example.test", stdin=msg)
    run_cli(data, "deliver", "--to", "alice@example.test", "--from", "bob@b.test", stdin=msg)
    out = tmp_path / "out.mbox"
    r = run_cli(data, "mailbox", "export", "alice@example.test", str(out), "--format", "mbox")
    assert "exported 2 messages" in r.stdout  # the empty ones were not stored
    got = [m.get_all("Return-Path") for m in mailbox.mbox(str(out))]
    assert got == [["<>"], ["<bob@b.test>"]]
    # mail is private: single-file exports 0600 as Maildir/MH are 0700
    old = os.umask(0o022)  # as a login shell has it
    try:
        for fmt in ("mbox", "mmdf", "babyl"):
            dest = tmp_path / f"x.{fmt}"
            run_cli(data, "mailbox", "export", "alice@example.test", str(dest), "--format", fmt)
            assert dest.stat().st_mode & 0o777 == 0o600, fmt
        # and every directory of a Maildir/MH export 0700, its own top and subfolders included
        run_cli(data, "mailbox", "export", "alice@example.test", "--format", "maildir", "--all",
                str(tmp_path / "x.maildir"))  # fmt: skip
        run_cli(data, "mailbox", "export", "alice@example.test", "--format", "mh", "--all",
                str(tmp_path / "x.mh"))  # fmt: skip
    finally:
        os.umask(old)
    for top in ("x.maildir", "x.mh"):
        for root, _dirs, files in os.walk(tmp_path / top):
            assert os.stat(root).st_mode & 0o777 == 0o700, root
            for name in files:
                assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o600, name


def test_deliver_help_is_whole_and_mh_import_of_a_maildir_fails(tmp_path: Path) -> None:
    data = _init(tmp_path)
    text = run_cli(data, "deliver", "--help").stdout
    assert "Exit status (sysexits)" in " ".join(text.split())
    whole = " ".join(text.split())
    assert "69 refused for good, 75 try later (nothing was delivered or queued)." in whole
    run_cli(data, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    md = mailbox.Maildir(str(tmp_path / "md"))
    md.add(b"Subject: x\n\nbody\n")
    r = run_cli(
        data,
        "mailbox",
        "import",
        "--format",
        "mh",
        str(tmp_path / "md"),
        "alice@example.test",
        check=False,
    )
    assert r.returncode != 0 and "is not an MH folder" in r.stderr and "a Maildir" in r.stderr


def test_plurals(tmp_path: Path) -> None:
    data = _init(tmp_path)
    run_cli(data, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    run_cli(data, "alias", "add", "a@example.test", "alice@example.test")
    assert run_cli(data, "alias", "del", "a@example.test").stdout.strip() == "removed 1 alias"
    out = run_cli(data, "store", "reindex").stdout
    assert "1 account," in out and "mailboxes" in out and "0 messages" in out
    run_cli(data, "list", "create", "dev@example.test", "--owner", "alice@example.test")
    run_cli(data, "list", "members", "add", "dev@example.test", "bob@b.test")
    assert "dev@example.test  1 member " in run_cli(data, "list", "list").stdout


def test_mbox_spool_accounts_are_refused_over_imap_and_pop3(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=("imap", "pop3"), users={})
    srv.extra_config = "[imap]\nallow_plaintext_auth = true\n[pop3]\nallow_plaintext_auth = true\n"
    srv.init()
    out = srv.cli(
        "user", "add", "mb@example.test", "--password-stdin", "--delivery", "mbox", stdin="pw\n"
    ).stdout
    assert "IMAP and POP3 refuse" in out and "mbox" in out
    srv.cli("user", "add", "st@example.test", "--password-stdin", stdin="pw\n")
    listing = srv.cli("user", "list").stdout.splitlines()
    assert [line.split() for line in listing] == [
        ["alice@example.test", "store"],  # ServerProcess's default user
        ["mb@example.test", "mbox"],
        ["st@example.test", "store"],
    ]
    srv.cli("deliver", "--to", "mb@example.test", stdin="Subject: spool\n\nx\n")
    with srv:
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        with pytest.raises(imaplib.IMAP4.error, match=r"CONTACTADMIN.*mbox spool"):
            imap.login("mb@example.test", "pw")
        imap.logout()
        pop = poplib.POP3("127.0.0.1", srv.ports["pop3"])
        pop.user("mb@example.test")
        with pytest.raises(poplib.error_proto, match=r"SYS/PERM.*mbox spool"):
            pop.pass_("pw")
        pop.quit()
        # a wrong password still says only that (no hint of the delivery mode)
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("mb@example.test", "wrong")
        imap.logout()
        out = srv.cli("user", "set", "mb@example.test", "--delivery", "store").stdout
        assert "mbox -> store" in out and "carteiro mailbox import --format mbox" in out
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
        imap.login("mb@example.test", "pw")
        imap.logout()
    r = srv.cli("user", "set", "nobody@example.test", "--delivery", "mbox", check=False)
    assert r.returncode == EX_DATAERR and "no account" in r.stderr


def test_serve_warns_of_a_missing_dkim_key(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=("smtp",), users={})
    srv.init()
    key = srv.data / "dkim" / "example.test.carteiro.key"
    key.unlink()
    with srv:
        pass
    assert f"dkim: no key for example.test ({key})" in srv.log()
    assert not key.exists()  # warned about, not made behind the operator's back


def test_key_file_modes_survive_a_umask(tmp_path: Path) -> None:
    """The exports above are 0600 whatever the umask (mailbox.mbox would give 0644)."""
    old = os.umask(0o022)
    try:
        from carteiro.formats.single_file import create_private

        create_private(tmp_path / "sub" / "f")
        assert (tmp_path / "sub" / "f").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o700
    finally:
        os.umask(old)


_ = ssl  # (imported for type checkers of imaplib's TLS variants)
