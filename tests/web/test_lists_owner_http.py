"""The list owners' page in the webmail inside `carteiro serve`, over HTTP: an owner sees their
lists, adds and removes members, changes settings (checked by the list engine) and approves or
rejects held posts; another user reaches none of it; every POST needs the CSRF token."""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from collections.abc import Iterator

import httpx
import pytest

from carteiro.testing.server import ServerProcess
from carteiro.testing.webmail import csrf_of, imap_connect, login, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-lists-owner")]

ALICE, BOB = "alice@example.test", "bob@example.test"
USERS = {ALICE: "alice-pw", BOB: "bob-pw"}
DEV = "dev@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("listsowner"),
        users=USERS,
        services=("smtp", "submission", "imap", "imaps", "web"),
    ) as s:
        s.cli("list", "create", DEV, "--owner", ALICE)
        s.cli("list", "create", "other@example.test", "--owner", BOB)
        yield s


def client(srv: ServerProcess, user: str) -> httpx.Client:
    c = httpx.Client(base_url=f"https://127.0.0.1:{srv.ports['web']}", timeout=30, verify=False)
    assert login(c, user, USERS[user]).status_code == 303
    return c


def followed(c: httpx.Client, r: httpx.Response) -> str:
    assert r.status_code == 303, r.text[:500]
    assert r.headers["location"].startswith("/lists/manage?")
    return html.unescape(c.get(r.headers["location"]).text)


def inbox_subjects(srv: ServerProcess, user: str) -> list[str]:
    m = imap_connect("127.0.0.1", srv.ports["imaps"], user, USERS[user])
    try:
        m.select("INBOX")
        _, data = m.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, got = m.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            out.append(got[0][1].decode().strip())  # type: ignore[index, union-attr]
        return out
    finally:
        m.logout()


def test_owner_manages_members_and_settings(srv: ServerProcess) -> None:
    c = client(srv, ALICE)
    index = c.get("/lists").text
    assert 'id="lists-link"' in index and DEV in index
    assert "other@example.test" not in index  # Bob's list is not Alice's
    page = c.get("/lists/manage", params={"list": DEV}).text
    token = csrf_of(page)
    add = {"csrf": token, "list": DEV, "member": BOB, "action": "add"}
    assert c.post("/lists/manage/members", data={**add, "csrf": "x"}).status_code == 403
    assert "bob@example.test added." in followed(c, c.post("/lists/manage/members", data=add))
    assert BOB in srv.cli("list", "members", "list", DEV).stdout
    assert "already a member" in followed(c, c.post("/lists/manage/members", data=add))
    bad = {**add, "member": "not an address"}
    assert 'class="error"' in followed(c, c.post("/lists/manage/members", data=bad))
    # the engine welcomed the new member
    wait_for("the welcome", lambda: any("Welcome to" in s for s in inbox_subjects(srv, BOB)))

    form = {
        "csrf": token,
        "list": DEV,
        "description": "Developers",
        "subscription": "moderated",
        "posting": "moderated",
        "reply_to": "list",
        "subject_prefix": "[dev] ",
        "footer": "-- \r\nthe dev list",
        "max_size": "20000",
    }
    assert c.post("/lists/manage/settings", data={**form, "csrf": ""}).status_code == 403
    page = followed(c, c.post("/lists/manage/settings", data=form))
    assert "Settings saved." in page
    shown = srv.cli("list", "show", DEV).stdout
    for text in ("Developers", "moderated", "[dev]", "20000"):
        assert text in shown, shown
    bad = {**form, "posting": "everyone"}
    assert "not one of" in followed(c, c.post("/lists/manage/settings", data=bad))
    assert "moderated" in srv.cli("list", "show", DEV).stdout  # unchanged
    bad = {**form, "max_size": "big"}
    assert "expected a number" in followed(c, c.post("/lists/manage/settings", data=bad))

    rm = {**add, "action": "remove"}
    assert "removed" in followed(c, c.post("/lists/manage/members", data=rm))
    assert BOB not in srv.cli("list", "members", "list", DEV).stdout


def test_owner_approves_and_rejects_held_posts(srv: ServerProcess) -> None:
    srv.cli("list", "create", "mod@example.test", "--owner", ALICE, "--posting", "moderated")
    srv.cli("list", "members", "add", "mod@example.test", ALICE)

    # Bob, not a member, posts: held for a moderator
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as s:
        s.starttls(context=ssl._create_unverified_context())
        s.login(BOB, USERS[BOB])
        for subject in ("held one", "held two"):
            msg = f"From: {BOB}\r\nTo: mod@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
            s.sendmail(BOB, ["mod@example.test"], msg)
    c = client(srv, ALICE)

    def page() -> str:
        return html.unescape(c.get("/lists/manage", params={"list": "mod@example.test"}).text)

    wait_for("two held posts", lambda: "held one" in page() and "held two" in page())
    text = page()
    token = csrf_of(text)
    rows = re.findall(
        r"<tr><td>bob@example.test</td><td>(held \w+)</td>.*?name=\"token\" value=\"(\w+)\"",
        text,
        re.S,
    )
    tokens = {subject: t for subject, t in rows}
    assert set(tokens) == {"held one", "held two"}
    decide = {"csrf": token, "list": "mod@example.test", "reason": ""}
    assert (
        c.post(
            "/lists/manage/held",
            data={**decide, "csrf": "x", "token": tokens["held one"], "action": "approve"},
        ).status_code
        == 403
    )
    # Bob owns no such list: the same answer as for no list at all
    b = client(srv, BOB)
    assert b.get("/lists/manage", params={"list": "mod@example.test"}).status_code == 404
    bt = csrf_of(b.get("/lists").text)
    r = b.post(
        "/lists/manage/held",
        data={**decide, "csrf": bt, "token": tokens["held one"], "action": "approve"},
    )
    assert r.status_code == 404  # and nothing was decided: Alice still sees both below
    assert "held one" in page()
    r = c.post(
        "/lists/manage/held", data={**decide, "token": tokens["held one"], "action": "approve"}
    )
    assert "approved and sent to the list" in followed(c, r)
    r = c.post(
        "/lists/manage/held",
        data={**decide, "token": tokens["held two"], "action": "reject", "reason": "off topic"},
    )
    assert "The post was rejected." in followed(c, r)
    r = c.post("/lists/manage/held", data={**decide, "token": "0" * 24, "action": "approve"})
    assert "No such held post" in followed(c, r)
    text = page()
    assert "held one" not in text and "held two" not in text and "No post is waiting." in text
    wait_for("the approved post", lambda: any("held one" in s for s in inbox_subjects(srv, ALICE)))
    # the poster hears of the rejection, with the reason (the notice carries it in its body)
    wait_for("the rejection", lambda: "Rejected: held two" in str(inbox_subjects(srv, BOB)))
    m = imap_connect("127.0.0.1", srv.ports["imaps"], BOB, USERS[BOB])
    m.select("INBOX")
    _, found = m.search(None, "BODY", '"Reason: off topic"')
    m.logout()
    assert found[0].split()
    assert not any("held two" in s for s in inbox_subjects(srv, ALICE))
