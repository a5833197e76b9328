"""Each account's Sieve scripts, in a file area of the data dir: DATA/sieve/<account>/<name>.sieve,
with the active one's name in DATA/sieve/<account>/.active. A name whose percent-encoded form
would make too long a file name (RFC 5804 1.6 allows 128 characters: 128 "é" are 768 octets
encoded) is stored as %~<hash>.sieve with the name beside it in %~<hash>.name; `%~` is no
prefix quote() writes, so the two kinds never meet. Every write is tmp -> fsync ->
rename -> fsync dir, so a crash leaves the old or the new script, never half of one. Scripts
are checked (compiled) before they are stored; quotas bound their number and size (RFC 5804).
Blocking: call from a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from urllib.parse import quote, unquote

from carteiro.sieve.compiler import compile_script, valid_script_name
from carteiro.sieve.errors import SieveSyntaxError

SUFFIX = ".sieve"
NAME_SUFFIX = ".name"  # beside a hashed script file: its name
HASHED = "%~"
MAX_STEM = 200  # octets of a file name's stem: NAME_MAX 255 less the temporary name's additions
SAFE = " +-_.,()@"
ACTIVE = ".active"
GLOBAL = "_global"  # DATA/sieve/_global/<name>.sieve: scripts `include :global` finds


class ScriptError(Exception):
    """A refused operation; `code` is the ManageSieve response code (RFC 5804 1.3)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp.{os.getpid()}.{threading.get_ident()}.{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


class ScriptStore:
    def __init__(self, root: Path, max_scripts: int = 20, max_size: int = 64 * 1024) -> None:
        self.root = root
        self.max_scripts = max_scripts
        self.max_size = max_size

    def _dir(self, account: str) -> Path:
        return self.root / quote(account.lower(), safe="@.+-_")

    def _file(self, account: str, name: str) -> Path:
        if not valid_script_name(name):
            raise ScriptError(f"invalid script name {name!r}")
        fname = quote(name, safe=SAFE)
        if fname.startswith("."):
            fname = "%2E" + fname[1:]  # never a hidden file, never ".active"
        if len(fname) > MAX_STEM:
            fname = HASHED + hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]
        return self._dir(account) / (fname + SUFFIX)

    @staticmethod
    def _name_file(path: Path) -> Path | None:
        """Where a hashed script file's name is kept; None for a file named after its script."""
        if not path.name.startswith(HASHED):
            return None
        return path.with_name(path.name[: -len(SUFFIX)] + NAME_SUFFIX)

    def _keep_name(self, path: Path, name: str) -> None:
        if (side := self._name_file(path)) is not None:
            _write(side, name.encode("utf-8"))

    def _drop_name(self, path: Path) -> None:
        if (side := self._name_file(path)) is not None:
            with contextlib.suppress(FileNotFoundError):
                side.unlink()

    def names(self, account: str) -> list[str]:
        d = self._dir(account)
        try:
            entries = os.listdir(d)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            if not e.endswith(SUFFIX) or e.startswith("."):
                continue
            if e.startswith(HASHED):
                try:
                    out.append((d / (e[: -len(SUFFIX)] + NAME_SUFFIX)).read_text("utf-8"))
                except (FileNotFoundError, UnicodeDecodeError):
                    continue  # its name is lost: not a script any client can name
            else:
                out.append(unquote(e[: -len(SUFFIX)]))
        return sorted(out)

    def active_name(self, account: str) -> str | None:
        try:
            name = (self._dir(account) / ACTIVE).read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def has_active(self, account: str) -> bool:
        return os.path.exists(self._dir(account) / ACTIVE)

    def list(self, account: str) -> list[tuple[str, bool]]:
        active = self.active_name(account)
        return [(n, n == active) for n in self.names(account)]

    def get(self, account: str, name: str) -> str | None:
        try:
            return self._file(account, name).read_bytes().decode("utf-8")
        except (FileNotFoundError, ScriptError):
            return None

    def stat(self, account: str, name: str) -> tuple[int, int] | None:
        """(mtime_ns, size) of a script, to cache its compiled form."""
        try:
            st = self._file(account, name).stat()
        except (FileNotFoundError, ScriptError):
            return None
        return st.st_mtime_ns, st.st_size

    def global_script(self, name: str) -> str | None:
        return self.get(GLOBAL, name)

    @staticmethod
    def check(text: str) -> None:
        """Raises ScriptError with the compiler's message (line and column)."""
        try:
            compile_script(text)
        except SieveSyntaxError as e:
            raise ScriptError(str(e)) from None

    def have_space(self, account: str, name: str, size: int) -> None:
        """RFC 5804 2.3: raises ScriptError(QUOTA/...) if this script would not fit."""
        if size > self.max_size:
            raise ScriptError(
                f"script too large ({size} octets, at most {self.max_size})", "QUOTA/MAXSIZE"
            )
        names = self.names(account)
        if name not in names and len(names) >= self.max_scripts:
            raise ScriptError(f"too many scripts (at most {self.max_scripts})", "QUOTA/MAXSCRIPTS")

    def put(self, account: str, name: str, text: str) -> None:
        data = text.encode("utf-8")
        path = self._file(account, name)
        self.have_space(account, name, len(data))
        self.check(text)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._keep_name(path, name)  # first: a script file is never there without its name
        _write(path, data)

    def delete(self, account: str, name: str) -> None:
        path = self._file(account, name)
        if self.active_name(account) == name:
            raise ScriptError("the active script cannot be deleted", "ACTIVE")
        try:
            path.unlink()
        except FileNotFoundError:
            raise ScriptError(f"no script named {name!r}", "NONEXISTENT") from None
        self._drop_name(path)
        _fsync_dir(path.parent)

    def rename(self, account: str, old: str, new: str) -> None:
        src, dst = self._file(account, old), self._file(account, new)
        if not src.exists():
            raise ScriptError(f"no script named {old!r}", "NONEXISTENT")
        if dst.exists():
            raise ScriptError(f"a script named {new!r} exists", "ALREADYEXISTS")
        self._keep_name(dst, new)
        os.link(src, dst)  # never overwrite: a concurrent rename onto `new` fails here
        was_active = self.active_name(account) == old
        if was_active:
            _write(self._dir(account) / ACTIVE, new.encode("utf-8"))
        src.unlink()
        self._drop_name(src)
        _fsync_dir(src.parent)

    def set_active(self, account: str, name: str | None) -> None:
        """Activate `name`, or deactivate every script with None/"" (RFC 5804 2.8)."""
        d = self._dir(account)
        if not name:
            with contextlib.suppress(FileNotFoundError):
                (d / ACTIVE).unlink()
                _fsync_dir(d)
            return
        text = self.get(account, name)
        if text is None:
            raise ScriptError(f"no script named {name!r}", "NONEXISTENT")
        self.check(text)
        _write(d / ACTIVE, name.encode("utf-8"))

    def active(self, account: str) -> tuple[str, str] | None:
        name = self.active_name(account)
        if name is None:
            return None
        text = self.get(account, name)
        return None if text is None else (name, text)
