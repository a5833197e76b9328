"""The POP3 machine, driven without I/O: states, every command, limits, and chunking independence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pop3_driver import PASSWORD, UIDVALIDITY, USER, Script, lines, plain, run

from carteiro.proto import pop3
from carteiro.proto.pop3 import MachineConfig, Pop3Machine, State

M1 = b"From: a@example.test\r\nSubject: one\r\n\r\nbody one\r\n.dotted\r\n"
M2 = b"From: b@example.test\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
M3 = b"Subject: three\r\n\r\nx\r\n"
LOGIN = (f"USER {USER}", f"PASS {PASSWORD}")


def script() -> Script:
    return Script(messages={10: M1, 11: M2, 14: M3})


def session(*cmds: str, s: Script | None = None, config: MachineConfig | None = None) -> list[str]:
    """Log in, run `cmds`; the server's lines after the login reply."""
    out, _, _ = run([lines(*LOGIN, *cmds)], s or script(), config)
    text = out.decode()
    assert text.startswith("+OK Send your password\r\n+OK Logged in; maildrop has 3 messages")
    return text.split("\r\n")[2:-1]


def test_greeting_has_no_apop_timestamp() -> None:
    out, _, _ = run([], greeting=True)
    assert out == b"+OK pop.example.test POP3 server ready\r\n"


def test_stat_list_uidl() -> None:
    size = len(M1) + len(M2) + len(M3)
    assert session("STAT", "LIST", "LIST 2", "UIDL", "UIDL 3") == [
        f"+OK 3 {size}",
        f"+OK 3 messages ({size} octets)",
        f"1 {len(M1)}",
        f"2 {len(M2)}",
        f"3 {len(M3)}",
        ".",
        f"+OK 2 {len(M2)}",
        "+OK Unique-ID listing follows",
        f"1 {UIDVALIDITY}.10",
        f"2 {UIDVALIDITY}.11",
        f"3 {UIDVALIDITY}.14",
        ".",
        f"+OK 3 {UIDVALIDITY}.14",
    ]


def test_retr_stuffs_and_top_counts_lines() -> None:
    assert session("RETR 1", "TOP 2 1", "TOP 2 0") == [
        f"+OK {len(M1)} octets",
        "From: a@example.test",
        "Subject: one",
        "",
        "body one",
        "..dotted",
        ".",
        "+OK Top of message follows",
        "From: b@example.test",
        "Subject: two",
        "",
        "line 1",
        ".",
        "+OK Top of message follows",
        "From: b@example.test",
        "Subject: two",
        "",
        ".",
    ]


def test_size_is_corrected_to_what_retr_sends() -> None:
    """RFC 1939 11: a message stored without a final CRLF (or with bare LFs) is sent with CRLF
    lines; RETR reports the octets it sends, and STAT/LIST agree from then on."""
    odd = b"Subject: odd\nX: y\r\n\r\nno final CRLF"  # one bare LF, no final CRLF
    sent = len(odd) + 1 + 2
    s = Script(messages={10: M1, 11: odd, 14: M3})
    assert session("LIST 2", "RETR 2", "LIST 2", "DELE 2", "STAT", "RSET", "STAT", s=s) == [
        f"+OK 2 {len(odd)}",
        f"+OK {sent} octets",
        "Subject: odd",
        "X: y",
        "",
        "no final CRLF",
        ".",
        f"+OK 2 {sent}",
        "+OK message 2 deleted",
        f"+OK 2 {len(M1) + len(M3)}",
        f"+OK maildrop has 3 messages ({len(M1) + sent + len(M3)} octets)",
        f"+OK 3 {len(M1) + sent + len(M3)}",
    ]


def test_no_such_message_errors() -> None:
    assert (
        session("RETR 4", "RETR 0", "LIST 99999999999999", "TOP 4 0", "DELE 9", "UIDL 4")
        == ["-ERR no such message, only 3 messages in maildrop"] * 6
    )


