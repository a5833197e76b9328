"""Fixtures for the SMTP transcript tests; the server harness and the player live in
smtp_harness.py (a unique module name, so tests can import from it whatever else is collected)."""

from smtp_harness import directory_file, env, make_env, tls_files

__all__ = ["directory_file", "env", "make_env", "tls_files"]
