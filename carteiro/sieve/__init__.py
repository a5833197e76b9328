"""Sieve mail filtering (RFC 5228 and extensions), sans-IO: parse a script, then evaluate it
against a message and an envelope into a list of actions. No I/O: time, the mailbox list, the
duplicate tracker, included scripts and the environment are all passed in; `mail/` carries the
actions out.
"""

from carteiro.sieve.errors import SieveError, SieveRuntimeError, SieveSyntaxError

__all__ = ["SieveError", "SieveRuntimeError", "SieveSyntaxError"]
