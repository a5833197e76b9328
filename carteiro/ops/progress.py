"""Progress bars for long commands (import/export, store check/reindex, backup/restore): tqdm on a
terminal (done/total, rate, time left), nothing at all when stderr is not one (logs and pipes get
only the summary line).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int, int], None]


def _quiet(done: int, total: int) -> None:
    return None


def progress_bar(
    label: str, stream: TextIO | None = None, unit: str = "msg", delay: float = 0.5
) -> Progress:
    """A `progress(done, total)` callback drawing one tqdm bar on `stream` (stderr), closed when
    done reaches total; a no-op unless the stream is a terminal. Runs shorter than `delay`
    seconds draw nothing (no flash of a bar for a small mailbox)."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return _quiet
    from tqdm import tqdm

    bar: tqdm[None] | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit=unit, file=out, leave=False, delay=delay)
        if total != bar.total:
            bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
