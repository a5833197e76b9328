"""Per-mailbox message listings (what SELECT reads) as compact columns, kept current by MODSEQ.

A listing is the mailbox's UIDs, flags, MODSEQs, INTERNALDATEs (and their zones) and sizes in
parallel arrays. A
process keeps recent listings in memory (ListingCache) and the index keeps one snapshot per large
mailbox as blobs (table `listings`), so a fresh process opens a 100,000-message mailbox by reading
one row and the rows changed since, instead of 100,000 rows. Never writes the index itself: the
store's writer stores the snapshots this module serialises.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from carteiro.store.api import MessageMeta, UidFlags
from carteiro.store.flags import FlagCodec

KEYWORDS_BIT = 0x80  # in a flag code: the message has keywords (in `keywords`, by UID)
SYSTEM_MASK = 0x1F  # flags.BITS
SNAPSHOT_MIN = 1_000  # messages: smaller mailboxes load from their rows fast enough
QUICK_MAX = 2_000
FLAG_HINTS_MAX = 10_000  # (mailbox, UID) flag hints a process keeps  # messages: a cached listing this small is refreshed on the caller's thread
UID_TYPE = "I" if array("I").itemsize == 4 else "L"  # RFC 3501: UIDs are 32-bit

SELECT_ROWS = (
    "SELECT uid, flags, keywords, modseq, internaldate, size, internaldate_tz FROM messages"
)
_LITTLE = sys.byteorder == "little"


class Listing:
    """One mailbox's messages in ascending UID order, as of HIGHESTMODSEQ `modseq`."""

    __slots__ = (
        "codes",
        "dates",
        "keywords",
        "metas",
        "modseq",
        "modseqs",
        "sizes",
        "uids",
        "uidvalidity",
        "zones",
    )

    def __init__(self, uidvalidity: int, modseq: int) -> None:
        self.uidvalidity = uidvalidity
        self.modseq = modseq
        self.uids = array(UID_TYPE)
        self.codes = bytearray()  # system-flag bitmask | KEYWORDS_BIT
        self.modseqs = array("Q")
        self.keywords: dict[int, str] = {}  # uid -> sorted, space-separated keywords
        self.dates = array("d")
        self.sizes = array("Q")
        self.zones = array("h")  # INTERNALDATE's zone, minutes east of UTC
        self.metas: list[MessageMeta] | None = None  # built on demand by list_messages

    def __len__(self) -> int:
        return len(self.uids)

    # ---- building ----

    @classmethod
    def from_rows(cls, uidvalidity: int, modseq: int, rows: list[Any]) -> Listing:
        """From (uid, flags, keywords, modseq, internaldate, size, zone) rows in UID order."""
        out = cls(uidvalidity, modseq)
        if not rows:
            return out
        uids, masks, kws, modseqs, dates, sizes, zones = zip(*rows, strict=True)
        out.uids = array(UID_TYPE, uids)
        out.codes = bytearray(masks)
        out.modseqs = array("Q", modseqs)
        out.dates = array("d", dates)
        out.sizes = array("Q", sizes)
        out.zones = array("h", zones)
        if kws.count("") != len(kws):
            codes = out.codes
            for i, kw in enumerate(kws):
                if kw:
                    codes[i] |= KEYWORDS_BIT
                    out.keywords[uids[i]] = kw
        return out

    # ---- snapshots (blobs in the index) ----

    def to_snapshot(self) -> tuple[Any, ...]:
        """Values for the `listings` columns after mailbox_id (little-endian arrays)."""
        return (
            self.uidvalidity,
            self.modseq,
            len(self.uids),
            _le_bytes(self.uids),
            bytes(self.codes),
            _le_bytes(self.modseqs),
            json.dumps(self.keywords, separators=(",", ":")) if self.keywords else "",
            _le_bytes(self.dates),
            _le_bytes(self.sizes),
            _le_bytes(self.zones) if any(self.zones) else None,
        )

    @classmethod
    def from_snapshot(cls, row: Sequence[Any]) -> Listing | None:
        uidvalidity, modseq, count, uids, codes, modseqs, keywords, dates, sizes, zones = row
        out = cls(uidvalidity, modseq)
        out.uids = _from_le(UID_TYPE, uids)
        out.codes = bytearray(codes)
        out.modseqs = _from_le("Q", modseqs)
        out.dates = _from_le("d", dates)
        out.sizes = _from_le("Q", sizes)
        # NULL: every zone 0 (a snapshot of UTC-only rows, or one taken before schema 4)
        out.zones = _from_le("h", zones) if zones is not None else array("h", bytes(2 * count))
        if keywords:
            out.keywords = {int(k): v for k, v in json.loads(keywords).items()}
        n = len(out.uids)
        if not (n == count == len(out.codes) == len(out.modseqs) == len(out.dates)) or not (
            n == len(out.sizes) == len(out.zones)
        ):
            return None  # not what we wrote: ignore it
        return out

    # ---- bringing it up to date ----

    def apply(self, changed: list[Any], gone: set[int], modseq: int, codec: FlagCodec) -> bool:
        """Apply rows whose MODSEQ grew (new or changed messages, in UID order) and expunged UIDs.

        False when the changes do not fit this listing (it must be reloaded).
        """
        uids = self.uids
        if gone:
            drop = sorted(
                (
                    i
                    for u in gone
                    if (i := bisect.bisect_left(uids, u)) < len(uids) and uids[i] == u
                ),
                reverse=True,
            )
            if drop:
                self._drop(drop)
                uids = self.uids  # _drop may have built new arrays (over 64 positions)
        last = uids[-1] if uids else 0
        metas = self.metas
        for uid, mask, kws, mseq, when, size, tz in changed:
            if uid > last:
                self.uids.append(uid)
                self.codes.append(mask | KEYWORDS_BIT if kws else mask)
                if kws:
                    self.keywords[uid] = kws
                self.modseqs.append(mseq)
                self.dates.append(when)
                self.sizes.append(size)
                self.zones.append(tz)
                if metas is not None:
                    metas.append(MessageMeta(uid, codec.decode(mask, kws), mseq, when, size, tz))
                last = uid
                continue
            i = bisect.bisect_left(uids, uid)
            if i == len(uids) or uids[i] != uid:
                return False  # a new message below the highest UID: not ours to guess
            self.codes[i] = mask | KEYWORDS_BIT if kws else mask
            if kws:
                self.keywords[uid] = kws
            else:
                self.keywords.pop(uid, None)
            self.modseqs[i] = mseq
            # a flag change leaves these as they were; a reindex may correct them (a file edited
            # or truncated by hand), and gives every row a new MODSEQ so that it is seen here
            self.dates[i] = when
            self.sizes[i] = size
            self.zones[i] = tz
            if metas is not None:
                metas[i] = MessageMeta(uid, codec.decode(mask, kws), mseq, when, size, tz)
        self.modseq = modseq
        return True

    def _drop(self, positions: list[int]) -> None:
        """Remove the messages at `positions` (descending)."""
        for uid in (self.uids[i] for i in positions):
            self.keywords.pop(uid, None)
        if len(positions) <= 64:
            for i in positions:
                del self.uids[i], self.codes[i], self.modseqs[i], self.dates[i], self.sizes[i]
                del self.zones[i]
                if self.metas is not None:
                    del self.metas[i]
            return
        dropped = set(positions)
        keep = [i for i in range(len(self.uids)) if i not in dropped]
        self.uids = array(UID_TYPE, [self.uids[i] for i in keep])
        self.codes = bytearray(self.codes[i] for i in keep)
        self.modseqs = array("Q", [self.modseqs[i] for i in keep])
        self.dates = array("d", [self.dates[i] for i in keep])
        self.sizes = array("Q", [self.sizes[i] for i in keep])
        self.zones = array("h", [self.zones[i] for i in keep])
        if self.metas is not None:
            self.metas = [self.metas[i] for i in keep]

    # ---- answers ----

    def flag_sets(self, codec: FlagCodec) -> list[frozenset[str]]:
        """One shared frozenset per distinct flag combination: a list of references."""
        table = [codec.decode(c & SYSTEM_MASK, "") for c in range(KEYWORDS_BIT)]
        if not self.keywords:
            return list(map(table.__getitem__, self.codes))
        decode, keywords, uids = codec.decode, self.keywords, self.uids
        return [
            table[c] if c < KEYWORDS_BIT else decode(c & SYSTEM_MASK, keywords[uids[i]])
            for i, c in enumerate(self.codes)
        ]

    def uid_flags(self, codec: FlagCodec) -> UidFlags:
        return UidFlags(array(UID_TYPE, self.uids), self.flag_sets(codec), array("Q", self.modseqs))

    def metas_list(self, codec: FlagCodec) -> list[MessageMeta]:
        """MessageMeta objects (built once, then kept in step by apply()); a new list."""
        metas = self.metas
        if metas is None:
            metas = self.metas = _build_metas(
                self.uids, self.flag_sets(codec), self.modseqs, self.dates, self.sizes, self.zones
            )
        return list(metas)


