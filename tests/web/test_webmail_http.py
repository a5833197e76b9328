"""The webmail end to end over HTTP (no browser): a real `carteiro serve` with its web listener,
driven with httpx as a browser would (cookies, forms, CSRF tokens). Mail is seeded and checked
with imaplib, so every assertion is about what a user or another client sees."""

from __future__ import annotations

import email
import email.policy
import imaplib
import plistlib
import re
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from carteiro.testing.server import ALL_SERVICES, ServerProcess, carteiro_cmd, free_port, wait_port
from carteiro.testing.webmail import PNG, csrf_of, imap_connect, login, rich_message, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-http")]

ALICE, BOB = "alice@example.test", "bob@example.test"
USERS = {ALICE: "alice-pw", BOB: "bob-pw", "carol@example.test": "carol-pw"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("webhttp"), users=USERS, services=ALL_SERVICES) as s:
        yield s


def client(srv: ServerProcess) -> httpx.Client:
    # HTTPS with the data dir's self-signed certificate
    return httpx.Client(base_url=f"https://127.0.0.1:{srv.ports['web']}", timeout=30, verify=False)


def imap(srv: ServerProcess, user: str) -> imaplib.IMAP4_SSL:
    return imap_connect("127.0.0.1", srv.ports["imaps"], user, USERS[user])


def append(srv: ServerProcess, user: str, folder: str, data: bytes) -> None:
    m = imap(srv, user)
    assert m.append(folder, None, None, data)[0] == "OK"
    m.logout()


def uids(srv: ServerProcess, user: str, folder: str, criteria: str = "ALL") -> list[int]:
    m = imap(srv, user)
    m.select(f'"{folder}"')
    _, data = m.uid("SEARCH", criteria)
    m.logout()
    return [int(x) for x in data[0].split()]


def logged_in(srv: ServerProcess, user: str) -> tuple[httpx.Client, str]:
    c = client(srv)
    r = login(c, user, USERS[user])
    assert r.status_code == 303 and r.headers["location"] == "/box"
    return c, csrf_of(c.get("/box").text)


