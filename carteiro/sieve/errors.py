"""Sieve errors: a compile error names its line and column (what ManageSieve and the CLI show);
a runtime error makes the delivery fall back to keep (RFC 5228 2.10.6)."""

from __future__ import annotations


class SieveError(Exception):
    """Any problem with a script."""


class SieveSyntaxError(SieveError):
    """The script does not compile (lexical, grammatical or semantic error)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


class SieveRuntimeError(SieveError):
    """Evaluation stopped (resource limit, include failure, bad runtime value)."""
