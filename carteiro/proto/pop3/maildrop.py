"""One POP3 session's view of the maildrop: numbered messages, sizes, UIDLs and deletion marks.

RFC 1939 5: messages are numbered from 1 at login and keep their numbers for the whole session;
DELE only marks (RSET unmarks); the marked messages are removed in the UPDATE state. Pure data:
the session fills it from the store at login and hands the marked UIDs back at QUIT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    uid: int
    size: int  # octets as stored (CRLF), what STAT, LIST and RETR's "+OK n octets" report


def unique_id(uidvalidity: int, uid: int) -> str:
    """RFC 1939 7 UIDL: 1-70 characters in 0x21-0x7E, the same for the message in every session.

    Tied to the mailbox's UIDVALIDITY and the message's IMAP UID, so POP3 and IMAP agree, and a
    reset mailbox (new UIDVALIDITY) makes clients fetch everything again rather than skip mail.
    """
    return f"{uidvalidity}.{uid}"


class Maildrop:
    __slots__ = ("_deleted", "_deleted_octets", "_seen", "_total", "entries", "uidvalidity")

    def __init__(self, uidvalidity: int, entries: Iterable[tuple[int, int]]) -> None:
        """`entries`: (uid, size) in ascending UID order; message n is entries[n - 1]."""
        self.uidvalidity = uidvalidity
        self.entries: tuple[Entry, ...] = tuple(Entry(uid, size) for uid, size in entries)
        self._total = sum(e.size for e in self.entries)
        self._deleted: set[int] = set()  # message numbers
        self._deleted_octets = 0
        self._seen: set[int] = set()  # retrieved with RETR (\Seen is set at UPDATE, as Dovecot)

    def __len__(self) -> int:
        return len(self.entries)

    # RFC 1939 5 STAT/LIST/RSET: counts and sizes leave out messages marked as deleted.
    @property
    def count(self) -> int:
        return len(self.entries) - len(self._deleted)

    @property
    def octets(self) -> int:
        return self._total - self._deleted_octets

    def exists(self, n: int) -> bool:
        return 1 <= n <= len(self.entries)

    def is_deleted(self, n: int) -> bool:
        return n in self._deleted

    def entry(self, n: int) -> Entry:
        return self.entries[n - 1]

    def uidl(self, n: int) -> str:
        return unique_id(self.uidvalidity, self.entries[n - 1].uid)

    def resize(self, n: int, size: int) -> None:
        """RFC 1939 11: message n turned out to be `size` octets as sent (a message stored without
        a final CRLF gets one); STAT, LIST and RETR report that from now on."""
        old = self.entries[n - 1]
        if old.size == size:
            return
        self.entries = (*self.entries[: n - 1], Entry(old.uid, size), *self.entries[n:])
        self._total += size - old.size
        if n in self._deleted:
            self._deleted_octets += size - old.size

    def live(self) -> list[tuple[int, Entry]]:
        """(number, entry) of every message not marked as deleted."""
        return [(i, e) for i, e in enumerate(self.entries, 1) if i not in self._deleted]

    def delete(self, n: int) -> None:
        if n not in self._deleted:
            self._deleted.add(n)
            self._deleted_octets += self.entries[n - 1].size

    def reset(self) -> None:
        self._deleted.clear()
        self._deleted_octets = 0

    def retrieved(self, n: int) -> None:
        self._seen.add(n)

    def deleted_uids(self) -> tuple[int, ...]:
        return tuple(self.entries[n - 1].uid for n in sorted(self._deleted))

    def seen_uids(self) -> tuple[int, ...]:
        """Retrieved and not deleted: the messages whose \\Seen flag UPDATE sets."""
        return tuple(self.entries[n - 1].uid for n in sorted(self._seen - self._deleted))
