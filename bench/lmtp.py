"""Server CPU per message delivered over LMTP: `carteiro serve`'s LMTP listener against Dovecot
2.3's LMTP (Debian's dovecot-lmtpd, a private instance), the same client for both: Postfix's
`smtp-source -L`. This is the delivery leg of the Postfix + Dovecot design (Postfix's lmtp(8)
hands each message to Dovecot), and the one carteiro offers the same MTA.

Both deliver into a Maildir the user reads over IMAP, durably (Dovecot: mail_fsync = optimized,
its default, fsyncs a delivered message; carteiro: its 250 after the store's group commit) and
both index the message (Dovecot: its dovecot.index files; carteiro: the SQLite index, and its
search index afterwards). Runs alternate carteiro / Dovecot in one command; each figure is the
server's CPU (every process and thread, user + system) from the first connection until it is
idle again, divided by the messages sent.

Needs `dovecot-lmtpd` and `postfix` (for smtp-source) installed. Not a test.

Run: .venv/bin/python bench/lmtp.py [--messages 2000] [--repeat 2] [--size 1024] [--sessions 1]
                                    [--same-connection] [--only carteiro|dovecot]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smtp_postfix

from carteiro.testing.dovecot import DovecotInstance
from carteiro.testing.server import ServerProcess, free_port

USER = "bench@example.test"
LMTP_BIN = "/usr/lib/dovecot/lmtp"


def measure(
    port: int, pid: int, messages: int, size: int, sessions: int, same: bool
) -> tuple[float, float]:
    """(messages/s, CPU ms per message): bench/smtp_postfix.py's measure, speaking LMTP."""
    smtp_postfix.SIZE, smtp_postfix.SESSIONS = size, sessions
    return smtp_postfix.measure(port, pid, USER, messages, same, lmtp=True)


def dovecot(root: Path) -> tuple[DovecotInstance, int]:
    port = free_port()
    extra = (
        "protocols = imap pop3 lmtp\n"
        f"service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n"
        f"    port = {port}\n  }}\n}}\n"
        "lmtp_save_to_detail_mailbox = no\n"
        "userdb {\n  driver = static\n  args = allow_all_users=yes\n}\n"
    )
    dc = DovecotInstance(root, users={USER: "bench-password"}, extra=extra)
    return dc, port


def count_maildir(path: Path) -> int:
    return sum(1 for sub in ("new", "cur") if (path / sub).is_dir() for _ in (path / sub).iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024, help="payload octets (smtp-source -l)")
    ap.add_argument("--sessions", type=int, default=1, help="smtp-source -s")
    ap.add_argument("--same-connection", action="store_true", help="smtp-source -d")
    ap.add_argument("--only", choices=["carteiro", "dovecot"])
    args = ap.parse_args()
    if not os.path.exists(LMTP_BIN):
        raise SystemExit("Dovecot's LMTP is not installed (apt-get install dovecot-lmtpd)")
    shape = "one connection" if args.same_connection else "a connection per message"
    print(
        f"LMTP, {args.size} octets (smtp-source -L -l {args.size} -s {args.sessions}), {shape},"
        f" {args.messages} messages per figure"
    )
    # beside Dovecot's instance (the temp dir): both create files in like conditions
    with tempfile.TemporaryDirectory(prefix="bench-lmtp-") as tmp:
        root = Path(tmp)
        srv = ServerProcess(
            root / "carteiro",
            users={USER: "bench-password"},
            services=("imap", "lmtp"),
            extra_config='[log]\nlevel = "warning"\n',
        )
        dc, dc_port = dovecot(root / "dovecot")
        with srv, dc:
            assert srv.proc is not None and dc.proc is not None
            servers = {
                "carteiro": (srv.ports["lmtp"], srv.proc.pid),
                "dovecot": (dc_port, dc.proc.pid),
            }
            if args.only:
                servers = {args.only: servers[args.only]}
            same = args.same_connection
            for port, pid in servers.values():
                if args.warmup:
                    measure(port, pid, args.warmup, args.size, args.sessions, same)
            results: dict[str, list[tuple[float, float]]] = {n: [] for n in servers}
            for run in range(args.repeat):
                for name, (port, pid) in servers.items():
                    got = measure(port, pid, args.messages, args.size, args.sessions, same)
                    results[name].append(got)
                    print(f"  round {run + 1} {name:9} {got[0]:7.0f} msg/s {got[1]:7.3f} ms CPU")
            if "dovecot" in servers:
                n = count_maildir(dc.mail_dir(USER))
                print(f"  dovecot's Maildir holds {n} messages")
            for run in range(args.repeat):
                if len(servers) == 2:
                    c, d = results["carteiro"][run][1], results["dovecot"][run][1]
                    print(f"  round {run + 1}: carteiro / Dovecot CPU per message {c / d:.2f}x")


if __name__ == "__main__":
    main()
