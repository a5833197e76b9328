"""A private Postfix (Debian's `postfix` package) in a temp dir, on a free loopback port, for tests
where a real MTA talks to carteiro (LMTP delivery, relaying, ETRN).

    with PostfixInstance(tmp_path, relay_domains=["example.test"],
                         relay_transport=f"lmtp:inet:[127.0.0.1]:{port}") as pf:
        smtplib.SMTP("127.0.0.1", pf.smtp_port)

Its own config_directory, queue and log file; no chroot; the system's Postfix is not touched.
Postfix's master must start as root (it drops to the `postfix` user): `available()` says whether
this host can run one. Always stopped (postfix stop, then SIGKILL of its master) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from carteiro.testing.server import free_port, wait_port

POSTFIX = "/usr/sbin/postfix"
DAEMON_DIR = "/usr/lib/postfix/sbin"

MASTER_CF = """\
{port}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> str | None:
    """None when a private Postfix can run here, else the reason it cannot."""
    if not os.path.exists(POSTFIX) or not os.path.isdir(DAEMON_DIR):
        return "postfix is not installed (make apt-test)"
    if os.geteuid() != 0:
        return "Postfix's master must be started as root"
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


class PostfixInstance:
    def __init__(
        self,
        tmp: Path,
        *,
        relay_domains: Iterable[str] = (),
        relay_transport: str = "",
        main_cf: Mapping[str, str] | None = None,
    ) -> None:
        # Postfix's daemons run as the postfix user and must reach their queue: pytest's temp
        # dirs are private to root, so the instance lives in a /tmp dir of its own (removed at
        # stop; its mail log is copied to tmp/postfix-maillog first)
        self.tmp = Path(tmp)
        self.dir = Path(tempfile.mkdtemp(prefix="carteiro-postfix-"))
        os.chmod(self.dir, 0o755)
        self.smtp_port = free_port()
        self.relay_domains = list(relay_domains)
        self.relay_transport = relay_transport
        self.extra = dict(main_cf or {})
        self.log_path = self.dir / "maillog"
        self._started = False

    def _main_cf(self) -> str:
        d = self.dir
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(d / "queue"),
            "data_directory": str(d / "data"),
            "command_directory": "/usr/sbin",
            "daemon_directory": DAEMON_DIR,
            "meta_directory": "/etc/postfix",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "postfix.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": ", ".join(self.relay_domains),
            "relay_transport": self.relay_transport or "relay",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(d),
            "smtputf8_enable": "no",
            "biff": "no",
            "smtp_dns_support_level": "disabled",
            "lmtp_host_lookup": "native",
            "disable_dns_lookups": "yes",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        settings.update(self.extra)
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.dir), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start(self, timeout: float = 30.0) -> PostfixInstance:
        reason = available()
        if reason is not None:
            raise RuntimeError(reason)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "main.cf").write_text(self._main_cf())
        (self.dir / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.smtp_port}"))
        for sub in ("queue", "data"):
            (self.dir / sub).mkdir(exist_ok=True)
        shutil.chown(self.dir / "data", "postfix")
        # creates the queue's subdirectories with their owners and modes
        self.postfix("set-permissions", "create-missing", check=False)
        r = self.postfix("start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed: {r.stderr}{r.stdout}{self.log()}")
        self._started = True
        wait_port("127.0.0.1", self.smtp_port, timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 30.0) -> str:
        """Until the mail log contains `text` (Postfix says what it did with each recipient)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            self.postfix("flush", check=False)
            time.sleep(0.2)
        raise AssertionError(f"postfix log has no {text!r} after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, self.tmp / "postfix-maillog")
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.postfix("stop", check=False)
        pid_file = self.dir / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, OSError):
                pass

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