def test_dele_marks_rset_unmarks_quit_deletes() -> None:
    s = script()
    out = session(
        "DELE 1",
        "DELE 1",
        "STAT",
        "LIST",
        "LIST 1",
        "RETR 1",
        "UIDL 1",
        "RSET",
        "STAT",
        "DELE 2",
        "QUIT",
        s=s,
    )
    total = len(M1) + len(M2) + len(M3)
    assert out == [
        "+OK message 1 deleted",
        "-ERR message 1 already deleted",
        f"+OK 2 {total - len(M1)}",
        f"+OK 2 messages ({total - len(M1)} octets)",
        f"2 {len(M2)}",
        f"3 {len(M3)}",
        ".",
        "-ERR message 1 already deleted",
        "-ERR message 1 already deleted",
        "-ERR message 1 already deleted",
        f"+OK maildrop has 3 messages ({total} octets)",
        f"+OK 3 {total}",
        "+OK message 2 deleted",
        "+OK pop.example.test POP3 server signing off (2 messages left)",
    ]
    assert s.deleted == [11] and s.closed


def test_message_numbers_are_stable_after_dele() -> None:
    out = session("DELE 1", "LIST 3", "RETR 3")
    assert out[1] == f"+OK 3 {len(M3)}"
    assert out[2] == f"+OK {len(M3)} octets"


def test_quit_with_everything_deleted_says_maildrop_empty() -> None:
    s = script()
    out = session("DELE 1", "DELE 2", "DELE 3", "QUIT", s=s)
    assert out[-1] == "+OK pop.example.test POP3 server signing off (maildrop empty)"
    assert s.deleted == [10, 11, 14] and not s.messages


def test_failed_update_is_sys_temp() -> None:
    s = script()
    s.update_fails = True
    out = session("DELE 1", "QUIT", s=s)
    assert out[-1] == "-ERR [SYS/TEMP] Some deleted messages were not removed; try again later."


def test_no_quit_means_no_update() -> None:
    s = script()
    session("DELE 1", "DELE 2", s=s)
    assert s.updates == 0 and len(s.messages) == 3


def test_retr_marks_seen_top_does_not() -> None:
    s = script()
    session("RETR 1", "TOP 2 5", "RETR 3", "DELE 3", "QUIT", s=s)
    assert s.seen == [10]
    assert s.deleted == [14]


def test_message_expunged_by_another_session() -> None:
    s = script()
    s.gone.add(11)
    assert session("RETR 2", "TOP 2 0", "LIST 2", s=s) == [
        "-ERR Message 2 was removed by another session",
        "-ERR Message 2 was removed by another session",
        f"+OK 2 {len(M2)}",  # the number and size stay for the session (RFC 1939 5)
    ]


def test_noop_and_capa_after_login() -> None:
    out = session("NOOP", "CAPA")
    assert out[0] == "+OK"
    assert out[1] == "+OK Capability list follows"
    assert "USER" in out and "SASL PLAIN" in out and "STLS" not in out
    assert out[-1] == "."


def test_wrong_password_then_retry() -> None:
    out, _s, m = run(
        [
            lines(
                f"USER {USER}", "PASS wrong", f"PASS {PASSWORD}", f"USER {USER}", f"PASS {PASSWORD}"
            )
        ]
    )
    assert out.decode().split("\r\n")[:-1] == [
        "+OK Send your password",
        "-ERR [AUTH] Authentication failed.",
        "-ERR No user name given; send USER first",  # RFC 1939 7: USER again after a failure
        "+OK Send your password",
        "+OK Logged in; maildrop has 0 messages (0 octets)",
    ]
    assert m.state is State.TRANSACTION


def test_too_many_auth_failures_close() -> None:
    out, s, m = run([lines(*[f"USER {USER}", "PASS bad"] * 4)])
    text = out.decode().split("\r\n")[:-1]
    assert text[-1] == (
        "-ERR [AUTH] Authentication failed. Too many failures; closing the connection."
    )
    assert len(text) == 6 and s.closed and m.state is State.CLOSED


def test_in_use() -> None:
    s = Script(locked=True)
    out, _, m = run([lines(*LOGIN)], s)
    assert out.endswith(
        b"-ERR [IN-USE] Maildrop is locked by another POP3 session; try again later.\r\n"
    )
    assert m.state is State.AUTHORIZATION


