"""The imaptest script runner (carteiro.testing.imaptest_scripts): its script parser, its matcher
(imaptest's test-exec.c rules) on small scripts of our own, and whole runs against a tiny
scripted IMAP server, so a runner bug is not taken for a server bug."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from carteiro.testing.imaptest_scripts import (
    FULL,
    MUST_NOT,
    Exec,
    MboxSource,
    Runner,
    Script,
    ScriptError,
    parse_args,
    parse_script,
)


def one(line: str) -> list:  # type: ignore[type-arg]
    return parse_args(line)


def ex(**variables: str) -> Exec:
    return Exec(Script("t", Path("/dev/null")), variables)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- arguments --------------------------------------------------------------------------------


def test_args_atoms_strings_lists_literals_and_nil() -> None:
    args = parse_args(
        '1 FETCH (UID 5 BODY[] {5}\r\nhello FLAGS (\\Seen)) "a \\"q\\"" nil ~{2}\r\nxy'
    )
    kinds = [a.kind for a in args]
    assert kinds == ["atom", "atom", "list", "string", "nil", "literal"]
    fetch = args[2].items
    assert [a.text for a in fetch[:3]] == ["UID", "5", "BODY[]"]
    assert fetch[3].kind == "literal" and fetch[3].text == "hello"
    assert fetch[5].items[0].text == "\\Seen"
    assert args[3].text == 'a "q"'
    assert args[5].text == "xy"


def test_args_bracketed_section_with_a_list_inside() -> None:
    # as Dovecot's parser: the "(" of the field list starts a list, "]" is its own atom
    args = parse_args("BODY[HEADER.FIELDS (FROM TO)] {2}\r\nab")
    assert [a.kind for a in args] == ["atom", "list", "atom", "literal"]
    assert args[0].text == "BODY[HEADER.FIELDS" and args[2].text == "]"


def test_args_close_paren_outside_a_list_is_part_of_an_atom_but_not_inside() -> None:
    assert [a.text for a in parse_args("a) b")] == ["a)", "b"]
    assert [a.text for a in parse_args("(a) b")[0].items] == ["a"]


def test_args_unbalanced() -> None:
    with pytest.raises(ScriptError):
        parse_args("(a")


# -- the script parser ------------------------------------------------------------------------


def test_script_header_groups_and_replies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t",
        "state: auth\nconnections: 2\nmessages: 3\ncapabilities: A B\n\n"
        "# a comment\n"
        "1 ok select $mailbox\n"
        "* 1 exists\n"
        "2 tag1 noop\n2 tag2 check\n2 tag2 ok\n2 tag1 no [x]\n"
        '1 "" delete foo\n',
    )
    s = parse_script(path, tmp_path / "default.mbox")
    assert (s.state, s.connections, s.messages, s.capabilities) == (1, 2, 3, ["A", "B"])
    g0, g1, g2, logout = s.groups
    assert g0.connection == 0 and g0.commands[0].text == "select $mailbox"
    assert g0.untagged[0].args[0].text == "1"
    assert g1.connection == 1 and [c.text for c in g1.commands] == ["noop", "check"]
    assert [str(a) for a in g1.commands[0].reply or []] == ["no", "[x]"]
    assert [str(a) for a in g1.commands[1].reply or []] == ["ok"]
    assert g2.commands[0].reply is not None and g2.commands[0].reply[0].text == ""
    assert logout.commands[0].text == "logout" and logout.connection == 0


def test_script_multiline_literals(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t",
        "\nok append $mailbox {{{\nFrom: a\n\nbody\n}}}\n"
        "ok fetch 1 body[]\n* 1 fetch (body[] ~{{{\nx\ny\n}}} flags {{{\nq\n}}})\n",
    )
    s = parse_script(path, tmp_path / "default.mbox")
    assert s.groups[0].commands[0].text == "append $mailbox {15}\r\nFrom: a\r\n\r\nbody"
    fetch = s.groups[1].untagged[0].args[2].items
    texts = [a.text for a in fetch if a.kind != "atom" or not a.text.startswith("$!")]
    assert texts == ["body[]", "x\ny", "flags", "q"]


def test_script_default_directives(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t",
        "\nok fetch 1 flags\n* 1 fetch (flags (\\seen))\n"
        'ok list "" *\n* list (\\noselect) "/" x\n'
        "ok status x (messages)\n* status x (messages 1)\n"
        "ok fetch 1 flags\n* 1 fetch (flags ($!ordered \\seen))\n",
    )
    s = parse_script(path, tmp_path / "default.mbox")
    fetch = s.groups[0].untagged[0].args[2]
    assert fetch.items[0].text == "$!unordered=2"
    flags = fetch.items[-1].items
    assert {a.text for a in flags if a.text.startswith("$!")} == {
        "$!unordered",
        "$!noextra",
        "$!ignore=\\recent",
        "$!ignore=$HasAttachment",
        "$!ignore=$HasNoAttachment",
    }
    assert s.groups[1].untagged[0].args[1].items[0].text == "$!unordered"
    assert s.groups[2].untagged[0].args[2].items[0].text == "$!unordered=2"
    # explicit directives replace the defaults
    explicit = s.groups[3].untagged[0].args[2].items[-1].items
    assert [a.text for a in explicit] == ["$!ordered", "\\seen"]


@pytest.mark.parametrize(
    "text",
    [
        "\nok fetch 1\n* 1 fetch ($!bogus x)\n",  # unknown directive
        "\nok fetch 1\n* 1 fetch ($!unordered=2 a b c)\n",  # not whole chains
        "connections: 2\n\nok noop\n",  # no connection index
        "\nselect x\nnoop\n",  # reply missing
        "bogus: 1\n\nok noop\n",  # unknown setting
        "\nok append {{{\nx\n",  # multi-line not ended
    ],
)
def test_script_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ScriptError):
        parse_script(write(tmp_path, "t", text), tmp_path / "default.mbox")


# -- the matcher ------------------------------------------------------------------------------


def test_match_is_case_insensitive_and_binds_variables() -> None:
    e = ex()
    assert e.match_args(one("1 fetch (uid $uid)"), one("1 FETCH (UID 42)"), None, False) == FULL
    assert e.vars["uid"] == "42"
    # a bound variable compares exactly (its value, not a new binding)
    assert e.match_args(one("$uid"), one("43"), None, False) != FULL
    # the text up to the pattern's next character: "$a:$b"
    assert e.match_args(one("$a:$b"), one("3:7"), None, False) == FULL
    assert (e.vars["a"], e.vars["b"]) == ("3", "7")


def test_match_dollar_forms() -> None:
    e = ex(mailbox="box")
    assert e.match_args(one("$$x"), one("$x"), None, False) == FULL  # $$ is a $
    assert e.match_args(one("${mailbox}2"), one("box2"), None, False) == FULL
    # a known value compares exactly, the pattern's own letters case-insensitively
    assert e.match_args(one("${mailbox}X"), one("BOXx"), None, False) != FULL
    assert e.match_args(one("${mailbox}X"), one("boxx"), None, False) == FULL
    assert e.match_args(one("${case:Abc}"), one("abc"), None, False) != FULL
    assert e.match_args(one("${case:Abc}"), one("Abc"), None, False) == FULL
    # "$" alone takes anything but NIL, and skips a list
    assert e.match_args(one("a $ c"), one("a (x y) c"), None, False) == FULL
    assert e.match_args(one("a $ c"), one("a NIL c"), None, False) != FULL
    # "$]" skips atoms up to the one holding "]"
    assert (
        e.match_args(
            one("ok [capability $] x"), one("OK [CAPABILITY IMAP4rev1 IDLE] x"), None, False
        )
        == FULL
    )


def test_match_variables_of_a_failed_match_are_forgotten_by_the_caller() -> None:
    e = ex()
    e.added = []
    assert (
        e.match_args(
            one("1 fetch (uid $u flags (\\x))"), one("1 FETCH (UID 9 FLAGS (\\y))"), None, False
        )
        != FULL
    )
    assert "u" in e.added  # _match_untagged removes what a failed match bound


def test_match_prefix_for_tagged_and_resp_text() -> None:
    e = ex()
    assert e.match_args(one("ok"), one("OK [READ-WRITE] done"), None, True) == FULL
    assert e.match_args(one("ok [read-write]"), one("OK [READ-WRITE] done"), None, True) == FULL
    assert e.match_args(one("ok [read"), one("OK [READ-WRITE] done"), None, True) == FULL
    assert e.match_args(one("no"), one("OK done"), None, True) != FULL
    assert e.match_args(one(""), one("BAD x"), None, True) == FULL  # "" is any reply
    # without prefix the input must end with the pattern
    assert e.match_args(one("search 1"), one("SEARCH 1 2"), None, False) != FULL


def test_match_unordered_lists() -> None:
    e = ex()
    flags = parse_args("($!unordered $!noextra $!ignore=\\recent \\seen \\flagged)")[0].items
    assert e.match_list(flags, one("\\Flagged \\Seen \\Recent")) == FULL
    assert e.match_list(flags, one("\\Flagged \\Seen \\Draft")) != FULL  # an extra
    assert e.match_list(flags, one("\\Seen")) != FULL  # a missing one
    extra = parse_args("($!unordered a)")[0].items
    assert e.match_list(extra, one("b a c")) == FULL  # unordered alone allows extras
    ban = parse_args("($!unordered $!ban=\\noselect a)")[0].items
    assert e.match_list(ban, one("a \\NoSelect")) != FULL
    assert e.match_list(ban, one("a \\Marked")) == FULL
    pairs = parse_args("($!unordered=2 uidnext $n messages 1)")[0].items
    assert e.match_list(pairs, one("MESSAGES 1 UNSEEN 0 UIDNEXT 7")) == FULL
    assert e.vars["n"] == "7"
    assert e.match_list(pairs, one("MESSAGES 2 UIDNEXT 7")) != FULL
    ordered = parse_args("(a b)")[0].items
    assert e.match_list(ordered, one("b a")) != FULL


def test_match_relative_sequences_follow_expunges() -> None:
    e = ex()
    e.seqmap = [1, 2, 3, 4]
    e.seqmap[0] = 0  # 1 expunged: the others moved down
    e.seqmap[1:] = [1, 2, 3]
    assert e.expand_all("fetch $3 uid") == "fetch 2 uid"
    assert e.match_args(one("$4 expunge"), one("3 EXPUNGE"), None, False) == FULL
    assert e.relseq(1) == "<expunged>"


def test_match_modseq_variables_must_grow() -> None:
    e = ex()
    assert e.match_args(one("$modseq1"), one("10"), None, False) == FULL
    assert e.match_args(one("$modseq3"), one("12"), None, False) == FULL
    e2 = ex()
    assert e2.match_args(one("$modseq1"), one("10"), None, False) == FULL
    assert e2.match_args(one("$modseq3"), one("11"), None, False) != FULL


def test_expand_all_in_commands() -> None:
    e = ex(mailbox="box")
    # a directive vanishes up to its last letter, the spaces around it stay (as test_expand_all)
    assert e.expand_all("select ${mailbox}2 $$x $!ignored y") == "select box2 $x  y"
    with pytest.raises(ScriptError):
        e.expand_all("select $nosuch")


def test_mbox_source_from_lines_dates_and_crlf(tmp_path: Path) -> None:
    mbox = write(
        tmp_path,
        "m.mbox",
        "From a@b  Sat Mar 24 23:00:00 2007 +0200\nSubject: x\n\nbody\n\n"
        "From a@b  Fri Feb 22 17:06:23 2008\n\nbody2\n",
    )
    src = MboxSource(mbox)
    assert [m.body for m in src.messages] == [b"Subject: x\r\n\r\nbody\r\n\r\n", b"\r\nbody2\r\n"]
    assert src.messages[0].date.utcoffset() is not None
    assert src.messages[0].date.isoformat() == "2007-03-24T23:00:00+02:00"
    assert [src.get().body[-3:] for _ in range(3)][2] == src.messages[0].body[-3:]  # wraps


# -- whole runs against a scripted server -----------------------------------------------------


class FakeServer:
    """An IMAP server that answers each command by a function of its text (tag stripped)."""

    def __init__(self, answer: Callable[[str], list[str]], caps: str = "IMAP4rev1 X-TEST") -> None:
        self.answer = answer
        self.caps = caps
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.commands: list[str] = []
        self.synchronized = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        conn.sendall(b"* OK [CAPABILITY %s] hi\r\n" % self.caps.encode())
        while True:
            line = f.readline()
            if not line:
                return
            text = last = line.decode().rstrip("\r\n")
            while last.endswith("}"):  # a literal ends this line (not its own data)
                size = last[last.rindex("{") + 1 : -1]
                if size.endswith("+"):
                    size = size[:-1]
                else:
                    self.synchronized += 1
                    conn.sendall(b"+ go\r\n")
                data = f.read(int(size)).decode()
                last = f.readline().decode().rstrip("\r\n")
                text += "\r\n" + data + last
            tag, _, rest = text.partition(" ")
            self.commands.append(rest)
            out = self.answer(rest)
            for ln in out:
                conn.sendall(ln.replace("TAG", tag).replace("CAPS", self.caps).encode() + b"\r\n")
            if rest.upper() == "LOGOUT":
                conn.close()
                return

    def close(self) -> None:
        self.sock.close()


def _basic(rest: str) -> list[str]:
    up = rest.upper()
    if up.startswith("LOGIN"):
        return ["TAG OK logged in"]
    if up == "CAPABILITY":
        return ["* CAPABILITY CAPS", "TAG OK done"]
    if up.startswith(("LIST", "LSUB", "CREATE", "APPEND")):
        return ["TAG OK done"]
    if up.startswith("SELECT"):
        return ["* 2 EXISTS", "* OK [UIDVALIDITY 7] x", "TAG OK [READ-WRITE] done"]
    if up == "LOGOUT":
        return ["* BYE bye", "TAG OK bye"]
    if up.startswith("FETCH 1:2 UID"):
        return ["* 1 FETCH (UID 10)", "* 2 FETCH (UID 11)", "TAG OK done"]
    if up.startswith("STORE"):
        return ["* 1 FETCH (FLAGS (\\Seen \\Recent))", "TAG OK done"]
    if up.startswith("EXPUNGE"):
        return ["* 1 EXPUNGE", "TAG OK done"]
    return ["TAG BAD what"]


def _run(
    tmp_path: Path,
    script: str,
    caps: str = "IMAP4rev1 X-TEST",
    keep: list[FakeServer] | None = None,
) -> tuple[str, list[str], list[str]]:
    write(tmp_path, "default.mbox", "From a@b  Fri Feb 22 17:06:23 2008\n\nbody\n")
    path = write(tmp_path, "t", script)
    srv = FakeServer(_basic, caps)
    if keep is not None:
        keep.append(srv)
    try:
        res = Runner("127.0.0.1", srv.port, "u", "p", "imaptest").run(
            parse_script(path, tmp_path / "default.mbox")
        )
    finally:
        srv.close()
    return res.status, res.detail, srv.commands


def test_run_sets_up_and_passes(tmp_path: Path) -> None:
    status, detail, cmds = _run(
        tmp_path,
        "capabilities: X-TEST\nmessages: 1\n\nok fetch 1:2 uid\n* 1 fetch (uid $u1)\n* 2 fetch (uid $u2)\n"
        "ok store 1 flags \\seen\n* 1 fetch (flags (\\seen))\n"
        "ok expunge\n* $1 expunge\n",
    )
    assert (status, detail) == ("pass", [])
    assert cmds[:4] == ['LOGIN "u" "p"', "CAPABILITY", 'LIST "" "imaptest*"', 'LSUB "" "imaptest*"']
    assert cmds[4] == 'CREATE "imaptest"'
    assert cmds[5].startswith('APPEND "imaptest" "22-Feb-2008 17:06:23 +0000" {8}')
    assert cmds[6:] == [
        'SELECT "imaptest"',
        "fetch 1:2 uid",
        "store 1 flags \\seen",
        "expunge",
        "logout",
    ]


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("\nok fetch 1:2 uid\n* 3 fetch (uid $u)\n", "Missing 1 untagged"),
        ("\nok fetch 1:2 uid\n! 2 fetch (uid 11)\n", "Unexpected untagged match"),
        ("\nno fetch 1:2 uid\n", "Expected tagged reply 'no'"),
        ("\nok bogus\n", "Expected tagged reply 'ok', got 'BAD what'"),
        (
            "ignore_extra_untagged: no\n\nok fetch 1:2 uid\n* 1 fetch (uid 10)\n",
            "unexpected untagged",
        ),
        ("\nok store 1 flags \\seen\n* 1 fetch (flags (\\seen \\deleted))\n", "Missing 1 untagged"),
    ],
)
def test_run_failures(tmp_path: Path, script: str, why: str) -> None:
    status, detail, _ = _run(tmp_path, "messages: 1\n" + script)
    assert status == "fail"
    assert why in detail[0], detail


def test_run_skips_without_the_capabilities(tmp_path: Path) -> None:
    status, detail, cmds = _run(tmp_path, "capabilities: NOPE\n\nok noop\n")
    assert status == "skip" and "NOPE" in detail[0]
    assert "noop" not in cmds


def test_untagged_must_not_exist_constant() -> None:
    assert MUST_NOT == "!"


def test_run_uses_literal_plus_when_advertised(tmp_path: Path) -> None:
    """As imaptest's command_get_cmdline: with LITERAL+ every literal (APPEND's, a script's
    {{{ }}}) is sent non-synchronizing; without it each waits for "+"."""
    script = "messages: 1\n\nok append $mailbox {{{\nx {3}\n}}}\n"
    for caps, waits in (("IMAP4rev1 LITERAL+", 0), ("IMAP4rev1", 2)):
        srvs: list[FakeServer] = []
        status, detail, cmds = _run(tmp_path, script, caps, srvs)
        assert (status, detail) == ("pass", [])
        assert srvs[0].synchronized == waits
        assert cmds[-2] == "append imaptest {5" + ("+" if waits == 0 else "") + "}\r\nx {3}"
