"""The Settings form's Sieve script: readable, compiles with our interpreter for any form input,
reads back to the same form, and a hand edit is recognised as one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.proto.managesieve import Atom
from carteiro.sieve.compiler import compile_script
from carteiro.web import sieverules as sr
from carteiro.web.managesieve import _code_and_text

text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(str.strip)
rules = st.builds(
    sr.Rules,
    st.builds(
        sr.Vacation,
        enabled=st.booleans(),
        subject=st.just("") | text,
        text=text,
        days=st.integers(1, 90),
    ),
    st.lists(st.builds(sr.Rule, st.sampled_from(sorted(sr.FIELDS)), text, text), max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(rules)
def test_any_form_input_compiles_and_reads_back(r: sr.Rules) -> None:
    script = sr.generate(r)
    compile_script(script)
    assert sr.parse(script) == r


def test_the_script_is_readable() -> None:
    r = sr.Rules(
        sr.Vacation(True, 'Away "now"', "Back\nMonday \\o/", 5),
        [sr.Rule("from", "boss@example.org", "Work"), sr.Rule("subject", "[list]", "Lists")],
    )
    script = sr.generate(r)
    assert 'require ["fileinto", "vacation"];' in script
    assert 'vacation :days 5 :subject "Away \\"now\\"" "Back\r\nMonday \\\\o/";' in script
    assert 'if address :contains "from" "boss@example.org" {\r\n    fileinto "Work";' in script
    assert "# Subject contains '[list]': into 'Lists'" in script
    # the vacation comes first: a moved message still gets the reply
    assert script.index("vacation :days") < script.index("    fileinto")


def test_a_hand_edit_is_not_the_form_s() -> None:
    script = sr.generate(sr.Rules(rules=[sr.Rule("to", "me", "X")]))
    assert sr.parse(script) is not None
    assert sr.parse(script.replace('"X"', '"Y"')) is None
    assert sr.parse(script + "keep;\r\n") is None
    assert sr.parse('require "fileinto";\r\nfileinto "X";\r\n') is None
    assert sr.parse(sr.MARK + "{not json\r\n") is None


@pytest.mark.parametrize(
    "bad",
    [
        sr.Rules(sr.Vacation(True, "", "", 7)),
        sr.Rules(sr.Vacation(False, "", "", 0)),
        sr.Rules(rules=[sr.Rule("from", "x", "")]),
        sr.Rules(rules=[sr.Rule("body", "x", "Y")]),
        sr.Rules(rules=[sr.Rule("from", "x\ny", "Y")]),
    ],
)
def test_bad_form_values_are_refused(bad: sr.Rules) -> None:
    with pytest.raises(sr.RulesError):
        sr.generate(bad)


def test_response_codes_of_the_managesieve_client() -> None:
    assert _code_and_text((Atom("(WARNINGS)"), b"line 2: unused")) == ("WARNINGS", "line 2: unused")
    assert _code_and_text((Atom("(TAG"), b"x", Atom(")"), b"Done.")) == ("TAG", "Done.")
    assert _code_and_text((Atom("(QUOTA/MAXSIZE)"),)) == ("QUOTA/MAXSIZE", "")
    assert _code_and_text((b"plain",)) == ("", "plain")
