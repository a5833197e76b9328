"""make_queue_service wiring, the control socket, and the `queue` / `dns-records` commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

from queue_fakes import MESSAGE, FakeLocal, FakeResolver, FakeTransport, env, reply_all, until

from carteiro.app import make_queue_service
from carteiro.cli_queue import register
from carteiro.config import loads
from carteiro.directory.accounts import Directory
from carteiro.mailauth.dkim import ensure_dkim_key
from carteiro.queue.service import QueueService


def run(*argv: str) -> tuple[int, str, str]:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    register(sub)
    args = p.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.func(args)
    return code, out.getvalue(), err.getvalue()


def service(
    tmp_path: Path, transport: FakeTransport, **extra: Any
) -> tuple[QueueService, FakeLocal]:
    cfg = loads(
        'hostname = "mx.a.test"\ndomains = ["a.test"]\n[queue]\nretry_schedule = [60.0]\n',
        data_dir=tmp_path,
    )
    resolver = FakeResolver()
    resolver.mx_for("b.test", (10, "mx.b.test"))
    resolver.host("mx.b.test", "127.0.0.3")
    directory = Directory(tmp_path / "directory.sqlite", static_domains=cfg.domains)
    local = FakeLocal()
    svc = make_queue_service(
        cfg,
        None,
        directory,
        transport,
        resolver,
        local=local,
        **extra,  # type: ignore[arg-type]
    )
    return svc, local


async def test_service_delivers_and_signs_for_our_domain(tmp_path: Path) -> None:
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    transport = FakeTransport()
    svc, _ = service(tmp_path, transport)
    await svc.start()
    qid = await svc.spool.enqueue(env("bob@b.test", auth_user="alice@a.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and qid not in svc.spool.messages)  # type: ignore[attr-defined]
    sent = transport.calls[0][1].message
    assert sent.startswith(b"DKIM-Signature: ") and sent.endswith(MESSAGE)
    await svc.stop()
    assert transport.closed


async def test_queue_commands_through_the_running_server(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "greylisted"))
    svc, _ = service(tmp_path, transport)
    await svc.start()
    qid = await svc.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not svc.spool.messages[qid].active)  # type: ignore[attr-defined]
    data = str(tmp_path)

    code, out, _ = await asyncio.to_thread(run, "queue", "list", "--data", data)
    assert code == 0 and qid in out and "<bob@b.test>" in out and "greylisted" in out
    code, out, _ = await asyncio.to_thread(run, "queue", "list", "--json", "--data", data)
    (m,) = json.loads(out)
    r = m["recipients"][0]
    assert (m["id"], r["state"], r["attempts"]) == (qid, "pending", 1)
    assert r["next_try"] > r["last_attempt"]
    assert "451 4.3.0 greylisted" in r["last_error"]

    code, out, _ = await asyncio.to_thread(run, "queue", "hold", qid, "--data", data)
    assert code == 0
    assert svc.spool.messages[qid].held  # type: ignore[attr-defined]
    code, out, _ = await asyncio.to_thread(run, "queue", "show", qid, "--data", data)
    assert "HELD" in out and "Subject: hello" in out

    transport.handler = reply_all(250, "2.0.0", "ok")
    code, out, _ = await asyncio.to_thread(run, "queue", "release", qid, "--data", data)
    assert code == 0
    await until(lambda: qid not in svc.spool.messages)  # type: ignore[attr-defined]

    code, out, err = await asyncio.to_thread(run, "queue", "delete", "NOSUCH", "--data", data)
    assert code == 1 and "no message NOSUCH" in err

    transport.handler = reply_all(451, "4.3.0", "later")
    q2 = await svc.spool.enqueue(env("carol@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 3 and not svc.spool.messages[q2].active)  # type: ignore[attr-defined]
    transport.handler = reply_all(250, "2.0.0", "ok")
    code, out, _ = await asyncio.to_thread(run, "queue", "flush", "--data", data)
    assert code == 0 and "1 message" in out
    await until(lambda: q2 not in svc.spool.messages)  # type: ignore[attr-defined]
    await svc.stop()


async def test_queue_commands_without_a_server(tmp_path: Path) -> None:
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "later"))
    svc, _ = service(tmp_path, transport)
    await svc.start()
    a = await svc.spool.enqueue(env("bob@b.test"), MESSAGE)
    b = await svc.spool.enqueue(env("carol@b.test"), MESSAGE)
    await until(
        lambda: len(transport.calls) == 2 and not any(m.active for m in svc.spool.messages.values())
    )  # type: ignore[attr-defined]
    await svc.stop()
    data = str(tmp_path)
    assert run("queue", "hold", a, "--data", data)[0] == 0
    assert run("queue", "delete", b, "--data", data)[0] == 0
    _code, out, _ = run("queue", "list", "--json", "--data", data)
    (m,) = json.loads(out)
    assert m["id"] == a and m["held"]
    assert not (tmp_path / "queue" / "msg" / b).exists()
    assert run("queue", "release", a, "--data", data)[0] == 0
    # the next start delivers it
    transport2 = FakeTransport()
    svc2, _ = service(tmp_path, transport2)
    await svc2.start()
    await until(lambda: not svc2.spool.messages)  # type: ignore[attr-defined]
    assert transport2.recipients_sent() == ["bob@b.test"]
    await svc2.stop()
    assert run("queue", "list", "--data", data)[1].strip() == "queue is empty"


def test_dns_records_command(tmp_path: Path) -> None:
    (tmp_path / "carteiro.toml").write_text(
        'hostname = "mail.a.test"\ndomains = ["a.test", "b.test"]\n'
    )
    # printing never makes a key (issue 12): it says which are missing
    code, out, err = run("dns-records", "--data", str(tmp_path))
    assert code == 0 and "v=DKIM1" not in out
    assert "no DKIM key for a.test" in err and "no DKIM key for b.test" in err
    assert not (tmp_path / "dkim").exists()
    ensure_dkim_key(tmp_path, "a.test", "carteiro")
    code, out, err = run("dns-records", "--data", str(tmp_path))
    assert code == 0 and "a.test" not in err
    for needle in (
        "a.test.",
        "b.test.",
        "IN MX  10 mail.a.test.",
        "v=spf1 mx -all",
        "carteiro._domainkey.a.test.",
        "v=DKIM1; k=rsa; p=",
        "_dmarc.b.test.",
    ):
        assert needle in out
    code, out, _ = run("dns-records", "b.test", "--data", str(tmp_path))
    assert "a.test." not in out.replace("mail.a.test.", "")
    code, _, err = run("dns-records", "z.test", "--data", str(tmp_path))
    assert code == 1 and "not one of our domains" in err
    code, _, err = run("dns-records", "ex..ample", "--data", str(tmp_path))
    assert code == 65 and "empty label" in err
    assert "_mta-sts" not in out  # no [mta_sts]: nothing published


def test_dns_records_of_a_published_mta_sts_policy(tmp_path: Path) -> None:
    from carteiro.app import published_mta_sts
    from carteiro.config import load as load_config
    from carteiro.queue.mta_sts import parse_policy, parse_txt

    cfg_path = tmp_path / "carteiro.toml"
    cfg_path.write_text(
        'hostname = "mail.a.test"\ndomains = ["a.test"]\n[dkim]\nenabled = false\n'
        '[listen]\nweb = "127.0.0.1:8443"\n[mta_sts]\nmode = "enforce"\n'
    )
    code, out, err = run("dns-records", "--data", str(tmp_path))
    assert code == 0 and err == ""
    (txt,) = [ln for ln in out.splitlines() if ln.startswith("_mta-sts.a.test.")]
    ident = parse_txt([txt.split('"')[1]])  # what a sender reads of it
    assert ident is not None
    assert any(
        ln.startswith("mta-sts.a.test.") and "CNAME mail.a.test." in ln for ln in out.splitlines()
    )
    text, same = published_mta_sts(load_config(tmp_path))
    assert same == ident
    policy = parse_policy(text, ident, 0.0)  # and what it fetches parses
    assert (policy.mode, policy.mx, policy.max_age) == ("enforce", ("mail.a.test",), 604800)
    # another policy: another id, so senders fetch it again
    cfg_path.write_text(cfg_path.read_text().replace('"enforce"', '"testing"'))
    code, out2, _ = run("dns-records", "--data", str(tmp_path))
    (txt2,) = [ln for ln in out2.splitlines() if ln.startswith("_mta-sts.a.test.")]
    assert parse_txt([txt2.split('"')[1]]) not in (None, ident)
    # no web listener: said, since nothing would serve the policy
    cfg_path.write_text(cfg_path.read_text().replace('web = "127.0.0.1:8443"', 'web = ""'))
    code, _, err = run("dns-records", "--data", str(tmp_path))
    assert code == 0 and "web listener is off" in err


async def test_list_show_and_mailq_see_a_deferral_the_server_holds_back(tmp_path: Path) -> None:
    """A deferral waits for the next commit (FileSpool.record): the commands that read the disk
    ask the running server to commit it first, so they show the attempt at once."""
    transport = FakeTransport(handler=reply_all(451, "4.3.0", "greylisted"))
    svc, _ = service(tmp_path, transport)
    await svc.start()
    qid = await svc.spool.enqueue(env("bob@b.test"), MESSAGE)
    await until(lambda: len(transport.calls) == 1 and not svc.spool.messages[qid].active)  # type: ignore[attr-defined]
    data = str(tmp_path)
    code, out, _ = await asyncio.to_thread(run, "mailq", "--data", data)
    assert code == 0 and "451 4.3.0 greylisted)" in out and "bob@b.test" in out
    code, out, _ = await asyncio.to_thread(run, "queue", "show", qid, "--json", "--data", data)
    assert json.loads(out)["recipients"][0]["attempts"] == 1
    await svc.stop()
