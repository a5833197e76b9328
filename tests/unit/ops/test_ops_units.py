"""Pure parts of issue 12: domain names, plurals, logging (JSON, levels, masking), metrics
(bounded labels, exposition), the reload's key diff, the metrics HTTP responder, progress bars."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest

from carteiro.config import ConfigError, LogConfig, loads
from carteiro.core.address import AddressError, check_domain
from carteiro.core.metrics import Metrics
from carteiro.core.plural import plural
from carteiro.net.metrics_http import MetricsHTTP
from carteiro.ops.logsetup import configure
from carteiro.ops.progress import progress_bar
from carteiro.ops.reload import changed_keys


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Example.TEST.", "example.test"),
        ("bücher.example", "bücher.example"),
        ("xn--bcher-kva.example", "bücher.example"),
        ("localhost", "localhost"),
    ],
)
def test_check_domain_accepts(text: str, want: str) -> None:
    assert check_domain(text) == want


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("bad domain", "space"),
        ("ex..ample", "empty label"),
        ("-", "'-'"),
        ("a-.test", "'-'"),
        ("x@y.test", "after @"),
        ("", "empty"),
        ("xn--zz.test", "IDNA"),
        ("a" * 64 + ".test", "IDNA"),
        (".".join(["abcdefgh"] * 30), "too long"),
    ],
)
def test_check_domain_refuses_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(AddressError, match=why):
        check_domain(text)


def test_config_refuses_bad_domains_and_log_keys() -> None:
    with pytest.raises(ConfigError, match="domains"):
        loads('hostname = "mail.a.test"\ndomains = ["ex..ample"]\n')
    with pytest.raises(ConfigError, match="hostname"):
        loads('hostname = "mail a"\n')
    with pytest.raises(ConfigError, match=r"log\.format"):
        loads('[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match=r"log\.levels\.smpt: unknown subsystem"):
        loads('[log]\nlevels = { smpt = "debug" }\n')
    with pytest.raises(ConfigError, match=r"server\.group"):
        loads('[server]\ngroup = "mail"\n')
    # every other place a domain enters carteiro.toml (issue 12 Found 3: "everywhere")
    for text, where in (
        ('[transport]\n"bad domain" = "lmtp:127.0.0.1:24"\n', r"transport\.bad domain"),
        ('[transport]\n".ex..ample" = "smtp:[192.0.2.1]"\n', r"transport\..ex\.\.ample"),
        ('[transport]\n"list@-" = "lmtp:127.0.0.1:24"\n', r"transport\.list@-"),
        ('[canonical]\n"@old.test" = "@new..test"\n', r"canonical\.@old\.test"),
        ('[canonical]\n"a@bad domain" = "b@b.test"\n', r"canonical\.a@bad domain"),
        ('[web]\npublic_hostname = "mail example"\n', r"web\.public_hostname"),
        ('[mailauth]\narc_trusted_sealers = ["ex..ample"]\n', r"arc_trusted_sealers\[0\]"),
    ):
        with pytest.raises(ConfigError, match=where):
            loads(text)
    ok = loads(
        '[transport]\n".Sub.Example" = "smtp:[192.0.2.1]"\n"l@b.test" = "lmtp:127.0.0.1:24"\n'
        '[canonical]\n"@old.test" = "@new.test"\n'
    )
    assert ".Sub.Example" in ok.transport
    cfg = loads('domains = ["xn--bcher-kva.example"]\n[log]\nlevels = { smtp = "debug" }\n')
    assert cfg.domains == ["bücher.example"] and cfg.log.levels == {"smtp": "debug"}


def test_plural() -> None:
    assert [plural(n, "message") for n in (0, 1, 2)] == ["0 messages", "1 message", "2 messages"]
    assert plural(6, "mailbox") == "6 mailboxes" and plural(2, "alias") == "2 aliases"
    assert plural(1, "mailbox") == "1 mailbox"


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("carteiro").level)
    yield None
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("carteiro").setLevel(saved[2])
    for name in ("carteiro.smtp", "carteiro.queue"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_json_logs_levels_per_subsystem_and_masking(restore_logging: object) -> None:
    out = io.StringIO()
    configure(LogConfig(format="json", level="warning", levels={"smtp": "debug"}), stream=out)
    logging.getLogger("carteiro.smtp").debug(
        "smtp T1: accepted", extra={"event": "smtp.accepted", "fields": {"queue_id": "Q1"}}
    )
    logging.getLogger("carteiro.queue").info("not shown: queue is at the global warning")
    logging.getLogger("carteiro.imap").warning("C: a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")
    logging.getLogger("carteiro.pop3").warning("retry with password=hunter2 now")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["logger"] for x in lines] == ["carteiro.smtp", "carteiro.imap", "carteiro.pop3"]
    assert lines[0]["event"] == "smtp.accepted" and lines[0]["queue_id"] == "Q1"
    assert lines[0]["level"] == "debug" and lines[0]["ts"].endswith("+00:00")
    assert "AGFsaWNl" not in out.getvalue() and "hunter2" not in out.getvalue()
    assert lines[1]["msg"] == "C: a1 AUTHENTICATE PLAIN <secret masked>"
    # a reload with other settings replaces the handler and drops the old subsystem level
    out2 = io.StringIO()
    configure(LogConfig(format="text", level="info"), stream=out2)
    logging.getLogger("carteiro.smtp").debug("hidden now")
    logging.getLogger("carteiro.queue").info("queue: shown")
    assert out.getvalue().count("\n") == 3
    assert (
        out2.getvalue().count("\n") == 1 and "INFO carteiro.queue: queue: shown" in out2.getvalue()
    )


def test_metrics_labels_stay_bounded_and_render() -> None:
    m = Metrics()
    for _ in range(3):
        m.command("smtp", "MAIL")
    m.reply("smtp", "250")
    text = m.render().decode()
    assert 'carteiro_commands_total{command="MAIL",protocol="smtp"} 3.0' in text
    assert 'carteiro_replies_total{code="250",protocol="smtp"} 1.0' in text
    assert "_created" not in text
    m.add_callback(lambda: [("gauge", "carteiro_queue_messages", "Queue", {}, 4.0)])
    assert "carteiro_queue_messages 4.0" in m.render().decode()


def test_reload_names_the_changed_keys() -> None:
    a = loads("")
    b = loads('[smtp]\nmax_recipients = 7\n[log]\nlevel = "debug"\n[tls]\ncert = "x.pem"\n')
    assert changed_keys(a, b) == ["tls.cert", "smtp.max_recipients", "log.level"]
    assert changed_keys(a, loads("")) == []


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


class _Writer:
    def __init__(self) -> None:
        self.out = b""

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None


class _Conn:
    def __init__(self, data: bytes) -> None:
        self.reader = _Reader(data)
        self.writer = _Writer()


async def _ask(request: bytes, ok: bool = True) -> bytes:
    async def health() -> dict[str, object]:
        return {"ok": ok}

    conn = _Conn(request)
    await MetricsHTTP(Metrics(), health).handle(conn)  # type: ignore[arg-type]
    return conn.writer.out


def test_metrics_http() -> None:
    out = asyncio.run(_ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"carteiro_connections_total" in out
    assert asyncio.run(_ask(b"GET /healthz HTTP/1.0\r\n\r\n", ok=False)).startswith(b"HTTP/1.1 503")
    assert b'"ok": true' in asyncio.run(_ask(b"GET /healthz HTTP/1.1\r\n\r\n"))
    assert asyncio.run(_ask(b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    assert asyncio.run(_ask(b"GET /x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
    assert asyncio.run(_ask(b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
    # a head that never ends is cut at 8 KiB
    assert asyncio.run(_ask(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000)).startswith(b"HTTP/1.1 431")
    assert asyncio.run(_ask(b"GET /metrics HTTP/1.1\r\n")) == b""  # the client went away


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    update = progress_bar("copying", stream=quiet)
    update(1, 2)
    update(2, 2)
    assert quiet.getvalue() == ""
    term = _Terminal()
    update = progress_bar("copying", stream=term, delay=0)
    for i in range(1, 101):
        update(i, 100)
    drawn = term.getvalue()
    assert "copying" in drawn and "/100 [" in drawn and "msg/s" in drawn
    assert drawn.endswith("\r")  # done: the bar is wiped, the summary line follows
    # the default delay: a run shorter than half a second draws nothing
    term = _Terminal()
    update = progress_bar("copying", stream=term)
    update(1, 2)
    update(2, 2)
    assert term.getvalue() == ""


def test_systemd_unit_is_valid_and_keeps_one_capability(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    unit = (Path(__file__).parents[3] / "contrib" / "carteiro.service").read_text()
    for key in (
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "PrivateTmp=true",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert key in unit.splitlines(), key
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze here")
    exe = Path(sys.executable).parent / "carteiro"
    local = tmp_path / "carteiro.service"
    local.write_text(unit.replace("/usr/local/bin/carteiro", str(exe)))
    r = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    problems = [line for line in r.stderr.splitlines() if "carteiro.service" in line]
    assert problems == [], r.stderr


def test_grafana_dashboard_names_only_metrics_that_exist() -> None:
    import re

    dash = json.loads(
        (Path(__file__).parents[3] / "contrib" / "grafana-dashboard.json").read_text()
    )
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"carteiro_[a-z_]+", e)}
    known = Metrics().render().decode()
    callbacks = {
        "carteiro_queue_messages",
        "carteiro_queue_recipients_pending",
        "carteiro_queue_held_messages",
        "carteiro_queue_oldest_age_seconds",
        "carteiro_store_commits_total",
        "carteiro_store_fsync_rounds_total",
        "carteiro_store_fsync_calls_total",
    }
    types = {line.split()[2] for line in known.splitlines() if line.startswith("# TYPE ")}
    missing = [
        n for n in used - callbacks if n not in types and n.removesuffix("_bucket") not in types
    ]
    assert missing == []


def test_an_unreadable_certificate_names_the_file_the_key_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Root reads any file, so the permission error is made here rather than with chmod.)"""
    from carteiro.net.tls import TLSFileError, check_server_files, make_self_signed

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key, "mail.example.test")
    check_server_files(cert, key)
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == key:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(TLSFileError, match=r"tls\.key: .*key\.pem is not readable by this user"):
        check_server_files(cert, key)
