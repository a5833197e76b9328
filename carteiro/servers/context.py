"""What every protocol server is given by the composition root (app.py): configuration, the store,
the directory, the outbound spool, TLS contexts, the shared auth throttle and the shutdown signal.

Servers take what they need from here and never construct backends themselves.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from carteiro.config import Config
from carteiro.core.metrics import Metrics
from carteiro.directory.accounts import Directory
from carteiro.directory.throttle import AuthThrottle
from carteiro.lists.service import ListService
from carteiro.queue.api import Spool
from carteiro.store.api import MailStore


@dataclass
class ServerContext:
    config: Config
    store: MailStore
    directory: Directory
    spool: Spool
    throttle: AuthThrottle
    tls: ssl.SSLContext
    trace: frozenset[str] = (
        frozenset()
    )  # protocols whose sessions are traced ("smtp", "imap", "pop3")
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: Metrics = field(default_factory=Metrics)
    lists: ListService | None = None  # mailing lists: their addresses are taken at RCPT

    def tracing(self, protocol: str) -> bool:
        return protocol in self.trace or protocol in self.config.log.trace
