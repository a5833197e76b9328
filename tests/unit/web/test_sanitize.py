"""HTML mail sanitising: what a hostile message tries, and that ordinary mail survives."""

from __future__ import annotations

from carteiro.web.sanitize import cid_path, sanitize

HOSTILE = """
<script>alert(1)</script><p onclick="steal()" onmouseover=x>text</p>
<a href="javascript:alert(1)">js</a><a href="data:text/html;base64,PHNjcmlwdD4=">data</a>
<a href="JaVaScRiPt:alert(1)">mixed</a><a href="vbscript:x">vb</a>
<img src="http://tracker.example/pixel.gif"><img src="https://t.example/x.png" srcset="http://a 1x">
<img src="data:image/svg+xml;base64,PHN2Zz4=">
<style>@import url(http://e.example/x.css); body { background: url(http://e.example/b) }</style>
<div style="background-image:url(http://e.example/c);position:fixed;top:0;color:red">css</div>
<svg onload="alert(1)"><image href="http://e.example/svg"/><use href="#x"/></svg>
<form action="http://phish.example"><input name="password"><button>Log in</button></form>
<iframe src="http://e.example"></iframe><object data="x"></object><embed src="y">
<meta http-equiv="refresh" content="0;url=http://e.example"><base href="http://e.example/">
<link rel="stylesheet" href="http://e.example/s.css"><math><mi xlink:href="javascript:x">m</mi></math>
"""


def test_hostile_html_is_inert() -> None:
    clean, blocked = sanitize(HOSTILE, cid_path("/msg/cid?folder=INBOX&uid=1&cid="))
    low = clean.lower()
    for bad in (
        "<script", "onclick", "onmouseover", "onload", "javascript:", "vbscript:", "data:",
        "<style", "@import", "url(", "position", "<svg", "<form", "<input", "<iframe",
        "<object", "<embed", "<meta", "<base", "<link", "http://", "srcset", "xlink",
    ):  # fmt: skip
        assert bad not in low, bad
    assert blocked == 2  # the two remote images; the data: image is dropped, not counted
    assert "color:red" in clean.replace(" ", "")
    assert "text" in clean and "css" in clean


def test_remote_images_when_allowed_and_cid() -> None:
    html = '<img src="https://x.example/a.png"><img src="cid:part1@x"><a href="https://ok">ok</a>'
    clean, blocked = sanitize(html, cid_path("/m"), allow_remote=True)
    assert blocked == 0
    assert 'src="https://x.example/a.png"' in clean
    assert 'src="/m/cid/part1%40x"' in clean
    assert 'rel="noopener noreferrer nofollow"' in clean and 'target="_blank"' in clean
