"""NOTIFY (RFC 5465) command syntax: NOTIFY NONE / NOTIFY SET [STATUS] event-group ...

Sans-IO like the rest of proto/imap: the arguments become a typed `Notify` request or an ArgError
(BAD, or NO [BADEVENT (...)] for an event the server does not offer, RFC 5465 3.1). Which events
match which mailbox, and when they are sent, is the session's business (servers/imap/notify.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from carteiro.proto.imap.args import ArgError, ArgReader
from carteiro.proto.imap.fetch import FetchAttr, parse_fetch_atts

MESSAGE_NEW: Final = "MessageNew"
MESSAGE_EXPUNGE: Final = "MessageExpunge"
FLAG_CHANGE: Final = "FlagChange"
ANNOTATION_CHANGE: Final = "AnnotationChange"
MAILBOX_NAME: Final = "MailboxName"
SUBSCRIPTION_CHANGE: Final = "SubscriptionChange"
MAILBOX_METADATA_CHANGE: Final = "MailboxMetadataChange"
SERVER_METADATA_CHANGE: Final = "ServerMetadataChange"

MESSAGE_EVENTS: Final = frozenset({MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, ANNOTATION_CHANGE})
# What this server offers: AnnotationChange needs ANNOTATE (RFC 5257), which it does not have.
SUPPORTED: Final = (
    MESSAGE_NEW,
    MESSAGE_EXPUNGE,
    FLAG_CHANGE,
    MAILBOX_NAME,
    SUBSCRIPTION_CHANGE,
    MAILBOX_METADATA_CHANGE,
    SERVER_METADATA_CHANGE,
)
_KNOWN: Final = {e.upper(): e for e in (*SUPPORTED, ANNOTATION_CHANGE)}
BADEVENT: Final = "BADEVENT (" + " ".join(SUPPORTED) + ")"

SELECTED: Final = "SELECTED"
SELECTED_DELAYED: Final = "SELECTED-DELAYED"
INBOXES: Final = "INBOXES"
PERSONAL: Final = "PERSONAL"
SUBSCRIBED: Final = "SUBSCRIBED"
SUBTREE: Final = "SUBTREE"
MAILBOXES: Final = "MAILBOXES"
_SPECS: Final = frozenset({SELECTED, SELECTED_DELAYED, INBOXES, PERSONAL, SUBSCRIBED})

MAX_GROUPS: Final = 32
MAX_MAILBOXES: Final = 1000  # names in one SUBTREE/MAILBOXES list


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """One event name (canonical case); `fetch`: MessageNew's fetch attributes (RFC 5465 5.2)."""

    name: str
    fetch: tuple[FetchAttr, ...] = ()


@dataclass(frozen=True, slots=True)
class EventGroup:
    """filter-mailboxes and its events; `events` None is NONE (nothing from these mailboxes)."""

    spec: str
    mailboxes: tuple[str, ...]
    events: tuple[NotifyEvent, ...] | None

    @property
    def selected(self) -> bool:
        return self.spec in (SELECTED, SELECTED_DELAYED)

    def names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.events or ())


@dataclass(frozen=True, slots=True)
class Notify:
    """NOTIFY NONE (no groups) or NOTIFY SET [STATUS] groups."""

    groups: tuple[EventGroup, ...] = ()
    status: bool = False


def parse_notify(r: ArgReader) -> Notify:
    """RFC 5465 8: notify = "NOTIFY" SP (notify-set / notify-none)."""
    r.sp()
    word = r.keyword("SET or NONE")
    if word == "NONE":
        r.end()
        return Notify()
    if word != "SET":
        raise ArgError("Expected SET or NONE")
    r.sp()
    status = False
    if r.accept_word(b"STATUS"):
        status = True
        r.sp()
    groups = [_event_group(r)]
    while r.try_sp():
        groups.append(_event_group(r))
        if len(groups) > MAX_GROUPS:
            raise ArgError("Too many event groups")
    r.end()
    _check(groups)
    return Notify(tuple(groups), status)


def _event_group(r: ArgReader) -> EventGroup:
    """event-group = "(" filter-mailboxes SP events ")"."""
    r.expect(b"(", "'(' before an event group")
    spec = r.keyword("mailbox filter")
    names: list[str] = []
    if spec in (SUBTREE, MAILBOXES):
        r.sp()
        if r.accept(b"("):
            names.append(r.mailbox())
            while r.try_sp():
                names.append(r.mailbox())
                if len(names) > MAX_MAILBOXES:
                    raise ArgError("Too many mailboxes in one event group")
            r.expect(b")", "')' after the mailbox list")
        else:
            names.append(r.mailbox())
    elif spec not in _SPECS:
        raise ArgError(f"Unknown mailbox filter {spec[:40]}")
    r.sp()
    events: tuple[NotifyEvent, ...] | None
    if r.accept_word(b"NONE"):
        events = None
    else:
        r.expect(b"(", "'(' before the events")
        evs = [_event(r)]
        while r.try_sp():
            evs.append(_event(r))
        r.expect(b")", "')' after the events")
        events = tuple(evs)
    r.expect(b")", "')' after an event group")
    return EventGroup(spec, tuple(names), events)


def _event(r: ArgReader) -> NotifyEvent:
    raw = r.atom("event")
    name = _KNOWN.get(raw.upper())
    if name is None or name not in SUPPORTED:
        # RFC 5465 3.1: an event the server does not support is NO [BADEVENT (supported)]
        raise ArgError(f"Unsupported event {raw[:40]}", code=BADEVENT, status="NO")
    fetch: tuple[FetchAttr, ...] = ()
    if name == MESSAGE_NEW and r.peek_is(b" ("):
        r.sp()
        fetch, _ = parse_fetch_atts(r)
    return NotifyEvent(name, fetch)


def _check(groups: list[EventGroup]) -> None:
    """RFC 5465 5: the combinations a client must not ask for get BAD."""
    selected = 0
    for g in groups:
        names = g.names()
        if (MESSAGE_NEW in names) != (MESSAGE_EXPUNGE in names):
            raise ArgError("MessageNew and MessageExpunge must be given together")
        if FLAG_CHANGE in names and MESSAGE_NEW not in names:
            raise ArgError("FlagChange needs MessageNew and MessageExpunge")
        if len(names) != len(g.events or ()):
            raise ArgError("An event is given twice in one event group")
        if g.selected:
            selected += 1
            if names - MESSAGE_EVENTS:
                # RFC 5465 6: SELECTED/SELECTED-DELAYED take message events only
                raise ArgError(f"{g.spec} takes message events only")
        else:
            for e in g.events or ():
                if e.fetch:
                    raise ArgError("MessageNew fetch attributes are for the selected mailbox only")
    if selected > 1:
        raise ArgError("Only one SELECTED or SELECTED-DELAYED event group")
