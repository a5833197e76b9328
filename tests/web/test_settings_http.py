"""The webmail's Settings page end to end over HTTP: filters over ManageSieve (the form's script,
the script editor with CHECKSCRIPT errors, activate/delete), the password change inside
`carteiro serve`, and `carteiro web` alone (no password form; filters only with --sieve)."""

from __future__ import annotations

import imaplib
import re
import smtplib
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from carteiro.testing.server import ALL_SERVICES, ServerProcess, carteiro_cmd, free_port, wait_port
from carteiro.testing.webmail import csrf_of, imap_connect, login, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-settings")]

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
USERS = {ALICE: "alice-pw", BOB: "bob-pw", CAROL: "carol-pw"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tmp_path_factory.mktemp("websettings"), users=USERS, services=ALL_SERVICES
    ) as s:
        yield s


def logged_in(srv: ServerProcess, user: str, password: str = "") -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=f"https://127.0.0.1:{srv.ports['web']}", timeout=30, verify=False)
    r = login(c, user, password or USERS[user])
    assert r.status_code == 303 and r.headers["location"] == "/box"
    return c, csrf_of(c.get("/settings").text)


def settings(c: httpx.Client, r: httpx.Response) -> str:
    """Follow a POST's redirect to /settings; the page with its notice or error."""
    assert r.status_code == 303, r.text[:500]
    assert r.headers["location"].startswith("/settings?")
    return c.get(r.headers["location"]).text


def test_form_writes_a_readable_script_that_filters_mail(srv: ServerProcess) -> None:
    m = imap_connect("127.0.0.1", srv.ports["imaps"], ALICE, USERS[ALICE])
    m.create("Work")
    c, token = logged_in(srv, ALICE)
    page = c.get("/settings").text
    assert 'id="rules-form"' in page and "No scripts yet." in page
    form = {
        "csrf": token,
        "vacation": "on",
        "subject": 'Away "till" Monday',
        "text": "I am away.\nBack on Monday.",
        "days": "3",
        "field": ["from", "from"],
        "contains": ["boss@example.org", ""],
        "folder": ["Work", ""],
    }
    # No CSRF token, no change.
    assert c.post("/settings/filters/form", data={**form, "csrf": "x"}).status_code == 403
    page = settings(c, c.post("/settings/filters/form", data=form))
    assert "Filters saved and active." in page
    assert re.search(r"webmail</a></td><td>active", page)
    # The form reads its own script back.
    assert 'value="boss@example.org"' in page and "Back on Monday." in page
    script = c.get("/settings/filters/edit", params={"name": "webmail"}).text
    assert "vacation :days 3 :subject &#34;Away \\&#34;till\\&#34; Monday&#34;" in script
    assert "if address :contains &#34;from&#34; &#34;boss@example.org&#34;" in script
    # The server runs it: mail from the boss lands in Work, other mail in INBOX.
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        for sender, subject in (("boss@example.org", "report"), ("friend@example.org", "hi")):
            msg = f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n"
            s.sendmail(sender, [ALICE], msg)

    def count(folder: str) -> int:
        m.select(folder)
        return len(m.search(None, "ALL")[1][0].split())

    wait_for("the boss's mail in Work", lambda: count("Work") == 1)
    wait_for("the friend's mail in INBOX", lambda: count("INBOX") >= 1)
    m.logout()
    # A bad form value is refused with a reason, and nothing changes.
    bad = settings(c, c.post("/settings/filters/form", data={**form, "days": "400"}))
    assert "1 to 90 days" in bad and 'value="3"' in bad


