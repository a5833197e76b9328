"""The webmail's ASGI application (Starlette): pages, forms and the live-update stream.

It is a mail client: every read and write goes over IMAP (web.imap) or SMTP submission (aiosmtplib)
with the user's own credentials, so every server policy applies. Other modules can mount more
routes: `create_app(settings, extra_routes=[Route(...), Mount(...)])`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiosmtplib
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carteiro.web import autoconfig, compose, lists_owner, mailbox, message, sieverules
from carteiro.web.guard import leave_ip_cap
from carteiro.web.imap import AuthFailed, IMAPError, IMAPUnavailable
from carteiro.web.managesieve import ManageSieve, SieveAuthFailed, SieveNo, SieveUnavailable
from carteiro.web.sanitize import cid_path, sanitize
from carteiro.web.sessions import SessionStore, WebSession, open_connection
from carteiro.web.settings import PasswordRefused, WebSettings

log = logging.getLogger("carteiro.web")
HERE = Path(__file__).parent
COOKIE = "carteiro_session"
LOGIN_COOKIE = "carteiro_login"
MAX_LISTENERS = 3  # live-update streams per session (tabs)
KEEPALIVE = 20.0  # seconds between SSE comments (proxies drop silent streams)
IDLE_RENEW = 25 * 60.0  # RFC 2177: re-issue IDLE at least every 29 minutes

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)


def _body_csp(remote_images: bool) -> str:
    # The message body: nothing runs, nothing loads but our own cid: parts (and remote images
    # once allowed), it cannot navigate us, and it is sandboxed even when opened on its own.
    img = "'self' data:" + (" https: http:" if remote_images else "")
    return (
        f"default-src 'none'; img-src {img}; style-src 'unsafe-inline'; font-src 'none'; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    )


class SecurityHeaders:
    """Pure ASGI (streams such as the live updates pass through untouched): our CSP and friends
    on every response that did not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", PAGE_CSP)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "SAMEORIGIN")
                if not path.startswith("/static"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)


