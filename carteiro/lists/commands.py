"""Commands mailed to LIST-request@ (as Mailman's): one per line in the Subject and the body,
"subscribe", "unsubscribe", "help", "confirm TOKEN", "digest on|off", up to "end", a signature
("-- ") or the first line that is not a command. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from carteiro.lists.message import RawMessage

MAX_LINES = 50
NAMES = {
    "subscribe": "subscribe",
    "join": "subscribe",
    "unsubscribe": "unsubscribe",
    "leave": "unsubscribe",
    "help": "help",
    "confirm": "confirm",
    "digest": "digest",
    "end": "end",
}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...] = ()


def _parse_line(line: str) -> Command | None:
    words = line.strip().split()
    if words and words[0].lower() in ("re:", "aw:", "fwd:"):
        words = words[1:]
    if not words:
        return None
    name = NAMES.get(words[0].lower())
    if name is None:
        return None
    return Command(name, tuple(words[1:4]))


def parse(msg: RawMessage) -> list[Command]:
    out: list[Command] = []
    subject = _parse_line(msg.get("Subject") or "")
    if subject is not None:
        out.append(subject)
    text = msg.body[:16384].decode("utf-8", "replace")
    for line in text.splitlines()[:MAX_LINES]:
        if line.startswith(">") or not line.strip():
            continue  # quoted text of a reply; blank lines
        if line.rstrip() == "--":
            break
        cmd = _parse_line(line)
        if cmd is None or cmd.name == "end":
            break
        out.append(cmd)
    seen: list[Command] = []
    for c in out:  # the subject repeated as the first body line counts once
        if c not in seen:
            seen.append(c)
    return seen
