"""The maildrop and the pickup: sendmail's command line and message handling, drops refused when
they are not what they claim (symlinks, hard links, garbage), and a drop queued exactly once even
when the server dies between the queue's commit and the drop's removal."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carteiro.cli_sendmail import (
    UsageError,
    extract_recipients,
    parse_args,
    read_message,
    remove_bcc,
    split_header,
)
from carteiro.queue.maildrop import (
    DropEnvelope,
    MaildropError,
    ensure_maildrop,
    list_drops,
    open_drop,
    write_drop,
)
from carteiro.queue.pickup import CORRUPT, Pickup, PickupConfig, header_names
from carteiro.queue.spool import FileSpool

# ---- the command line ----------------------------------------------------------------------


def test_flags_as_git_send_email_and_mailx_give_them() -> None:
    o = parse_args(["-i", "-f", "alice@example.test", "bob@b.test", "carol@c.test"])
    assert not o.dot_ends and o.sender == "alice@example.test"
    assert o.recipients == ["bob@b.test", "carol@c.test"]
    o = parse_args(["-oi", "-t", "-FAlice Example", "-odq", "-v", "--", "-odd@x.test"])
    assert (o.extract, o.fullname, o.defer, o.verbose) == (True, "Alice Example", True, True)
    assert o.recipients == ["-odd@x.test"]
    o = parse_args(["-ti", "-oem", "-N", "success,failure", "-R", "hdrs", "-V", "e1", "x"])
    assert o.extract and not o.dot_ends and o.notify == ["SUCCESS", "FAILURE"]
    assert (o.ret, o.envid) == ("HDRS", "e1")
    assert parse_args(["-bs"]).mode == "s" and parse_args(["-bp"]).mode == "p"
    assert parse_args(["-q"]).queue_run


@pytest.mark.parametrize("argv", [["-Z"], ["-bd"], ["-f"], ["-N", "sometimes"], ["-R", "all"]])
def test_bad_command_lines(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


# ---- the message ---------------------------------------------------------------------------


def test_a_lone_dot_ends_input_unless_i() -> None:
    raw = b"Subject: x\n\nline\n.\nafter\n"
    assert read_message(io.BytesIO(raw), dot_ends=True) == b"Subject: x\r\n\r\nline\r\n"
    assert read_message(io.BytesIO(raw), dot_ends=False).endswith(b"line\r\n.\r\nafter\r\n")
    assert read_message(io.BytesIO(b"From a@b Mon\nX: y\n\nz"), False) == b"X: y\r\n\r\nz\r\n"


def test_dash_t_takes_to_cc_bcc_and_bcc_is_removed() -> None:
    head, body = split_header(
        b"To: A <a@x.test>, b@x.test\r\nCc: c@x.test\r\nBcc: secret@x.test,\r\n"
        b" other@x.test\r\nSubject: s\r\n\r\nbody\r\n"
    )
    assert extract_recipients(head) == [
        "a@x.test",
        "b@x.test",
        "c@x.test",
        "secret@x.test",
        "other@x.test",
    ]
    cleaned = remove_bcc(head)
    assert b"secret" not in cleaned and b"other@" not in cleaned
    assert cleaned == b"To: A <a@x.test>, b@x.test\r\nCc: c@x.test\r\nSubject: s\r\n"
    assert body == b"\r\nbody\r\n"


def test_dash_t_resent_headers_win() -> None:
    head = b"To: old@x.test\r\nResent-To: new@x.test\r\nResent-Bcc: hid@x.test\r\n"
    assert extract_recipients(head) == ["new@x.test", "hid@x.test"]
    assert b"hid@" not in remove_bcc(head)


@given(st.binary(max_size=400))
def test_header_handling_never_crashes(data: bytes) -> None:
    msg = read_message(io.BytesIO(data), dot_ends=True)
    head, _ = split_header(msg)
    extract_recipients(head)
    assert len(remove_bcc(head)) <= len(head) + 2
    header_names(head)


# ---- drops and pickup ----------------------------------------------------------------------


def _drop(root: Path, rcpts: list[str], msg: bytes = b"Subject: s\r\n\r\nbody\r\n") -> Path:
    d = ensure_maildrop(root)
    name = write_drop(d, DropEnvelope(recipients=rcpts), msg)
    return d / name


def test_maildrop_mode_and_round_trip(tmp_path: Path) -> None:
    path = _drop(tmp_path, ["bob"])
    assert (path.parent.stat().st_mode & 0o7777) == 0o1733
    drop, f = open_drop(path, 1000)
    with f:
        assert f.read() == b"Subject: s\r\n\r\nbody\r\n"
    assert drop.envelope.recipients == ["bob"] and drop.uid == os.getuid()
    assert drop.size == len(b"Subject: s\r\n\r\nbody\r\n")
    with pytest.raises(MaildropError):
        open_drop(path, 5)  # over the size limit


def test_links_and_garbage_are_refused(tmp_path: Path) -> None:
    d = ensure_maildrop(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b'CARTEIRO-MAILDROP 1\n{"recipients": ["x@y.test"]}\nsecret\n')
    os.symlink(secret, d / "0001-sym")
    with pytest.raises(OSError):
        open_drop(d / "0001-sym", 1000)
    os.link(secret, d / "0002-hard")
    with pytest.raises(MaildropError, match="links"):
        open_drop(d / "0002-hard", 1000)
    (d / "0003-junk").write_bytes(b"hello")
    with pytest.raises(MaildropError):
        open_drop(d / "0003-junk", 1000)
    (d / "0004-env").write_bytes(b'CARTEIRO-MAILDROP 1\n{"recipients": []}\n')
    with pytest.raises(MaildropError):
        open_drop(d / "0004-env", 1000)


async def test_pickup_queues_each_drop_once_even_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    spool = FileSpool(root)
    await spool.open()
    try:
        pickup = Pickup(root, spool, PickupConfig("mail.example.test", "example.test", 10_000))
        first = _drop(root, ["bob", "Carol@Remote.Test"])
        keep = first.read_bytes()
        bad = root / "maildrop" / "0000-bad"
        bad.write_bytes(b"garbage")
        ((qid_name, qid),) = await pickup.scan()
        assert qid_name == first.name and not first.exists()
        assert (root / CORRUPT / "0000-bad").exists()
        msg = spool.messages[qid]
        assert [r.address for r in msg.recipients] == ["bob@example.test", "Carol@Remote.Test"]
        assert msg.mail_from.endswith("@example.test")
        content = await spool.content(msg)
        assert content.startswith(b"Received: by mail.example.test (carteiro, from userid")
        names = header_names(content.split(b"\r\n\r\n")[0])
        assert {b"date", b"message-id", b"from", b"subject"} <= names
        # the server died after the queue's commit, before the unlink: the drop is back
        first.write_bytes(keep)
        assert await pickup.scan() == [(first.name, qid)]
        assert len(spool.messages) == 1 and not first.exists()
        # -odq drops wait for a queue run
        deferred = ensure_maildrop(root) / write_drop(
            root / "maildrop", DropEnvelope(recipients=["bob"], defer=True), b"X: y\r\n\r\n"
        )
        assert await pickup.scan() == [] and deferred.exists()
        assert len(await pickup.scan(include_deferred=True)) == 1
        assert list(list_drops(root / "maildrop")) == []
    finally:
        await spool.close()


async def test_a_drop_that_cannot_be_queued_is_bounced_not_lost(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    spool = FileSpool(root)
    await spool.open()
    try:
        pickup = Pickup(root, spool, PickupConfig("mail.example.test", "example.test", 100))
        big = _drop(root, ["bob"], b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n")
        d = ensure_maildrop(root)
        nobody = d / write_drop(
            d,
            DropEnvelope(recipients=["bad address@@x"], sender="me@example.test"),
            b"S: x\r\n\r\n",
        )
        assert await pickup.scan() == []
        assert not big.exists() and (root / CORRUPT / big.name).exists()
        assert not nobody.exists()
        reports = sorted(spool.messages.values(), key=lambda m: m.recipients[0].address)
        assert [m.mail_from for m in reports] == ["", ""]
        to = sorted(m.recipients[0].address for m in reports)
        assert to[0] == "me@example.test" and to[1].endswith("@example.test")
        texts = [await spool.content(m) for m in reports]
        assert any(b"5.3.4" in t for t in texts) and any(b"5.1.3" in t for t in texts)
    finally:
        await spool.close()
