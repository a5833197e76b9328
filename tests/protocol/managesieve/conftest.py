"""Fixtures for the ManageSieve tests; the harness itself is in sieve_harness.py."""

from sieve_harness import config, directory, server, tls_files

__all__ = ["config", "directory", "server", "tls_files"]
