"""Fixtures for the POP3 transcript tests; the harness itself is in pop3_harness.py."""

from pop3_harness import config, directory, server, tls_files

__all__ = ["config", "directory", "server", "tls_files"]
