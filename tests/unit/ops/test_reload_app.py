"""SIGHUP reload inside one process: every part that may change at run time takes the new value,
state that must outlive a reload (rate counters, throttle, caches) is kept, and what needs a
restart keeps its running value."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.app import App, QueueHandoff
from carteiro.config import load
from carteiro.ops.reload import changed_keys, keeping, needs_restart
from carteiro.servers.smtpd import SMTPServer
from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.server import ServerProcess

CHANGES = """
[auth]
max_failures = 3
trusted_networks = ["192.0.2.0/24"]
[limits]
messages_per_minute_per_ip = 7
[relay]
smarthost = "smart.example.net:587"
[queue]
max_concurrency = 3
retry_schedule = [60]
[mailauth]
enabled = false
[quota]
messages = 5
[dkim]
enabled = false
[canonical]
"old@example.test" = "new@example.test"
[server]
user = "nobody"
"""


def _smtp(app: App) -> SMTPServer:
    handler = next(lst for lst in app.listeners if lst.service == "smtp").handler
    server = getattr(handler, "__self__", None)
    assert isinstance(server, SMTPServer)
    return server


class Lines(logging.Handler):
    """On the carteiro logger itself: a reload reconfigures the root logger's handlers."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture
def caplog_() -> Iterator[Lines]:
    root, ours = logging.getLogger(), logging.getLogger("carteiro")
    saved = (list(root.handlers), root.level, ours.level)
    h = Lines()
    ours.addHandler(h)
    ours.setLevel(logging.INFO)
    yield h
    ours.removeHandler(h)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_reload_applies_live_keys_and_keeps_state(tmp_path: Path, caplog_: Lines) -> None:
    caplog = caplog_
    srv = ServerProcess(tmp_path, services=("smtp", "imap"))
    srv.init()
    toml = srv.data / "carteiro.toml"
    base = toml.read_text()

    async def run() -> None:
        app = App(load(srv.data))
        await app.start()
        try:
            assert app.ctx is not None and app.queue is not None
            old_ctx, old_smtp = app.ctx, _smtp(app)
            assert old_smtp.messages_per_ip.allow("203.0.113.9")
            throttle, worker = old_ctx.throttle, app.queue.worker
            assert old_ctx.mailauth is not None and app.queue.spool.signer is not None
            toml.write_text(
                base.replace(
                    'domains = ["example.test"]', 'domains = ["example.test", "b.example"]'
                )
                + CHANGES
            )
            assert await app.reload()
            ctx, smtp = app.ctx, _smtp(app)
            assert ctx is not old_ctx and smtp is not old_smtp
            # new sessions: new servers and context; the old ones are left as they were
            assert ctx.config.limits.messages_per_minute_per_ip == 7
            assert old_ctx.config.limits.messages_per_minute_per_ip == 300
            assert ctx.mailauth is None and old_ctx.mailauth is not None
            # rate counters and the throttle outlive the reload, with the new limits
            assert smtp.messages_per_ip is old_smtp.messages_per_ip
            assert smtp.messages_per_ip.limit == 7
            assert ctx.throttle is throttle and throttle.max_failures == 3
            assert ctx.trusted.trusts("192.0.2.7", 1)
            assert "b.example" in ctx.directory.static_domains
            # the queue: same worker and spool, new routing, policy, signer, address map
            assert app.queue.worker is worker
            assert worker.router.config.smarthost == "smart.example.net:587"
            assert worker.router.destination("example.net").kind == "smarthost"
            assert worker.config.max_concurrency == 3
            assert isinstance(worker.local, QueueHandoff)
            assert app.queue.spool.signer is None
            assert app.queue.spool.rewriter is not None
            assert isinstance(ctx.store, SqliteMaildirStore)
            assert ctx.store.quota_defaults.messages == 5
            # a restart-only key keeps its running value, and is named
            assert app.config.server.user == ""
            assert (
                "needs a restart (the running value stays until then): server.user" in caplog.text
            )
            # a second reload of the same file changes nothing more, and names it again
            caplog.clear()
            assert await app.reload()
            assert "no other change" in caplog.text and "server.user" in caplog.text
            ctx = app.ctx
            # a value that cannot work changes nothing
            toml.write_text(base + '\n[auth]\ntrusted_networks = ["not a network"]\n')
            caplog.clear()
            assert not await app.reload()
            assert app.ctx is ctx and throttle.max_failures == 3
            assert "nothing changed" in caplog.text
        finally:
            await app.stop(grace=0)

    asyncio.run(run())


def test_keeping_puts_back_the_running_values_of_restart_keys() -> None:
    from carteiro.config import loads

    a = loads("")
    b = loads(
        '[listen]\nsmtp = "127.0.0.1:1"\n[smtp]\nmax_recipients = 7\n[[fetch]]\naccount = "a@b.c"\nuser = "u"\nserver = "h"\npassword_file = "p"\n'
    )
    keys = changed_keys(a, b)
    assert keys == ["listen.smtp", "smtp.max_recipients", "fetch"]
    restart = [k for k in keys if needs_restart(k)]
    assert restart == ["listen.smtp", "fetch"]
    c = keeping(a, b, restart)
    assert c.listen.smtp == a.listen.smtp and c.fetch == [] and c.smtp.max_recipients == 7
