"""How app.py wires the lists: the queue adapter's envelope, the one-click base URL, [lists]."""

from __future__ import annotations

from pathlib import Path

import pytest

from carteiro.app import QueueSender, lists_web_url
from carteiro.config import ConfigError, loads
from carteiro.lists.service import Copy
from carteiro.queue.api import Envelope
from carteiro.store.api import MessageSource


class Spool:
    def __init__(self) -> None:
        self.got: list[tuple[Envelope, MessageSource, str | None]] = []

    async def enqueue(
        self, envelope: Envelope, source: MessageSource, dedupe_key: str | None = None
    ) -> str:
        self.got.append((envelope, source, dedupe_key))
        return "Q1"


async def test_queue_sender_envelope() -> None:
    sender = QueueSender()
    with pytest.raises(RuntimeError):
        await sender.send("l-bounces@l.test", [Copy("a@b.test")], b"x")
    sender.spool = spool = Spool()
    await sender.send(
        "l-bounces@l.test",
        [Copy("a@b.test", b"H: 1\r\n")],
        b"caf\xc3\xa9",
        verp=True,
        trusted=False,
        key="k1",
    )
    await sender.send("l-bounces@l.test", [Copy("jos\u00e9@b.test")], b"plain", key=None)
    (e1, _, k1), (e2, _, k2) = spool.got
    assert (e1.verp, e1.trusted, e1.body, e1.smtputf8, k1) == (
        True,
        False,
        "8BITMIME",
        False,
        "list:k1",
    )
    assert e1.recipients[0].headers == b"H: 1\r\n"
    assert (e2.verp, e2.trusted, e2.body, e2.smtputf8, k2) == (False, True, "7BIT", True, None)


def test_one_click_base_url() -> None:
    cfg = loads('hostname = "mx.l.test"\n[listen]\nweb = "0.0.0.0:443"\n', Path("var"))
    assert lists_web_url(cfg) == "https://mx.l.test"
    cfg = loads('hostname = "mx.l.test"\n[listen]\nweb = "127.0.0.1:8025"\n', Path("var"))
    assert lists_web_url(cfg) == "https://mx.l.test:8025"
    cfg = loads('hostname = "mx.l.test"\n[listen]\nweb = ""\n', Path("var"))
    assert lists_web_url(cfg) == ""  # no web listener: no one-click links
    cfg = loads('[lists]\nweb_url = "https://lists.l.test"\nbatch = 10\n', Path("var"))
    assert (lists_web_url(cfg), cfg.lists.batch) == ("https://lists.l.test", 10)
    with pytest.raises(ConfigError, match="https"):
        loads('[lists]\nweb_url = "http://lists.l.test"\n', Path("var"))
    with pytest.raises(ConfigError, match=r"lists\.batch"):
        loads("[lists]\nbatch = 0\n", Path("var"))


def test_list_sealer_uses_the_lists_domain_key_else_the_first_domain(tmp_path: Path) -> None:
    from carteiro.app import ListSealer
    from carteiro.mailauth.dkim import ensure_dkim_key

    cfg = loads(
        'hostname = "mx.a.test"\ndomains = ["a.test", "l.test"]\n'
        '[dkim]\nselector = "s1"\n[mailauth]\nverify_max_size = 4096\n',
        tmp_path,
    )
    ensure_dkim_key(tmp_path, "a.test", "s1")
    post = b"Authentication-Results: mx.a.test; spf=pass\r\nFrom: x@y.test\r\n\r\nhi\r\n"
    sealer = ListSealer(cfg, ["a.test", "l.test"])
    assert b"d=a.test" in sealer.seal("l.test", post)  # no key for l.test: the first domain's
    ensure_dkim_key(tmp_path, "l.test", "s1")
    assert b"d=l.test" in ListSealer(cfg, ["a.test"]).seal("L.test", post)
    assert sealer.seal("l.test", post.replace(b"mx.a.test", b"mx.other.test")) == b""
    assert sealer.seal("l.test", post + b"x" * 5000) == b""  # over verify_max_size
    assert ListSealer(cfg, []).seal("none.test", post) == b""