def _le_bytes(values: array[Any]) -> bytes:
    if _LITTLE:
        return values.tobytes()
    copy = array(values.typecode, values)
    copy.byteswap()
    return copy.tobytes()


def _from_le(typecode: str, data: bytes) -> array[Any]:
    out = array(typecode)
    out.frombytes(data)
    if not _LITTLE:
        out.byteswap()
    return out


def _build_metas(
    uids: array[int],
    flags: list[frozenset[str]],
    modseqs: array[int],
    dates: array[float],
    sizes: array[int],
    zones: Sequence[int],
) -> list[MessageMeta]:
    """MessageMeta objects, fast: the frozen dataclass __init__ costs ~5 object.__setattr__
    calls per object; setting the slots through their descriptors is the same without lookups."""
    new = object.__new__
    cls = MessageMeta
    slots = vars(cls)
    set_uid = slots["uid"].__set__
    set_flags = slots["flags"].__set__
    set_modseq = slots["modseq"].__set__
    set_date = slots["internaldate"].__set__
    set_size = slots["size"].__set__
    set_tz = slots["internaldate_tz"].__set__
    out: list[MessageMeta] = []
    append = out.append
    for uid, fl, modseq, when, size, tz in zip(
        uids, flags, modseqs, dates, sizes, zones, strict=True
    ):
        m = new(cls)
        set_uid(m, uid)
        set_flags(m, fl)
        set_modseq(m, modseq)
        set_date(m, when)
        set_size(m, size)
        set_tz(m, tz)
        append(m)
    return out