def test_transaction_commands_need_login_and_vice_versa() -> None:
    out, _, _ = run([lines("STAT", "RETR 1", "NOOP")])
    assert out.decode().split("\r\n")[:-1] == [
        "-ERR STAT is not valid before login (AUTHORIZATION state)",
        "-ERR RETR is not valid before login (AUTHORIZATION state)",
        "-ERR NOOP is not valid before login (AUTHORIZATION state)",
    ]
    assert session("USER bob", "PASS x", "AUTH PLAIN", "STLS") == [
        "-ERR USER is not valid after login (TRANSACTION state)",
        "-ERR PASS is not valid after login (TRANSACTION state)",
        "-ERR AUTH is not valid after login (TRANSACTION state)",
        "-ERR STLS is not valid after login (TRANSACTION state)",
    ]


def test_quit_in_authorization_has_no_update() -> None:
    out, s, m = run([lines("QUIT", "NOOP")])
    assert out == b"+OK pop.example.test POP3 server signing off\r\n"
    assert s.updates == 0 and m.state is State.CLOSED


# ---- plaintext policy, STLS, CAPA (RFC 2595, RFC 2449) ------------------------------------------

PLAIN_CFG = MachineConfig(hostname="pop.example.test", tls_active=False, tls_available=True)


def capa(config: MachineConfig) -> list[str]:
    out, _, _ = run([lines("CAPA")], config=config)
    return out.decode().split("\r\n")[1:-2]


def test_capa_before_tls() -> None:
    assert capa(PLAIN_CFG) == [
        "CAPA",
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "STLS",
        "IMPLEMENTATION carteiro",
    ]


def test_capa_with_tls() -> None:
    assert capa(MachineConfig(tls_active=True, tls_available=False)) == [
        "CAPA",
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "USER",
        "SASL PLAIN",
        "IMPLEMENTATION carteiro",
    ]


def test_capa_plaintext_allowed() -> None:
    caps = capa(MachineConfig(tls_active=False, allow_plaintext_auth=True))
    assert "STLS" in caps and "USER" in caps and "SASL PLAIN" in caps


def test_plaintext_login_refused_before_stls() -> None:
    out, _, m = run(
        [lines(f"USER {USER}", f"PASS {PASSWORD}", f"AUTH PLAIN {plain()}")], config=PLAIN_CFG
    )
    refusal = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections."
    assert out.decode().split("\r\n")[:-1] == [refusal] * 3
    assert m.state is State.AUTHORIZATION


def test_stls_then_login_and_pipelined_plaintext_is_discarded() -> None:
    # Everything after STLS in the same packet was sent in the clear: it must not be executed.
    out, s, m = run([lines("STLS", f"USER {USER}", f"PASS {PASSWORD}")], config=PLAIN_CFG)
    assert out == b"+OK Begin TLS negotiation\r\n"
    assert s.tls_starts == 1 and m.tls_active and m.state is State.AUTHORIZATION
    m.receive_data(lines("CAPA", "STLS"))
    ev = m.next_event()
    assert isinstance(ev, pop3.Reply) and b"STLS" not in ev.data and b"USER" in ev.data
    ev = m.next_event()
    assert ev == pop3.Reply(b"-ERR Command not permitted when TLS active\r\n")


def test_stls_forgets_user() -> None:
    cfg = MachineConfig(tls_active=False, allow_plaintext_auth=True)
    out, _, _ = run([lines(f"USER {USER}", "STLS"), lines(f"PASS {PASSWORD}")], config=cfg)
    assert out.decode().split("\r\n")[-2] == "-ERR No user name given; send USER first"


def test_stls_not_available() -> None:
    cfg = MachineConfig(tls_active=False, tls_available=False)
    out, _, _ = run([lines("STLS")], config=cfg)
    assert out == b"-ERR STLS is not available on this server\r\n"


# ---- AUTH (RFC 5034) ---------------------------------------------------------------------------


def test_auth_plain_initial_response() -> None:
    out, _, m = run([lines(f"AUTH PLAIN {plain()}")])
    assert out.startswith(b"+OK Logged in") and m.state is State.TRANSACTION


