"""No room to write, told apart from other failures the same way in every server.

A store, the queue's spool or a temp file that finds the disk full (ENOSPC) or a disk quota
reached (EDQUOT) raises StorageFull or an OSError with that errno. Both are an operator's
condition, not a bug: each server answers its protocol's "insufficient storage" code with a reason
and logs one WARNING line (who, what, errno), never a traceback. This module never replies.
"""

from __future__ import annotations

import errno
import logging

from carteiro.store.api import StorageFull

_CHAIN_MAX = 8  # how far down `raise ... from e` chains to look


def storage_full(e: BaseException) -> StorageFull | None:
    """`e` as a StorageFull when it (or an error it was raised from) means no room; else None."""
    cur: BaseException | None = e
    for _ in range(_CHAIN_MAX):
        if cur is None:
            break
        full = StorageFull.from_error(cur)
        if full is not None:
            return full
        cur = cur.__cause__
    return None


def errno_name(e: StorageFull) -> str:
    return errno.errorcode.get(e.errno, str(e.errno))


def log_storage_full(log: logging.Logger, who: str, what: str, e: StorageFull) -> None:
    """The one line an operator needs: whose request, which, and why (ENOSPC or EDQUOT)."""
    log.warning("%s: %s refused, no room to write: %s (%s)", who, what, e, errno_name(e))
