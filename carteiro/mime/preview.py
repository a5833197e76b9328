"""RFC 8970 PREVIEW: a short plain-text abstract of a message, at most 256 characters.

Taken from the first text/plain (else text/html, tags dropped) part that is not an attachment,
transfer- and charset-decoded; quoted lines ("> ...") are left out and whitespace is collapsed,
so the same message always gives the same preview. Pure: no I/O, no regex on message text.
"""

from __future__ import annotations

from html.parser import HTMLParser

from carteiro.mime.parse import LEAF, Message, Part
from carteiro.mime.searchtext import part_text

MAX_CHARS = 256  # RFC 8970 2
# Only the start of a long part is read: a preview never needs more.
SCAN_CHARS = 64 * 1024


def preview(msg: Message) -> str:
    """The preview ("" when the message has no text to show)."""
    cached = msg.cache.get("preview")
    if cached is None:
        cached = msg.cache["preview"] = _make(msg)
    out: str = cached
    return out


def _make(msg: Message) -> str:
    part = _pick(msg, b"text/plain") or _pick(msg, b"text/html")
    if part is None:
        return ""
    text = part_text(msg, part)[:SCAN_CHARS]
    if part.media_type == b"text/html":
        text = _html_text(text)
    words: list[str] = []
    size = 0
    for line in text.splitlines():
        if line.lstrip().startswith(">"):
            continue  # quoted text of an earlier message
        for word in line.split():
            words.append(word)
            size += len(word) + 1
        if size > MAX_CHARS:
            break
    return " ".join(words)[:MAX_CHARS]


def _pick(msg: Message, media_type: bytes) -> Part | None:
    for part in msg.root.walk():
        if part.kind != LEAF or part.media_type != media_type:
            continue
        disposition = msg.field_values(part, b"content-disposition")
        if disposition and disposition[0].strip().lower().startswith(b"attachment"):
            continue
        return part
    return None


class _Text(HTMLParser):
    """The text of an HTML body: script and style contents dropped, block ends as line breaks."""

    _SKIP = frozenset({"script", "style", "head", "title"})
    _BREAK = frozenset({"p", "br", "div", "tr", "li", "blockquote", "h1", "h2", "h3", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BREAK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self.skip:
            self.skip -= 1
        elif tag in self._BREAK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def _html_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    p.close()
    return "".join(p.out)
