"""`carteiro list ...` in-process: create, settings, members, moderation decisions, and the
errors a user gets (one line, exit status 65)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carteiro.cli import main
from carteiro.lists.db import ListDB, Pending, db_path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "data"
    assert main(["init", "--data", str(d), "--domain", "l.test"]) == 0
    return d


def run(data: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "--data", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


def test_lists_members_settings(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            data,
            capsys,
            "list",
            "create",
            "dev@l.test",
            "--owner",
            "a@l.test",
            "--description",
            "Dev",
            "--posting",
            "anyone",
        )[0]
        == 0
    )
    code, _, err = run(data, capsys, "list", "create", "dev@l.test", "--owner", "a@l.test")
    assert code == 65 and "exists" in err
    code, _, err = run(data, capsys, "list", "create", "x@elsewhere.test", "--owner", "a@l.test")
    assert code == 65 and "not one of our domains" in err
    _, out, _ = run(data, capsys, "list", "members", "add", "dev@l.test", "B@b.test", "c@c.test")
    assert "2 added" in out
    assert "1 already" in run(data, capsys, "list", "members", "add", "dev@l.test", "b@b.test")[1]
    assert run(data, capsys, "list", "members", "list", "dev@l.test")[1].split() == [
        "b@b.test",
        "regular",
        "c@c.test",
        "regular",
    ]
    assert run(data, capsys, "list", "set", "dev@l.test", "subject_prefix", "[dev] ")[0] == 0
    code, _, err = run(data, capsys, "list", "set", "dev@l.test", "posting", "everyone")
    assert code == 65 and "not one of" in err
    _, out, _ = run(data, capsys, "list", "show", "dev@l.test", "--json")
    info = json.loads(out)
    assert info["members"] == 2 and info["settings"]["subject_prefix"] == "[dev] "
    assert info["list_id"] == "dev.l.test" and info["settings"]["posting"] == "anyone"
    assert "dev@l.test  2 members  Dev" in run(data, capsys, "list", "list")[1]
    assert "1 removed" in run(data, capsys, "list", "members", "del", "dev@l.test", "c@c.test")[1]
    assert run(data, capsys, "list", "show", "nope@l.test")[0] == 65


def test_moderation_decisions_are_recorded(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(data, capsys, "list", "create", "mod@l.test", "--owner", "a@l.test")
    db = ListDB(db_path(data))
    db.add_pending(
        Pending(
            "tok1",
            "mod@l.test",
            "post",
            "eve@e.test",
            "nonmember",
            "hi",
            b"Subject: hi\r\n\r\nx\r\n",
            1.0,
            9e12,
            "waiting",
        )
    )
    db.close()
    _, out, _ = run(data, capsys, "list", "moderate", "mod@l.test")
    assert out.startswith("tok1  post") and "eve@e.test" in out
    code, out, _ = run(
        data, capsys, "list", "moderate", "mod@l.test", "reject", "TOK1", "--reason", "off topic"
    )
    assert code == 0 and "rejected" in out
    code, _, err = run(data, capsys, "list", "moderate", "mod@l.test", "approve", "tok1")
    assert code == 65 and "decided already" in err
    db = ListDB(db_path(data))
    p = db.pending("tok1")
    assert p is not None and (p.state, p.reason) == ("rejected", "off topic")
    db.close()
    assert run(data, capsys, "list", "del", "mod@l.test")[0] == 0
    assert run(data, capsys, "list", "del", "mod@l.test")[0] == 65
