"""CPU time of a server's process tree from /proc (Linux), for benchmarks that put carteiro beside
Postfix or Dovecot: those run as a master with short-lived children, so a figure must count the
live processes and what the ones already gone used (the cutime/cstime their parents reaped).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # from field 3 (state) on


def cpu_of_tree(root: int) -> float:
    """CPU seconds (user + system) of `root` and every live descendant, each with the children
    it reaped. A process counted once: a reaped child is no longer live."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
                children.setdefault(int(st[1]), []).append(int(entry))
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        st = stats.get(pid)
        if st is None:
            continue
        total += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return total / TICK


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (one its parent has not reaped yet)."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def wait_idle(root: int, timeout: float = 30.0) -> float:
    """Until the tree's CPU time has been still for 0.5 s (or `timeout`); returns it."""
    used, deadline = cpu_of_tree(root), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_of_tree(root)
        if now == used:
            return now
        used = now
    return used
