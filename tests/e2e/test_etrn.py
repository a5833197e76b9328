"""A held domain (RFC 1985 ETRN): the relay accepts mail for branch.test from anyone and keeps it
queued; the branch's own carteiro (a second instance) gets it only once `carteiro etrn` asks.
TURN is refused with a reason; ETRN for a domain we do not hold is 459."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("etrn-e2e")]

BRANCH_USER = "alice@branch.test"


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_held_domain_released_by_etrn_from_the_branch(tmp_path: Path) -> None:
    branch = ServerProcess(
        tmp_path / "branch",
        domains=("branch.test",),
        hostname="mail.branch.test",
        users={BRANCH_USER: "pw"},
        services=("smtp",),
    )
    branch.init()
    (tmp_path / "relay").mkdir()
    (tmp_path / "branch").mkdir(exist_ok=True)
    with branch:
        relay = ServerProcess(
            tmp_path / "relay",
            users={"bob@example.test": "pw"},
            services=("smtp",),
            # the branch's MX: no DNS here, so a transport entry says where it is
            extra_config=f'[transport]\n"branch.test" = "127.0.0.1:{branch.ports["smtp"]}"\n',
        )
        relay.init()
        relay.cli("domain", "add", "branch.test", "--hold")
        listed = relay.cli("domain", "list").stdout
        assert "branch.test  (held for ETRN)" in listed
        with relay:
            with smtplib.SMTP("127.0.0.1", relay.ports["smtp"]) as c:
                c.ehlo("sender.example.org")
                assert c.has_extn("etrn")
                c.sendmail("someone@example.org", [BRANCH_USER], b"Subject: held\r\n\r\nwait\r\n")
                # not a relay for anything else
                with pytest.raises(smtplib.SMTPRecipientsRefused):
                    c.sendmail("someone@example.org", ["x@elsewhere.test"], b"Subject: n\r\n\r\n")
                code, text = c.docmd("TURN")
                assert code == 502 and b"unsafe" in text
                code, _ = c.docmd("ETRN", "elsewhere.test")
                assert code == 459

            def state() -> dict[str, object]:
                (m,) = json.loads(run_cli(relay.data, "queue", "list", "--json").stdout)
                (r,) = m["recipients"]
                return dict(r)

            wait_for(lambda: state()["attempts"] == 1, what="the held message's first deferral")
            assert state()["state"] == "pending" and "held for branch.test" in str(
                state()["last_error"]
            )
            assert len(branch.stored(BRANCH_USER)) == 0

            # the branch comes online and asks
            r = branch.cli("etrn", f"127.0.0.1:{relay.ports['smtp']}", "branch.test")
            assert r.returncode == 0 and "253" in r.stdout, r.stdout + r.stderr
            wait_for(lambda: len(branch.stored(BRANCH_USER)) == 1, what="delivery after ETRN")
            wait_for(
                lambda: run_cli(relay.data, "mailq").stdout.strip() == "Mail queue is empty",
                what="the relay's queue to empty",
            )
            r = branch.cli("etrn", f"127.0.0.1:{relay.ports['smtp']}", "branch.test")
            assert "251" in r.stdout  # nothing more waits
