"""The same webmail scenario against Debian's Dovecot and against carteiro, in one test: the
webmail needs nothing private from its IMAP server. Dovecot runs from a temp dir on a free port
(STARTTLS with a throwaway certificate, SORT and THREAD offered); carteiro offers neither."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from carteiro.net.tls import make_self_signed
from carteiro.testing.server import ServerProcess, free_port, wait_port
from carteiro.testing.webmail import csrf_of, rich_message
from carteiro.web.app import create_app
from carteiro.web.imap import Endpoint
from carteiro.web.settings import WebSettings

DOVECOT = "/usr/sbin/dovecot"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("web-dovecot"),
    pytest.mark.skipif(not os.path.exists(DOVECOT), reason="dovecot-imapd is not installed"),
]
USER, PASSWORD = "dora@example.test", "dora-pw"

CONFIG = """
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
default_login_user = {login}
default_internal_user = {internal}
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


@pytest.fixture
def dovecot() -> Iterator[int]:
    # Dovecot's unprivileged processes (auth, login) must reach these files: pytest's temp dirs
    # are private, so ours is a world-searchable dir of its own.
    d = Path(tempfile.mkdtemp(prefix="carteiro-dovecot-"))
    os.chmod(d, 0o755)
    make_self_signed(d / "cert.pem", d / "key.pem", "localhost")
    (d / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    is_root = os.getuid() == 0
    # Dovecot will not keep mail as root: as root the mail belongs to the dovecot user.
    me = pwd.getpwnam("dovecot") if is_root else pwd.getpwuid(os.getuid())
    for sub in ("mail", "home"):
        (d / sub).mkdir()
        os.chown(d / sub, me.pw_uid, me.pw_gid)
    port = free_port()
    conf = d / "dovecot.conf"
    conf.write_text(
        CONFIG.format(
            d=d,
            port=port,
            uid=me.pw_uid,
            gid=me.pw_gid,
            login="dovenull" if is_root else me.pw_name,
            internal="dovecot" if is_root else me.pw_name,
        )
    )
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_port("127.0.0.1", port, 20, proc)  # type: ignore[arg-type]
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)


async def scenario(imap: Endpoint, user: str, password: str, seed: bytes) -> list[str]:
    """Log in, list, search (non-ASCII), open, save a draft, delete to Trash, log out; returns
    what the transcript showed of the extensions used."""
    from carteiro.web import mailbox
    from carteiro.web.sessions import open_connection

    conn = await open_connection(imap, user, password)
    await mailbox.append(conn, "INBOX", "", seed)
    await conn.close()
    app = create_app(WebSettings(imap, Endpoint("127.0.0.1", 1), hostname="h"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        page = await c.get("/login")
        r = await c.post(
            "/login", data={"user": user, "password": password, "csrf": csrf_of(page.text)}
        )
        assert r.status_code == 303, r.text
        box = await c.get("/box")
        assert "Relatório açaí" in box.text and "Trash" in box.text
        token = csrf_of(box.text)
        hit = await c.get("/box", params={"q": "pão"})
        assert "Relatório açaí" in hit.text
        miss = await c.get("/box", params={"q": "inexistente"})
        assert "No message matches" in miss.text
        found = re.search(r"/msg\?folder=INBOX&uid=(\d+)", hit.text)
        assert found
        uid = found.group(1)
        view = await c.get("/msg", params={"folder": "INBOX", "uid": uid})
        assert "Zoë Ålander" in view.text and "relatório.pdf" in view.text
        # Conversations where the server has THREAD (Dovecot): a reply joins its original.
        if "Show conversations" in box.text:
            conn = await open_connection(imap, user, password)
            reply = seed.replace(b"Message-ID: <", b"In-Reply-To: <", 1).replace(
                b"Subject: ", b"Message-ID: <r1@example.org>\r\nSubject: Re: ", 1
            )
            await mailbox.append(conn, "INBOX", "", reply)
            await conn.close()
            conv = await c.get("/box", params={"view": "threads"})
            assert "1 conversations" in conv.text and 'class="msg unread reply"' in conv.text
        r = await c.post(
            "/compose",
            data={"csrf": token, "to": user, "subject": "rascunho ç", "action": "save"},
        )
        assert r.status_code == 303
        drafts = await c.get("/box", params={"folder": "Drafts"})
        assert "rascunho ç" in drafts.text
        await c.post(
            "/act", data={"csrf": token, "folder": "INBOX", "uid": uid, "action": "delete"}
        )
        trash = await c.get("/box", params={"folder": "Trash"})
        assert "Relatório açaí" in trash.text
        await c.post("/settings/transcript", data={"csrf": token, "show": "1"})
        shown = (await c.get("/box")).text
        conv_text = (await c.get("/box", params={"view": "threads"})).text
        await c.post("/logout", data={"csrf": token})
    return [
        w
        for w in ("UID SORT", "UID SEARCH", "UID MOVE", "UID THREAD")
        if w in shown or w in conv_text
    ]


def test_same_scenario_on_dovecot_and_carteiro(dovecot: int, tmp_path: Path) -> None:
    seed = rich_message("zoe@example.org", USER, "Relatório açaí", "pão")
    used = asyncio.run(
        scenario(Endpoint("127.0.0.1", dovecot, "starttls", verify=False), USER, PASSWORD, seed)
    )
    with ServerProcess(tmp_path / "c", users={USER: PASSWORD}, services=("imaps",)) as srv:
        ep = Endpoint("127.0.0.1", srv.ports["imaps"], "implicit", verify=False)
        asyncio.run(scenario(ep, USER, PASSWORD, seed))
    assert shutil.which(DOVECOT)
    # Dovecot has SORT, so the list came from it; carteiro's came from sequence ranges.
    assert "UID SORT" in used and "UID THREAD" in used
