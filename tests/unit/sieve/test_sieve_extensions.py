"""Sieve extensions, from their RFCs' examples: copy, variables, imap4flags, subaddress, body,
relational, reject, vacation, mailbox, include, date/index, editheader, duplicate, environment,
enotify."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sievetest import MESSAGE, NOW, actions, run

from carteiro.sieve.actions import DuplicateMark, FileInto, Keep, Notify, Vacation
from carteiro.sieve.compiler import compile_script
from carteiro.sieve.errors import SieveSyntaxError
from carteiro.sieve.interp import Context


def test_copy_keeps_the_implicit_keep() -> None:
    # RFC 3894 3
    assert actions('require ["fileinto", "copy"]; fileinto :copy "Archive";') == [
        "fileinto :copy Archive",
        "keep",
    ]
    assert actions('require "copy"; redirect :copy "bob@example.org";') == [
        "redirect :copy bob@example.org",
        "keep",
    ]
    with pytest.raises(SieveSyntaxError, match='requires "copy"'):
        compile_script('require "fileinto"; fileinto :copy "x";')


def test_variables_rfc5229_examples() -> None:
    s = """require ["fileinto", "variables"];
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}
# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; stop;
}
"""
    assert actions(s) == ["fileinto INBOX.lists.acme-users"]
    with_list = b"List-ID: Acme Users <acme-users@lists.example.org>\r\n" + MESSAGE
    assert actions(s, with_list) == ["fileinto INBOX.lists.acme-users"]
    # RFC 5229 4.1 modifiers
    s2 = """require ["variables", "fileinto"];
set "a" "juMBlEd lETteRS";
set :length "b" "${a}";
set :lower "c" "${a}";
set :upperfirst "d" "${a}";
set :upperfirst :lower "e" "${a}";
set :quotewildcard "f" "a*b?c\\\\";
fileinto "${b}|${c}|${d}|${e}|${f}|${unknown}|$${a}";
"""
    assert actions(s2) == [
        "fileinto 15|jumbled letters|JuMBlEd lETteRS|Jumbled letters|a\\*b\\?c\\\\||$juMBlEd lETteRS"
    ]


def test_string_test_and_count() -> None:
    s = """require ["variables", "relational", "comparator-i;ascii-numeric"];
set "x" "";
set "y" "b";
if string :count "eq" :comparator "i;ascii-numeric" ["${x}", "${y}"] "1" { discard; }"""
    assert actions(s) == ["discard"]


def test_imap4flags_rfc5232() -> None:
    s = r"""require ["imap4flags", "fileinto"];
addflag "\\Flagged";
addflag ["\\Seen \\Flagged", "$Work"];
removeflag "\\seen";
if hasflag :contains "$work" { fileinto "Work"; }
fileinto :flags "\\Answered" "Done";
"""
    r = run(s)
    assert r.error is None
    assert r.actions == [
        FileInto("Work", ("\\Flagged", "$Work")),
        FileInto("Done", ("\\Answered",)),
    ]
    # the implicit keep takes the internal flags too
    r = run('require "imap4flags"; setflag "\\\\Seen";')
    assert r.actions == [Keep(("\\Seen",), implicit=True)]
    # with variables, a named flag variable
    s = """require ["imap4flags", "variables"];
setflag "f" "A"; addflag "f" "B"; if hasflag "f" "b" { discard; }"""
    assert actions(s) == ["discard"]


def test_subaddress_rfc5233() -> None:
    s = 'require "subaddress"; if address :{} "from" "{}" {{ discard; }}'
    assert actions(s.format("user", "joe")) == ["discard"]
    assert actions(s.format("detail", "lists")) == ["discard"]
    plain = MESSAGE.replace(b"Joe+Lists@", b"Joe@")
    assert actions(s.format("detail", ""), plain) == ["keep"]  # no separator: no detail
    s2 = 'require ["envelope", "subaddress"]; if envelope :detail "to" "spam" { discard; }'
    assert actions(s2, rcpt_to="alice+spam@example.test") == ["discard"]


MULTIPART = (
    b"From: a@example.com\r\nTo: b@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nCaf=C3=A9 order confirmed\r\n"
    b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0xLjQKc2VjcmV0\r\n--b--\r\n"
)


def test_body_rfc5173() -> None:
    s = 'require "body"; if body {} "{}" {{ discard; }}'
    assert actions(s.format(":contains", "café"), MULTIPART) == ["discard"]
    assert actions(s.format(":text :contains", "café"), MULTIPART) == ["discard"]
    assert actions(s.format(":raw :contains", "Caf=C3=A9"), MULTIPART) == ["discard"]
    assert actions(s.format(":raw :contains", "café"), MULTIPART) == ["keep"]
    assert actions(s.format(':content "application" :contains', "secret"), MULTIPART) == ["discard"]
    assert actions(s.format(":contains", "secret"), MULTIPART) == ["keep"]
    assert actions(s.format(":contains", "MONEY")) == ["discard"]


def test_relational_rfc5231() -> None:
    s = 'require "relational"; if header :value "{}" "x-spam-level" "{}" {{ discard; }}'
    assert actions(s.format("ge", "**")) == ["discard"]
    assert actions(s.format("lt", "**")) == ["keep"]
    s2 = (
        'require ["relational", "comparator-i;ascii-numeric"];'
        'if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" { discard; }'
    )
    assert actions(s2) == ["discard"]
    with pytest.raises(SieveSyntaxError, match="unknown relation"):
        compile_script('require "relational"; if header :value "xx" "a" "b" { stop; }')


def test_reject_and_ereject_rfc5429() -> None:
    assert actions('require "reject"; reject "go away";') == ["reject go away"]
    assert actions('require "ereject"; ereject "no";') == ["ereject no"]
    r = run('require ["reject", "fileinto"]; fileinto "x"; reject "no";')
    assert r.error is not None and "reject" in r.error


def test_vacation_rfc5230() -> None:
    s = """require "vacation";
