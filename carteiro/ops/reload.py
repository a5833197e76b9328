"""SIGHUP: re-read carteiro.toml and apply what can change under running sessions.

A reload is all or nothing: the file is loaded and everything it changes is built (servers for new
sessions, the queue's router and policy, the inbound checker, the certificate) before anything is
swapped in, so a file that does not load or a value that does not work changes nothing and is
logged in one line. Keys that only a restart can change (what is bound, who the process runs as,
what runs beside the servers) keep their running values and are named in one "needs a restart"
line; the running configuration keeps their old values, so the next reload names them again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from carteiro.config import Config, ConfigError, load
from carteiro.net.tls import TLSFileError, reload_server_context
from carteiro.ops.logsetup import configure

if TYPE_CHECKING:
    from carteiro.app import App

log = logging.getLogger("carteiro")

# Changed only by a restart (dotted key, or a whole section / top-level key):
RESTART = (
    "listen",  # sockets are bound once (and, started as root, before the switch of user)
    "server",  # the user and group the process switched to
    "fetch",  # the pollers run beside the servers, started once
    "web.tls",  # uvicorn reads its certificate and scheme at start
    "web.cert",
    "web.key",
    "web.idle_timeout",  # the webmail's session store keeps the value it was made with
    "mailauth.dmarc_reports",  # the report task is started once
    "mailauth.dmarc_report_interval",
    "mailauth.dmarc_report_from",
    "mailauth.dmarc_report_org",
    "imap.message_cache_mb",  # one cache outlives reloads (ServerContext.keep); made once
)


def needs_restart(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESTART)


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted names of the keys whose values differ (sections compared key by key)."""
    out: list[str] = []
    for f in dataclasses.fields(Config):
        if f.metadata.get("internal"):
            continue
        a: Any = getattr(old, f.name)
        b: Any = getattr(new, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            for g in dataclasses.fields(a):
                if getattr(a, g.name) != getattr(b, g.name):
                    out.append(f"{f.name}.{g.name}")
        elif a != b:
            out.append(f.name)
    return out


def keeping(old: Config, new: Config, keys: list[str]) -> Config:
    """`new` with the running (old) value of each of `keys`."""
    out = new
    for key in keys:
        section, _, name = key.partition(".")
        if not name:
            out = dataclasses.replace(out, **{section: getattr(old, section)})
            continue
        part = dataclasses.replace(
            getattr(out, section), **{name: getattr(getattr(old, section), name)}
        )
        out = dataclasses.replace(out, **{section: part})
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


async def reload_app(app: App) -> bool:
    old = app.config
    try:
        new = load(old.data_dir)
    except ConfigError as e:
        log.error("reload: %s; nothing changed, the running configuration stays", _one_line(e))
        return False
    changed = changed_keys(old, new)
    restart = [k for k in changed if needs_restart(k)]
    applied = [k for k in changed if not needs_restart(k)]
    cfg = keeping(old, new, restart)
    started = time.monotonic()
    try:
        commit = app.prepare(cfg)
    except Exception as e:  # whatever cannot be built from the file: nothing is swapped in
        log.error("reload: %s; nothing changed, the running configuration stays", _one_line(e))
        log.debug("reload: building from the new configuration failed", exc_info=True)
        return False
    if app.ctx is not None:
        try:
            reload_server_context(app.ctx.tls, cfg.path(cfg.tls.cert), cfg.path(cfg.tls.key))
        except TLSFileError as e:
            log.error("reload: %s; nothing changed, the old certificate stays", _one_line(e))
            return False
    commit()
    configure(cfg.log, app.log_level_override)
    log.info(
        "reload: configuration reloaded in %.0f ms, certificate %s loaded; %s",
        (time.monotonic() - started) * 1000,
        cfg.path(cfg.tls.cert),
        f"applied {', '.join(applied)} (new sessions get it; open ones keep theirs)"
        if applied
        else "no other change",
    )
    if restart:
        log.warning(
            "reload: needs a restart (the running value stays until then): %s", ", ".join(restart)
        )
    return True