def test_auth_plain_with_challenge() -> None:
    out, _, m = run([lines("AUTH PLAIN", plain())])
    assert out.startswith(b"+ \r\n+OK Logged in") and m.state is State.TRANSACTION


def test_auth_plain_bad_password() -> None:
    out, _, _m = run([lines(f"AUTH PLAIN {plain(password='nope')}")])
    assert out == b"-ERR [AUTH] Authentication failed.\r\n"


def test_auth_cancel_and_bad_base64() -> None:
    out, _, _m = run([lines("AUTH PLAIN", "*", "AUTH PLAIN", "!!!", "AUTH PLAIN @@", "NOOP")])
    assert out.decode().split("\r\n")[:-1] == [
        "+ ",
        "-ERR Authentication cancelled",
        "+ ",
        "-ERR Invalid base64 in the SASL response; authentication aborted",
        "-ERR Invalid base64 in the initial response",
        "-ERR NOOP is not valid before login (AUTHORIZATION state)",
    ]


def test_auth_lists_mechanisms_and_refuses_unknown() -> None:
    out, _, _ = run([lines("AUTH", "AUTH CRAM-MD5", "AUTH PLAIN =")])
    assert out.decode().split("\r\n")[:-1] == [
        "+OK Supported mechanisms follow",
        "PLAIN",
        ".",
        "-ERR Unsupported authentication mechanism",
        "-ERR Authentication failed: malformed SASL exchange.",
    ]


# ---- limits ----------------------------------------------------------------------------------


def test_too_many_bad_commands_close() -> None:
    cfg = MachineConfig(max_errors=3)
    out, s, m = run([lines("FOO", "BAR", "BAZ", "NOOP")], config=cfg)
    assert out.decode().split("\r\n")[:-1] == [
        "-ERR Unknown command: FOO",
        "-ERR Unknown command: BAR",
        "-ERR Too many bad commands; closing the connection.",
    ]
    assert s.closed and m.state is State.CLOSED


def test_long_line_is_refused_and_the_stream_resyncs() -> None:
    cfg = MachineConfig(max_line_length=64, tls_active=True)
    out, _, _ = run([b"NOOP " + b"x" * 100 + b"\r\n" + lines(*LOGIN, "NOOP")], config=cfg)
    assert out.decode().split("\r\n")[:-1] == [
        "-ERR Command line too long",
        "+OK Send your password",
        "+OK Logged in; maildrop has 0 messages (0 octets)",
        "+OK",
    ]


@pytest.mark.parametrize("split", [0, 1, 7, 100, 1001])
def test_endless_line_is_refused_and_closes(split: int) -> None:
    """-ERR for the over-long line, then -ERR Line too long and close once more than
    max_discard_line octets came without LF; in octets, so the same for any split."""
    cfg = MachineConfig(max_line_length=64, max_discard_line=1000, tls_active=True)
    wire = b"NOOP " + b"x" * 5000 + b"\r\nCAPA\r\n"
    chunks = [wire[i : i + split] for i in range(0, len(wire), split)] if split else [wire]
    out, s, m = run(chunks, config=cfg)
    assert out == b"-ERR Command line too long\r\n-ERR Line too long\r\n"
    assert s.closed and m.state is State.CLOSED


@pytest.mark.parametrize("length", [999, 1000, 1001])
def test_discard_bound_is_exact(length: int) -> None:
    cfg = MachineConfig(max_line_length=64, max_discard_line=1000, tls_active=True)
    wire = b"x" * length + b"\nNOOP\r\n"
    for n in (len(wire), 1, 333):
        out, _, m = run([wire[i : i + n] for i in range(0, len(wire), n)], config=cfg)
        if length <= 1000:
            assert out.startswith(b"-ERR Command line too long\r\n-ERR NOOP")
        else:
            assert out == b"-ERR Command line too long\r\n-ERR Line too long\r\n"
            assert m.state is State.CLOSED