if header :contains "subject" "cyrus" {
    vacation "I'm out -- send mail to cyrus-bugs";
} else {
    vacation "I'm out -- call me at +1 304 555 0123";
}"""
    r = run(s)
    assert r.error is None
    v = r.actions[0]
    assert isinstance(v, Vacation) and v.seconds == 7 * 86400 and "304" in v.reason
    assert isinstance(r.actions[1], Keep)  # vacation does not cancel the implicit keep
    r = run(
        'require "vacation"; vacation :days 1000 :subject "Away" :from "a@example.test" '
        ':addresses ["alice@example.test"] :handle "h" "gone";'
    )
    v = r.actions[0]
    assert isinstance(v, Vacation)
    assert (v.seconds, v.subject, v.handle, v.addresses) == (
        90 * 86400,
        "Away",
        "h",
        ("alice@example.test",),
    )
    # the same reply text gives the same handle; another text another
    h1 = run('require "vacation"; vacation "a";').actions[0]
    h2 = run('require "vacation"; vacation "a";').actions[0]
    h3 = run('require "vacation"; vacation "b";').actions[0]
    assert isinstance(h1, Vacation) and isinstance(h2, Vacation) and isinstance(h3, Vacation)
    assert h1.handle == h2.handle != h3.handle
    r = run('require "vacation"; vacation "a"; vacation "b";')
    assert r.error is not None


def test_vacation_seconds_rfc6131() -> None:
    with pytest.raises(SieveSyntaxError, match="vacation-seconds"):
        compile_script('require "vacation"; vacation :seconds 10 "x";')
    r = run('require ["vacation", "vacation-seconds"]; vacation :seconds 0 "x";')
    v = r.actions[0]
    assert isinstance(v, Vacation) and v.seconds == 0
    with pytest.raises(SieveSyntaxError, match="cannot be used with"):
        compile_script('require ["vacation", "vacation-seconds"]; vacation :days 1 :seconds 1 "x";')


def test_mailbox_rfc5490() -> None:
    s = 'require ["fileinto", "mailbox"]; if mailboxexists "Work" { fileinto "Work"; } else { fileinto :create "New"; }'
    assert actions(s) == ["fileinto :create New"]
    ctx = Context(now=NOW, mailbox_exists=lambda b: b in ("INBOX", "Work"))
    assert actions(s, ctx=ctx) == ["fileinto Work"]


def test_include_rfc6609() -> None:
    scripts = {
        (
            "personal",
            "spam",
        ): 'require ["fileinto", "include"]; if header :contains "subject" "acme" { fileinto "Spam"; return; } discard;',
        (
            "global",
            "common",
        ): 'require ["include", "variables"]; global "x"; set "x" "from-global";',
        ("personal", "loop"): 'require "include"; include "loop";',
    }
    ctx = Context(now=NOW, load_script=lambda loc, name: scripts.get((loc, name)))
    assert actions('require "include"; include :personal "spam";', ctx=ctx) == ["fileinto Spam"]
    s = """require ["include", "variables", "fileinto"];
global "x";
include :global "common";
fileinto "${x}";"""
    assert actions(s, ctx=ctx) == ["fileinto from-global"]
    assert actions('require "include"; include :optional "missing";', ctx=ctx) == ["keep"]
    r = run('require "include"; include "missing";', ctx=ctx)
    assert r.error is not None and "does not exist" in r.error
    r = run('require "include"; include "loop";', ctx=ctx)
    assert r.error is not None and "loop" in r.error
    # :once includes a script once per delivery
    scripts[("personal", "add")] = 'require "imap4flags"; addflag "x";'
    s = 'require ["include", "imap4flags"]; include :once "add"; include :once "add"; removeflag "x"; include "add"; include "add";'
    assert actions(s, ctx=ctx) == ["keep ['x']"]


def test_date_and_index_rfc5260() -> None:
    s = 'require ["date", "relational"]; if date :value "ge" :zone "+0000" "date" "hour" "09" {{ {} }}'
    assert actions(s.format("discard;")) == ["discard"]
    assert actions('require "date"; if date :originalzone "date" "zone" "+0100" { discard; }') == [
        "discard"
    ]
    assert actions(
        'require "date"; if date :zone "-0500" "date" "time" "04:00:00" { discard; }'
    ) == ["discard"]
    assert actions('require "date"; if date "received" "date" "2026-12-07" { discard; }') == [
        "discard"
    ]
    assert actions(
        'require "date"; if currentdate :zone "+0000" "iso8601" "2026-12-07T12:30:15+00:00" { discard; }'
    ) == ["discard"]
    assert actions('require "date"; if currentdate "weekday" "1" { discard; }') == ["discard"]
    assert actions('require "date"; if currentdate "julian" "61381" { discard; }') == ["discard"]
    two = b"X-A: first\r\nX-A: second\r\nX-A: third\r\n" + MESSAGE
    assert actions('require "index"; if header :index 2 "x-a" "second" { discard; }', two) == [
        "discard"
    ]
    assert actions('require "index"; if header :index 1 :last "x-a" "third" { discard; }', two) == [
        "discard"
    ]
    with pytest.raises(SieveSyntaxError, match=":last needs :index"):
        compile_script('require "index"; if header :last "x-a" "x" { stop; }')


def test_editheader_rfc5293() -> None:
    s = """require ["editheader", "fileinto"];
