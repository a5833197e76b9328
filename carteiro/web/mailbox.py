"""What the webmail asks of an IMAP server, as typed operations: folders with counts, pages of the
message list, search, whole messages, flags, move/copy/delete, append, folder management.

Everything goes through IMAPConnection (the wire protocol only), choosing the extension a server
offers (LIST-STATUS, SPECIAL-USE, SORT, MOVE, UIDPLUS) and a plain IMAP4rev1 fallback otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carteiro.mime.encoded_words import decode_words
from carteiro.proto.imap.client import Response
from carteiro.proto.imap.utf7 import decode as utf7_decode
from carteiro.web.imap import IMAPConnection, IMAPError

PAGE_SIZE = 50
SPECIAL = ("\\Inbox", "\\Drafts", "\\Sent", "\\Archive", "\\Junk", "\\Trash")
# Fallback when the server does not mark special-use folders (RFC 6154): the usual names.
SPECIAL_NAMES = {
    "drafts": "\\Drafts",
    "sent": "\\Sent",
    "sent items": "\\Sent",
    "sent messages": "\\Sent",
    "trash": "\\Trash",
    "deleted items": "\\Trash",
    "deleted messages": "\\Trash",
    "junk": "\\Junk",
    "spam": "\\Junk",
    "archive": "\\Archive",
}
LOCAL_NAMES = {
    "\\Inbox": "Inbox",
    "\\Drafts": "Drafts",
    "\\Sent": "Sent",
    "\\Trash": "Trash",
    "\\Junk": "Junk",
    "\\Archive": "Archive",
}


# Names shown for special-use folders, by the browser's preferred language (Accept-Language).
LOCALISED = {
    "pt": {"\\Inbox": "Caixa de entrada", "\\Drafts": "Rascunhos", "\\Sent": "Enviados",
           "\\Trash": "Lixo", "\\Junk": "Spam", "\\Archive": "Arquivo"},
    "es": {"\\Inbox": "Bandeja de entrada", "\\Drafts": "Borradores", "\\Sent": "Enviados",
           "\\Trash": "Papelera", "\\Junk": "Spam", "\\Archive": "Archivo"},
    "fr": {"\\Inbox": "Boîte de réception", "\\Drafts": "Brouillons", "\\Sent": "Envoyés",
           "\\Trash": "Corbeille", "\\Junk": "Indésirables", "\\Archive": "Archives"},
    "de": {"\\Inbox": "Posteingang", "\\Drafts": "Entwürfe", "\\Sent": "Gesendet",
           "\\Trash": "Papierkorb", "\\Junk": "Spam", "\\Archive": "Archiv"},
}  # fmt: skip


def language(accept: str) -> str:
    """The first language of an Accept-Language header that we have names for, else "en"."""
    for item in accept.split(",")[:20]:
        tag = item.split(";")[0].strip().lower()[:2]
        if tag in LOCALISED or tag == "en":
            return tag
    return "en"


@dataclass
class Folder:
    name: str
    delimiter: str
    flags: set[str] = field(default_factory=set)
    special: str = ""
    messages: int = 0
    unseen: int = 0
    lang: str = "en"

    @property
    def label(self) -> str:
        """What the user sees: localised special-use names, the last level of others."""
        if self.special in LOCAL_NAMES and self.depth == 0:
            return LOCALISED.get(self.lang, LOCAL_NAMES).get(
                self.special, LOCAL_NAMES[self.special]
            )
        return self.name.rsplit(self.delimiter, 1)[-1] if self.delimiter else self.name

    @property
    def depth(self) -> int:
        return self.name.count(self.delimiter) if self.delimiter else 0

    @property
    def selectable(self) -> bool:
        return "\\noselect" not in self.flags and "\\nonexistent" not in self.flags


@dataclass
class Summary:
    uid: int
    flags: set[str]
    size: int
    sender: str
    to: str
    subject: str
    date: str
    attachment: bool
    depth: int = 0  # in a conversation: 0 for its first message, 1 for the others

    @property
    def seen(self) -> bool:
        return "\\seen" in self.flags

    @property
    def flagged(self) -> bool:
        return "\\flagged" in self.flags


@dataclass
class Page:
    items: list[Summary]
    total: int
    page: int
    pages: int
    threaded: bool = False


def _s(v: object) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)


def _name(v: object) -> str:
    return utf7_decode(_s(v)) if isinstance(v, str | bytes) else ""


async def list_folders(conn: IMAPConnection) -> list[Folder]:
    caps = conn.capabilities
    ret = []
    if "SPECIAL-USE" in caps:
        ret.append("SPECIAL-USE")
    if "LIST-STATUS" in caps:
        ret.append("STATUS (MESSAGES UNSEEN)")
    args: list[str | bytes] = ['""', '"*"']
    if ret:
        args.append(f"RETURN ({' '.join(ret)})")
    untagged, _ = await conn.command("LIST", *args)
    folders: dict[str, Folder] = {}
    statuses: dict[str, tuple[int, int]] = {}
    for r in untagged:
        v = r.values()
        if len(v) >= 4 and v[0] == "LIST" and isinstance(v[1], list):
            name = _name(v[3])
            flags = {_s(f) for f in v[1]}
            f = Folder(name, _s(v[2]), {x.lower() for x in flags})
            for sp in SPECIAL:
                if sp.lower() in f.flags:
                    f.special = sp
            if name.upper() == "INBOX":
                f.special = "\\Inbox"
            folders[name] = f
        elif len(v) >= 3 and v[0] == "STATUS" and isinstance(v[2], list):
            statuses[_name(v[1])] = _status_counts(v[2])
    out = list(folders.values())
    taken = {f.special for f in out if f.special}
    for f in out:
        guess = SPECIAL_NAMES.get(f.name.lower())
        if not f.special and guess and guess not in taken:
            f.special = guess
            taken.add(guess)
    for f in out:
        if f.name in statuses:
            f.messages, f.unseen = statuses[f.name]
        elif "LIST-STATUS" not in caps and f.selectable:
            f.messages, f.unseen = await status(conn, f.name)
    return sort_folders(out)


def _status_counts(items: list[object]) -> tuple[int, int]:
    d = {_s(items[i]).upper(): _s(items[i + 1]) for i in range(0, len(items) - 1, 2)}
    return int(d.get("MESSAGES", "0") or 0), int(d.get("UNSEEN", "0") or 0)


async def status(conn: IMAPConnection, name: str) -> tuple[int, int]:
    untagged, _ = await conn.command("STATUS", conn.mailbox(name), "(MESSAGES UNSEEN)")
    for r in untagged:
        v = r.values()
        if len(v) >= 3 and v[0] == "STATUS" and isinstance(v[2], list):
            return _status_counts(v[2])
    return 0, 0


def sort_folders(folders: list[Folder]) -> list[Folder]:
    """Special-use folders first, in the usual order, then the others by name (children after
    their parent, which sorting by name gives)."""

    def key(f: Folder) -> tuple[int, str]:
        if f.special and f.depth == 0:
            return SPECIAL.index(f.special), ""
        return len(SPECIAL), f.name.lower()

    return sorted(folders, key=key)


async def select(conn: IMAPConnection, name: str, readonly: bool = False) -> int:
    """SELECT (or EXAMINE) `name` unless it is selected already (then NOOP, which brings news of
    new and expunged messages, RFC 9051 6.1.2). Returns the number of messages."""
    if conn.selected == name:
        await conn.command("NOOP")
        return conn.exists
    conn.selected = None
    conn.exists = 0
    await conn.command("EXAMINE" if readonly else "SELECT", conn.mailbox(name))
    conn.selected = name
    return conn.exists


def search_key(query: str) -> list[str | bytes]:
    """RFC 9051 6.4.4: one word, matched in From, To, Subject or the body (OR is binary)."""
    q: str | bytes = query.encode("utf-8")
    return ["OR", "OR", "OR", "FROM", q, "TO", q, "SUBJECT", q, "BODY", q]


async def uids(conn: IMAPConnection, query: str = "") -> list[int]:
    """Every UID of the selected folder matching `query`, newest first: the server's SORT
    (RFC 5256, by arrival) when it has it, else SEARCH's UIDs in descending order."""
    crit: list[str | bytes] = search_key(query) if query else ["ALL"]
    if "SORT" in conn.capabilities:
        untagged, _ = await conn.command("UID SORT", "(REVERSE ARRIVAL)", "UTF-8", *crit)
        key = "SORT"
    else:
        charset: list[str | bytes] = ["CHARSET", "UTF-8"] if query else []
        untagged, _ = await conn.command("UID SEARCH", *charset, *crit)
        key = "SEARCH"
    found: list[int] = []
    for r in untagged:
        v = r.values()
        if v and v[0] == key:
            found.extend(int(_s(x)) for x in v[1:] if _s(x).isdigit())
    if key == "SEARCH":
        found.sort(reverse=True)
    return found


