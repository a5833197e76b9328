"""TLS reports by HTTPS POST (RFC 8460 5.3.2): which rua URIs are used, the outbox that keeps a
report until it is posted (retried, then dropped), and the report task posting to a local TLS
server with the queue's DNS and CA."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carteiro.app import TLSReportTask
from carteiro.config import loads
from carteiro.net.tls import make_self_signed, server_context
from carteiro.queue import tlsrpt
from carteiro.queue.routing import AddressAnswer
from carteiro.queue.tlsrpt import (
    DAY,
    POST_GIVE_UP,
    POST_RETRY,
    Recorder,
    due_posts,
    due_reports,
    https_uris,
    post_done,
    post_target,
    queue_posts,
)

T = 1_700_006_400  # a UTC midnight


def test_which_https_uris_are_used() -> None:
    uris = [
        "mailto:a@b.test",
        "https://reports.b.test/tlsrpt",
        "HTTPS://r2.b.test:8443/v1/in?k=1",
        "http://plain.b.test/",  # not https
        "https://user:pw@r3.b.test/",  # user information
        "https:///nohost",
        "https://r4.b.test:99999/",  # a bad port
        "https://r5.b.test/a b",
        "https://r6.b.test/#frag",
    ]
    assert https_uris(uris) == ["https://reports.b.test/tlsrpt", "HTTPS://r2.b.test:8443/v1/in?k=1"]
    assert post_target("https://reports.b.test/tlsrpt") == ("reports.b.test", 443, "/tlsrpt")
    assert post_target("HTTPS://r2.b.test:8443/v1/in?k=1") == ("r2.b.test", 8443, "/v1/in?k=1")
    assert post_target("https://r.b.test") == ("r.b.test", 443, "/")
    many = [f"https://r{i}.b.test/" for i in range(10)]
    assert len(https_uris(many)) == tlsrpt.MAX_HTTPS


def one_report(tmp_path: Path) -> tuple[Path, tlsrpt.Report]:
    rec = Recorder(tmp_path / "tlsrpt.sqlite", clock=lambda: float(T))
    rec.session("b.test", None, "success", "mx.b.test", "192.0.2.1")
    rec.flush()
    (report,) = due_reports(rec.path, "mx.a.test", "postmaster@a.test", now=T + DAY)
    return rec.path, report


def test_outbox_keeps_a_report_until_posted_then_gives_up(tmp_path: Path) -> None:
    path, report = one_report(tmp_path)
    now = T + DAY
    queue_posts(path, report, ["https://r.b.test/", "https://s.b.test/"], now)
    # the sessions are forgotten in the same transaction: no second report
    assert due_reports(path, "mx.a.test", "postmaster@a.test", now=now) == []
    posts = due_posts(path, now)
    assert sorted(p.uri for p in posts) == ["https://r.b.test/", "https://s.b.test/"]
    assert json.loads(gzip.decompress(posts[0].body)) == json.loads(report.body)
    r, s = sorted(posts, key=lambda p: p.uri)
    assert post_done(path, r, True, now) is True  # posted: gone
    assert post_done(path, s, False, now) is False  # failed: tried again later
    assert due_posts(path, now) == []
    assert [p.uri for p in due_posts(path, now + POST_RETRY[0])] == ["https://s.b.test/"]
    (s,) = due_posts(path, now + POST_RETRY[0])
    assert s.tries == 1
    assert post_done(path, s, False, now + POST_RETRY[0]) is False
    assert due_posts(path, now + POST_RETRY[0] + POST_RETRY[1] - 1) == []
    (s,) = due_posts(path, now + POST_GIVE_UP)
    assert post_done(path, s, False, now + POST_GIVE_UP) is True  # too old: dropped
    assert due_posts(path, now + 10 * DAY) == []
    # queued twice (a retried pass): one row per URI and report
    queue_posts(path, report, ["https://r.b.test/"], now)
    queue_posts(path, report, ["https://r.b.test/"], now)
    assert len(due_posts(path, now)) == 1


class Collector:
    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.status = b"200 OK"
        self.port = 0
        self.stall = False  # take the request, never answer


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[tuple[Collector, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key, "reports.b.test")
    c = Collector()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            c.requests.append((head, body))
            if c.stall:
                await asyncio.sleep(3600)
            writer.write(b"HTTP/1.1 " + c.status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(cert, key))
    c.port = server.sockets[0].getsockname()[1]
    async with server:
        yield c, cert
        server.close()


class DNS:
    def __init__(self, record: str) -> None:
        self.record = record

    async def lookup(self, name: str, rdtype: str) -> object:
        from carteiro.mailauth.lookup import Answer

        if (name, rdtype) == ("_smtp._tls.b.test", "TXT"):
            return Answer("ok", ((self.record.encode(),),))
        return Answer("nxdomain")

    async def addresses(self, host: str) -> AddressAnswer:
        if host == "reports.b.test":
            return AddressAnswer("ok", ("127.0.0.1",))
        return AddressAnswer("nxdomain")


class Spool:
    def __init__(self) -> None:
        self.mail: list[tuple[object, bytes]] = []

    async def enqueue(self, env: object, message: bytes) -> str:
        self.mail.append((env, message))
        return "q1"


async def test_the_task_posts_the_report_and_retries_a_failed_post(
    tmp_path: Path, collector: tuple[Collector, Path]
) -> None:
    c, ca = collector
    cfg = loads(f'[queue]\ntls_cafile = "{ca}"\n', tmp_path)
    path, _report = one_report(tmp_path)
    rec = Recorder(path, clock=lambda: float(T))
    uri = f"https://reports.b.test:{c.port}/tlsrpt?k=v"
    dns = DNS(f"v=TLSRPTv1; rua=mailto:tls@b.test,{uri}")
    spool = Spool()
    task = TLSReportTask(cfg, rec, spool, dns)  # type: ignore[arg-type]  # (a fake spool)
    c.status = b"503 Service Unavailable"
    now = T + DAY
    assert await task.once(now) == 1
    assert len(spool.mail) == 1  # the mailto: copy, once
    assert len(c.requests) == 1  # tried, refused: kept
    assert [p.uri for p in due_posts(path, now + POST_RETRY[0])] == [uri]
    c.status = b"200 OK"
    assert await task.once(now + 10) == 0  # not due yet
    assert len(c.requests) == 1
    await task.once(now + POST_RETRY[0])
    assert len(c.requests) == 2 and len(spool.mail) == 1
    head, body = c.requests[-1]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /tlsrpt?k=v HTTP/1.1"
    fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    assert fields["content-type"] == "application/tlsrpt+gzip"
    assert fields["host"] == f"reports.b.test:{c.port}"
    doc = json.loads(gzip.decompress(body))
    assert doc["policies"][0]["policy"]["policy-domain"] == "b.test"
    assert due_posts(path, now + DAY) == []  # posted: gone
    await task.once(now + DAY)
    assert len(c.requests) == 2


async def test_a_certificate_that_does_not_verify_is_a_failed_post(
    tmp_path: Path, collector: tuple[Collector, Path]
) -> None:
    c, _ca = collector
    cfg = loads("", tmp_path)  # the test CA not trusted
    path, _report = one_report(tmp_path)
    uri = f"https://reports.b.test:{c.port}/"
    rec = Recorder(path, clock=lambda: float(T))
    task = TLSReportTask(cfg, rec, Spool(), DNS(f"v=TLSRPTv1; rua={uri}"))  # type: ignore[arg-type]
    assert await task.once(T + DAY) == 1
    assert c.requests == []  # the handshake failed before any request
    assert [p.tries for p in due_posts(path, T + DAY + POST_RETRY[0])] == [1]


async def test_the_servers_stop_ends_a_slow_post_and_keeps_everything(
    tmp_path: Path, collector: tuple[Collector, Path]
) -> None:
    """A report server that takes the POST and never answers does not hold the server's stop:
    the round is abandoned at once, the report stays in the outbox for the next start, and the
    sessions counted meanwhile are written."""
    c, ca = collector
    c.stall = True
    cfg = loads(f'[queue]\ntls_cafile = "{ca}"\n', tmp_path)
    path, _report = one_report(tmp_path)
    rec = Recorder(path)
    uri = f"https://reports.b.test:{c.port}/"
    task = TLSReportTask(cfg, rec, Spool(), DNS(f"v=TLSRPTv1; rua={uri}"))  # type: ignore[arg-type]
    task.tick = 0.01
    stop = asyncio.Event()
    runner = asyncio.create_task(task.run(stop))
    for _ in range(500):
        if c.requests:
            break
        await asyncio.sleep(0.01)
    assert len(c.requests) == 1  # the POST is in the air, unanswered
    rec.session("c.test", None, "success", "mx.c.test", "192.0.2.3")
    stop.set()
    await asyncio.wait_for(runner, 2)
    assert [p.uri for p in due_posts(path, 2 * T)] == [uri]  # not lost, not marked failed
    assert [p.tries for p in due_posts(path, 2 * T)] == [0]
    assert [r.domain for r in due_reports(path, "o", "c", now=4 * T)] == ["c.test"]  # flushed