addheader "X-Sieve" "filtered";
deleteheader :contains "x-spam-level" "*";
deleteheader "received";
if header :is "x-sieve" "filtered" { fileinto "Done"; }
"""
    r = run(s)
    assert r.error is None
    fi = r.actions[0]
    assert isinstance(fi, FileInto) and fi.header is not None
    assert fi.header.startswith(b"X-Sieve: filtered\r\n")
    assert b"X-Spam-Level" not in fi.header
    assert b"Received:" in fi.header  # protected
    assert fi.header.endswith(b"\r\n\r\n")
    r = run('require "editheader"; addheader :last "X-B" "2"; deleteheader :index 1 "to";')
    k = r.actions[0]
    assert isinstance(k, Keep) and k.header is not None
    assert k.header.endswith(b"X-B: 2\r\n\r\n") and b"\r\nTo:" not in k.header


def test_duplicate_rfc7352() -> None:
    seen: set[str] = set()
    ctx = Context(now=NOW, duplicate_seen=lambda k: k in seen)
    s = 'require "duplicate"; if duplicate { discard; }'
    r = run(s, ctx=ctx)
    assert [type(a).__name__ for a in r.actions] == ["Keep"]
    assert len(r.duplicates) == 1 and isinstance(r.duplicates[0], DuplicateMark)
    seen.add(r.duplicates[0].key)
    assert actions(s, ctx=ctx) == ["discard"]
    # another handle is another tracker
    assert actions('require "duplicate"; if duplicate :handle "x" { discard; }', ctx=ctx) == [
        "keep"
    ]
    r = run('require "duplicate"; if duplicate :uniqueid "a" :seconds 60 { stop; }', ctx=ctx)
    assert r.duplicates[0].seconds == 60


def test_environment_rfc5183() -> None:
    ctx = Context(now=NOW, environment={"domain": "example.test", "phase": "during"})
    s = 'require "environment"; if environment :is "domain" "example.test" { discard; }'
    assert actions(s, ctx=ctx) == ["discard"]
    assert actions(
        'require "environment"; if environment :contains "nope" "" { discard; }', ctx=ctx
    ) == ["keep"]


def test_enotify_mailto_rfc5435() -> None:
    s = """require ["enotify", "variables"];
if header :contains "from" "joe" {
    set :encodeurl "subj" "${0} & more";
    notify :importance "1" :message "Mail from Joe"
        "mailto:alice@example.org?subject=new%20mail&body=x";
    notify :importance "1" "mailto:alice@example.org?subject=new%20mail&body=x";
}"""
    r = run(s)
    assert r.error is None
    n = r.actions[0]
    assert isinstance(n, Notify)
    assert n.recipients == ("alice@example.org",) and n.importance == "1"
    assert ("subject", "new mail") in n.uri_headers and n.message == "Mail from Joe"
    assert len([a for a in r.actions if isinstance(a, Notify)]) == 1
    assert actions(
        'require "enotify"; if valid_notify_method "mailto:x@example.org" { discard; }'
    ) == ["discard"]
    assert actions('require "enotify"; if valid_notify_method "mailto:" { discard; }') == ["keep"]
    assert actions(
        'require "enotify"; if notify_method_capability "mailto:x@example.org" "online" "maybe" { discard; }'
    ) == ["discard"]
    with pytest.raises(SieveSyntaxError, match="unsupported notification method"):
        compile_script('require "enotify"; notify "xmpp:a@b";')


def test_spamtest_and_regex_are_not_offered() -> None:
    for ext in ("spamtest", "virustest", "regex"):
        with pytest.raises(SieveSyntaxError, match="unsupported extension"):
            compile_script(f'require "{ext}";')


def test_currentdate_uses_the_injected_clock() -> None:
    ctx = Context(now=datetime(2030, 1, 1, tzinfo=UTC))
    assert actions('require "date"; if currentdate "year" "2030" { discard; }', ctx=ctx) == [
        "discard"
    ]