def test_script_editor_check_save_activate_and_hand_edits(srv: ServerProcess) -> None:
    c, token = logged_in(srv, BOB)
    # CHECKSCRIPT: the interpreter's error with its line and column, the text kept.
    bad = 'require "fileinto";\r\nif header :contains "subject" "x" {\r\n  fileinto\r\n}\r\n'
    r = c.post(
        "/settings/filters/edit",
        data={"csrf": token, "new": "1", "name": "mine", "text": bad, "action": "check"},
    )
    assert r.status_code == 400
    assert re.search(r"line \d+, column \d+", r.text) and "fileinto" in r.text
    good = 'require "fileinto";\r\nif header :contains "subject" "[list]" { fileinto "Junk"; }\r\n'
    r = c.post(
        "/settings/filters/edit",
        data={"csrf": token, "new": "1", "name": "mine", "text": good, "action": "check"},
    )
    assert r.status_code == 200 and "The script is valid." in r.text
    # PUTSCRIPT refuses an invalid script too; a valid one is saved (not active yet).
    r = c.post(
        "/settings/filters/edit",
        data={"csrf": token, "new": "1", "name": "mine", "text": bad, "action": "save"},
    )
    assert r.status_code == 400 and re.search(r"line \d+, column \d+", r.text)
    page = settings(
        c,
        c.post(
            "/settings/filters/edit",
            data={"csrf": token, "new": "1", "name": "mine", "text": good, "action": "save"},
        ),
    )
    assert "Script mine saved." in page and re.search(r"mine</a></td><td></td>", page)
    act = {"csrf": token, "name": "mine", "action": "activate"}
    page = settings(c, c.post("/settings/filters/script", data=act))
    assert re.search(r"mine</a></td><td>active", page)
    # The form saves its script but does not take over another active script.
    form = {"csrf": token, "days": "7", "field": "subject", "contains": "sale", "folder": "Junk"}
    page = settings(c, c.post("/settings/filters/form", data=form))
    assert "your script mine is the active one" in page
    assert re.search(r"mine</a></td><td>active", page)
    # Edited by hand in the editor: the form refuses to overwrite it unless told to.
    text = c.get("/settings/filters/edit", params={"name": "webmail"}).text
    assert "sale" in text
    edited = '# my own now\r\nrequire "fileinto";\r\nfileinto "Junk";\r\n'
    settings(
        c,
        c.post(
            "/settings/filters/edit",
            data={"csrf": token, "name": "webmail", "text": edited, "action": "save"},
        ),
    )
    page = c.get("/settings").text
    assert 'id="hand-edited"' in page and 'id="overwrite"' in page
    page = settings(c, c.post("/settings/filters/form", data=form))
    assert "was edited by hand" in page
    assert "# my own now" in c.get("/settings/filters/edit", params={"name": "webmail"}).text
    page = settings(c, c.post("/settings/filters/form", data={**form, "overwrite": "1"}))
    assert "your script mine is the active one" in page and 'id="hand-edited"' not in page
    # Deactivate, then delete.
    page = settings(c, c.post("/settings/filters/script", data={**act, "action": "deactivate"}))
    assert "No script is active now" in page and "</td><td>active" not in page
    page = settings(c, c.post("/settings/filters/script", data={**act, "action": "delete"}))
    assert "Script mine deleted." in page and ">mine</a>" not in page
    assert c.post("/settings/filters/script", data={**act, "csrf": ""}).status_code == 403


def test_change_password_inside_carteiro_serve(srv: ServerProcess) -> None:
    c, token = logged_in(srv, CAROL)
    other, _ = logged_in(srv, CAROL)
    assert 'id="password-form"' in c.get("/settings").text

    def change(old: str, new: str, new2: str = "") -> str:
        data = {"csrf": token, "old": old, "new": new, "new2": new2 or new}
        return settings(c, c.post("/settings/password", data=data))

    assert "The current password is wrong." in change("nope", "a-long-new-password")
    assert "at least 10 characters" in change(USERS[CAROL], "short")
    assert "differ" in change(USERS[CAROL], "a-long-new-password", "something-else")
    assert c.post("/settings/password", data={"old": "x", "new": "y"}).status_code == 403
    assert "Password changed." in change(USERS[CAROL], "a-long-new-password")
    # The old password no longer works anywhere (the login cache entry is gone)...
    with pytest.raises(imaplib.IMAP4.error):
        imap_connect("127.0.0.1", srv.ports["imaps"], CAROL, USERS[CAROL])
    imap_connect("127.0.0.1", srv.ports["imaps"], CAROL, "a-long-new-password").logout()
    # ...this session goes on with the new one (new IMAP and ManageSieve connections)...
    page = c.get("/settings").text
    assert 'id="scripts"' in page and 'id="sieve-error"' not in page
    # ...and the account's other webmail session has ended.
    assert other.get("/box").headers.get("location") == "/login"


def _carteiro_web(srv: ServerProcess, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = carteiro_cmd(
        "web",
        "--imap", f"127.0.0.1:{srv.ports['imaps']}",
        "--imap-tls", "implicit",
        "--smtp", f"127.0.0.1:{srv.ports['submission']}",
        "--insecure",
        "--listen", f"127.0.0.1:{port}",
        *extra,
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_port("127.0.0.1", port, 20, proc)
    return proc, port


@pytest.mark.parametrize("with_sieve", [False, True])
def test_carteiro_web_alone_has_no_password_form(srv: ServerProcess, with_sieve: bool) -> None:
    extra = ("--sieve", f"127.0.0.1:{srv.ports['sieve']}") if with_sieve else ()
    proc, port = _carteiro_web(srv, *extra)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert login(c, ALICE, USERS[ALICE]).status_code == 303
            page = c.get("/settings").text
            assert 'id="password-form"' not in page
            assert 'id="lists-link"' not in page  # no list engine: no owners' page
            assert c.get("/lists").status_code == 404
            token = csrf_of(page)
            r = c.post("/settings/password", data={"csrf": token, "old": "a", "new": "b"})
            assert r.status_code == 404
            if with_sieve:
                # ManageSieve over STARTTLS with the user's credentials, from another process.
                assert 'id="scripts"' in page and 'id="rules-form"' in page
                assert 'id="no-sieve"' not in page and 'id="sieve-error"' not in page
            else:
                assert 'id="no-sieve"' in page and 'id="rules-form"' not in page
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
