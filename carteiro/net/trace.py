"""Protocol transcripts: every line a session reads or writes, as `C:` / `S:` with a session id.

Enabled per protocol (`carteiro serve --trace smtp`, or `[log] trace = ["smtp"]`). Secrets never
reach the log: the session calls `mask_next_client_line()` before reading an AUTH continuation, and
passes `secret=True` for commands that carry credentials (LOGIN, AUTH ... initial-response, PASS).
"""

from __future__ import annotations

import itertools
import logging

_ids = itertools.count(1)
log = logging.getLogger("carteiro.trace")


class Tracer:
    """One per session; cheap no-op when tracing is off for the protocol."""

    __slots__ = ("_mask_next", "enabled", "sid")

    def __init__(self, protocol: str, enabled: bool, peer: str = "") -> None:
        self.enabled = enabled
        self.sid = f"{protocol}-{next(_ids)}"
        self._mask_next = False
        if enabled:
            log.info("%s *: connection from %s", self.sid, peer)

    def mask_next_client_line(self) -> None:
        self._mask_next = True

    def client(self, data: bytes, secret: bool = False, keep_words: int = 2) -> None:
        """A client line. With `secret`, only the first `keep_words` words are shown."""
        if not self.enabled:
            return
        text = data.decode("utf-8", "replace").rstrip("\r\n")
        if self._mask_next:
            text, self._mask_next = "<secret masked>", False
        elif secret:
            words = text.split(" ")
            text = " ".join(
                words[:keep_words] + (["<secret masked>"] if len(words) > keep_words else [])
            )
        for line in text.split("\n") or [""]:
            log.info("%s C: %s", self.sid, line.rstrip("\r"))

    def server(self, data: bytes) -> None:
        if not self.enabled:
            return
        text = data.decode("utf-8", "replace")
        for line in text.rstrip("\r\n").split("\r\n"):
            log.info("%s S: %s", self.sid, line)

    def note(self, text: str) -> None:
        if self.enabled:
            log.info("%s *: %s", self.sid, text)