def test_login_cookie_wrong_password_and_logout(srv: ServerProcess) -> None:
    c = client(srv)
    r = login(c, "carol@example.test", "wrong")
    assert r.status_code == 401 and "Wrong address or password" in r.text
    r = login(c, "carol@example.test", USERS["carol@example.test"])
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    page = c.get("/box")
    assert page.status_code == 200 and "carol@example.test" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    token = csrf_of(page.text)
    # Without the token, or from another site, a state change is refused.
    assert c.post("/logout", data={}).status_code == 403
    evil = c.post("/logout", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    # The old cookie is refused: back to the login page.
    r = c.get("/box")
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_reading_search_view_parts(srv: ServerProcess) -> None:
    append(srv, ALICE, "INBOX", rich_message("zoe@example.org", ALICE, "Relatório açaí", "pão"))
    append(srv, ALICE, "INBOX", b"From: x@example.org\r\nSubject: other\r\n\r\nnothing\r\n")
    c, _ = logged_in(srv, ALICE)
    page = c.get("/box").text
    assert "Relatório açaí" in page and "Zoë Ålander" in page
    assert 'class="msg unread"' in page and 'alt="Has attachments"' in page
    # Search with a non-ASCII word in the body: one hit, the other message not listed.
    found = c.get("/box", params={"folder": "INBOX", "q": "pão"}).text
    assert "Relatório açaí" in found and ">other<" not in found
    uid = uids(srv, ALICE, "INBOX", 'SUBJECT "Relat"')[0]
    where = {"folder": "INBOX", "uid": str(uid)}
    view = c.get("/msg", params=where)
    assert view.status_code == 200
    assert "Zoë Ålander" in view.text and "relatório.pdf" in view.text
    assert "remote image(s) blocked" in view.text
    assert "\\Seen" in _flags(srv, ALICE, uid)
    body = c.get("/msg/html", params=where)
    csp = body.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "http:" not in csp
    assert "remote.invalid" not in body.text and "<b>pão</b>" in body.text
    cid_url = re.search(r'src="(/msg/cid[^"]+)"', body.text)
    assert cid_url
    img = c.get(cid_url.group(1).replace("&amp;", "&"))
    assert img.content == PNG and img.headers["content-type"] == "image/png"
    allowed = c.get("/msg/html", params={**where, "images": "1"})
    assert "remote.invalid/track.png" in allowed.text
    assert "http:" in allowed.headers["content-security-policy"]
    index = re.search(r"part=(\d+)\" download=\"relatório.pdf\"", view.text)
    assert index
    part = c.get("/msg/part", params={**where, "part": index.group(1)})
    assert part.content == b"%PDF-1.4 fake\n" * 50
    assert part.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''relat%C3%B3rio.pdf" in part.headers["content-disposition"]
    source = c.get("/msg/source", params=where)
    assert "Subject: =?utf-8?" in source.text.replace("UTF-8", "utf-8")


def _flags(srv: ServerProcess, user: str, uid: int, folder: str = "INBOX") -> str:
    m = imap(srv, user)
    m.select(folder)
    _, data = m.uid("FETCH", str(uid), "(FLAGS)")
    m.logout()
    return str(data[0])


def test_send_with_attachment_reply_sent_copy_and_draft(srv: ServerProcess) -> None:
    c, token = logged_in(srv, BOB)
    bad = c.post("/compose", data={"csrf": token, "to": "not an address", "action": "send"})
    assert bad.status_code == 400 and "is not a valid address" in bad.text
    r = c.post(
        "/compose",
        data={
            "csrf": token,
            "to": f"Bob Ñandú <{BOB}>",
            "subject": "Olá — café ☕",
            "body": "Corpo em português: coração.\n",
            "action": "send",
        },
        files={"attachment": ("notas ç.txt", b"anexo\x00bytes", "application/octet-stream")},
    )
    assert r.status_code == 303, r.text
    got = wait_for("the message in INBOX", lambda: uids(srv, BOB, "INBOX"))
    m = imap(srv, BOB)
    m.select("INBOX")
    _, data = m.uid("FETCH", str(got[0]), "(BODY.PEEK[])")
    msg = email.message_from_bytes(data[0][1], policy=email.policy.default)
    assert str(msg["Subject"]) == "Olá — café ☕"
    assert (
        msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        == "Corpo em português: coração.\n"
    )
    att = next(msg.iter_attachments())
    assert att.get_filename() == "notas ç.txt" and att.get_content() == b"anexo\x00bytes"
    # The copy in Sent (created on first use), marked \Seen.
    m.select("Sent")
    _, data = m.search(None, "SEEN")
    assert data[0].split()
    m.logout()
    # Reply: addressed to the sender, threaded (RFC 5322 3.6.4).
    where = {"mode": "reply", "folder": "INBOX", "uid": str(got[0])}
    form = c.get("/compose", params=where).text
    assert "Re: Olá — café ☕" in form and "&gt; Corpo em português" in form
    mid = re.search(r'name="in_reply_to" value="([^"]+)"', form)
    assert mid and mid.group(1) == str(msg["Message-ID"]).replace("<", "&lt;").replace(">", "&gt;")
    # A draft: saved to Drafts with \Draft, reopened with its fields.
    r = c.post(
        "/compose",
        data={"csrf": token, "to": ALICE, "subject": "rascunho", "body": "x", "action": "save"},
    )
    assert r.status_code == 303
    drafts = uids(srv, BOB, "Drafts", "DRAFT")
    assert len(drafts) == 1
    reopened = c.get("/compose", params={"mode": "draft", "folder": "Drafts", "uid": drafts[0]})
    assert 'value="rascunho"' in reopened.text and f'value="{ALICE}"' in reopened.text


def test_manage_move_delete_trash_folders(srv: ServerProcess) -> None:
    for n in range(3):
        append(srv, "carol@example.test", "INBOX", f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())
    c, token = logged_in(srv, "carol@example.test")
    assert c.post("/folders", data={"csrf": token, "action": "create", "name": "Projetos"})
    before = uids(srv, "carol@example.test", "INBOX")
    act = {"csrf": token, "folder": "INBOX"}
    r = c.post(
        "/act", data={**act, "uid": [str(before[0])], "action": "move", "target": "Projetos"}
    )
    assert r.status_code == 303
    assert len(uids(srv, "carol@example.test", "Projetos")) == 1
    c.post("/act", data={**act, "uid": [str(before[1])], "action": "flag"})
    assert "\\Flagged" in _flags(srv, "carol@example.test", before[1])
    c.post("/act", data={**act, "uid": [str(before[1]), str(before[2])], "action": "delete"})
    assert uids(srv, "carol@example.test", "INBOX") == []
    trash = uids(srv, "carol@example.test", "Trash")
    assert len(trash) == 2
    c.post("/act", data={"csrf": token, "folder": "Trash", "action": "empty"})
    assert uids(srv, "carol@example.test", "Trash") == []
    c.post(
        "/folders",
        data={"csrf": token, "action": "rename", "name": "Projetos", "new": "Arquivo/2024"},
    )
    page = c.get("/folders").text
    assert "Arquivo/2024" in page and ">Projetos<" not in page
    c.post("/folders", data={"csrf": token, "action": "delete", "name": "Arquivo/2024"})
    assert "Arquivo/2024" not in c.get("/folders").text


def test_transcript_on_request(srv: ServerProcess) -> None:
    c, token = logged_in(srv, ALICE)
    assert "IMAP transcript" not in c.get("/box").text
    c.post("/settings/transcript", data={"csrf": token, "show": "1", "back": "/box"})
    page = c.get("/box").text
    # The list's commands and the server's answers (SELECT itself may have scrolled out: with
    # SORT, since main's IMAP server has it, the session's INBOX stays selected).
    assert "IMAP transcript" in page
    assert re.search(r"C: W\d+ UID ", page) and re.search(r"S: W\d+ OK", page)
    assert USERS[ALICE] not in page, [ln for ln in page.splitlines() if USERS[ALICE] in ln]


def test_live_updates_by_idle(srv: ServerProcess) -> None:
    c, _ = logged_in(srv, "carol@example.test")
    lines: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with c.stream("GET", "/events", params={"folder": "INBOX"}, timeout=30) as r:
            for line in r.iter_lines():
                lines.append(line)
                ready.set()
                if line == "event: change":
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(15)
    append(srv, "carol@example.test", "INBOX", b"Subject: live\r\n\r\nnew\r\n")
    t.join(20)
    assert "event: change" in lines


def test_autoconfig_documents(srv: ServerProcess) -> None:
    c = client(srv)
    r = c.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": ALICE})
    root = ET.fromstring(r.text)
    incoming = root.findall(".//incomingServer")
    ports = {(s.get("type"), s.findtext("port"), s.findtext("socketType")) for s in incoming}
    assert ("imap", str(srv.ports["imaps"]), "SSL") in ports
    assert ("imap", str(srv.ports["imap"]), "STARTTLS") in ports
    assert ("pop3", str(srv.ports["pop3s"]), "SSL") in ports
    out = root.find(".//outgoingServer")
    assert out is not None and out.findtext("port") == str(srv.ports["submissions"])
    assert c.get("/mail/config-v1.1.xml").status_code == 200
    req = (
        '<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>'
        f"{ALICE}</EMailAddress></Request></Autodiscover>"
    )
    r = c.post("/autodiscover/autodiscover.xml", content=req)
    assert f"<LoginName>{ALICE}</LoginName>" in r.text and "<Type>IMAP</Type>" in r.text
    ET.fromstring(r.text)
    # The Apple profile only for a logged-in user, and about that user.
    assert c.get("/settings/mobileconfig").status_code == 303
    lc, _ = logged_in(srv, ALICE)
    prof = plistlib.loads(lc.get("/settings/mobileconfig").content)
    mail = prof["PayloadContent"][0]
    assert (
        mail["EmailAddress"] == ALICE and mail["IncomingMailServerPortNumber"] == srv.ports["imaps"]
    )


def test_dns_records_list_srv_and_autoconfig(srv: ServerProcess) -> None:
    out = srv.cli("dns-records").stdout
    srv_lines = {" ".join(line.split()) for line in out.splitlines() if " SRV " in line}
    port = srv.ports["imaps"]
    assert f"_imaps._tcp.example.test. 3600 IN SRV 0 1 {port} mail.example.test." in srv_lines
    assert any(line.startswith("_submissions._tcp.example.test.") for line in srv_lines)
    assert re.search(r"^autoconfig\.example\.test\. +3600 IN CNAME mail", out, re.M)


def test_imap_down_is_a_clear_message(tmp_path: Path) -> None:
    from carteiro.web.app import create_app
    from carteiro.web.imap import Endpoint
    from carteiro.web.settings import WebSettings

    port = free_port()  # nothing listens there
    app = create_app(
        WebSettings(Endpoint("127.0.0.1", port, "implicit"), Endpoint("127.0.0.1", port))
    )
    import asyncio

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as ac:
            page = await ac.get("/login")
            return await ac.post(
                "/login", data={"user": ALICE, "password": "x", "csrf": csrf_of(page.text)}
            )

    r = asyncio.run(go())
    assert r.status_code == 503 and "not reachable" in r.text


def test_carteiro_web_alone_in_front_of_the_server(srv: ServerProcess) -> None:
    port = free_port()
    cmd = carteiro_cmd(
        "web",
        "--imap", f"127.0.0.1:{srv.ports['imaps']}",
        "--imap-tls", "implicit",
        "--smtp", f"127.0.0.1:{srv.ports['submission']}",
        "--insecure",
        "--listen", f"127.0.0.1:{port}",
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port("127.0.0.1", port, 20, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            assert login(c, ALICE, USERS[ALICE]).status_code == 303
            assert "Inbox" in c.get("/box").text
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    # Passwords over plain HTTP on a public address: refused at start.
    refused = subprocess.run(
        carteiro_cmd("web", "--imap", "h:993", "--smtp", "h:587", "--listen", "0.0.0.0:1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 78 and "plain HTTP" in refused.stderr


def test_plain_http_when_tls_off_on_loopback(tmp_path: Path) -> None:
    with (
        ServerProcess(
            tmp_path,
            users={ALICE: USERS[ALICE]},
            services=("imaps", "submissions", "web"),
            extra_config='[web]\ntls = "off"\n',
        ) as s,
        httpx.Client(base_url=f"http://127.0.0.1:{s.ports['web']}") as c,
    ):
        r = login(c, ALICE, USERS[ALICE])
        assert r.status_code == 303
        assert "secure" not in r.headers["set-cookie"].lower()


def test_live_unread_count_of_another_folder(srv: ServerProcess) -> None:
    """The open folder is INBOX; new unread mail in another folder still reaches the page."""
    import asyncio

    from carteiro.web.app import create_app
    from carteiro.web.imap import Endpoint
    from carteiro.web.server import WebServer
    from carteiro.web.settings import WebSettings

    m = imap(srv, BOB)
    m.create("Listas")
    m.logout()
    ep = Endpoint("127.0.0.1", srv.ports["imaps"], "implicit", verify=False)
    app = create_app(WebSettings(ep, ep, counts_every=0.3))

    async def go() -> None:
        web = WebServer(app, f"127.0.0.1:{free_port()}")
        await web.start()
        assert web.bound
        try:
            async with httpx.AsyncClient(
                base_url=f"http://{web.bound[0]}:{web.bound[1]}", timeout=30
            ) as c:
                page = await c.get("/login")
                await c.post(
                    "/login", data={"user": BOB, "password": USERS[BOB], "csrf": csrf_of(page.text)}
                )
                async with c.stream("GET", "/events", params={"folder": "INBOX"}) as r:
                    lines = r.aiter_lines()
                    assert (await anext(lines)).startswith("retry:")
                    await asyncio.to_thread(
                        append, srv, BOB, "Listas", b"Subject: elsewhere\r\n\r\nx\r\n"
                    )
                    async with asyncio.timeout(20):
                        async for line in lines:
                            if line == "event: change":
                                break
        finally:
            await web.stop()

    asyncio.run(go())


def test_forward_inline_carries_the_attachments(srv: ServerProcess) -> None:
    user = "carol@example.test"
    append(srv, user, "INBOX", rich_message("zoe@example.org", user, "Encaminhar", "x"))
    uid = uids(srv, user, "INBOX", 'SUBJECT "Encaminhar"')[0]
    c, token = logged_in(srv, user)
    form = c.get("/compose", params={"mode": "forward", "folder": "INBOX", "uid": uid}).text
    assert "Attached from the original: relatório.pdf" in form
    r = c.post(
        "/compose",
        data={
            "csrf": token, "to": user, "subject": "Fwd: Encaminhar", "body": "veja",
            "mode": "forward", "folder": "INBOX", "uid": str(uid), "action": "send",
        },
    )  # fmt: skip
    assert r.status_code == 303, r.text
    fwd = wait_for("the forward", lambda: uids(srv, user, "INBOX", 'SUBJECT "Fwd: Encaminhar"'))
    m = imap(srv, user)
    m.select("INBOX")
    _, data = m.uid("FETCH", str(fwd[0]), "(BODY.PEEK[])")
    m.logout()
    msg = email.message_from_bytes(data[0][1], policy=email.policy.default)
    names = [a.get_filename() for a in msg.iter_attachments()]
    assert "relatório.pdf" in names


def test_imap_down_after_login_then_back(tmp_path: Path) -> None:
    """A logged-in page while the IMAP server is down says so (503); once it is back, the same
    session works again: the pool drops dead connections and logs in anew."""
    import asyncio

    from carteiro.web.app import create_app
    from carteiro.web.imap import Endpoint
    from carteiro.web.settings import WebSettings

    s = ServerProcess(tmp_path, users={ALICE: USERS[ALICE]}, services=("imaps",))
    s.start()
    try:
        ep = Endpoint("127.0.0.1", s.ports["imaps"], "implicit", verify=False)
        app = create_app(WebSettings(ep, ep))

        async def go() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                page = await c.get("/login")
                await c.post(
                    "/login",
                    data={"user": ALICE, "password": USERS[ALICE], "csrf": csrf_of(page.text)},
                )
                assert (await c.get("/box")).status_code == 200
                await asyncio.to_thread(s.kill)
                down = await c.get("/box")
                assert down.status_code == 503 and "not reachable" in down.text
                await asyncio.to_thread(s.start)
                back = await c.get("/box")
                assert back.status_code == 200 and ALICE in back.text
            await app.state.webmail.sessions.close()  # no lifespan under ASGITransport

        asyncio.run(go())
    finally:
        s.stop()


def test_serve_refuses_a_webmail_without_imap(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path, services=("web", "submission"))
    s.init()
    p = subprocess.run(
        carteiro_cmd("serve", "--data", str(s.data)), capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 78
    assert "the webmail needs [listen] imaps or imap enabled" in p.stderr
