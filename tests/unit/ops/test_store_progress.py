"""`carteiro store check|reindex` draw a progress bar on a terminal (issue 12, Add 5), fed by the
store's `progress(done, total)`; on a pipe they print only their summary."""

from __future__ import annotations

import io
import mailbox
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from carteiro import cli
from carteiro.store import maintenance
from carteiro.store.api import CheckReport
from carteiro.testing.server import ServerProcess, run_cli


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_check(
    data_dir: Path, account: str | None = None, progress: Callable[[int, int], None] | None = None
) -> CheckReport:
    assert progress is not None
    for done in range(0, 5001, 1000):
        progress(done, 5000)
    return CheckReport()


@pytest.mark.parametrize("stream", [_Terminal(), io.StringIO()], ids=["terminal", "pipe"])
def test_store_check_draws_a_bar_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: io.StringIO
) -> None:
    import carteiro.ops.progress as progress

    real = progress.progress_bar
    monkeypatch.setattr(
        progress, "progress_bar", lambda label, **kw: real(label, **{**kw, "delay": 0})
    )
    monkeypatch.setattr(maintenance, "check", _fake_check)
    monkeypatch.setattr(sys, "stderr", stream)
    (tmp_path / "carteiro.toml").write_text("")
    assert cli.main(["store", "check", "--data", str(tmp_path)]) == 0
    if stream.isatty():
        assert "checking" in stream.getvalue() and "/5000 [" in stream.getvalue()
    else:
        assert stream.getvalue() == ""


def test_the_store_reports_progress_of_check_and_reindex(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, services=(), users={"alice@example.test": "pw"})
    srv.init()
    box = mailbox.mbox(tmp_path / "in.mbox")
    for i in range(2500):
        box.add(f"From: a@b.test\nSubject: {i}\n\nbody {i}\n".encode())
    box.close()
    run_cli(srv.data, "mailbox", "import", str(tmp_path / "in.mbox"), "alice@example.test")
    calls: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        calls.append((done, total))

    assert maintenance.check(srv.data, progress=record).ok  # type: ignore[call-arg]
    assert calls[0] == (0, 2500) and calls[-1] == (2500, 2500)
    assert len(calls) >= 4  # within the one big mailbox too, not only at the end
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    report = maintenance.reindex(srv.data, progress=record)  # type: ignore[call-arg]
    assert report.messages == 2500
    # the scan, then the parse for SEARCH on the same bar: the total grows once
    assert calls[-1][0] == calls[-1][1] == 2500 + report.searchable
    assert (2500, 2500) in calls
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
