"""A private Dovecot (Debian's dovecot-imapd + dovecot-pop3d) in a temp dir, on free loopback
ports, for tests where carteiro is the client of a real IMAP/POP3 server (fetching a remote
mailbox, migration, interoperability).

    with DovecotInstance(tmp_path, users={"alice.isp": "secret"}) as dc:
        dc.deliver("alice.isp", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")   # into INBOX
        imaplib.IMAP4("127.0.0.1", dc.imap_port); poplib.POP3("127.0.0.1", dc.pop3_port)

Its own config file, base_dir, Maildirs and log; plaintext logins allowed on loopback (no TLS:
these are tests). Runs as root (Dovecot drops to its own users) or as any user (then everything
runs as that user). Always stopped (SIGTERM to its master, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from carteiro.testing.server import free_port, wait_port

DOVECOT = "/usr/sbin/dovecot"


def available() -> str | None:
    """None when a private Dovecot can run here, else why not."""
    if not os.path.exists(DOVECOT):
        return "dovecot is not installed (make apt-test)"
    for proto in ("imap", "pop3"):
        if not os.path.exists(f"/usr/lib/dovecot/{proto}-login"):
            return f"dovecot-{proto}d is not installed (make apt-test)"
    return None


def sieve_available() -> str | None:
    """None when the private Dovecot can also serve ManageSieve (Pigeonhole), else why not."""
    if not os.path.exists("/usr/lib/dovecot/managesieve-login"):
        return "dovecot-managesieved is not installed (make apt-test)"
    return available()


class DovecotInstance:
    def __init__(
        self,
        tmp: Path,
        users: Mapping[str, str],
        tls: bool = False,
        sieve: bool = False,
        extra: str = "",
        sieve_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = Path(tmp)
        # Dovecot's unprivileged processes must reach the base dir and the mail: a /tmp dir of
        # its own, world-traversable (pytest's are private to their user)
        self.dir = Path(tempfile.mkdtemp(prefix="carteiro-dovecot-"))
        os.chmod(self.dir, 0o755)
        self.users = dict(users)
        self.imap_port = free_port()
        self.pop3_port = free_port()
        # with tls: STARTTLS/STLS on the plain ports, and implicit TLS (993/995 roles) on these;
        # the certificate (for localhost and 127.0.0.1) is `cert_path`, a CA file for clients
        self.tls = tls
        self.imaps_port = free_port() if tls else 0
        self.pop3s_port = free_port() if tls else 0
        # with sieve: Pigeonhole's ManageSieve (dovecot-managesieved) on this port
        self.sieve = sieve
        self.sieve_port = free_port() if sieve else 0
        # more Pigeonhole settings for the plugin block (sieve_max_script_size, quotas ...)
        self.sieve_settings = dict(sieve_settings or {})
        self.extra = extra  # more dovecot.conf lines (a namespace, imapc_* settings ...)
        self.cert_path = self.dir / "cert.pem"
        self.key_path = self.dir / "key.pem"
        self.log_path = self.dir / "dovecot.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def mail_dir(self, user: str) -> Path:
        return self.dir / "mail" / user / "Maildir"

    def _config(self) -> str:
        d = self.dir
        uid, gid = os.getuid(), os.getgid()
        root = uid == 0
        lines = [
            f"base_dir = {d}/run",
            f"state_dir = {d}/state",
            f"log_path = {self.log_path}",
            f"info_log_path = {self.log_path}",
            "protocols = imap pop3",
            "listen = 127.0.0.1",
            "ssl = yes" if self.tls else "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"mail_location = maildir:{d}/mail/%u/Maildir",
            "mail_uid = mail" if root else f"mail_uid = {uid}",
            "mail_gid = mail" if root else f"mail_gid = {gid}",
            "first_valid_uid = 1",
            "pop3_uidl_format = %08Xu%08Xv",
            "mailbox_idle_check_interval = 1 secs",  # IDLE notices new mail quickly
            "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN " + f"{d}/passwd\n}}",
            "userdb {\n  driver = static\n  args = allow_all_users=yes\n}",
            f"service imap-login {{\n  inet_listener imap {{\n    port = {self.imap_port}\n  }}\n"
            f"  inet_listener imaps {{\n    port = {self.imaps_port}\n    ssl = yes\n  }}\n}}",
            f"service pop3-login {{\n  inet_listener pop3 {{\n    port = {self.pop3_port}\n  }}\n"
            f"  inet_listener pop3s {{\n    port = {self.pop3s_port}\n    ssl = yes\n  }}\n}}",
            "service anvil {\n  chroot =\n}",
            "service imap-login {\n  chroot =\n}",
            "service pop3-login {\n  chroot =\n}",
        ]
        if self.sieve:
            lines[lines.index("protocols = imap pop3")] = "protocols = imap pop3 sieve"
            lines += [
                f"service managesieve-login {{\n  inet_listener sieve {{\n"
                f"    port = {self.sieve_port}\n  }}\n  chroot =\n}}",
                f"plugin {{\n  sieve = file:{d}/sieve/%u/scripts;active={d}/sieve/%u/active.sieve\n"
                + "".join(f"  {k} = {v}\n" for k, v in self.sieve_settings.items())
                + "}",
            ]
        if self.tls:
            lines += [f"ssl_cert = <{self.cert_path}", f"ssl_key = <{self.key_path}"]
        if not root:
            lines += [
                f"default_internal_user = {os.environ.get('USER') or 'nobody'}",
                f"default_login_user = {os.environ.get('USER') or 'nobody'}",
            ]
        return "\n".join(lines) + "\n" + self.extra

    def doveadm(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `doveadm` against this instance (its config, its auth): `dsync`, `fetch`, ..."""
        return subprocess.run(
            ["doveadm", "-c", str(self.dir / "dovecot.conf"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 20.0) -> DovecotInstance:
        reason = available()
        if reason is not None:
            raise RuntimeError(reason)
        for sub in ("run", "state", "mail", "sieve"):
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "passwd").write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items())
        )
        if os.getuid() == 0:
            shutil.chown(self.dir / "mail", "mail", "mail")
            shutil.chown(self.dir / "sieve", "mail", "mail")
        if self.tls:
            from carteiro.net.tls import make_self_signed

            make_self_signed(self.cert_path, self.key_path, "localhost")
        conf = self.dir / "dovecot.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "stderr.log").open("wb"),
            start_new_session=True,
        )
        try:
            wait_port("127.0.0.1", self.imap_port, timeout, self.proc)  # type: ignore[arg-type]
            wait_port("127.0.0.1", self.pop3_port, timeout, self.proc)  # type: ignore[arg-type]
            if self.sieve:
                wait_port("127.0.0.1", self.sieve_port, timeout, self.proc)  # type: ignore[arg-type]
            if self.tls:
                wait_port("127.0.0.1", self.pop3s_port, timeout, self.proc)  # type: ignore[arg-type]
        except Exception as e:
            err = (self.dir / "stderr.log").read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"dovecot did not start: {e}\n{err}\n{self.log()}") from e
        return self

    def deliver(self, user: str, message: bytes) -> None:
        """Put a message into the user's INBOX (a new Maildir file, as an LDA would)."""
        md = self.mail_dir(user)
        for sub in ("tmp", "new", "cur"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time():.6f}.{os.getpid()}_{os.urandom(4).hex()}.carteiro-test"
        (md / "tmp" / name).write_bytes(message)
        os.rename(md / "tmp" / name, md / "new" / name)
        if os.getuid() == 0:
            for p in (self.dir / "mail" / user, md, md / "tmp", md / "new", md / "cur"):
                shutil.chown(p, "mail", "mail")
            shutil.chown(md / "new" / name, "mail", "mail")

    def count(self, user: str) -> int:
        """Messages left in the user's INBOX (new + cur)."""
        md = self.mail_dir(user)
        return sum(1 for sub in ("new", "cur") if (md / sub).is_dir() for _ in (md / sub).iterdir())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log_path, self.tmp / "dovecot.log")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DovecotInstance:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
