"""The SMTP session's handling of message data in memory, held to what it did before it stopped
copying: the header section looked at in the first piece of data where it is, the message joined
once from its pieces, the Authentication-Results pre-check without slicing the body."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.proto.smtp import commands as C
from carteiro.servers.smtp.message import HEAD_MAX, MessageWriter, header_end, header_names
from carteiro.servers.smtpd import Transaction, _names_results

_pieces = st.lists(
    st.sampled_from(
        [
            b"Subject: x\r\n", b"Message-ID: <a@b>\r\n", b"\r\n", b"body\r\n", b" folded\r\n",
            b"authentication-Results: x\r\n", b"X: y", b"\r\n\r\n", b"From: <a@b.test>\r\n",
        ]
    ),
    max_size=12,
)  # fmt: skip


def _splits(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points})
    out, prev = [], 0
    for p in [*cuts, len(data)]:
        if p > prev:
            out.append(data[prev:p])
            prev = p
    return out


def _old_header(data: list[bytes]) -> tuple[bool, bytes | None]:
    """What Transaction.note_body found before (has Message-ID, the header block)."""
    head = bytearray()
    for piece in data:
        head += piece
        end = header_end(head)
        if end >= 0 or len(head) > HEAD_MAX:
            if end >= 0:
                block = bytes(head[:end])
                return b"message-id" in header_names(block), block
            return False, None
    return False, None


@settings(max_examples=300, deadline=None)
@given(_pieces, st.lists(st.integers(min_value=0, max_value=400), max_size=5))
def test_note_body_finds_the_header_section_whatever_the_pieces(
    pieces: list[bytes], points: list[int]
) -> None:
    data = b"".join(pieces)
    chunks = _splits(data, points)
    txn = Transaction(C.Mail("a@b.test"), keep_head=True)
    for chunk in chunks:
        txn.note_body(chunk)
    has_id, block = _old_header(chunks)
    assert (txn.has_message_id, txn.header_block) == (has_id, block)


def test_note_body_gives_up_on_an_endless_header_section() -> None:
    txn = Transaction(C.Mail("a@b.test"), keep_head=True)
    txn.note_body(b"X: " + b"y" * HEAD_MAX + b"\r\n")
    assert txn.head is None and txn.header_block is None
    txn = Transaction(C.Mail("a@b.test"), keep_head=True)
    txn.note_body(b"Message-ID: <a@b>\r\n")
    txn.note_body(b"X: " + b"y" * HEAD_MAX + b"\r\n\r\nbody")  # the end beyond HEAD_MAX counts
    assert txn.has_message_id and txn.head is None


@settings(max_examples=300, deadline=None)
@given(_pieces, st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=300))
def test_results_pre_check_is_the_old_one(pieces: list[bytes], prefix: int, tail: int) -> None:
    source = b"R" * prefix + b"".join(pieces) + b"z" * tail
    head = source[prefix : prefix + HEAD_MAX]
    end = header_end(head)
    old = (head if end < 0 else head[:end]).lower().find(b"authentication-results") >= 0
    assert _names_results(source, prefix) == old


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=50), max_size=8),
    st.sampled_from([0, 1, 60, 120, 10_000]),
)
def test_message_writer_gives_the_prefix_and_the_data(
    tmp_path_factory: object, pieces: list[bytes], memory_max: int
) -> None:
    tmp = Path(tmp_path_factory.mktemp("w"))  # type: ignore[attr-defined]
    writer = MessageWriter(tmp, b"Received: x\r\n", None, memory_max)
    for piece in pieces:
        writer.write(piece)
    out = writer.finish()
    data = out if isinstance(out, bytes) else out.read_bytes()
    assert data == b"Received: x\r\n" + b"".join(pieces)
    assert writer.size == len(data)
    if memory_max == 0:
        assert isinstance(out, Path)  # always a file
    elif len(data) <= memory_max:
        assert isinstance(out, bytes)  # no file for a message that fits
    writer.discard()
