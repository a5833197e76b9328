"""Login throttling and the idle timeout, with a controlled clock."""

from __future__ import annotations

import asyncio

from carteiro.web.imap import Endpoint
from carteiro.web.sessions import LoginThrottle, SessionStore, WebSession


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_address_blocked_after_max_failures_then_freed() -> None:
    clock = Clock()
    t = LoginThrottle(max_failures=3, window=60, block_time=300, account_free=100, clock=clock)
    for i in range(3):
        assert t.wait("192.0.2.1", f"u{i}@x") == 0
        t.failed("192.0.2.1", f"u{i}@x")
    assert t.wait("192.0.2.1", "other@x") > 0
    assert t.wait("192.0.2.2", "other@x") == 0  # another address is not affected
    clock.now += 301
    assert t.wait("192.0.2.1", "other@x") == 0


def test_account_delay_grows_but_never_locks_out() -> None:
    clock = Clock()
    t = LoginThrottle(max_failures=1000, window=600, account_free=2, clock=clock)
    for n in range(2):
        t.failed(f"198.51.100.{n}", "victim@x")
    first = t.wait("203.0.113.9", "victim@x")
    t.failed("198.51.100.9", "victim@x")
    second = t.wait("203.0.113.9", "victim@x")
    assert 0 < first < second <= 60
    clock.now += 61
    assert t.wait("203.0.113.9", "victim@x") == 0
    t.succeeded("203.0.113.9", "victim@x")
    assert not t.account_failures


def test_idle_session_expires() -> None:
    clock = Clock()

    async def go() -> None:
        store = SessionStore(Endpoint("127.0.0.1", 1), idle_timeout=60, clock=clock)
        s = WebSession("tok", "u@x", "pw", "csrf", store.endpoint, clock.now)
        store.sessions["tok"] = s
        clock.now += 59
        assert store.get("tok") is s  # a request refreshes it
        clock.now += 59
        assert store.get("tok") is s
        clock.now += 61
        await store.reap()
        assert store.get("tok") is None and s.password == ""

    asyncio.run(go())


def test_back_links_stay_on_our_site() -> None:
    from carteiro.web.app import _back

    assert _back("/box?folder=Work", "INBOX") == "/box?folder=Work"
    for evil in ("//evil.example/", "/\\evil.example/", "https://evil.example/", "javascript:x"):
        assert _back(evil, "INBOX") == "/box?folder=INBOX"


def test_special_folder_names_follow_the_browser_language() -> None:
    from carteiro.web.mailbox import Folder, language

    assert language("pt-BR,pt;q=0.9,en;q=0.8") == "pt"
    assert language("xx, de;q=0.5") == "de"
    assert language("") == "en"
    f = Folder("Sent Items", "/", special="\\Sent", lang="pt")
    assert f.label == "Enviados"
    assert Folder("Work/Sent", "/", special="", lang="pt").label == "Sent"
    assert Folder("INBOX", "/", special="\\Inbox", lang="fr").label == "Boîte de réception"


def test_extra_routes_are_mounted() -> None:
    import httpx
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from carteiro.web.app import create_app
    from carteiro.web.settings import WebSettings

    async def unsubscribe(request: object) -> PlainTextResponse:
        return PlainTextResponse("unsubscribed")

    ep = Endpoint("127.0.0.1", 1)
    app = create_app(WebSettings(ep, ep), [Route("/lists/unsubscribe", unsubscribe)])

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/lists/unsubscribe")

    r = asyncio.run(go())
    assert r.text == "unsubscribed" and "nosniff" in r.headers["x-content-type-options"]


def test_sessions_per_account_are_capped_oldest_first(monkeypatch: object) -> None:
    import carteiro.web.sessions as sessions_mod

    class FakeConn:
        closed = False

        async def close(self) -> None:
            self.closed = True

    opened: list[FakeConn] = []

    async def fake_open(*args: object) -> FakeConn:
        opened.append(FakeConn())
        return opened[-1]

    monkeypatch.setattr(sessions_mod, "open_connection", fake_open)  # type: ignore[attr-defined]

    async def go() -> None:
        store = SessionStore(Endpoint("127.0.0.1", 1))
        first = await store.login("u@x", "pw", "192.0.2.1")
        for _ in range(sessions_mod.MAX_SESSIONS_PER_ACCOUNT):
            await store.login("U@x", "pw", "192.0.2.1")
        assert first.token not in store.sessions and opened[0].closed
        assert len(store.sessions) == sessions_mod.MAX_SESSIONS_PER_ACCOUNT
        assert not store.in_flight and not store.busy("192.0.2.1")

    asyncio.run(go())
