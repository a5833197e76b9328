"""Pure MIME: message structure, IMAP ENVELOPE/BODYSTRUCTURE, sections, search text.

Layer L1: imports only carteiro.core and the standard library; no I/O. Start with
`parse(raw) -> Message` and keep the Message per (mailbox, uid); see docs/mime.md.
"""

from carteiro.mime.parse import Message, Part, parse

__all__ = ["Message", "Part", "parse"]
