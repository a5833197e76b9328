"""What the webmail needs to know to run: where IMAP and SMTP submission are and how to reach them,
the names and ports it tells clients in autoconfiguration, and the session limits. Built by
app.py from carteiro.toml or by `carteiro web` from its options; never read from globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carteiro.web.autoconfig import Services
from carteiro.web.imap import Endpoint


@dataclass
class WebSettings:
    imap: Endpoint
    smtp: Endpoint
    hostname: str = "localhost"
    services: Services = field(default_factory=lambda: Services("localhost", ()))
    idle_timeout: float = 1800.0  # seconds without a request before the session ends
    max_upload: int = 25 * 1024 * 1024  # all attachments of one message together
    secure_cookies: bool = False  # set when served over HTTPS
    title: str = "carteiro webmail"
    counts_every: float = 60.0  # seconds between unread-count checks of all folders (live page)
