"""Property tests: random token streams never crash or hang the parser; parse -> print -> parse
is stable; :matches agrees with a reference matcher and stays polynomial."""

from __future__ import annotations

import fnmatch
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carteiro.sieve.compiler import compile_script
from carteiro.sieve.errors import SieveSyntaxError
from carteiro.sieve.grammar import parse, unparse
from carteiro.sieve.match import glob_match

TOKENS = st.sampled_from(
    [
        "if", "elsif", "else", "require", "keep", "discard", "stop", "fileinto", "redirect",
        "header", "address", "allof", "anyof", "not", "true", "false", "size", "exists",
        ":is", ":contains", ":matches", ":over", ":comparator", ":copy", ":all", "10K", "0",
        '"a"', '"fileinto"', '"i;octet"', '"x\\"y"', "[", "]", "(", ")", ",", ";", "{", "}",
        "#c\n", "/* c */", "text:\nx\n.\n", "\n", ":", "\"", "@", "1G", "99999999999999999999999",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOKENS, max_size=40))
def test_random_token_streams_never_crash(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        compile_script(text)
    except SieveSyntaxError as e:
        assert e.line >= 1 and e.column >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    try:
        compile_script(text)
    except SieveSyntaxError:
        pass


# any character a string may hold: not NUL, which no Sieve production admits (RFC 5228 8.1)
_STR = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=8,
)
_BOX = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8
)


@st.composite
def _tests(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(
        st.sampled_from(
            ["header", "size", "true", "not", "anyof"] if depth < 3 else ["true", "header"]
        )
    )
    if kind == "header":
        mt = draw(st.sampled_from([":is", ":contains", ":matches"]))
        return f'header {mt} "subject" "{_q(draw(_STR))}"'
    if kind == "size":
        return f"size :over {draw(st.integers(0, 10**6))}"
    if kind == "not":
        return "not " + draw(_tests(depth + 1))
    if kind == "anyof":
        return (
            "anyof (" + ", ".join(draw(st.lists(_tests(depth + 1), min_size=1, max_size=3))) + ")"
        )
    return "true"


def _q(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


@st.composite
def _scripts(draw: st.DrawFn, depth: int = 0) -> str:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(
            st.sampled_from(["keep", "fileinto", "if", "discard"] if depth < 3 else ["keep"])
        )
        if kind == "fileinto":
            out.append(f'fileinto "{_q(draw(_BOX))}";')
        elif kind == "if":
            out.append(f"if {draw(_tests())} {{ {draw(_scripts(depth + 1))} }}")
        else:
            out.append(kind + ";")
    return ("" if depth else 'require "fileinto";\n') + "\n".join(out)


@settings(max_examples=200, deadline=None)
@given(_scripts())
def test_parse_print_parse_is_stable(script: str) -> None:
    compile_script(script)
    printed = unparse(parse(script))
    assert unparse(parse(printed)) == printed
    compile_script(printed)


def _reference(pattern: str, value: str) -> bool:
    # Python's fnmatch has [...] classes; Sieve has none, so escape "[" for the reference.
    rx = fnmatch.translate(pattern.replace("[", "\x00")).replace("\x00", re.escape("["))
    return re.match(rx, value, re.DOTALL) is not None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab*?[", max_size=8), st.text(alphabet="ab[", max_size=12))
def test_matches_agrees_with_a_reference(pattern: str, value: str) -> None:
    assert (glob_match("i;octet", pattern, value) is not None) == _reference(pattern, value)


class _Counting(str):
    """A value that counts the characters the matcher reads."""

    reads = 0

    def __getitem__(self, key: object) -> str:  # type: ignore[override]
        _Counting.reads += 1
        return str.__getitem__(self, key)  # type: ignore[index]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab*?", max_size=30), st.integers(0, 3000))
def test_matches_work_is_polynomial(pattern: str, n: int) -> None:
    # "*a*a*a...b" against "aaaa...": a backtracking matcher reads exponentially many characters
    _Counting.reads = 0
    glob_match("i;octet", pattern + "b", _Counting("a" * n))
    assert _Counting.reads <= (n + 2) * (len(pattern) + 2)


@settings(max_examples=150, deadline=None)
@given(_scripts(), st.binary(max_size=300))
def test_evaluation_never_raises(script: str, junk: bytes) -> None:
    from carteiro.mime.parse import parse
    from carteiro.sieve.interp import Context, Envelope, evaluate

    message = b"Subject: " + junk.replace(b"\n", b" ") + b"\r\nFrom: a@b.example\r\n\r\n" + junk
    result = evaluate(
        compile_script(script), parse(message), Envelope("a@b.example", "c@d.example"), Context()
    )
    assert result.error is None
    assert result.actions  # something happens to every message: at least discard or keep
