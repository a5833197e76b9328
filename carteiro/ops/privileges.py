"""Dropping root: `carteiro serve` started as root binds its ports, then becomes [server] user.

As Postfix's master and Dovecot do, only the binding needs root; everything after it (the store,
the queue, every session) runs as the unprivileged user, who must own the data dir. The other way
to serve ports below 1024 is to start as that user with CAP_NET_BIND_SERVICE (contrib/
carteiro.service does), and then this module does nothing.
"""

from __future__ import annotations

import grp
import importlib
import logging
import os
import pkgutil
import pwd
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("carteiro")

# Standard modules that code (ours, or a library's) imports only when first used. Loaded before
# the switch: an interpreter installed where the new user cannot read (a pyenv under /root) would
# otherwise fail at the first IDNA name or the first DSN, hours later.
LAZY_STDLIB = (
    "encodings.idna",
    "encodings.punycode",
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.utf_8",
    "email.policy",
    "email.headerregistry",
    "email.generator",
    "email.feedparser",
    "email.parser",
    "email.utils",
    "json",
    "base64",
    "concurrent.futures.thread",
    "asyncio.sslproto",
    "asyncio.unix_events",
)


class PrivilegeError(Exception):
    """The configured user cannot be switched to; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Target:
    user: str
    uid: int
    gid: int
    home: str


def resolve(user: str, group: str = "") -> Target:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(
            f"server.user: no user {user!r} on this system (create it: useradd --system {user})"
        ) from None
    gid = pw.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"server.group: no group {group!r} on this system") from None
    return Target(user, pw.pw_uid, gid, pw.pw_dir)


def check_data_dir(target: Target, data_dir: Path) -> None:
    """The data dir must be the target user's: after the switch it could not write it."""
    st = data_dir.stat()
    if st.st_uid != target.uid:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        raise PrivilegeError(
            f"server.user: the data dir {data_dir} belongs to {owner}, not {target.user}; "
            f"fix: chown -R {target.user}: {data_dir}"
        )


def needs_switch(user: str) -> bool:
    """True when [server] user is set and we are root (not already that user)."""
    return bool(user) and os.geteuid() == 0


def check_not_other_user(target: Target) -> None:
    """Started as neither root nor the configured user: carry on would write files as a third."""
    if os.geteuid() not in (0, target.uid):
        raise PrivilegeError(
            f"server.user is {target.user!r} but carteiro runs as uid {os.geteuid()}: "
            f"start it as root (it switches after binding) or as {target.user}"
        )


def preload() -> None:
    """Import every carteiro module and LAZY_STDLIB now, while the files are readable: after
    the switch, the new user may not be able to read the interpreter's own library."""
    import carteiro

    for name in LAZY_STDLIB:
        importlib.import_module(name)
    for mod in pkgutil.walk_packages(carteiro.__path__, "carteiro."):
        if mod.name.startswith(("carteiro.testing", "carteiro.cli", "carteiro.__main__")):
            continue
        try:
            importlib.import_module(mod.name)
        except ImportError as e:  # an optional part (the webmail's extras): not needed to serve
            log.debug("preload: %s: %s", mod.name, e)


def drop_to(target: Target) -> None:
    """setgroups/setgid/setuid, in that order (a gid change needs root). Irreversible."""
    os.setgroups(os.getgrouplist(target.user, target.gid))
    os.setgid(target.gid)
    os.setuid(target.uid)
    if os.getuid() != target.uid or os.geteuid() != target.uid:  # pragma: no cover
        raise PrivilegeError(f"could not switch to {target.user}")
    os.environ["HOME"] = target.home
    os.environ["USER"] = os.environ["LOGNAME"] = target.user
