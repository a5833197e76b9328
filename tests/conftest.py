"""Shared fixtures. End-to-end tests start real servers through carteiro.testing.server."""

from __future__ import annotations
