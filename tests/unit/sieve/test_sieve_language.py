"""RFC 5228: the base language, its examples, comparators, match types and error positions."""

from __future__ import annotations

import pytest
from sievetest import MESSAGE, actions, run

from carteiro.sieve.compiler import compile_script
from carteiro.sieve.errors import SieveSyntaxError
from carteiro.sieve.grammar import parse, unparse
from carteiro.sieve.match import glob_match, match


def test_empty_script_is_implicit_keep() -> None:
    assert actions("") == ["keep"]
    assert actions("# only a comment\n/* and\n a bracketed one */") == ["keep"]


def test_rfc5228_section_2_example_discard_and_fileinto() -> None:
    # RFC 5228 2.10.2 / 2.10.3: fileinto cancels the implicit keep; discard keeps nothing
    assert actions('require "fileinto"; fileinto "Junk";') == ["fileinto Junk"]
    assert actions("discard;") == ["discard"]
    assert actions("keep; discard;") == ["keep", "discard"]


def test_rfc5228_section_9_example() -> None:
    script = """
#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"""
    # From is at example.com (domain compare is case-insensitive): keep
    assert actions(script) == ["keep"]
    other = MESSAGE.replace(b"Example.COM", b"example.org")
    assert actions(script, other) == ["fileinto spam"]
    to_me = other.replace(b"carol@example.net", b"me@example.com")
    assert actions(script, to_me) == ["fileinto personal"]
    lst = b"Sender: owner-ietf-mta-filters@imc.org\r\n" + MESSAGE
    assert actions(script, lst) == ["fileinto filter"]


def test_stop_and_nested_if() -> None:
    script = "if true { if false { discard; } else { stop; } } discard;"
    assert actions(script) == ["keep"]


def test_redirect_cancels_keep_and_duplicates_collapse() -> None:
    assert actions('redirect "bob@example.org"; redirect "bob@example.org";') == [
        "redirect bob@example.org"
    ]
    # RFC 5228 4.2: an invalid address is an error: at upload when written in the script,
    with pytest.raises(SieveSyntaxError, match="invalid redirect address"):
        compile_script('redirect "not an address";')
    # at run time (the message is kept) when it comes from a variable
    r = run('require "variables"; set "a" "not an address"; redirect "${a}";')
    assert r.error is not None and [type(a).__name__ for a in r.actions] == ["Keep"]


def test_size_exists_true_false() -> None:
    assert actions("if size :over 100 { discard; }") == ["discard"]
    assert actions("if size :under 1K { discard; }") == ["discard"]
    assert actions("if size :over 1M { discard; }") == ["keep"]
    assert actions('if exists ["From", "Date"] { discard; }') == ["discard"]
    assert actions('if exists ["From", "X-Nope"] { discard; }') == ["keep"]
    assert actions("if not true { discard; }") == ["keep"]
    assert actions("if allof (true, false) { discard; }") == ["keep"]
    assert actions("if anyof (false, true) { discard; }") == ["discard"]


def test_header_match_types_and_comparators() -> None:
    t = 'if header {} "subject" "{}" {{ discard; }}'
    assert actions(t.format(":contains", "VERSION")) == ["discard"]
    assert actions(t.format(':contains :comparator "i;octet"', "VERSION")) == ["keep"]
    assert actions(t.format(":is", "[acme-users] [fwd] version 1.0 is out")) == ["discard"]
    assert actions(t.format(":matches", "*version ?.0*")) == ["discard"]
    assert actions(t.format(":matches", "version*")) == ["keep"]
    # an absent header never matches, not even ""
    assert actions('if header :contains "x-nope" "" { discard; }') == ["keep"]
    assert actions('if header :contains "subject" "" { discard; }') == ["discard"]


def test_address_parts() -> None:
    t = 'if address {} "from" "{}" {{ discard; }}'
    assert actions(t.format(":localpart", "joe+lists")) == ["discard"]
    assert actions(t.format(":domain", "example.com")) == ["discard"]
    assert actions(t.format(":all", "joe+lists@example.com")) == ["discard"]
    assert actions(t.format("", "Joe Bloggs")) == ["keep"]


