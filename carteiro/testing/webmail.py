"""Helpers for the webmail tests: an HTTP client that logs in like a browser (cookies, CSRF token
from the form), messages to seed over IMAP, and waiting on a condition with a deadline."""

from __future__ import annotations

import imaplib
import re
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import TypeVar

import httpx

T = TypeVar("T")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    page = client.get("/login")
    return client.post(
        "/login", data={"user": user, "password": password, "csrf": csrf_of(page.text)}
    )


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def imap_connect(host: str, port: int, user: str, password: str) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
    m.login(user, password)
    return m


def rich_message(sender: str, to: str, subject: str, word: str) -> bytes:
    """HTML with a cid: image and a remote image, a text alternative, and a PDF attachment."""
    msg = EmailMessage()
    msg["From"] = f"Zoë Ålander <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.org>"
    msg.set_content(f"Plain text with the word {word}.\n")
    msg.add_alternative(
        f'<p>HTML with <b>{word}</b> <img src="cid:logo@x" alt="logo">'
        '<img src="http://remote.invalid/track.png"></p>',
        subtype="html",
    )
    parts = msg.get_payload()
    assert isinstance(parts, list)
    html = parts[1]
    assert isinstance(html, EmailMessage)
    html.add_related(PNG, "image", "png", cid="<logo@x>")
    msg.add_attachment(b"%PDF-1.4 fake\n" * 50, "application", "pdf", filename="relatório.pdf")
    return bytes(msg)


EVIL = "http://127.0.0.1:9"  # nothing listens; any request there shows in the browser's log

HOSTILE_HTML = f"""<html><head><base href="{EVIL}/base/"><meta http-equiv="refresh" content="0;url={EVIL}/refresh">
<link rel="stylesheet" href="{EVIL}/sheet.css"><style>@import url({EVIL}/import.css);
body {{ background: url({EVIL}/bg.png) }}</style><script>alert("script")</script></head>
<body onload="alert('onload')"><p id="t" onclick="alert('click')">Hostile body text</p>
<a href="javascript:alert('js')">js link</a> <a href="data:text/html,<script>alert(1)</script>">data link</a>
<img src="{EVIL}/remote.png" onerror="alert('onerror')"> <img src="x" onerror="alert('onerror2')">
<div style="background-image:url({EVIL}/div.png);position:fixed;top:0;left:0;width:100%">css</div>
<svg onload="alert('svg')"><image href="{EVIL}/svg.png"/><script>alert('svgscript')</script></svg>
<form action="{EVIL}/phish" method="post"><input name="password" value="x"><button id="fb">Log in</button></form>
<iframe src="{EVIL}/frame"></iframe><object data="{EVIL}/obj"></object><video src="{EVIL}/v.mp4" autoplay></video>
</body></html>"""


def hostile_message(to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "attacker@example.org"
    msg["To"] = to
    msg["Subject"] = "Hostile HTML"
    msg.set_content("text version")
    msg.add_alternative(HOSTILE_HTML, subtype="html")
    return bytes(msg)