def metas_from_rows(rows: list[Any], codec: FlagCodec) -> list[MessageMeta]:
    """MessageMeta objects for (uid, flags, keywords, modseq, internaldate, size, zone) rows."""
    if not rows:
        return []
    uids, masks, kws, modseqs, dates, sizes, zones = zip(*rows, strict=True)
    decode = codec.decode
    return _build_metas(uids, list(map(decode, masks, kws)), modseqs, dates, sizes, zones)  # type: ignore[arg-type]


Publish = Callable[[int, tuple[Any, ...]], None]


class ListingCache:
    """Listings kept between SELECTs, refreshed incrementally by MODSEQ.

    Every change to a mailbox raises its HIGHESTMODSEQ (appends, flag changes, expunges, from any
    process), so a listing is current when HIGHESTMODSEQ is unchanged, and otherwise needs only
    the rows with a greater MODSEQ and the UIDs expunged since (the expunged table, by MODSEQ). A
    message count check after a refresh catches anything else and falls back to a full load.

    Without a listing in memory, the mailbox's snapshot in the index (if any) is the start; a full
    load of a large mailbox, or a long way from the snapshot to now, publishes a new snapshot
    through `publish` (the store's writer stores it).
    """

    def __init__(self, max_messages: int = 1_000_000) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, Listing] = {}  # insertion order = LRU order
        self._max = max_messages
        self._publishing: set[int] = set()
        self.hits = self.refreshes = self.loads = self.snapshots_read = 0
        # Flags this process last committed or read, by (mailbox, UID): fresher hints than a
        # cached listing, which only a SELECT brings up to date. Bounded: cleared when full.
        self._flag_hints: dict[tuple[int, int], frozenset[str]] = {}

    def get(
        self,
        conn: sqlite3.Connection,
        mailbox_id: int,
        uidvalidity: int,
        hms: int,
        codec: FlagCodec,
        publish: Publish | None = None,
        force_publish: bool = False,
    ) -> Listing:
        """The current listing (inside the caller's read transaction); the caller must not keep
        references to its arrays past the call (copy what it returns)."""
        with self._lock:
            entry = self._entries.pop(mailbox_id, None)
        try:
            entry = self._current(conn, mailbox_id, uidvalidity, hms, entry, codec, publish)
            if force_publish and len(entry) >= SNAPSHOT_MIN:
                self._publish(publish, mailbox_id, entry)
        except BaseException:
            entry = None
            raise
        finally:
            if entry is not None:
                self._keep(mailbox_id, entry)
        return entry

    def is_small(self, mailbox_id: int) -> bool:
        """Whether this mailbox's listing is cached and small: bringing it up to date then costs
        well under a millisecond (a full reload at worst a few), cheap enough for the event loop."""
        entry = self._entries.get(mailbox_id)
        return entry is not None and len(entry) <= QUICK_MAX

    def last_known_flags(
        self, mailbox_id: int, uids: Sequence[int], codec: FlagCodec
    ) -> list[frozenset[str]] | None:
        """The flags of `uids` as the cached listing last saw them (maybe stale: a hint, never
        the truth), or None when the listing is not cached or lacks one of them."""
        hints = self._flag_hints
        entry = self._entries.get(mailbox_id)
        out = []
        for uid in uids:
            hint = hints.get((mailbox_id, uid))
            if hint is not None:
                out.append(hint)
                continue
            if entry is None:
                return None
            i = bisect.bisect_left(entry.uids, uid)
            if i == len(entry.uids) or entry.uids[i] != uid:
                return None
            c = entry.codes[i]
            out.append(
                codec.decode(c & SYSTEM_MASK, entry.keywords[uid] if c >= KEYWORDS_BIT else "")
            )
        return out

    def note_flags(self, mailbox_id: int, flags: Iterable[tuple[int, frozenset[str]]]) -> None:
        """Remember flags just committed or read (hints for last_known_flags)."""
        hints = self._flag_hints
        if len(hints) > FLAG_HINTS_MAX:
            hints.clear()
        for uid, f in flags:
            hints[(mailbox_id, uid)] = f

    def _current(
        self,
        conn: sqlite3.Connection,
        mailbox_id: int,
        uidvalidity: int,
        hms: int,
        entry: Listing | None,
        codec: FlagCodec,
        publish: Publish | None,
    ) -> Listing:
        if entry is not None and (entry.uidvalidity != uidvalidity or entry.modseq > hms):
            entry = None
        if entry is not None and entry.modseq == hms:
            self.hits += 1
            return entry
        from_snapshot = False
        if entry is None:
            row = conn.execute(
                "SELECT uidvalidity, modseq, count, uids, codes, modseqs, keywords, dates, sizes,"
                " zones FROM listings WHERE mailbox_id = ?",
                (mailbox_id,),
            ).fetchone()
            if row is not None and row[0] == uidvalidity and row[1] <= hms:
                entry = Listing.from_snapshot(row)
                from_snapshot = entry is not None
                if entry is not None:
                    self.snapshots_read += 1
                    if entry.modseq == hms:
                        return entry
        if entry is not None:
            changed = conn.execute(
                SELECT_ROWS + " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, entry.modseq),
            ).fetchall()
            gone = {
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?",
                    (mailbox_id, entry.modseq),
                )
            }
            if entry.apply(changed, gone, hms, codec) and len(entry) == _count(conn, mailbox_id):
                self.refreshes += 1
                if from_snapshot and len(changed) + len(gone) > max(SNAPSHOT_MIN, len(entry) >> 4):
                    self._publish(publish, mailbox_id, entry)
                return entry
        self.loads += 1
        rows = conn.execute(SELECT_ROWS + " WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))
        entry = Listing.from_rows(uidvalidity, hms, rows.fetchall())
        if len(entry) >= SNAPSHOT_MIN:
            self._publish(publish, mailbox_id, entry)
        return entry

    def _publish(self, publish: Publish | None, mailbox_id: int, entry: Listing) -> None:
        if publish is None:
            return
        with self._lock:
            if mailbox_id in self._publishing:
                return
            self._publishing.add(mailbox_id)
        publish(mailbox_id, entry.to_snapshot())

    def published(self, mailbox_id: int) -> None:
        """The writer stored (or dropped) this mailbox's snapshot: another may be published."""
        with self._lock:
            self._publishing.discard(mailbox_id)

    def _keep(self, mailbox_id: int, entry: Listing) -> None:
        with self._lock:
            self._entries[mailbox_id] = entry
            total = sum(len(e) for e in self._entries.values())
            while total > self._max and len(self._entries) > 1:
                oldest = next(iter(self._entries))
                total -= len(self._entries.pop(oldest))


def _count(conn: sqlite3.Connection, mailbox_id: int) -> int:
    row = conn.execute("SELECT count(*) FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    return int(row.fetchone()[0])