def test_address_only_on_fields_that_hold_addresses() -> None:
    # RFC 5228 2.7.4: "MUST restrict the address test to headers that contain addresses"
    with pytest.raises(SieveSyntaxError, match="holds no addresses"):
        compile_script('if address :contains "subject" "x" { discard; }')
    for name in ("From", "resent-to", "Delivered-To", "errors-to"):
        compile_script(f'if address :contains "{name}" "x" {{ discard; }}')
    # a name a variable gives is known only at run time: a field without addresses matches none
    s = 'require "variables"; set "h" "subject"; if address :contains "${h}" "" { discard; }'
    assert actions(s) == ["keep"]


def _reply_to(value: bytes) -> bytes:
    return b"From: joe@example.com\r\nReply-To: " + value + b"\r\nSubject: s\r\n\r\nbody\r\n"


def test_invalid_addresses_as_pigeonhole_reads_them() -> None:
    count = (
        'require ["relational", "comparator-i;ascii-numeric"]; '
        'if address :count "eq" :comparator "i;ascii-numeric" "reply-to" "{}" {{ discard; }}'
    )
    part = 'if address {} :is "reply-to" "{}" {{ discard; }}'
    # no valid address in the field: one invalid address, its text for :all, no local part or
    # domain (RFC 5228 2.7.4: :localpart and :domain never match an invalid address)
    for value, whole in (
        (b"<>", "<>"),
        (b"foo@", "foo@"),
        (b"not\r\n an address", "not an address"),
    ):
        msg = _reply_to(value)
        assert actions(count.format(1), msg) == ["discard"]
        assert actions(part.format(":all", whole), msg) == ["discard"]
        assert actions(part.format(":all", ""), msg) == ["keep"]
        assert actions(part.format(":localpart", "foo"), msg) == ["keep"]
        assert actions(part.format(":domain", ""), msg) == ["keep"]
    # invalid entries beside valid ones are left out
    msg = _reply_to(b"a@b.example, <>, junk, c@d.example")
    assert actions(count.format(2), msg) == ["discard"]
    # an empty group holds no address (RFC 5322 3.4; Pigeonhole takes it for an invalid one)
    assert actions(count.format(0), _reply_to(b"undisclosed-recipients:;")) == ["discard"]
    # :all is the address as RFC 5322 writes it: a local part that is no dot-atom is quoted
    msg = _reply_to(b'"a b"@example.com')
    assert actions(part.format(":all", '\\"a b\\"@example.com'), msg) == ["discard"]
    assert actions(part.format(":localpart", "a b"), msg) == ["discard"]


def test_envelope() -> None:
    s = 'require "envelope"; if envelope :is "from" "{}" {{ discard; }}'
    assert actions(s.format("joe@example.com")) == ["discard"]
    assert actions(s.format(""), mail_from="") == ["discard"]
    s2 = 'require "envelope"; if envelope :domain "to" "example.test" { discard; }'
    assert actions(s2) == ["discard"]


def test_matches_wildcards_and_escapes() -> None:
    assert glob_match("i;octet", "a*b?c", "aXXbYc") == ["XX", "Y"]
    assert glob_match("i;octet", "a\\*b", "a*b") == []
    assert glob_match("i;octet", "a\\*b", "aXb") is None
    assert glob_match("i;octet", "*", "") == [""]
    assert glob_match("i;octet", "?", "") is None
    assert glob_match("i;ascii-casemap", "*<*@*", "List <L@X.org>") == ["List ", "L", "X.org>"]
    # RFC 5229 3.2 example: the first "*" takes as little as possible
    assert glob_match("i;ascii-casemap", "[*] *", "[acme-users] [fwd] version 1.0 is out") == [
        "acme-users",
        "[fwd] version 1.0 is out",
    ]


def test_matches_never_backtracks_exponentially() -> None:
    value = "a" * 5000
    pattern = "*a" * 40 + "b"
    costs: list[int] = []
    assert glob_match("i;octet", pattern, value, costs.append) is None
    assert sum(costs) < 5000 * 100  # linear in value * pattern, not exponential


