"""Logging for `carteiro serve`: text or JSON lines on stderr, a level per subsystem, and a last
guard against secrets.

Text: `2026-12-07 01:02:03,456 INFO carteiro.smtp: smtp T1: client=... queued as Q`. JSON: one
object per line with ts, level, logger, msg and, for the events that carry them (an SMTP
transaction, a delivery attempt), their fields: queue_id, from, to, status... so a log shipper
needs no regular expression. `[log] levels = {smtp = "debug"}` sets the logger carteiro.smtp.
Passwords never reach a logger (sessions mask them before logging); the filter below also masks
anything shaped like a credential that slipped into a message, so a bug cannot leak one.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from typing import Any, TextIO

from carteiro.config import LogConfig

# "password=..", "pass: ..", AUTH PLAIN/LOGIN initial responses and IMAP LOGIN's second argument
_SECRET = re.compile(
    r"(?i)(\b(?:password|passwd|pass|secret|token)\b\s*[=:]\s*)(\S{1,200})"
    r"|(\bAUTH(?:ENTICATE)?\s+(?:PLAIN|LOGIN|XOAUTH2|OAUTHBEARER)\s+)([A-Za-z0-9+/=]{4,2000})"
)
_MASK = "<secret masked>"


def _mask(text: str) -> str:
    low = text.lower()
    if not any(w in low for w in ("pass", "auth", "secret", "token")):
        return text  # the common case: no regular expression run at all
    return _SECRET.sub(lambda m: (m.group(1) or m.group(3)) + _MASK, text)


class SecretFilter(logging.Filter):
    """Rewrites a record's message when it carries something shaped like a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        masked = _mask(msg)
        if masked is not msg and masked != msg:
            record.msg, record.args = masked, None
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event:
            out["event"] = event
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(cfg: LogConfig, level: str | None = None, stream: TextIO | None = None) -> None:
    """(Re)configure the carteiro loggers from [log]; `level` (--log-level) overrides cfg.level.
    Safe to call again (SIGHUP): the handler is replaced, not added."""
    # The handler sits on the root logger (libraries' warnings too, e.g. asyncio's); the
    # carteiro logger and its subsystems decide what of theirs gets that far.
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_carteiro", False) or not getattr(root, "_carteiro_configured", False):
            root.removeHandler(h)
    root._carteiro_configured = True  # type: ignore[attr-defined]
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._carteiro = True  # type: ignore[attr-defined]
    json_lines = cfg.format == "json"
    handler.setFormatter(JSONFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(SecretFilter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours = logging.getLogger("carteiro")
    ours.setLevel(getattr(logging, (level or cfg.level).upper(), logging.INFO))
    known = set(cfg.levels)
    for name in list(logging.Logger.manager.loggerDict):
        # subsystems no longer listed go back to the global level
        if name.startswith("carteiro.") and name.count(".") == 1 and name[9:] not in known:
            logging.getLogger(name).setLevel(logging.NOTSET)
    for name, lvl in cfg.levels.items():
        logging.getLogger(f"carteiro.{name}").setLevel(getattr(logging, lvl.upper()))
