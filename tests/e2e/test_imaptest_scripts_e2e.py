"""The imaptest script runner against a real `carteiro serve`, with scripts of our own in
imaptest's format (imaptest's own are reference data, not kept here): the set-up (mailbox
deleted, created, filled from the mbox, SELECTed on every connection), two connections,
pipelined tags, LITERAL+ literals and the fixes the suite found (docs/imap.md "imaptest")."""

from __future__ import annotations

from pathlib import Path

from carteiro.testing.imaptest_scripts import Runner, parse_script
from carteiro.testing.server import ServerProcess

MBOX = (
    "From user@domain  Fri Feb 22 17:06:23 2008 +0200\n"
    "From: User1 <user1@domain.org>\nSubject: s1\n\nbody1\n\n"
    "From user@domain  Sat Feb 23 17:06:23 2008 +0200\n"
    "From: user2@domain.org\nSubject: s22\n\nbody22\n\n"
    "From user@domain  Sun Feb 24 17:06:23 2008 +0200\n"
    "Mime-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
    "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n"
)

SCRIPTS = {
    "state": (
        "connections: 2\n\n"
        "1 ok fetch 1:* (uid internaldate)\n"
        # the From_ line's zone, which the runner APPENDs with (as imaptest does), shown back
        '* 1 fetch (uid $uid1 internaldate "22-Feb-2008 17:06:23 +0200")\n'
        "* 3 fetch (uid $uid3 internaldate $)\n"
        "1 ok store 2 +flags \\deleted\n"
        "* 2 fetch (flags (\\deleted \\recent))\n"
        "1 ok expunge\n* $2 expunge\n"
        # a UID command may carry the pending EXPUNGE (RFC 9051 7.5.1): $3 follows it
        "2 ok uid fetch $uid3 uid\n* $3 fetch (uid $uid3)\n? 2 expunge\n"
        "2 ok noop\n! 2 expunge\n"
        "2 tag1 status ${mailbox}2 (messages)\n2 tag2 noop\n"
        "2 tag2 ok\n2 tag1 no\n"
    ),
    "fixes": (
        "capabilities: BINARY CATENATE CONTEXT=SORT\n\n"
        "ok fetch 3 (binary.peek[1] binary.size[1.mime] binary.peek[1]<2>)\n"
        "* 3 fetch (binary[1] hello binary.size[1.mime] 63 binary[1]<2> llo)\n"
        "ok sort (subject) us-ascii return (count) all\n"
        "* esearch (tag $tag) count 3\n"
        'append ${mailbox}nonexistent catenate (url "/$mailbox_url;uidvalidity=1/;uid=1")\n'
        "no [trycreate]\n"
        "! 1 fetch ($!unordered)\n"
    ),
}


def test_runner_against_carteiro(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "default.mbox").write_text(MBOX)
    for name, text in SCRIPTS.items():
        (tests / name).write_text(text)
    with ServerProcess(
        tmp_path / "srv",
        users={"tester@example.test": "pw"},
        services=("imap",),
        extra_config="[imap]\nallow_plaintext_auth = true\n",
    ) as srv:
        runner = Runner("127.0.0.1", srv.ports["imap"], "tester@example.test", "pw", "imaptest")
        results = {
            name: runner.run(parse_script(tests / name, tests / "default.mbox")) for name in SCRIPTS
        }
    for name, res in results.items():
        assert res.status == "pass", (name, res.detail, res.log[-30:])