def test_comparators() -> None:
    assert match("i;ascii-casemap", "is", "ÄBC", "Äbc") == []
    assert match("i;ascii-casemap", "is", "ä", "Ä") is None  # only ASCII folds
    assert match("i;unicode-casemap", "is", "ä", "Ä") == []
    assert match("i;unicode-casemap", "is", "Straße", "STRASSE") == []
    assert match("i;octet", "contains", "Hello", "hell") is None
    assert match("i;ascii-numeric", "is", "007", "7") == []
    assert match("i;ascii-numeric", "is", "x", "y") == []  # both "positive infinity"


def test_comparator_requires() -> None:
    with pytest.raises(SieveSyntaxError, match="comparator-i;unicode-casemap"):
        compile_script('if header :comparator "i;unicode-casemap" "a" "b" { stop; }')
    compile_script(
        'require "comparator-i;unicode-casemap";'
        'if header :comparator "i;unicode-casemap" "a" "b" { stop; }'
    )
    with pytest.raises(SieveSyntaxError, match="unknown comparator"):
        compile_script('if header :comparator "i;nope" "a" "b" { stop; }')


def test_multiline_strings_and_dot_stuffing() -> None:
    cmds = parse('require "reject";\nreject text:\nline one\n..dotted\n.\n;')
    arg = cmds[1].args[0]
    assert arg.values == ("line one\r\n.dotted\r\n",)  # type: ignore[union-attr]


def test_encoded_characters() -> None:
    s = compile_script(
        'require ["encoded-character", "fileinto"]; fileinto "${hex:41 42}${unicode:263A}x";'
    )
    assert s.commands[0].pos[0] == ("AB\u263ax",)
    # without the capability the text stays as written
    s = compile_script('require "fileinto"; fileinto "${hex:41}";')
    assert s.commands[0].pos[0] == ("${hex:41}",)


@pytest.mark.parametrize(
    ("script", "line", "column", "text"),
    [
        ('keep;\nfileinto "x";', 2, 1, 'requires "fileinto"'),
        ("if true {\n  keep;\n", 3, 1, "missing '}'"),
        ('require "fileinto";\nkeep;\nrequire "copy";', 3, 1, "require must come before"),
        ('if header :foo "a" "b" { stop; }', 1, 11, "unknown tag :foo"),
        ("frobnicate;", 1, 1, "unknown command frobnicate"),
        ('keep "x";', 1, 1, "keep takes 0 positional"),
        ('if header "a" { stop; }', 1, 4, "header takes 2 positional"),
        ('"abc', 1, 1, "unterminated string"),
        ("keep", 1, 5, "expected ';'"),
        ("else { stop; }", 1, 1, "else without a preceding if"),
        ('if size :over "x" { stop; }', 1, 15, ":over must be a number"),
        ('require "nosuch";', 1, 9, 'unsupported extension "nosuch"'),
        ("if true { }\n  @", 2, 3, "unexpected character"),
        ('if header :is :contains "a" "b" { stop; }', 1, 15, ":contains cannot be used with :is"),
    ],
)
def test_errors_name_line_and_column(script: str, line: int, column: int, text: str) -> None:
    with pytest.raises(SieveSyntaxError) as e:
        compile_script(script)
    assert (e.value.line, e.value.column) == (line, column), str(e.value)
    assert text in e.value.message


def test_unparse_round_trip() -> None:
    script = (
        'require ["fileinto", "variables"];\n'
        'if anyof (header :matches "subject" "*a\\"b*", size :over 10K) {\n'
        '    set "x" text:\nhello\n.\n;\n    fileinto "x";\n} else { keep; }\n'
    )
    tree = parse(script)
    printed = unparse(tree)
    assert unparse(parse(printed)) == printed
    compile_script(printed)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(SieveSyntaxError, match="nested too deeply"):
        parse("if true {" * 1000 + "}" * 1000)
    with pytest.raises(SieveSyntaxError, match="nested too deeply"):
        parse("if " + "not " * 1000 + "true { stop; }")


def test_cpu_limit_is_a_runtime_error_that_keeps() -> None:
    from sievetest import NOW

    from carteiro.sieve.interp import Context, Limits

    script = 'if header :matches "subject" ' + '["' + "*?" * 200 + 'x"]' + " { discard; }"
    r = run(script * 50, ctx=Context(now=NOW, limits=Limits(cost=10_000)))
    assert r.error is not None and "CPU" in r.error
    assert [type(a).__name__ for a in r.actions] == ["Keep"]