async def page(conn: IMAPConnection, folder: str, number: int, query: str = "") -> Page:
    """One page of the list, newest first. Without a search and without SORT, the page is a
    range of sequence numbers: no need to learn every UID of a 10,000-message folder."""
    exists = await select(conn, folder)
    number = max(1, number)
    if query or "SORT" in conn.capabilities:
        all_uids = await uids(conn, query)
        total = len(all_uids)
        chosen = all_uids[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        items = await summaries(conn, chosen) if chosen else []
        order = {u: i for i, u in enumerate(chosen)}
        items.sort(key=lambda s: order.get(s.uid, 0))
    else:
        total = exists
        hi = exists - (number - 1) * PAGE_SIZE
        lo = max(1, hi - PAGE_SIZE + 1)
        items = []
        if hi >= 1:
            untagged, _ = await conn.command("FETCH", f"{lo}:{hi}", _items())
            items = [s for s in (_summary(r) for r in untagged) if s is not None]
            items.sort(key=lambda s: -s.uid)
    pages = max(1, -(-total // PAGE_SIZE))
    return Page(items, total, number, pages)


def can_thread(conn: IMAPConnection) -> bool:
    return "THREAD=REFERENCES" in conn.capabilities


def _flatten(node: object, out: list[int]) -> None:
    # RFC 5256 4: "(3 6 (4 23)(44 7 96))": each number is a message, nested lists are branches.
    if isinstance(node, list):
        for x in node:
            _flatten(x, out)
    elif isinstance(node, str) and node.isdigit():
        out.append(int(node))


async def threads(conn: IMAPConnection, folder: str, number: int, query: str = "") -> Page:
    """Conversations (RFC 5256 THREAD=REFERENCES), the most recently active first; a page holds
    PAGE_SIZE conversations, each listed oldest message first."""
    await select(conn, folder)
    number = max(1, number)
    crit: list[str | bytes] = search_key(query) if query else ["ALL"]
    untagged, _ = await conn.command("UID THREAD", "REFERENCES", "UTF-8", *crit)
    groups: list[list[int]] = []
    for r in untagged:
        v = r.values()
        if v and v[0] == "THREAD":
            for t in v[1:]:
                members: list[int] = []
                _flatten(t, members)
                if members:
                    groups.append(sorted(members))
    groups.sort(key=lambda g: -g[-1])
    chosen = groups[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    wanted = [u for g in chosen for u in g][: PAGE_SIZE * 20]
    by_uid = {s.uid: s for s in (await summaries(conn, wanted) if wanted else [])}
    items: list[Summary] = []
    for g in chosen:
        for i, u in enumerate(g):
            if u in by_uid:
                by_uid[u].depth = 0 if i == 0 else 1
                items.append(by_uid[u])
    pages = max(1, -(-len(groups) // PAGE_SIZE))
    return Page(items, len(groups), number, pages, threaded=True)


def _items() -> str:
    # ENVELOPE rather than BODY.PEEK[HEADER.FIELDS (...)]: servers keep it ready (carteiro in
    # its index, Dovecot in its cache), where header fields may mean reading every file.
    return "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)"


async def summaries(conn: IMAPConnection, uid_list: list[int]) -> list[Summary]:
    untagged, _ = await conn.command("UID FETCH", ",".join(map(str, uid_list)), _items())
    return [s for s in (_summary(r) for r in untagged) if s is not None]


def fetch_items(r: Response) -> dict[str, object] | None:
    v = r.values()
    if r.tag != "*" or len(v) < 3 or v[1] != "FETCH" or not isinstance(v[2], list):
        return None
    items = v[2]
    return {_s(items[i]).upper(): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _summary(r: Response) -> Summary | None:
    d = fetch_items(r)
    if d is None or "UID" not in d:
        return None
    env = d.get("ENVELOPE")
    # RFC 9051 7.5.2: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id
    e = env if isinstance(env, list) and len(env) >= 10 else [None] * 10
    flags = d.get("FLAGS")
    return Summary(
        uid=int(_s(d["UID"])),
        flags={_s(f).lower() for f in flags} if isinstance(flags, list) else set(),
        size=int(_s(d.get("RFC822.SIZE")) or 0),
        sender=_addresses(e[2]),
        to=_addresses(e[5]),
        subject=_text(e[1]),
        date=_text(e[0]),
        attachment=_has_attachment(d.get("BODYSTRUCTURE")),
    )


def _text(v: object) -> str:
    if isinstance(v, bytes | str):
        return decode_words(v if isinstance(v, bytes) else v.encode("utf-8"))
    return ""


def _addresses(v: object) -> str:
    """Display names (or addresses) of an ENVELOPE address list; groups are left out."""
    if not isinstance(v, list):
        return ""
    out = []
    for a in v:
        if not isinstance(a, list) or len(a) < 4 or a[3] is None:
            continue
        name = _text(a[0])
        out.append(name or f"{_s(a[2])}@{_s(a[3])}")
    return ", ".join(out)


def _has_attachment(bs: object) -> bool:
    """A part with Content-Disposition attachment, or a non-text leaf that is not inline (RFC
    9051 7.5.2 BODYSTRUCTURE: a leaf's first two fields are its type and subtype)."""
    if not isinstance(bs, list) or not bs:
        return False
    if isinstance(bs[0], list):  # multipart: parts first, then the subtype
        return any(_has_attachment(p) for p in bs if isinstance(p, list))
    for item in bs[7:]:
        if isinstance(item, list) and item and _s(item[0]).lower() == "attachment":
            return True
    kind = _s(bs[0]).lower()
    return kind in ("application", "audio", "video")


async def fetch_raw(conn: IMAPConnection, uid: int) -> bytes | None:
    untagged, _ = await conn.command("UID FETCH", str(uid), "(UID BODY.PEEK[])")
    for r in untagged:
        d = fetch_items(r)
        if d and _s(d.get("UID")) == str(uid):
            body = d.get("BODY[]")
            if isinstance(body, bytes):
                return body
    return None


async def store_flags(conn: IMAPConnection, uid_set: str, flags: str, add: bool) -> None:
    # RFC 9051 6.4.6: .SILENT, we reload the list ourselves.
    await conn.command("UID STORE", uid_set, f"{'+' if add else '-'}FLAGS.SILENT", f"({flags})")


async def copy(conn: IMAPConnection, uid_set: str, target: str) -> None:
    await conn.command("UID COPY", uid_set, conn.mailbox(target))


async def move(conn: IMAPConnection, uid_set: str, target: str) -> None:
    if "MOVE" in conn.capabilities:  # RFC 6851
        await conn.command("UID MOVE", uid_set, conn.mailbox(target))
        return
    await copy(conn, uid_set, target)
    await expunge(conn, uid_set)


async def expunge(conn: IMAPConnection, uid_set: str) -> None:
    await store_flags(conn, uid_set, "\\Deleted", True)
    if "UIDPLUS" in conn.capabilities:  # RFC 4315: only these, not others marked \Deleted
        await conn.command("UID EXPUNGE", uid_set)
    else:
        await conn.command("EXPUNGE")


async def append(conn: IMAPConnection, folder: str, flags: str, message: bytes) -> int | None:
    """APPEND; the new UID when the server says it (RFC 4315 APPENDUID)."""
    _, done = await conn.command("APPEND", conn.mailbox(folder), f"({flags})", message)
    code = done.code().split()
    if len(code) == 3 and code[0].upper() == "APPENDUID" and code[2].isdigit():
        return int(code[2])
    return None


async def special_folder(conn: IMAPConnection, special: str, create: bool = True) -> str:
    """The folder with this special use, created under its usual name when missing."""
    for f in await list_folders(conn):
        if f.special == special:
            return f.name
    name = LOCAL_NAMES[special]
    if create:
        try:
            if "CREATE-SPECIAL-USE" in conn.capabilities:  # RFC 6154 3
                await conn.command("CREATE", conn.mailbox(name), f"(USE ({special}))")
            else:
                await conn.command("CREATE", conn.mailbox(name))
        except IMAPError:
            pass  # created meanwhile (another tab): appending to it will tell
    return name