class Webmail:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.sessions = SessionStore(settings.imap, settings.idle_timeout)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["size"] = human_size
        self.templates.env.filters["shortdate"] = short_date
        self._reaper: asyncio.Task[None] | None = None

    # ---- helpers ------------------------------------------------------------------------------

    def render(
        self, request: Request, name: str, status_code: int = 200, **ctx: Any
    ) -> HTMLResponse:
        s: WebSession | None = ctx.get("session")
        ctx.setdefault("title", self.settings.title)
        ctx["csrf"] = s.csrf if s else ctx.get("csrf", "")
        ctx["lists_page"] = self.settings.lists_owner is not None
        return self.templates.TemplateResponse(request, name, ctx, status_code=status_code)

    def session(self, request: Request) -> WebSession:
        s = self.sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise HTTPException(401)
        leave_ip_cap(request.scope, s.user)  # its connection counts per account from now on
        return s

    async def form(self, request: Request, s: WebSession) -> Any:
        """The POST's form after the CSRF check (token in the form or X-CSRF-Token header)."""
        _check_origin(request)
        form = await request.form(max_part_size=self.settings.max_upload)
        token = str(form.get("csrf") or request.headers.get("x-csrf-token", ""))
        if not s.check_csrf(token):
            raise HTTPException(403, "The form has expired; reload the page and try again.")
        return form

    # ---- lifecycle ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._reaper = asyncio.create_task(self._reap())
        try:
            yield
        finally:
            self._reaper.cancel()
            await self.sessions.close()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.idle_timeout / 2))
            await self.sessions.reap()

    # ---- sessions -----------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.sessions.get(request.cookies.get(COOKIE)):
            return RedirectResponse("/box", 303)
        return self._login_form(request, "")

    def _login_form(
        self, request: Request, error: str, status: int = 200, user: str = ""
    ) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        resp = self.render(request, "login.html", status, csrf=token, error=error, user=user)
        resp.set_cookie(
            LOGIN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
        )
        return resp

    async def login(self, request: Request) -> Response:
        _check_origin(request)
        form = await request.form()
        user = str(form.get("user", "")).strip()
        password = str(form.get("password", ""))
        # Double-submit cookie: no session yet, so the login form's token is in a cookie too.
        token = str(form.get("csrf", ""))
        if not token or not secrets.compare_digest(token, request.cookies.get(LOGIN_COOKIE, "")):
            return self._login_form(request, "The form has expired; please try again.", 403, user)
        ip = request.client.host if request.client else "?"
        wait = self.sessions.throttle.wait(ip, user.lower())
        if wait > 0:
            return self._login_form(
                request,
                f"Too many failed logins. Try again in {int(wait) + 1} seconds.",
                429,
                user,
            )
        if not user or not password:
            return self._login_form(request, "Enter your address and password.", 400, user)
        if self.sessions.busy(ip):
            return self._login_form(
                request, "Too many logins in progress; try again in a moment.", 429, user
            )
        try:
            s = await self.sessions.login(user, password, ip)
        except AuthFailed:
            self.sessions.throttle.failed(ip, user.lower())
            return self._login_form(request, "Wrong address or password.", 401, user)
        except IMAPUnavailable as e:
            log.warning("login: IMAP server unavailable: %s", e)
            return self._login_form(
                request, "The mail server is not reachable right now. Try again later.", 503, user
            )
        self.sessions.throttle.succeeded(ip, user.lower())
        resp = RedirectResponse("/box", 303)
        resp.set_cookie(
            COOKIE, s.token, httponly=True, samesite="lax", secure=self.settings.secure_cookies
        )
        resp.delete_cookie(LOGIN_COOKIE)
        return resp

    async def logout(self, request: Request) -> Response:
        s = self.session(request)
        await self.form(request, s)
        await self.sessions.logout(s.token)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp

    # ---- reading ------------------------------------------------------------------------------

    async def box(self, request: Request) -> Response:
        s = self.session(request)
        q = request.query_params
        folder = q.get("folder", "INBOX")
        query = q.get("q", "").strip()[:200]
        number = _int(q.get("page"), 1)
        async with s.imap() as conn:
            folders = _localise(request, await mailbox.list_folders(conn))
            error = ""
            can_thread = mailbox.can_thread(conn)
            threaded = can_thread and q.get("view") == "threads"
            try:
                if threaded:
                    pg = await mailbox.threads(conn, folder, number, query)
                else:
                    pg = await mailbox.page(conn, folder, number, query)
            except IMAPError as e:
                pg, error = mailbox.Page([], 0, 1, 1), e.text
        ctx: dict[str, Any] = dict(
            session=s,
            folders=folders,
            folder=folder,
            current=next((f for f in folders if f.name == folder), None),
            page=pg,
            query=query,
            can_thread=can_thread,
            view="threads" if threaded else "",
            error=error or q.get("error", ""),
            notice=q.get("notice", ""),
            transcript=s.transcript() if s.transcript_wanted else [],
        )
        if q.get("fragment"):
            return self.render(request, "_live.html", **ctx)
        return self.render(request, "box.html", **ctx)

    async def _raw(self, s: WebSession, folder: str, uid: int, seen: bool = False) -> bytes:
        raw = s.cached(folder, uid)
        async with s.imap() as conn:
            await mailbox.select(conn, folder)
            if raw is None:
                raw = await mailbox.fetch_raw(conn, uid)
                if raw is None:
                    raise HTTPException(404, "No such message (it may have been moved or deleted).")
                s.cache(folder, uid, raw)
            if seen:
                await mailbox.store_flags(conn, str(uid), "\\Seen", True)
        return raw

    async def show(self, request: Request) -> Response:
        s = self.session(request)
        folder, uid = _where(request)
        raw = await self._raw(s, folder, uid, seen=True)
        v = message.view(raw)
        images = request.query_params.get("images") == "1"
        blocked = 0
        if v.html:
            _, blocked = sanitize(v.html, cid_path(""), allow_remote=False)
        async with s.imap() as conn:
            folders = _localise(request, await mailbox.list_folders(conn))
        base = "?" + urlencode({"folder": folder, "uid": uid})
        return self.render(
            request,
            "message.html",
            session=s,
            folders=folders,
            folder=folder,
            uid=uid,
            view=v,
            base=base,
            images=images,
            blocked=blocked,
            transcript=s.transcript() if s.transcript_wanted else [],
        )

    async def body_html(self, request: Request) -> Response:
        s = self.session(request)
        folder, uid = _where(request)
        raw = await self._raw(s, folder, uid)
        v = message.view(raw)
        images = request.query_params.get("images") == "1"
        base = "/msg/cid?" + urlencode({"folder": folder, "uid": uid}) + "&cid="
        clean, _ = sanitize(v.html, lambda c: base + quote(c.strip("<>"), safe=""), images)
        doc = (
            '<!doctype html><html><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"></head>'
            f'<body style="font-family:sans-serif;margin:0.5em">{clean}</body></html>'
        )
        return HTMLResponse(doc, headers={"Content-Security-Policy": _body_csp(images)})

    async def cid(self, request: Request) -> Response:
        s = self.session(request)
        folder, uid = _where(request)
        raw = await self._raw(s, folder, uid)
        got = message.cid_part(raw, request.query_params.get("cid", ""))
        if got is None or not got[1].startswith("image/") or got[1] == "image/svg+xml":
            raise HTTPException(404)
        return Response(got[0], media_type=got[1], headers={"Cache-Control": "private"})

    async def part(self, request: Request) -> Response:
        s = self.session(request)
        folder, uid = _where(request)
        raw = await self._raw(s, folder, uid)
        got = message.part_bytes(raw, _int(request.query_params.get("part"), -1))
        if got is None:
            raise HTTPException(404)
        data, ctype, name = got
        # RFC 6266 4.3: filename* carries the UTF-8 name, filename an ASCII fallback. Always a
        # download, sandboxed: an HTML attachment must never run as our origin.
        ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
        disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        return Response(
            data,
            media_type=ctype,
            headers={"Content-Disposition": disposition, "Content-Security-Policy": "sandbox"},
        )

    async def source(self, request: Request) -> Response:
        s = self.session(request)
        folder, uid = _where(request)
        raw = await self._raw(s, folder, uid)
        return PlainTextResponse(
            raw.decode("utf-8", "replace"),
            headers={"Content-Security-Policy": "sandbox; default-src 'none'"},
        )

    async def transcript(self, request: Request) -> Response:
        s = self.session(request)
        form = await self.form(request, s)
        s.transcript_wanted = form.get("show") == "1"
        return RedirectResponse(_back(str(form.get("back") or "/box"), "INBOX"), 303)

    # ---- managing -----------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        s = self.session(request)
        form = await self.form(request, s)
        folder = str(form.get("folder", "INBOX"))
        uid_list = [u for u in (str(x) for x in form.getlist("uid")) if u.isdigit()]
        action = str(form.get("action", ""))
        target = str(form.get("target", ""))
        back = _back(str(form.get("back", "")), folder)
        if not uid_list and action != "empty":
            return RedirectResponse(_with(back, error="Select at least one message."), 303)
        uid_set = ",".join(uid_list)
        notice = ""
        try:
            async with s.imap() as conn:
                await mailbox.select(conn, folder)
                if action in ("read", "unread"):
                    await mailbox.store_flags(conn, uid_set, "\\Seen", action == "read")
                elif action in ("flag", "unflag"):
                    await mailbox.store_flags(conn, uid_set, "\\Flagged", action == "flag")
                elif action in ("move", "copy") and not target:
                    return RedirectResponse(_with(back, error="Choose a folder first."), 303)
                elif action in ("move", "copy"):
                    op = mailbox.move if action == "move" else mailbox.copy
                    await op(conn, uid_set, target)
                    notice = f"{len(uid_list)} message(s) {(action == 'move' and 'moved') or 'copied'} to {target}."
                elif action == "delete":
                    trash = await mailbox.special_folder(conn, "\\Trash")
                    await mailbox.select(conn, folder)
                    if folder == trash:
                        await mailbox.expunge(conn, uid_set)
                        notice = f"{len(uid_list)} message(s) deleted for good."
                    else:
                        await mailbox.move(conn, uid_set, trash)
                        notice = f"{len(uid_list)} message(s) moved to {trash}."
                elif action == "empty":
                    await mailbox.store_flags(conn, "1:*", "\\Deleted", True)
                    await conn.command("EXPUNGE")
                    notice = f"{folder} emptied."
                else:
                    return RedirectResponse(_with(back, error="Unknown action."), 303)
        except IMAPError as e:
            return RedirectResponse(_with(back, error=e.text), 303)
        if action in ("move", "delete") and "uid=" in back:
            back = "/box?" + urlencode({"folder": folder})
        return RedirectResponse(_with(back, notice=notice), 303)

    async def folders(self, request: Request) -> Response:
        s = self.session(request)
        if request.method == "POST":
            form = await self.form(request, s)
            action = str(form.get("action", ""))
            name = str(form.get("name", "")).strip()
            new = str(form.get("new", "")).strip()
            try:
                async with s.imap() as conn:
                    if action == "create" and name:
                        await conn.command("CREATE", conn.mailbox(name))
                    elif action == "rename" and name and new:
                        await conn.command("RENAME", conn.mailbox(name), conn.mailbox(new))
                    elif action == "delete" and name:
                        if conn.selected == name:
                            await conn.command("CLOSE")
                            conn.selected = None
                        await conn.command("DELETE", conn.mailbox(name))
                    else:
                        return RedirectResponse("/folders?error=Give+a+folder+name.", 303)
            except IMAPError as e:
                return RedirectResponse("/folders?" + urlencode({"error": e.text}), 303)
            return RedirectResponse("/folders?" + urlencode({"notice": "Done."}), 303)
        async with s.imap() as conn:
            folders = _localise(request, await mailbox.list_folders(conn))
        q = request.query_params
        return self.render(
            request,
            "folders.html",
            session=s,
            folders=folders,
            error=q.get("error", ""),
            notice=q.get("notice", ""),
        )

    async def settings_page(self, request: Request) -> Response:
        s = self.session(request)
        q = request.query_params
        async with s.imap() as conn:
            folders = _localise(request, await mailbox.list_folders(conn))
        ctx: dict[str, Any] = dict(
            session=s,
            folders=folders,
            services=self.settings.services,
            max_upload=self.settings.max_upload,
            notice=q.get("notice", "")[:500],
            error=q.get("error", "")[:500],
            sieve=self.settings.sieve is not None,
            can_change_password=self.settings.change_password is not None,
            fields=sieverules.FIELDS,
            form_name=sieverules.SCRIPT_NAME,
        )
        if self.settings.sieve is not None:
            scripts: list[tuple[str, bool]] = []
            form_text: str | None = None
            sieve_error = ""
            try:
                async with await self._sieve(s) as ms:
                    scripts = await ms.list_scripts()
                    if any(n == sieverules.SCRIPT_NAME for n, _ in scripts):
                        form_text = await ms.get_script(sieverules.SCRIPT_NAME)
            except (SieveUnavailable, SieveAuthFailed, SieveNo) as e:
                sieve_error = _sieve_error(e)
            rules = sieverules.parse(form_text) if form_text is not None else None
            ctx.update(
                scripts=scripts,
                sieve_error=sieve_error,
                hand_edited=form_text is not None and rules is None,
                rules=rules or sieverules.Rules(),
                other_active=next((n for n, a in scripts if a and n != sieverules.SCRIPT_NAME), ""),
            )
        return self.render(request, "settings.html", **ctx)

    # ---- settings: filters over ManageSieve (RFC 5804) ------------------------------------------

    async def _sieve(self, s: WebSession) -> ManageSieve:
        ep = self.settings.sieve
        if ep is None:
            raise HTTPException(404, "This mail server offers no filters (ManageSieve).")
        return await ManageSieve.login(ep, s.user, s.password)

    async def script_edit_page(self, request: Request) -> Response:
        s = self.session(request)
        name = request.query_params.get("name", "")
        text = ""
        error = ""
        if name:
            try:
                async with await self._sieve(s) as ms:
                    text = await ms.get_script(name)
            except (SieveUnavailable, SieveAuthFailed, SieveNo) as e:
                error = _sieve_error(e)
        return self.render(
            request,
            "sieve_edit.html",
            session=s,
            script_name=name,
            new=not name,
            text=text,
            error=error,
        )

    async def script_edit(self, request: Request) -> Response:
        """Check (CHECKSCRIPT) or save (PUTSCRIPT) a script typed in the editor."""
        s = self.session(request)
        form = await self.form(request, s)
        name = str(form.get("name", "")).strip()
        text = str(form.get("text", "")).replace("\r\n", "\n").replace("\n", "\r\n")
        new = form.get("new") == "1"
        action = str(form.get("action", "check"))
        notice = error = ""
        try:
            async with await self._sieve(s) as ms:
                if action == "save":
                    if not name:
                        raise SieveNo("Give the script a name.")
                    if new and any(n == name for n, _ in await ms.list_scripts()):
                        raise SieveNo(f"A script named {name!r} exists already; pick another name.")
                    warnings = await ms.put_script(name, text)
                    return RedirectResponse(
                        "/settings?"
                        + urlencode({"notice": f"Script {name} saved. {warnings}".strip()}),
                        303,
                    )
                warnings = await ms.check_script(text)
                notice = "The script is valid." + (f" Warnings: {warnings}" if warnings else "")
        except SieveNo as e:
            error = e.text
        except (SieveUnavailable, SieveAuthFailed) as e:
            error = _sieve_error(e)
        return self.render(
            request,
            "sieve_edit.html",
            200 if not error else 400,
            session=s,
            script_name=name,
            new=new,
            text=text,
            error=error,
            notice=notice,
        )

    async def script_action(self, request: Request) -> Response:
        """Activate, deactivate or delete a script."""
        s = self.session(request)
        form = await self.form(request, s)
        name = str(form.get("name", ""))
        action = str(form.get("action", ""))
        try:
            async with await self._sieve(s) as ms:
                if action == "activate":
                    await ms.set_active(name)
                    done = f"Script {name} is now active."
                elif action == "deactivate":
                    await ms.set_active("")
                    done = "No script is active now: mail is no longer filtered."
                elif action == "delete":
                    await ms.delete_script(name)
                    done = f"Script {name} deleted."
                else:
                    raise HTTPException(400, "Unknown action.")
        except SieveNo as e:
            return _to_settings(error=e.text)
        except (SieveUnavailable, SieveAuthFailed) as e:
            return _to_settings(error=_sieve_error(e))
        return _to_settings(notice=done)

    async def rules_form(self, request: Request) -> Response:
        """The vacation and move-to-folder form, saved as the script it owns ("webmail")."""
        s = self.session(request)
        form = await self.form(request, s)
        rules = sieverules.Rules(
            sieverules.Vacation(
                enabled=form.get("vacation") == "on",
                subject=str(form.get("subject", "")).strip(),
                text=str(form.get("text", "")).strip(),
                days=_int(str(form.get("days", "")), 0),
            ),
            [
                sieverules.Rule(str(f), str(c).strip(), str(d).strip())
                for f, c, d in zip(
                    form.getlist("field"),
                    form.getlist("contains"),
                    form.getlist("folder"),
                    strict=False,
                )
                if str(c).strip() or str(d).strip()
            ],
        )
        try:
            script = sieverules.generate(rules)
        except sieverules.RulesError as e:
            return _to_settings(error=str(e))
        name = sieverules.SCRIPT_NAME
        try:
            async with await self._sieve(s) as ms:
                scripts = dict(await ms.list_scripts())
                # Refuse to replace hand edits silently: the user must tick "overwrite".
                if (
                    name in scripts
                    and form.get("overwrite") != "1"
                    and sieverules.parse(await ms.get_script(name)) is None
                ):
                    return _to_settings(
                        error=f"The script {name} was edited by hand; tick "
                        "'Replace my edits' to overwrite it with the form."
                    )
                await ms.put_script(name, script)
                others = [n for n, a in scripts.items() if a and n != name]
                if others:
                    notice = (
                        f"Saved, but your script {others[0]} is the active one: activate "
                        f"{name} below to use these rules instead."
                    )
                else:
                    await ms.set_active(name)
                    notice = "Filters saved and active."
        except SieveNo as e:
            return _to_settings(error=e.text)
        except (SieveUnavailable, SieveAuthFailed) as e:
            return _to_settings(error=_sieve_error(e))
        return _to_settings(notice=notice)

    # ---- settings: password -------------------------------------------------------------------

    async def password(self, request: Request) -> Response:
        s = self.session(request)
        form = await self.form(request, s)
        changer = self.settings.change_password
        if changer is None:
            raise HTTPException(404, "Passwords are changed elsewhere for this server.")
        old = str(form.get("old", ""))
        new = str(form.get("new", ""))
        ip = request.client.host if request.client else "?"
        wait = self.sessions.throttle.wait(ip, s.user.lower())
        if wait > 0:
            return _to_settings(error=f"Too many failed attempts. Try again in {int(wait) + 1} s.")
        if new != str(form.get("new2", "")):
            return _to_settings(error="The two new passwords differ.")
        try:
            await changer(s.user, old, new)
        except PasswordRefused as e:
            if e.wrong:
                self.sessions.throttle.failed(ip, s.user.lower())
            return _to_settings(error=e.text)
        # New connections (IMAP, submission, ManageSieve) log in with the new password; the
        # account's other webmail sessions end, as a password change is meant to lock others out.
        s.password = new
        for token, other in list(self.sessions.sessions.items()):
            if other is not s and other.user.lower() == s.user.lower():
                await self.sessions.logout(token)
        return _to_settings(notice="Password changed.")

    # ---- writing ------------------------------------------------------------------------------

    async def compose_page(self, request: Request) -> Response:
        s = self.session(request)
        q = request.query_params
        mode = q.get("mode", "")
        draft = compose.Draft(sender=s.user, to=q.get("to", ""))
        draft_uid = ""
        raw = b""
        if mode:
            folder, uid = _where(request)
            raw = await self._raw(s, folder, uid)
            v = message.view(raw)
            text = v.text or _html_text(v.html)
            if mode in ("reply", "replyall"):
                draft = compose.reply(v.msg, text, s.user, mode == "replyall")
            elif mode in ("forward", "forward-attach"):
                draft = compose.forward(v.msg, raw, text, s.user, inline=mode == "forward")
            elif mode == "draft":
                draft = compose.Draft(
                    sender=s.user,
                    to=message.header(v.msg, "To"),
                    cc=message.header(v.msg, "Cc"),
                    bcc=message.header(v.msg, "Bcc"),
                    subject=message.header(v.msg, "Subject"),
                    body=v.text,
                    in_reply_to=message.header(v.msg, "In-Reply-To"),
                    references=message.header(v.msg, "References"),
                )
                draft_uid = str(uid)
        carried: list[str] = []
        if mode in ("forward", "draft"):
            carried = [a.filename for a in message.view(raw).attachments]
        return self._compose(
            request, s, draft, q.get("folder", ""), q.get("uid", ""), mode, draft_uid,
            carried=carried,
        )  # fmt: skip

    def _compose(
        self,
        request: Request,
        s: WebSession,
        draft: compose.Draft,
        folder: str,
        uid: str,
        mode: str,
        draft_uid: str,
        error: str = "",
        status: int = 200,
        carried: list[str] | None = None,
    ) -> Response:
        return self.render(
            request,
            "compose.html",
            status,
            session=s,
            draft=draft,
            folder=folder,
            uid=uid,
            mode=mode,
            draft_uid=draft_uid,
            error=error,
            max_upload=self.settings.max_upload,
            carried=carried or [],
        )

    async def compose_post(self, request: Request) -> Response:
        s = self.session(request)
        form = await self.form(request, s)
        draft = compose.Draft(
            sender=s.user,
            to=str(form.get("to", "")),
            cc=str(form.get("cc", "")),
            bcc=str(form.get("bcc", "")),
            subject=str(form.get("subject", "")),
            body=str(form.get("body", "")),
            in_reply_to=str(form.get("in_reply_to", "")),
            references=str(form.get("references", "")),
        )
        folder, uid, mode = (
            str(form.get("folder", "")),
            str(form.get("uid", "")),
            str(form.get("mode", "")),
        )
        draft_uid = str(form.get("draft_uid", ""))
        total = 0
        for f in form.getlist("attachment"):
            if isinstance(f, UploadFile) and f.filename:
                data = await f.read()
                total += len(data)
                draft.attachments.append(
                    compose.Attachment(
                        f.filename, f.content_type or "application/octet-stream", data
                    )
                )
        if mode == "forward-attach" and folder and uid.isdigit():
            draft.forwarded = await self._raw(s, folder, int(uid))
        elif mode in ("forward", "draft") and folder and uid.isdigit():
            # The original's (or the draft's) attachments go with it.
            raw = await self._raw(s, folder, int(uid))
            for a in message.view(raw).attachments:
                got = message.part_bytes(raw, a.index)
                if got is not None:
                    total += len(got[0])
                    draft.attachments.append(compose.Attachment(got[2], got[1], got[0]))
        if total > self.settings.max_upload:
            return self._compose(
                request, s, draft, folder, uid, mode, draft_uid,
                f"Attachments are {human_size(total)}; the limit is {human_size(self.settings.max_upload)}.",
                413,
            )  # fmt: skip
        saving = form.get("action") == "save"
        try:
            msg, rcpts = compose.build(draft, self.settings.hostname, for_draft=saving)
        except compose.ComposeError as e:
            return self._compose(request, s, draft, folder, uid, mode, draft_uid, str(e), 400)
        data = compose.to_bytes(msg)
        if saving:
            async with s.imap() as conn:
                drafts = await mailbox.special_folder(conn, "\\Drafts")
                await mailbox.append(conn, drafts, "\\Draft \\Seen", data)
                await self._drop_draft(conn, drafts, draft_uid)
            return RedirectResponse(
                "/box?" + urlencode({"folder": drafts, "notice": "Draft saved."}), 303
            )
        try:
            await self._submit(s, data, rcpts)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
            return self._compose(
                request, s, draft, folder, uid, mode, draft_uid, _smtp_error(e), 502
            )
        notice = "Message sent."
        try:
            async with s.imap() as conn:
                sent = await mailbox.special_folder(conn, "\\Sent")
                await mailbox.append(conn, sent, "\\Seen", data)
                if mode in ("reply", "replyall") and folder and uid.isdigit():
                    await mailbox.select(conn, folder)
                    await mailbox.store_flags(conn, uid, "\\Answered", True)
                if draft_uid:
                    drafts = await mailbox.special_folder(conn, "\\Drafts", create=False)
                    await self._drop_draft(conn, drafts, draft_uid)
        except IMAPError as e:
            notice = f"Message sent, but the copy in Sent failed: {e.text}"
        back = {"folder": folder or "INBOX", "notice": notice}
        return RedirectResponse("/box?" + urlencode(back), 303)

    async def _drop_draft(self, conn: Any, drafts: str, draft_uid: str) -> None:
        if draft_uid.isdigit():
            await mailbox.select(conn, drafts)
            await mailbox.expunge(conn, draft_uid)

    async def _submit(self, s: WebSession, data: bytes, rcpts: list[str]) -> None:
        ep = self.settings.smtp
        client = aiosmtplib.SMTP(
            hostname=ep.host,
            port=ep.port,
            use_tls=ep.tls == "implicit",
            start_tls=ep.tls == "starttls",
            tls_context=ep.ssl_context() if ep.tls != "none" else None,
            timeout=ep.timeout,
            local_hostname=self.settings.hostname,
        )
        async with client:
            await client.login(s.user, s.password)
            # RFC 6409 / RFC 6531: the server decides; the sender is the logged-in user.
            await client.sendmail(s.user, rcpts, data)

    # ---- live updates -------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        s = self.session(request)
        folder = request.query_params.get("folder", "INBOX")
        if s.listeners >= MAX_LISTENERS:
            raise HTTPException(429, "Too many open tabs for live updates.")
        return StreamingResponse(
            self._stream(s, folder),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, s: WebSession, folder: str) -> AsyncIterator[str]:
        """IMAP IDLE (RFC 2177) on a connection of its own; each EXISTS/EXPUNGE/FETCH becomes a
        `change` event. Every `counts_every` seconds IDLE pauses for one LIST-STATUS, so a change
        in the unread count of another folder is shown too (NOTIFY, RFC 5465, would push it; few
        servers have it). Without IDLE, NOOP every KEEPALIVE seconds does the same more slowly."""
        s.listeners += 1
        conn = None
        change = f"event: change\ndata: {folder}\n\n"
        try:
            conn = await open_connection(s.endpoint, s.user, s.password, s.client_ip)
            await conn.command("EXAMINE", conn.mailbox(folder))
            counts = await _unseen_counts(conn)
            yield "retry: 5000\n\n"
            idle = "IDLE" in conn.capabilities
            loop = asyncio.get_running_loop()
            every = self.settings.counts_every
            while s.token in self.sessions.sessions:
                if idle:
                    await conn.idle_start()
                    started = loop.time()
                    while loop.time() - started < min(IDLE_RENEW, every):
                        left = min(IDLE_RENEW, every) - (loop.time() - started)
                        got = await conn.idle_wait(max(0.05, min(KEEPALIVE, left)))
                        if any(_changes(r.values()) for r in got):
                            yield change
                        else:
                            yield ": keepalive\n\n"
                        if s.token not in self.sessions.sessions:
                            break
                    await conn.idle_done()
                else:
                    untagged, _ = await conn.command("NOOP")
                    if any(_changes(r.values()) for r in untagged):
                        yield change
                    else:
                        yield ": keepalive\n\n"
                    await asyncio.sleep(min(KEEPALIVE, every))
                now = await _unseen_counts(conn)
                if now != counts:
                    counts = now
                    yield change
        except (IMAPUnavailable, IMAPError, AuthFailed) as e:
            yield f"event: down\ndata: {str(e)[:200]}\n\n"
        finally:
            s.listeners -= 1
            if conn is not None:
                await conn.close()

    # ---- autoconfiguration --------------------------------------------------------------------

    async def tb_autoconfig(self, request: Request) -> Response:
        addr = request.query_params.get("emailaddress", "")
        domain = addr.rpartition("@")[2] or self.settings.hostname
        return Response(
            autoconfig.thunderbird(self.settings.services, domain), media_type="application/xml"
        )

    async def ms_autodiscover(self, request: Request) -> Response:
        body = await request.body() if request.method == "POST" else b""
        addr = autoconfig.request_email(body) or request.query_params.get("email", "")
        return Response(
            autoconfig.autodiscover(self.settings.services, addr), media_type="application/xml"
        )

    async def apple_profile(self, request: Request) -> Response:
        s = self.session(request)
        data = autoconfig.mobileconfig(self.settings.services, s.user)
        return Response(
            data,
            media_type="application/x-apple-aspen-config",
            headers={"Content-Disposition": 'attachment; filename="mail.mobileconfig"'},
        )

    async def root(self, request: Request) -> Response:
        s = self.sessions.get(request.cookies.get(COOKIE))
        return RedirectResponse("/box" if s else "/login", 303)


