"""RFC 8058 one-click unsubscribe for mailing lists: the HTTPS URI a member's List-Unsubscribe
names. POST with "List-Unsubscribe=One-Click" unsubscribes at once and is idempotent; GET (a link
scanner, a person clicking) only shows a button, never unsubscribes (RFC 8058 3.2). Self-contained
Starlette routes: the web app mounts them; the list engine comes in as a function."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

OneClick = Callable[[str], Awaitable[bool | None]]  # ListService.one_click
PATH = "/lists/unsubscribe/{token}"
MAX_BODY = 8192

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<p>Unsubscribe from this mailing list?</p><button type="submit">Unsubscribe</button></form>
</body></html>"""


def routes(one_click: OneClick) -> list[Route]:
    async def show(request: Request) -> Response:
        return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store"})

    async def post(request: Request) -> Response:
        token = str(request.path_params["token"])
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse("request too large\n", status_code=413)
        # RFC 8058 3.1: the body is "List-Unsubscribe=One-Click", form-urlencoded or
        # multipart/form-data (a form button sends the former)
        if b"One-Click" not in body or b"List-Unsubscribe" not in body:
            return PlainTextResponse("expected List-Unsubscribe=One-Click\n", status_code=400)
        done = await one_click(token)
        if done is None:
            return PlainTextResponse("unknown unsubscribe link\n", status_code=404)
        text = "You are unsubscribed." if done else "You were not subscribed (any more)."
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(f"<!doctype html><p>{html.escape(text)}</p>")
        return PlainTextResponse(text + "\n")

    return [Route(PATH, show, methods=["GET"]), Route(PATH, post, methods=["POST"])]
