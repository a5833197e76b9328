"""The ESEARCH response (RFC 4731 3.1) for SEARCH and SORT (RFC 5267 3, ESORT): MIN, MAX, ALL,
COUNT, PARTIAL (RFC 5267 4.4) and MODSEQ (RFC 7162 3.1.5), from the result in its order.

Pure rendering: the handlers decide what the result is and which MODSEQ it carries.
"""

from __future__ import annotations

from collections.abc import Sequence

from carteiro.proto.imap.sets import render_numbers


def tag_correlator(tag: str, uid: bool) -> bytes:
    """``* ESEARCH (TAG "t")`` [``UID``]: a tag has no quoted-specials (RFC 9051 9), so it is
    quoted as it is."""
    return b'* ESEARCH (TAG "' + tag.encode() + (b'") UID' if uid else b'")')


def result(
    tag: str,
    uid: bool,
    opts: frozenset[str],
    partial: tuple[int, int] | None,
    numbers: Sequence[int],
    modseq: int | None = None,
) -> bytes:
    """The ESEARCH line for `numbers` (ascending for SEARCH, in sort order for SORT: there MIN
    and MAX are the first and last in that order, as Dovecot answers ESORT, and ALL keeps the
    order, ranges only for ascending runs, RFC 5267 3.2)."""
    parts = [tag_correlator(tag, uid)]
    if numbers and "MIN" in opts:
        parts.append(b"MIN %d" % numbers[0])
    if numbers and "MAX" in opts:
        parts.append(b"MAX %d" % numbers[-1])
    if numbers and "ALL" in opts:
        parts.append(b"ALL " + render_numbers(numbers, sort=False).encode())
    if partial is not None:
        # RFC 5267 4.4: the positions low..high of the result; NIL when none is there
        lo, hi = partial
        window = numbers[lo - 1 : hi]
        shown = render_numbers(window, sort=False).encode() if window else b"NIL"
        parts.append(b"PARTIAL (%d:%d %s)" % (lo, hi, shown))
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)
    return b" ".join(parts) + b"\r\n"


def shown_positions(
    opts: frozenset[str], partial: tuple[int, int] | None, n: int
) -> range | list[int]:
    """Positions (0-based) in a result of `n` whose messages the answer returns: what its
    MODSEQ is the highest of (RFC 7162 3.1.5, RFC 4731 3.2: with only MIN/MAX, of those)."""
    if opts & {"ALL", "COUNT"} or n == 0:
        return range(n)
    out: list[int] = []
    if "MIN" in opts:
        out.append(0)
    if "MAX" in opts:
        out.append(n - 1)
    if partial is not None:
        out.extend(range(partial[0] - 1, min(partial[1], n)))
    return out
