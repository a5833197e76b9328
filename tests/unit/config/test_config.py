from pathlib import Path

import pytest

from carteiro.config import ConfigError, default_text, load, loads
from carteiro.core.hostport import parse_hostport


def test_default_text_round_trips() -> None:
    cfg = loads(default_text("mail.example.test", ["Example.TEST"]))
    assert cfg.hostname == "mail.example.test"
    assert cfg.domains == ["example.test"]
    assert cfg.listen.smtp == "127.0.0.1:2525"
    assert cfg.listen.web == "127.0.0.1:8025"
    assert cfg.tls.cert == "tls/cert.pem"
    assert cfg.smtp.relay_networks == []
    assert cfg.mailauth.require_helo == "none"  # HELO checks recorded, nothing refused


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('hostnme = "x"', "hostnme: unknown key"),
        ("hostname = 3", "hostname: expected a string"),
        ('[listen]\nsmtp = "127.0.0.1"', "listen.smtp"),
        ('[listen]\nsmtp = "127.0.0.1:99999"', "listen.smtp"),
        ('[listen]\nimapp = ":1"', "listen.imapp: unknown key"),
        ("[smtp]\nmax_recipients = 0", "smtp.max_recipients"),
        ('[smtp]\nmax_recipients = "10"', "smtp.max_recipients: expected an integer"),
        ("[smtp]\nmax_recipients = true", "smtp.max_recipients: expected an integer"),
        ('[smtp]\nrelay_networks = ["10.0.0.0/33"]', "smtp.relay_networks[0]"),
        ('[mailauth]\nrequire_helo = "strict"', "mailauth.require_helo"),
        ('[smtp]\nrelay_networks = "10.0.0.0/8"', "expected a list"),
        ("[pop3]\nidle_timeout = 30", "pop3.idle_timeout"),
        ('[relay]\nsmarthost = "host:port"', "relay.smarthost"),
        ('[transport]\n"b.test" = "h:x"', "transport.b.test"),
        ('domains = ["a@b"]', "domains[0]"),
        ("listen = 3", "listen: expected a table"),
        ('[log]\ntrace = ["ftp"]', "log.trace[0]"),
    ],
)
def test_bad_values_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        loads(text)
    assert needle in str(e.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "carteiro.toml").write_text("[smtp]\nmax_errors = -1\n")
    with pytest.raises(ConfigError) as e:
        load(tmp_path)
    assert str(tmp_path / "carteiro.toml") in str(e.value)
    assert "smtp.max_errors" in str(e.value)


def test_missing_file_says_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"carteiro init"):
        load(tmp_path)


def test_toml_syntax_error_names_file(tmp_path: Path) -> None:
    (tmp_path / "carteiro.toml").write_text("hostname = \n")
    with pytest.raises(ConfigError, match=r"carteiro\.toml"):
        load(tmp_path)


def test_empty_listen_disables() -> None:
    cfg = loads('[listen]\npop3 = ""\n')
    assert cfg.listen.pop3 == ""


def test_transport_table() -> None:
    cfg = loads('[transport]\n"b.test" = "127.0.0.3:2525"\n')
    assert cfg.transport == {"b.test": "127.0.0.3:2525"}


def test_path_relative_to_data_dir(tmp_path: Path) -> None:
    cfg = loads("", data_dir=tmp_path)
    assert cfg.path("tls/cert.pem") == tmp_path / "tls/cert.pem"
    assert cfg.path("/etc/x.pem") == Path("/etc/x.pem")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:25", ("127.0.0.1", 25)), ("[::1]:993", ("::1", 993)), (":2525", ("", 2525))],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


def test_parse_hostport_default() -> None:
    assert parse_hostport("mx.example", 25) == ("mx.example", 25)
    with pytest.raises(ValueError):
        parse_hostport("mx.example")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[smtp]\nbare_newline = "keep"', "smtp.bare_newline"),
        ("[smtp]\nmemory_buffer_max = -1", "smtp.memory_buffer_max"),
        ('[dns]\ninet_protocols = "ipv5"', "dns.inet_protocols"),
        ("[pop3]\nmax_errors = 0", "pop3.max_errors"),
        ("[imap]\nlogin_timeout = 0", "imap.login_timeout"),
        ('[mta_sts]\nmode = "strict"', "mta_sts.mode"),
        ("[mta_sts]\nmax_age = 0", "mta_sts.max_age"),
        ("[mta_sts]\nmax_age = 31557601", "mta_sts.max_age"),
        ('[mta_sts]\nmx = ["mx.a.test", "bad host"]', r"mta_sts.mx\[1\]"),
        ("[queue]\nmta_sts_port = 0", "queue.mta_sts_port"),
    ],
)
def test_later_keys_validated(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        loads(text)


def test_mta_sts_defaults() -> None:
    cfg = loads("")
    assert cfg.queue.mta_sts is True and cfg.queue.mta_sts_port == 443
    assert cfg.mta_sts.mode == "" and cfg.mta_sts.mx == []
    cfg = loads('[mta_sts]\nmode = "testing"\nmx = ["mx1.a.test", "*.a.test"]')
    assert cfg.mta_sts.mx == ["mx1.a.test", "*.a.test"]
