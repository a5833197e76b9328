"""Parsing "host:port" strings from configuration and command lines. Pure."""

from __future__ import annotations


def parse_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """ "host:port", "[v6]:port" -> (host, port). Raises ValueError."""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError(f"unclosed [ in {value!r}")
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_s = value.rpartition(":")
        if not _:
            host, port_s = value, ""
    if not port_s:
        if default_port is None:
            raise ValueError(f"{value!r} has no port")
        return host, default_port
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad port in {value!r}")
    return host, int(port_s)
