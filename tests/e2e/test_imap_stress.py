"""Concurrent sessions on one mailbox against a real `carteiro serve` (the sqlite store), checked
by carteiro/testing/imapstress.py the way Dovecot's imaptest checks a server in its stress mode:
clients in plain, CONDSTORE and QRESYNC modes APPEND, FETCH, STORE (with UNCHANGEDSINCE),
EXPUNGE, COPY, MOVE, SEARCH, IDLE and reconnect with QRESYNC, while `carteiro deliver` (another
process) and SMTP deliver into the same INBOX and a POP3 session reads and deletes there. Any reply no IMAP server may give fails the test;
the same checker finds nothing against Dovecot 2.3 (docs/imap.md). Then the same load with a
kill -9 in the middle: whatever a session was told (APPENDUID, COPYUID, octets it read, its own
acknowledged STOREs) is there after the restart."""

from __future__ import annotations

import contextlib
import os

from carteiro.testing.imapstress import Report, run, start_server

SECONDS = float(os.environ.get("IMAP_STRESS_SECONDS", "12"))
USER, PASSWORD = "tester@example.test", "pw"


def stress(seconds: float, seed: int, crash: bool) -> Report:
    """Six IMAP clients, deliveries from outside and a POP3 session on a fresh server's INBOX."""
    with contextlib.ExitStack() as stack:
        srv = start_server(stack, "carteiro", USER, PASSWORD)
        report = run(
            "127.0.0.1",
            srv.port,
            USER,
            PASSWORD,
            mailbox="INBOX",
            clients=6,
            seconds=seconds,
            seed=seed,
            inject=srv.inject,
            crash=srv.crash if crash else None,
            pop3_port=srv.pop3,
        )
    assert report.errors == [], "\n".join(report.errors[:20])
    return report


def test_concurrent_sessions_see_one_consistent_mailbox() -> None:
    report = stress(SECONDS, 7, crash=False)
    # the run did what it is for: many commands, resynchronisations, deliveries from outside
    assert report.commands > 500, report.counts
    assert report.counts.get("resync", 0) > 0, report.counts
    assert report.counts.get("injected", 0) > 2, report.counts
    assert report.counts.get("MOVE", 0) > 0 and report.counts.get("EXPUNGE", 0) > 0
    assert report.counts.get("POP3 sessions", 0) > 5, report.counts


def test_what_was_acknowledged_survives_kill_9_under_load() -> None:
    report = stress(SECONDS / 2, 8, crash=True)
    assert report.counts.get("checked after kill", 0) > 50, report.counts
