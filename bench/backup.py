"""Online backup and restore of a store of N messages, against a plain `cp -a` of the same data dir
(a copy with no consistency at all) as the baseline, in the same run.

    .venv/bin/python bench/backup.py [N]

Prints: how long deliveries pause for the cut (both locks held), the whole backup, the restore
(verification, copy, recovery, store check), and `cp -a`, with the ratios.
"""

from __future__ import annotations

import mailbox
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carteiro.testing.server import run_cli


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        data = t / "data"
        run_cli(data, "init", "--domain", "example.test")
        run_cli(data, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
        box = mailbox.mbox(str(t / "in.mbox"))
        for i in range(n):
            body = f"From: x@ext.test\nSubject: m{i}\n\n" + "line of text\n" * (20 + i % 200)
            box.add(body.encode())
        box.close()
        run_cli(data, "mailbox", "import", str(t / "in.mbox"), "alice@example.test")

        start = time.perf_counter()
        subprocess.run(["cp", "-a", str(data), str(t / "plain")], check=True)
        cp = time.perf_counter() - start

        start = time.perf_counter()
        out = run_cli(data, "backup", "--to", str(t / "bk")).stdout
        backup = time.perf_counter() - start
        m = re.search(r"paused (\d+) ms", out)
        paused = int(m.group(1)) / 1000 if m else float("nan")

        start = time.perf_counter()
        run_cli(t / "restored", "restore", "--from", str(t / "bk"))
        restore = time.perf_counter() - start

    print(f"messages                          {n}")
    print(f"cp -a of the data dir (baseline)  {cp:7.2f} s")
    print(f"backup (online, verified)         {backup:7.2f} s  ({backup / cp:.1f}x cp -a)")
    print(f"  deliveries paused for the cut   {paused:7.3f} s  ({paused / n * 1e6:.0f} us/message)")
    print(f"restore (verify, copy, check)     {restore:7.2f} s  ({restore / cp:.1f}x cp -a)")


if __name__ == "__main__":
    main()