def test_line_exactly_at_the_limit_is_accepted() -> None:
    cfg = MachineConfig(max_line_length=16)
    line = b"NOOP" + b" " * 10 + b"\r\n"  # 16 octets with CRLF
    out, _, _ = run([line], config=cfg)
    assert out == b"-ERR NOOP is not valid before login (AUTHORIZATION state)\r\n"
    out, _, _ = run([b"NOOP" + b" " * 11 + b"\r\n"], config=cfg)
    assert out == b"-ERR Command line too long\r\n"


def test_bare_lf_is_accepted() -> None:
    out, _, _ = run([b"CAPA\n"])
    assert out.startswith(b"+OK Capability list follows\r\n")


def test_request_must_be_answered_first() -> None:
    m = Pop3Machine(MachineConfig(tls_active=True))
    m.receive_data(lines(f"AUTH PLAIN {plain()}", "NOOP"))
    assert isinstance(m.next_event(), pop3.AuthStart)
    with pytest.raises(RuntimeError):
        m.next_event()


def test_trace_masks_secrets() -> None:
    m = Pop3Machine(MachineConfig(tls_active=True))
    m.receive_data(lines(f"PASS {PASSWORD}"))
    m.next_event()
    assert m.last_line == f"PASS {PASSWORD}".encode() and m.last_line_keep == 1


# ---- chunking independence (the sans-IO rule) --------------------------------------------------

COMMANDS = [
    "CAPA",
    f"USER {USER}",
    f"PASS {PASSWORD}",
    "PASS wrong",
    f"AUTH PLAIN {plain()}",
    "AUTH PLAIN",
    plain(),
    "*",
    "STAT",
    "LIST",
    "LIST 1",
    "LIST 9",
    "UIDL",
    "UIDL 2",
    "RETR 1",
    "RETR 2",
    "TOP 1 0",
    "TOP 2 2",
    "DELE 1",
    "DELE 3",
    "RSET",
    "NOOP",
    "FOO bar",
    "x" * 80,
    "",
    "QUIT",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(COMMANDS), max_size=25),
    st.lists(st.integers(1, 40), min_size=1, max_size=50),
)
def test_same_output_whole_or_in_pieces(cmds: list[str], cuts: list[int]) -> None:
    data = b"".join(c.encode() + (b"\n" if i % 3 == 0 else b"\r\n") for i, c in enumerate(cmds))
    cfg = MachineConfig(tls_active=True, max_line_length=64, max_errors=6)
    whole, s1, _ = run([data], script(), cfg)
    byte_by_byte, s2, _ = run([data[i : i + 1] for i in range(len(data))], script(), cfg)
    pieces, pos = [], 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        pieces.append(data[pos : pos + cut])
        pos += cut
        if pos >= len(data):
            break
    chunked, s3, _ = run(pieces, script(), cfg)
    assert whole == byte_by_byte == chunked
    assert s1.deleted == s2.deleted == s3.deleted


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from([b"a", b".", b"..", b"\r", b"\r\n", b"\r\r\n", b"\r\n\r\n", b"x: y"]),
            max_size=25,
        ),
        min_size=1,
        max_size=3,
    ),
    st.integers(0, 4),
)
def test_a_message_known_to_have_no_bare_lf_is_answered_the_same(
    pieces: list[list[bytes]], k: int
) -> None:
    """store.read_wire marks the bytes of an LF-form file (no bare LF by construction): the
    machine then skips its CRLF test, and every reply (RETR, TOP, the sizes LIST gives after a
    correction) is the same octets as with the test. Bare CRs, no final CRLF, no blank line,
    empty messages and dots at line starts included."""
    messages = {10 + i: b"".join(p) for i, p in enumerate(pieces)}
    cmds: list[str] = []
    for n in range(1, len(messages) + 1):
        cmds += [f"TOP {n} {k}", "LIST", f"RETR {n}", "LIST", "STAT"]
    checked, _, _ = run([lines(*LOGIN, *cmds)], Script(messages=dict(messages)))
    marked, _, _ = run([lines(*LOGIN, *cmds)], Script(messages=dict(messages), no_bare_lf=True))
    assert marked == checked
    assert checked.count(b"\r\n+OK") >= 5 * len(messages)  # every command answered +OK
