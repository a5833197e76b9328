"""PREVIEW (RFC 8970): FETCH PREVIEW and PREVIEW (LAZY) after the RFC's example, and what the
preview is made of (first text/plain part, else HTML text; quoted lines left out; whitespace
collapsed; 256 characters at most; UTF-8, as a literal when it cannot be quoted)."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

from carteiro.mime.parse import parse
from carteiro.mime.preview import MAX_CHARS, preview

LOGIN = f'LOGIN {USER} "{PASSWORD}"'
PLAIN = (
    b"From: Fred <fred@example.test>\r\nSubject: meeting\r\n\r\n"
    b"Hello Joe,   do you think\r\nwe can meet at 3:30 tomorrow?\r\n\r\n"
    b"> earlier text that was quoted\r\n-- \r\nFred\r\n"
)
HTML = (
    b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n"
    b"attached text, not a preview\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<html><head><title>t</title><style>p {color: red}</style></head>"
    b"<body><p>Caf=C3=A9 &amp; cr=C3=A8me</p><p>second</p></body></html>\r\n"
    b"--b--\r\n"
)


async def test_fetch_preview(server):
    await server.deliver(PLAIN)
    await server.deliver(HTML)
    await server.deliver(b"From: a@example.test\r\nSubject: empty\r\n\r\n")
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 FETCH 1 (PREVIEW)
S: * 1 FETCH (PREVIEW "Hello Joe, do you think we can meet at 3:30 tomorrow? -- Fred")
S: a3 OK Fetch completed.
C: a4 UID FETCH 1:3 (PREVIEW (LAZY) FLAGS)
S: * 1 FETCH (UID 1 PREVIEW "Hello Joe, do you think we can meet at 3:30 tomorrow? -- Fred" FLAGS (\\Recent))
S: * 2 FETCH (UID 2 PREVIEW {{21}}
S: Café & crème second FLAGS (\\Recent))
S: * 3 FETCH (UID 3 PREVIEW "" FLAGS (\\Recent))
S: a4 OK Fetch completed.
C: a5 FETCH 1 (PREVIEW (FAST))
S: a5 BAD <...>
C: a6 ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S: a6 OK Enabled.
C: a7 FETCH 2 PREVIEW
S: * 2 FETCH (PREVIEW "Café & crème second")
S: a7 OK Fetch completed.
""",
    )


def test_preview_is_bounded_and_stable():
    long = b"Subject: x\r\n\r\n" + b"word " * 10_000 + b"\r\n"
    text = preview(parse(long))
    assert len(text) == MAX_CHARS and text == preview(parse(long))
    assert preview(parse(b"Subject: x\r\n\r\n> only quoted\r\n")) == ""