def _localise(request: Request, folders: list[mailbox.Folder]) -> list[mailbox.Folder]:
    lang = mailbox.language(request.headers.get("accept-language", ""))
    for f in folders:
        f.lang = lang
    return folders


async def _unseen_counts(conn: Any) -> dict[str, int]:
    return {f.name: f.unseen for f in await mailbox.list_folders(conn)}


def _changes(v: list[object]) -> bool:
    return len(v) >= 2 and v[1] in ("EXISTS", "EXPUNGE", "FETCH", "RECENT")


def _to_settings(notice: str = "", error: str = "") -> Response:
    return RedirectResponse("/settings?" + urlencode({"notice": notice, "error": error}), 303)


def _sieve_error(e: Exception) -> str:
    if isinstance(e, SieveAuthFailed):
        return f"The filter server refused your credentials: {e}"
    if isinstance(e, SieveNo):
        return e.text
    return f"The filter server is not reachable right now ({e})."


def _check_origin(request: Request) -> None:
    # A cross-site POST carries the attacker's Origin: refuse it before reading the form.
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "Cross-site request refused.")


def _int(v: str | None, default: int) -> int:
    return int(v) if v and v.isdigit() and len(v) < 10 else default


def _where(request: Request) -> tuple[str, int]:
    q = request.query_params
    uid = _int(q.get("uid"), 0)
    if not uid:
        raise HTTPException(404, "No such message.")
    return q.get("folder", "INBOX"), uid


