"""English counts for messages to people: `plural(1, "message")` -> "1 message", 6 mailboxes.

Pure; one rule for every command's output, so no "(s)" and no "6 mailboxs".
"""

from __future__ import annotations

_IRREGULAR = {"alias": "aliases", "mailbox": "mailboxes", "recipient": "recipients"}


def plural(n: int, word: str) -> str:
    """`n word`, the word made plural unless n is 1."""
    if n == 1:
        return f"{n} {word}"
    if word in _IRREGULAR:
        return f"{n} {_IRREGULAR[word]}"
    if word.endswith(("x", "s", "ch", "sh")):
        return f"{n} {word}es"
    return f"{n} {word}s"
