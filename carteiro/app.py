"""Composition root: configuration -> backends -> services -> listeners.

The only module that names concrete backends. `App.start()` opens the store, directory and queue,
binds every configured listener (failing fast with a one-line error naming the service and address),
and `App.stop()` stops accepting, lets in-flight sessions finish for a grace period, then closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from carteiro.cli_queue import make_queue_service
from carteiro.config import Config
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.net.listener import Listener, ListenError
from carteiro.net.tls import server_context
from carteiro.queue.service import QueueService
from carteiro.servers.context import ServerContext
from carteiro.store.api import MailStore

log = logging.getLogger("carteiro")


ListenerFactory = Callable[[ServerContext], list[Listener]]


def open_store(cfg: Config) -> MailStore:
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    store: MailStore = SqliteMaildirStore(cfg.data_dir)
    return store


def open_directory(cfg: Config) -> Directory:
    d = Directory(cfg.data_dir / "directory.sqlite", static_domains=cfg.domains)
    d.cache_ttl = cfg.auth.cache_ttl
    return d


def listener_factories() -> list[ListenerFactory]:
    """Each protocol server's `listeners(ctx)`; a disabled service ("" address) yields none."""
    factories: list[ListenerFactory] = []
    from carteiro.servers import pop3d

    factories.append(pop3d.listeners)
    from carteiro.servers import imapd

    factories.append(imapd.listeners)
    from carteiro.servers import smtpd

    factories.append(smtpd.listeners)
    return factories


@dataclass
class App:
    config: Config
    trace: frozenset[str] = frozenset()
    listeners: list[Listener] = field(default_factory=list)
    ctx: ServerContext | None = None
    queue: QueueService | None = None

    async def start(self) -> None:
        cfg = self.config
        store = open_store(cfg)
        directory = open_directory(cfg)
        throttle = AuthThrottle(
            failure_delay=cfg.auth.failure_delay,
            max_failures=cfg.auth.max_failures,
            window=cfg.auth.failure_window,
            block_time=cfg.auth.block_time,
        )
        tls = server_context(cfg.path(cfg.tls.cert), cfg.path(cfg.tls.key))
        self.queue = make_queue_service(cfg, store, directory)
        self.ctx = ServerContext(
            config=cfg,
            store=store,
            directory=directory,
            spool=self.queue.spool,
            throttle=throttle,
            tls=tls,
            trace=self.trace,
        )
        for factory in listener_factories():
            self.listeners.extend(factory(self.ctx))
        try:
            # The queue first: a message accepted by a listener must find the spool open.
            await self.queue.start()
            for lst in self.listeners:
                await lst.start()
        except ListenError:
            await self.stop(grace=0)
            raise
        for lst in self.listeners:
            if lst.bound:
                log.info("%-12s listening on %s:%d", lst.service, *lst.bound)
        if cfg.listen.web:
            log.info("web          not started: the webmail is not part of this release yet")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let sessions finish (up to `grace` s), stop the queue, close the store."""
        if self.ctx is not None:
            self.ctx.shutdown.set()
        await asyncio.gather(*(lst.stop(grace) for lst in self.listeners), return_exceptions=True)
        if self.queue is not None:
            await self.queue.stop()
        if self.ctx is not None:
            await self.ctx.store.close()
            self.ctx.directory.close()
