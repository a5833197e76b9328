"""Which list address a recipient is, as Mailman names them: LIST@ (posts), LIST-request@
(commands), LIST-join@ / -subscribe@, LIST-leave@ / -unsubscribe@, LIST-owner@, LIST-bounces@
(and its VERP form LIST-bounces+member=domain@), LIST-confirm+TOKEN@. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ROLES = {
    "request": "request",
    "join": "join",
    "subscribe": "join",
    "leave": "leave",
    "unsubscribe": "leave",
    "owner": "owner",
    "bounces": "bounces",
    "confirm": "confirm",
}
WITH_DETAIL = ("bounces", "confirm")  # the +detail carries a member (VERP) or a token


@dataclass(frozen=True, slots=True)
class ListAddress:
    list: str  # the posting address
    role: str  # "post" or a value of ROLES
    detail: str = ""


def parse(address: str, is_list: Callable[[str], bool]) -> ListAddress | None:
    """The list address `address` is, or None. `is_list` tells a list's posting address."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    local, domain = local.lower(), domain.lower().rstrip(".")
    base, plus, detail = local.partition("+")
    if not plus and is_list(f"{base}@{domain}"):
        return ListAddress(f"{base}@{domain}", "post")
    name, dash, suffix = base.rpartition("-")
    role = ROLES.get(suffix) if dash else None
    if role is None or not name:
        return None
    if plus and (role not in WITH_DETAIL or not detail):
        return None
    posting = f"{name}@{domain}"
    if not is_list(posting):
        return None
    return ListAddress(posting, role, detail)
