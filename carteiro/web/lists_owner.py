"""The list owners' page: a logged-in user who owns mailing lists sees them, adds and removes
members, changes the settings an owner may change, and approves or rejects held posts. Present only
when `carteiro serve` injects the list engine (WebSettings.lists_owner); every POST is CSRF-checked
and every call names the session's user, so nobody reaches a list they do not own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from carteiro.web.settings import ListRefused, ListsOwner

if TYPE_CHECKING:
    from carteiro.web.app import Webmail

# what the settings form sends; the list engine checks each value
FIELDS = (
    "description",
    "subscription",
    "posting",
    "reply_to",
    "subject_prefix",
    "footer",
    "max_size",
)
CHOICES = {
    "subscription": ("open", "confirm", "moderated", "closed"),
    "posting": ("members", "anyone", "moderated", "announce"),
    "reply_to": ("author", "list"),
}


def _back(address: str, notice: str = "", error: str = "") -> RedirectResponse:
    q = {
        "list": address,
        **({"notice": notice} if notice else {}),
        **({"error": error} if error else {}),
    }
    return RedirectResponse("/lists/manage?" + urlencode(q), 303)


def routes(w: Webmail, owner: ListsOwner) -> list[Route]:
    async def posted(request: Request) -> tuple[str, str, Any]:
        """The session's user, the list (one the user owns, else 404) and the checked form."""
        s = w.session(request)
        form = await w.form(request, s)
        address = str(form.get("list", ""))
        if await owner.view(s.user, address) is None:
            raise HTTPException(404, "You own no such list.")
        return s.user, address, form

    async def index(request: Request) -> Response:
        s = w.session(request)
        lists = await owner.owned(s.user)
        return w.render(request, "lists.html", session=s, lists=lists)

    async def manage(request: Request) -> Response:
        s = w.session(request)
        q = request.query_params
        view = await owner.view(s.user, q.get("list", ""))
        if view is None:
            raise HTTPException(404, "You own no such list.")
        return w.render(
            request,
            "list_manage.html",
            session=s,
            ml=view,
            choices=CHOICES,
            notice=q.get("notice", "")[:500],
            error=q.get("error", "")[:500],
        )

    async def members(request: Request) -> Response:
        user, address, form = await posted(request)
        member = str(form.get("member", "")).strip()
        try:
            if form.get("action") == "remove":
                text = await owner.remove_member(user, address, member)
            else:
                text = await owner.add_member(user, address, member)
        except ListRefused as e:
            return _back(address, error=str(e))
        return _back(address, notice=text)

    async def settings(request: Request) -> Response:
        user, address, form = await posted(request)
        values = {k: str(form[k]) for k in FIELDS if k in form}
        try:
            text = await owner.change(user, address, values)
        except ListRefused as e:
            return _back(address, error=str(e))
        return _back(address, notice=text)

    async def held(request: Request) -> Response:
        user, address, form = await posted(request)
        action = str(form.get("action", ""))
        if action not in ("approve", "reject", "discard"):
            return _back(address, error="Choose approve, reject or discard.")
        try:
            text = await owner.decide(
                user,
                address,
                str(form.get("token", "")),
                action,
                str(form.get("reason", ""))[:500],
            )
        except ListRefused as e:
            return _back(address, error=str(e))
        return _back(address, notice=text)

    return [
        Route("/lists", index, methods=["GET"]),
        Route("/lists/manage", manage, methods=["GET"]),
        Route("/lists/manage/members", members, methods=["POST"]),
        Route("/lists/manage/settings", settings, methods=["POST"]),
        Route("/lists/manage/held", held, methods=["POST"]),
    ]