def _back(back: str, folder: str) -> str:
    # Only our own pages: an open redirect would help phishing.
    # "//host" and "/\\host" are other sites to a browser.
    if back.startswith("/") and not back.startswith(("//", "/\\")) and back.isprintable():
        return back
    return "/box?" + urlencode({"folder": folder})


def _with(url: str, **params: str) -> str:
    params = {k: v for k, v in params.items() if v}
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _html_text(html: str) -> str:
    import re

    # For quoting an HTML-only message in a reply: tags out (bounded, non-backtracking pattern).
    return re.sub(r"<[^<>]{0,2000}>", "", html)


def _smtp_error(e: BaseException) -> str:
    if isinstance(e, aiosmtplib.SMTPRecipientsRefused):
        bad = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in e.recipients)
        return f"The server refused these recipients: {bad}"
    if isinstance(e, aiosmtplib.SMTPAuthenticationError):
        return "The mail server refused your credentials for sending."
    if isinstance(e, aiosmtplib.SMTPResponseException):
        return f"The mail server refused the message: {e.code} {e.message}"
    return f"The mail server for sending is not reachable: {e}"


def short_date(value: str) -> str:
    """RFC 5322 date -> "14:05" today, "3 Oct" this year, "2023-10-03" before; the raw text when
    it does not parse."""
    import datetime
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return value[:22]
    now = datetime.datetime.now(when.tzinfo or datetime.UTC)
    if when.date() == now.date():
        return when.strftime("%H:%M")
    if when.year == now.year:
        return f"{when.day} {when.strftime('%b')}"
    return when.strftime("%Y-%m-%d")


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def create_app(settings: WebSettings, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    w = Webmail(settings)

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("IMAP unavailable: %s", exc)
        return w.render(
            request,
            "error.html",
            503,
            message="The mail server is not reachable right now. Try again in a moment.",
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 401:
            if request.method == "GET" and not request.url.path.startswith("/events"):
                return RedirectResponse("/login", 303)
            return PlainTextResponse("Your session has ended; log in again.", 401)
        return w.render(request, "error.html", exc.status_code, message=exc.detail)

    async def on_imap_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IMAPError)
        return w.render(request, "error.html", 400, message=f"The mail server said: {exc.text}")

    routes: list[BaseRoute] = [
        Route("/", w.root),
        Route("/login", w.login_page, methods=["GET"]),
        Route("/login", w.login, methods=["POST"]),
        Route("/logout", w.logout, methods=["POST"]),
        Route("/box", w.box),
        Route("/msg", w.show),
        Route("/msg/html", w.body_html),
        Route("/msg/cid", w.cid),
        Route("/msg/part", w.part),
        Route("/msg/source", w.source),
        Route("/act", w.act, methods=["POST"]),
        Route("/compose", w.compose_page, methods=["GET"]),
        Route("/compose", w.compose_post, methods=["POST"]),
        Route("/folders", w.folders, methods=["GET", "POST"]),
        Route("/settings", w.settings_page),
        Route("/settings/transcript", w.transcript, methods=["POST"]),
        Route("/settings/mobileconfig", w.apple_profile),
        Route("/settings/filters/edit", w.script_edit_page, methods=["GET"]),
        Route("/settings/filters/edit", w.script_edit, methods=["POST"]),
        Route("/settings/filters/script", w.script_action, methods=["POST"]),
        Route("/settings/filters/form", w.rules_form, methods=["POST"]),
        Route("/settings/password", w.password, methods=["POST"]),
        Route("/events", w.events),
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", w.tb_autoconfig),
        Route("/mail/config-v1.1.xml", w.tb_autoconfig),
        Route("/autodiscover/autodiscover.xml", w.ms_autodiscover, methods=["GET", "POST"]),
        Route("/Autodiscover/Autodiscover.xml", w.ms_autodiscover, methods=["GET", "POST"]),
        *(lists_owner.routes(w, settings.lists_owner) if settings.lists_owner else ()),
        *extra_routes,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        IMAPUnavailable: on_unavailable,
        HTTPException: on_http,
        IMAPError: on_imap_error,
    }
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers=handlers,
        lifespan=w.lifespan,
    )
    app.state.webmail = w
    return app


__all__ = ["create_app"]
