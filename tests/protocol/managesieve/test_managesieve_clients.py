"""Real ManageSieve clients against the server: sievelib (PyPI, what Python webmails use) and
sieve-connect (Debian's command-line client), both over STARTTLS with SASL PLAIN."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sieve_harness import PASSWORD, USER, Harness

SCRIPT = 'require ["fileinto", "vacation"];\nif header :contains "subject" "x" { fileinto "X"; }\nvacation "away";\n'


def _sievelib_session(port: int, cafile: Path) -> dict[str, Any]:
    import sievelib.managesieve as ms

    # sievelib verifies certificates with the default context: trust our test certificate
    # (it names mail.example.test, not 127.0.0.1: check the chain, not the name)
    orig = ms.ssllib.create_default_context

    def context(*args: object, **kwargs: object) -> ssl.SSLContext:
        ctx = orig(cafile=str(cafile))
        ctx.check_hostname = False
        return ctx

    ms.ssllib.create_default_context = context  # type: ignore[assignment]
    try:
        c = ms.Client("127.0.0.1", port)
        out: dict[str, Any] = {}
        out["connected"] = c.connect(USER, PASSWORD, starttls=True, authmech="PLAIN")
        out["implementation"] = c.get_implementation()
        out["sieve"] = c.get_sieve_capabilities()
        out["havespace"] = c.havespace("main", 100)
        out["check_bad"] = c.checkscript('keep;\nfileinto "x";\n')
        out["check_error"] = c.errmsg
        out["put"] = c.putscript("main", SCRIPT)
        out["setactive"] = c.setactive("main")
        out["list"] = c.listscripts()
        out["get"] = c.getscript("main")
        out["rename"] = c.renamescript("main", "renamed")
        out["list2"] = c.listscripts()
        out["delete_active"] = c.deletescript("renamed")
        out["deactivate"] = c.setactive("")
        out["delete"] = c.deletescript("renamed")
        out["list3"] = c.listscripts()
        c.logout()
        return out
    finally:
        ms.ssllib.create_default_context = orig  # type: ignore[assignment]


async def test_sievelib(server: Harness) -> None:
    pytest.importorskip("sievelib")
    r = await asyncio.to_thread(_sievelib_session, server.port, server.cert)
    assert r["connected"] is True
    assert r["implementation"].startswith("carteiro")
    assert "vacation" in r["sieve"] and "fileinto" in r["sieve"]
    assert r["havespace"] is True
    assert r["check_bad"] is False and b"line 2, column 1" in r["check_error"]
    assert r["put"] is True and r["setactive"] is True
    assert r["list"] == ("main", [])
    # sievelib drops the line break that ends the literal's last line
    assert r["get"].replace("\r\n", "\n") == SCRIPT.rstrip("\n")
    assert r["rename"] is True and r["list2"] == ("renamed", [])
    assert r["delete_active"] is False
    assert r["deactivate"] is True and r["delete"] is True and r["list3"] == (None, [])


SIEVE_CONNECT = shutil.which("sieve-connect")


def _sieve_connect(server: Harness) -> Callable[..., Awaitable[tuple[int, str]]]:
    """Run Debian's sieve-connect against the server (STARTTLS, PLAIN): (exit code, output)."""
    base = [
        "--server", "127.0.0.1", "--port", str(server.port), "--user", USER,
        "--passwordfd", "0", "--tlscafile", str(server.cert), "--tlshostname",
        "mail.example.test", "--authmech", "PLAIN",
    ]  # fmt: skip

    async def run(*args: str) -> tuple[int, str]:
        assert SIEVE_CONNECT is not None
        proc = await asyncio.create_subprocess_exec(
            SIEVE_CONNECT, *base, *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(PASSWORD.encode() + b"\n"), 60)
        return proc.returncode or 0, out.decode("utf-8", "replace")

    return run


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect (Debian) not installed")
async def test_sieve_connect(server: Harness, tmp_path: Path) -> None:
    local = tmp_path / "filter.sieve"
    local.write_text(SCRIPT)
    run = _sieve_connect(server)

    rc, out = await run("--upload", "--localsieve", str(local), "--remotesieve", "filter")
    assert rc == 0, out
    rc, out = await run("--activate", "--remotesieve", "filter")
    assert rc == 0, out
    rc, out = await run("--list")
    assert rc == 0 and out.strip() == '"filter" ACTIVE', out
    fetched = tmp_path / "fetched.sieve"
    rc, out = await run("--download", "--remotesieve", "filter", "--localsieve", str(fetched))
    assert rc == 0, out
    assert fetched.read_text().replace("\r\n", "\n") == SCRIPT
    bad = tmp_path / "bad.sieve"
    bad.write_text("if true {\n")
    rc, out = await run("--checkscript", "--localsieve", str(bad))
    assert rc != 0 and "line 2, column 1" in out, out


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect (Debian) not installed")
async def test_sieve_connect_command_loop_and_refusals(server: Harness, tmp_path: Path) -> None:
    # its --exec command loop (put, activate, list, delete, deactivate, get, check), --delete and
    # --deactivate, and how it reports each NO with its response code
    (tmp_path / "f.sieve").write_text(SCRIPT)
    (tmp_path / "bad.sieve").write_text("frob;\n")
    (tmp_path / "cmds").write_text(
        f"put {tmp_path}/f.sieve one\nput {tmp_path}/f.sieve two\nput {tmp_path}/bad.sieve three\n"
        "activate one\nlist\ndelete one\ndeactivate\ndelete one\nlist\n"
        f"get two {tmp_path}/two.out\nget nope {tmp_path}/nope.out\n"
        f"check {tmp_path}/bad.sieve\nactivate nope\nquit\n"
    )
    run = _sieve_connect(server)
    rc, out = await run("--exec", str(tmp_path / "cmds"))
    assert rc == 1 and "saw 5 problems" in out, out
    assert '"one" ACTIVE\n"two"\n"two"\n' in out, out
    assert 'PUTSCRIPT(three) failed: NO "line 1, column 1: unknown command frob"' in out
    assert "DELETESCRIPT(one) failed: NO (ACTIVE)" in out
    assert 'Script "nope" not returned by server: (NONEXISTENT)' in out
    assert "CHECKSCRIPT failed: NO" in out and "SETACTIVE(nope) failed: NO (NONEXISTENT)" in out
    assert (tmp_path / "two.out").read_text().replace("\r\n", "\n") == SCRIPT
    assert not (tmp_path / "nope.out").exists()
    rc, out = await run("--activate", "--remotesieve", "two")
    assert rc == 0, out
    rc, out = await run("--delete", "--remotesieve", "two")
    assert rc == 1 and "DELETESCRIPT(two) failed: NO (ACTIVE)" in out, out
    rc, out = await run("--deactivate")
    assert rc == 0, out
    rc, out = await run("--delete", "--remotesieve", "two")
    assert rc == 0, out
    rc, out = await run("--list")
    assert rc == 0 and out.strip() == "", out
