"""SIGHUP: re-read carteiro.toml and apply what can change under running sessions.

Applied at once: the TLS certificate and key (loaded into the live SSLContext: sessions already
in TLS keep theirs, new handshakes get the new pair) and [log] (level, per-subsystem levels,
format). Every other changed key is named in the log as needing a restart, never half-applied.
A file that does not load, or a certificate that does not, changes nothing at all.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from carteiro.config import Config, ConfigError, load
from carteiro.net.tls import TLSFileError, reload_server_context
from carteiro.ops.logsetup import configure

if TYPE_CHECKING:
    from carteiro.app import App

log = logging.getLogger("carteiro")

LIVE_SECTIONS = ("tls", "log")


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


async def reload_app(app: App) -> bool:
    old = app.config
    try:
        new = load(old.data_dir)
    except ConfigError as e:
        log.error("reload: %s; nothing changed, the running configuration stays", e)
        return False
    if app.ctx is not None:
        try:
            reload_server_context(app.ctx.tls, new.path(new.tls.cert), new.path(new.tls.key))
        except TLSFileError as e:
            log.error("reload: %s; nothing changed, the old certificate stays", e)
            return False
    changed = changed_keys(old, new)
    configure(new.log, app.log_level_override)
    restart = [k for k in changed if k.split(".")[0] not in LIVE_SECTIONS]
    applied = [k for k in changed if k.split(".")[0] in LIVE_SECTIONS]
    # the running services keep the old values of keys that need a restart: keep them here
    # too, so `changed` stays right at the next reload
    kept = dataclasses.replace(old, tls=new.tls, log=new.log)
    app.config = kept
    if app.ctx is not None:
        app.ctx.config = kept
    log.info(
        "reload: certificate %s reloaded%s",
        new.path(new.tls.cert),
        f"; applied {', '.join(applied)}" if applied else "",
    )
    if restart:
        log.warning("reload: changed keys need a restart to apply: %s", ", ".join(restart))
    return True
