"""The chain of rules a post meets first (Mailman 3's posting chain): each rule may decide,
the first decision wins, and a post no rule stops is accepted. Pure: what the rules need (the
list, the poster's membership) is looked up before."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from carteiro.lists.message import RawMessage
from carteiro.lists.model import MailingList, Member

Action = Literal["accept", "hold", "reject", "discard"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule: str
    reason: str


@dataclass
class Post:
    ml: MailingList
    mail_from: str
    msg: RawMessage
    size: int
    senders: tuple[str, ...]  # From: and the envelope sender, lowercased
    member: Member | None  # the first sender that is a member
    approved: bool = False  # a moderator let it through


Rule = Callable[[Post], Decision | None]

_COMMAND = re.compile(r"\A\s*(un)?subscribe\s*\Z", re.IGNORECASE)


def loop(post: Post) -> Decision | None:
    """Our own List-Id, or X-Loop / X-BeenThere naming us: this post went round (RFC 2919)."""
    if is_loop(post.msg, post.ml):
        return Decision("discard", "loop", "the post carries this list's own List-Id or X-Loop")
    return None


def is_loop(msg: RawMessage, ml: MailingList) -> bool:
    list_id = msg.get("List-Id") or ""
    if f"<{ml.list_id}>" in list_id.lower():
        return True
    marks = [v.lower().strip("<> ") for v in msg.get_all("X-Loop") + msg.get_all("X-BeenThere")]
    return ml.address in marks


def automatic(post: Post) -> Decision | None:
    """RFC 3834: an auto-reply (a vacation notice answering a post whose From is the list) or a
    bounce sent to the posting address is no post for the members."""
    auto = (post.msg.get("Auto-Submitted") or "no").strip().lower()
    if auto != "no" and not auto.startswith("no;"):
        return Decision("discard", "automatic", f"Auto-Submitted: {auto}")
    if not post.mail_from:
        return Decision(
            "discard", "automatic", "a bounce (null reverse-path) to the posting address"
        )
    return None


def administrivia(post: Post) -> Decision | None:
    """A "subscribe" sent to the posting address belongs to -request: held, not sent to all."""
    subject = post.msg.get("Subject") or ""
    first = post.msg.body[:200].decode("utf-8", "replace").strip().split("\n", 1)[0]
    if _COMMAND.match(subject) or (_COMMAND.match(first) and len(post.msg.body) < 500):
        return Decision("hold", "administrivia", "looks like a command for the -request address")
    return None


def max_size(post: Post) -> Decision | None:
    limit = post.ml.settings.max_size
    if limit and post.size > limit:
        return Decision("hold", "max-size", f"the post is {post.size} octets (limit {limit})")
    return None


def implicit_destination(post: Post) -> Decision | None:
    s = post.ml.settings
    if not s.explicit_destination or any(post.ml.is_moderator(a) for a in post.senders):
        return None
    named = {a for field in ("To", "Cc") for _, a in post.msg.addresses(field)}
    if post.ml.address in named or named & set(s.aliases):
        return None
    return Decision("hold", "implicit-destination", "the list is not named in To or Cc")


def posting_policy(post: Post) -> Decision | None:
    ml, s = post.ml, post.ml.settings
    if any(ml.is_moderator(a) for a in post.senders):
        return Decision("accept", "moderator", "from an owner or moderator")
    if s.posting == "announce":
        if any(a in s.posters for a in post.senders):
            return Decision("accept", "poster", "from a named poster")
        return Decision("reject", "announce", "only the list's named posters may post here")
    if s.posting == "moderated":
        return Decision("hold", "moderated", "every post to this list is moderated")
    if s.posting == "members" and post.member is None:
        return Decision("hold", "nonmember", "the poster is not a member")
    return None


CHAIN: tuple[Rule, ...] = (
    loop,
    automatic,
    administrivia,
    implicit_destination,
    max_size,
    posting_policy,
)


def run(post: Post, chain: tuple[Rule, ...] = CHAIN) -> Decision:
    for rule in chain:
        if post.approved and rule is not loop:
            break  # a moderator's approval passes every rule but the loop check
        d = rule(post)
        if d is not None:
            return d
    return Decision("accept", "", "")
