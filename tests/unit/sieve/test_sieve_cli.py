"""`carteiro sieve`: check, test, and put/list/get/activate/delete on a data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from carteiro.cli import main
from carteiro.directory.accounts import Directory

SCRIPT = 'require ["fileinto", "vacation"];\nif header :contains "subject" "lunch" { fileinto "Food"; }\nvacation "away";\n'
MESSAGE = b"From: joe@remote.test\r\nTo: alice@example.test\r\nSubject: lunch\r\n\r\nhi\r\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    script, message = tmp_path / "main.sieve", tmp_path / "msg.eml"
    script.write_text(SCRIPT)
    message.write_bytes(MESSAGE)
    return script, message


def test_check(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script, _ = files
    assert main(["sieve", "check", str(script)]) == 0
    bad = tmp_path / "bad.sieve"
    bad.write_text('keep;\nfileinto "x";\n')
    assert main(["sieve", "check", str(bad)]) == 65
    assert 'line 2, column 1: fileinto requires "fileinto"' in capsys.readouterr().err


def test_test_prints_the_actions(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, message = files
    rc = main(
        [
            "sieve",
            "test",
            str(script),
            str(message),
            "--from",
            "joe@remote.test",
            "--to",
            "alice@example.test",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "fileinto 'Food'" in out and "vacation reply" in out and "keep" not in out


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # every command opens the directory, which hashes a dummy password: make that cheap here
    from argon2 import PasswordHasher

    monkeypatch.setattr(
        "carteiro.directory.accounts._hasher", lambda: PasswordHasher(time_cost=1, memory_cost=64)
    )


@pytest.mark.usefixtures("cheap_hashing")
def test_manage_scripts(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script, _ = files
    data = tmp_path / "data"
    data.mkdir()
    (data / "carteiro.toml").write_text(
        'hostname = "mx.example.test"\ndomains = ["example.test"]\n'
    )
    d = Directory(data / "directory.sqlite", static_domains=["example.test"])
    d.add_user("alice@example.test", "pw")
    d.close()
    base = ["--data", str(data)]
    assert main(["sieve", "put", "alice@example.test", str(script), "--activate", *base]) == 0
    assert main(["sieve", "list", "Alice@example.test", *base]) == 0
    assert "main  (active)" in capsys.readouterr().out
    assert main(["sieve", "get", "alice@example.test", "main", *base]) == 0
    assert capsys.readouterr().out == SCRIPT
    assert main(["sieve", "delete", "alice@example.test", "main", *base]) == 65
    assert "active script cannot be deleted" in capsys.readouterr().err
    assert main(["sieve", "activate", "alice@example.test", "", *base]) == 0
    assert main(["sieve", "delete", "alice@example.test", "main", *base]) == 0
    assert main(["sieve", "list", "nobody@example.test", *base]) == 67
    bad = tmp_path / "bad.sieve"
    bad.write_text("if true {")
    assert main(["sieve", "put", "alice@example.test", str(bad), *base]) == 65
    assert "line 1, column 10" in capsys.readouterr().err
