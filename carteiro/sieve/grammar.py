"""Sieve grammar (RFC 5228 8.2): tokens -> a syntax tree of commands, tests and arguments, and
the tree back to script text (`unparse`). Purely syntactic: what each command accepts is checked
by `compile.py`. Nesting and size are bounded, so no script can exhaust the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carteiro.sieve.errors import SieveSyntaxError
from carteiro.sieve.lexer import Kind, Token, tokenize

MAX_DEPTH = 64  # blocks and test nesting together (Pigeonhole: 32 blocks, 32 tests)
MAX_SCRIPT = 1 << 20  # characters; ManageSieve and the CLI refuse larger scripts earlier


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # without ":"
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Strings:
    values: tuple[str, ...]
    is_list: bool  # written as [ ... ] (a one-element list prints back as a list)
    line: int = 0
    column: int = 0


Argument = Tag | Number | Strings


@dataclass(slots=True)
class Test:
    name: str
    args: list[Argument]
    tests: list[Test]
    line: int = 0
    column: int = 0
    test_list: bool = False  # tests were written as ( ... )


@dataclass(slots=True)
class Command:
    name: str
    args: list[Argument]
    tests: list[Test]
    block: list[Command] | None
    line: int = 0
    column: int = 0
    test_list: bool = False
    extra: dict[str, object] = field(default_factory=dict)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not Kind.EOF:
            self.i += 1
        return t

    def is_special(self, c: str) -> bool:
        t = self.peek()
        return t.kind is Kind.SPECIAL and t.value == c

    def fail(self, msg: str, t: Token | None = None) -> SieveSyntaxError:
        t = t or self.peek()
        return SieveSyntaxError(msg, t.line, t.column)

    def describe(self, t: Token) -> str:
        if t.kind is Kind.EOF:
            return "end of script"
        if t.kind is Kind.STRING:
            return "a string"
        if t.kind is Kind.TAG:
            return f"tag :{t.value}"
        return f"{t.kind.value} {t.value!r}"

    def commands(self, depth: int, in_block: bool) -> list[Command]:
        out: list[Command] = []
        while True:
            t = self.peek()
            if t.kind is Kind.EOF:
                if in_block:
                    raise self.fail("missing '}' at end of block")
                return out
            if t.kind is Kind.SPECIAL and t.value == "}":
                if not in_block:
                    raise self.fail("unexpected '}'")
                return out
            out.append(self.command(depth))

    def command(self, depth: int) -> Command:
        t = self.take()
        if t.kind is not Kind.IDENTIFIER:
            raise self.fail(f"expected a command, found {self.describe(t)}", t)
        args, tests, test_list = self.arguments(depth)
        cmd = Command(str(t.value), args, tests, None, t.line, t.column, test_list)
        if self.is_special(";"):
            self.take()
        elif self.is_special("{"):
            if depth >= MAX_DEPTH:
                raise self.fail("blocks nested too deeply")
            self.take()
            cmd.block = self.commands(depth + 1, True)
            self.take()  # "}"
        else:
            raise self.fail(
                f"expected ';' or '{{' after command, found {self.describe(self.peek())}"
            )
        return cmd

    def arguments(self, depth: int) -> tuple[list[Argument], list[Test], bool]:
        args: list[Argument] = []
        while True:
            t = self.peek()
            if t.kind is Kind.TAG:
                self.take()
                args.append(Tag(str(t.value), t.line, t.column))
            elif t.kind is Kind.NUMBER:
                self.take()
                assert isinstance(t.value, int)
                args.append(Number(t.value, t.line, t.column))
            elif t.kind is Kind.STRING:
                self.take()
                args.append(Strings((str(t.value),), False, t.line, t.column))
            elif t.kind is Kind.SPECIAL and t.value == "[":
                self.take()
                args.append(self.string_list(t))
            else:
                break
        if self.peek().kind is Kind.IDENTIFIER:
            return args, [self.test(depth + 1)], False
        if self.is_special("("):
            return args, self.test_list(depth + 1), True
        return args, [], False

    def string_list(self, opening: Token) -> Strings:
        values: list[str] = []
        while True:
            t = self.take()
            if t.kind is not Kind.STRING:
                raise self.fail(f"expected a string in the list, found {self.describe(t)}", t)
            values.append(str(t.value))
            t = self.take()
            if t.kind is Kind.SPECIAL and t.value == "]":
                return Strings(tuple(values), True, opening.line, opening.column)
            if not (t.kind is Kind.SPECIAL and t.value == ","):
                raise self.fail(f"expected ',' or ']' in string list, found {self.describe(t)}", t)

    def test(self, depth: int) -> Test:
        if depth >= MAX_DEPTH:
            raise self.fail("tests nested too deeply")
        t = self.take()
        if t.kind is not Kind.IDENTIFIER:
            raise self.fail(f"expected a test, found {self.describe(t)}", t)
        args, tests, test_list = self.arguments(depth)
        return Test(str(t.value), args, tests, t.line, t.column, test_list)

    def test_list(self, depth: int) -> list[Test]:
        self.take()  # "("
        tests: list[Test] = []
        while True:
            tests.append(self.test(depth))
            t = self.take()
            if t.kind is Kind.SPECIAL and t.value == ")":
                return tests
            if not (t.kind is Kind.SPECIAL and t.value == ","):
                raise self.fail(f"expected ',' or ')' in test list, found {self.describe(t)}", t)


def parse(text: str) -> list[Command]:
    """The syntax tree of a script. Raises SieveSyntaxError naming line and column."""
    if len(text) > MAX_SCRIPT:
        raise SieveSyntaxError("script too large", 1, 1)
    return _Parser(tokenize(text)).commands(0, False)


# ---- back to text ------------------------------------------------------------------------------


def quote(s: str) -> str:
    """A quoted-string for `s` (RFC 5228 2.4.2: only '"' and '\\' need escaping)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _arg(a: Argument) -> str:
    if isinstance(a, Tag):
        return ":" + a.name
    if isinstance(a, Number):
        return str(a.value)
    if a.is_list:
        return "[" + ", ".join(quote(v) for v in a.values) + "]"
    return quote(a.values[0])


def _test(t: Test) -> str:
    parts = [t.name] + [_arg(a) for a in t.args]
    if t.test_list or len(t.tests) > 1:
        parts.append("(" + ", ".join(_test(x) for x in t.tests) + ")")
    elif t.tests:
        parts.append(_test(t.tests[0]))
    return " ".join(parts)


def unparse(commands: list[Command], indent: str = "") -> str:
    """Script text that parses back to the same tree."""
    out: list[str] = []
    for c in commands:
        parts = [c.name] + [_arg(a) for a in c.args]
        if c.test_list or len(c.tests) > 1:
            parts.append("(" + ", ".join(_test(x) for x in c.tests) + ")")
        elif c.tests:
            parts.append(_test(c.tests[0]))
        head = indent + " ".join(parts)
        if c.block is None:
            out.append(head + ";\n")
        else:
            out.append(head + " {\n" + unparse(c.block, indent + "    ") + indent + "}\n")
    return "".join(out)
