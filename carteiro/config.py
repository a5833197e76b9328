"""carteiro.toml -> typed, validated configuration objects.

Every key is declared as a dataclass field below; the loader refuses unknown keys, wrong types and
impossible values with a message naming the file and the key. Add a key by adding a field (with a
default) and, when needed, a check in `_validate`. Never read configuration from globals elsewhere.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteiro.core.address import AddressError, check_domain
from carteiro.core.durations import parse_duration
from carteiro.core.hostport import parse_hostport
from carteiro.core.nexthop import parse_nexthop

CONFIG_NAME = "carteiro.toml"
# [log] levels keys: the loggers carteiro.NAME (trace: the --trace transcripts)
LOG_SUBSYSTEMS = (
    "smtp",
    "imap",
    "pop3",
    "queue",
    "net",
    "store",
    "dkim",
    "deliver",
    "dns",
    "web",
    "lists",
    "sieve",
    "managesieve",
    "lmtp",
    "odmr",
    "fetch",
    "trace",
)


class ConfigError(Exception):
    """An unusable configuration; the message names the file and the key."""


@dataclass
class ListenConfig:
    """ "host:port" per service; "" disables the service."""

    smtp: str = "127.0.0.1:2525"
    submission: str = "127.0.0.1:2587"
    submissions: str = "127.0.0.1:2465"
    imap: str = "127.0.0.1:2143"
    imaps: str = "127.0.0.1:2993"
    pop3: str = "127.0.0.1:2110"
    pop3s: str = "127.0.0.1:2995"
    web: str = "127.0.0.1:8025"
    metrics: str = ""  # Prometheus /metrics and /healthz (HTTP); "" = off
    sieve: str = "127.0.0.1:4190"  # ManageSieve (RFC 5804)
    # RFC 2033 local delivery from another MTA: off unless asked for ("127.0.0.1:2024" or
    # "unix:/path"); carteiro is the MTA itself, and 2024 is taken on some hosts
    lmtp: str = ""
    odmr: str = "127.0.0.1:2366"  # RFC 2645 on-demand mail relay (ATRN); 366 in production


@dataclass
class TLSConfig:
    cert: str = "tls/cert.pem"
    key: str = "tls/key.pem"


@dataclass
class SMTPConfig:
    relay_networks: list[str] = field(default_factory=list)
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    # Errors per session: every 5xx, and every 4xx the client brought on itself (not 421, nor
    # the server's or a recipient's trouble: 4.3.x, our DNS failing for now, 4.2.2, nor 452
    # 4.5.3, which asks a sender to send the rest in another transaction; servers/smtpd.py
    # _UNCHARGED); at max_errors, 421 and close. A message accepted starts the count again
    # (Postfix's hard error limit counts errors "without delivering mail").
    max_errors: int = 10
    # NOOP, RSET, VRFY, EXPN, HELP, ETRN, HELO/EHLO past this many in a session each count as an
    # error (Postfix's smtpd_junk_command_limit): a client can no longer hold a session for ever
    # with commands that are never refused. 0: no limit.
    max_junk_commands: int = 100
    max_connections_per_ip: int = 20
    max_connections: int = 1000
    idle_timeout: float = 300.0  # RFC 5321 4.5.3.2.7: at least 5 minutes
    data_timeout: float = 600.0  # RFC 5321 4.5.3.2.6: 10 minutes between DATA blocks
    # The whole content of one message (DATA or all of its BDAT chunks) must arrive within this,
    # then 421 and close. 50 MiB in 600 s needs ~85 KB/s: raise it for big messages on slow links.
    data_deadline: float = 600.0
    max_line_length: int = 4096  # RFC 5321 4.5.3.1.4 allows 1000; tolerate sloppy clients
    vrfy_for_authenticated: bool = False
    expn_for_authenticated: bool = False
    plus_folder_delivery: bool = False  # alice+Folder@ delivers to Folder when it exists
    require_tls_for_auth: bool = True
    # Bare CR or LF in message data (the SMTP smuggling class): "reject" answers 550 5.5.2,
    # "normalise" turns them into CRLF. Only <CR><LF>.<CR><LF> ever ends DATA. See docs/smtp.md.
    bare_newline: str = "reject"
    mbox_dir: str = "mbox"  # spool files of accounts with delivery = mbox, relative to the data dir
    # Messages up to this size stay in memory until the store commits them (with their bytes, in
    # its write-ahead log: no temp file, one fsync); larger ones stream to DATA/tmp as they come.
    # Memory per session stays bounded by this. 0: every message goes through a temp file.
    memory_buffer_max: int = 256 * 1024
    mbox_lock_timeout: float = (
        30.0  # seconds to wait for another writer's lock, then 4xx / EX_TEMPFAIL
    )


@dataclass
class AuthConfig:
    """Login throttling shared by SMTP, IMAP and POP3, per client address and per account
    (the policy and why: carteiro/directory/throttle.py)."""

    failure_delay: float = 1.0
    max_failures: int = 10
    failure_window: float = 600.0
    block_time: float = 900.0
    max_in_flight_per_ip: int = 4  # password checks at once per address; more wait their turn
    max_in_flight_per_account: int = 2  # ... per account, from all addresses together
    account_free_failures: int = 5  # failures per account (in failure_window) before delays
    account_delay: float = 1.0  # the first delay, doubling per further failure
    account_max_delay: float = 15.0  # the delay's ceiling; never a lockout per account
    slot_wait: float = 20.0  # how long an attempt waits for a free check, then 454 / NO / -ERR
    cache_ttl: float = 300.0  # successful verifications remembered (keyed HMAC), seconds
    # CIDRs of proxies/webmails that may pass their client's address (IMAP ID x-originating-ip):
    # it is then throttled and logged instead of theirs, and they skip the per-IP connection cap
    trusted_networks: list[str] = field(default_factory=list)


@dataclass
class IMAPConfig:
    allow_plaintext_auth: bool = False
    max_line_length: int = 65536
    max_literal_size: int = 64 * 1024 * 1024
    idle_timeout: float = 1800.0  # RFC 3501 5.4: at least 30 minutes
    # connections per client address not logged in yet; logged-in sessions count per account
    # and address instead (below), so many users behind one NAT address are not refused
    max_connections_per_ip: int = 50
    max_userip_connections: int = 20  # logged-in sessions per (account, address); 0: no limit
    max_connections: int = 20000
    login_timeout: float = 120.0  # before authentication (RFC 3501 5.4 covers logged-in sessions)
    literal_plus: bool = True  # advertise LITERAL+ (RFC 7888); false: LITERAL- (4096-octet cap)
    message_cache_mb: int = 64  # parsed messages kept for repeated FETCHes, all sessions together
    # METADATA (RFC 5464): limits per value, per mailbox (or server), per account (entries and
    # octets); /shared/admin (RFC 5464 6.2.1, a URI) is "mailto:postmaster@<first domain>" if ""
    metadata_max_value: int = 64 * 1024
    metadata_max_entries_per_mailbox: int = 100
    metadata_max_entries: int = 1000
    metadata_max_size: int = 1024 * 1024
    metadata_admin: str = ""


@dataclass
class POP3Config:
    allow_plaintext_auth: bool = False
    idle_timeout: float = 600.0  # RFC 1939 3: at least 10 minutes
    max_connections_per_ip: int = 20
    max_connections: int = 1000
    max_line_length: int = 1024  # RFC 2449 4 needs 255; SASL responses may be longer (16 KiB)
    max_errors: int = 10  # bad commands before the connection is closed
    max_auth_failures: int = 3  # failed logins on one connection before it is closed


@dataclass
class DNSConfig:
    nameservers: list[str] = field(default_factory=list)
    timeout: float = 5.0
    inet_protocols: str = "any"  # outbound SMTP to "any" | "ipv4" | "ipv6" addresses


@dataclass
class QueueConfig:
    remote_port: int = 25
    retry_schedule: list[float] = field(
        default_factory=lambda: [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0]
    )
    max_age: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0
    max_concurrency: int = 50
    max_per_destination: int = 5
    connect_timeout: float = 30.0
    tls_verify: bool = False
    tls_cafile: str = ""  # extra CA file for tls_verify (relative to the data dir)
    # MTA-STS (RFC 8461): look up recipient domains' policies and hold their MX hosts to them
    mta_sts: bool = True
    mta_sts_port: int = 443  # where policies are fetched (tests: a private HTTPS server)
    # DANE (RFC 7672): authenticate MX hosts by their DNSSEC-validated TLSA records; needs a
    # validating resolver on this host ([dns] nameservers), whose AD bit is trusted
    dane: bool = False
    # SMTP TLS reports (RFC 8460) to recipient domains that ask for them (_smtp._tls TXT)
    tls_reports: bool = True
    tls_report_period: int = 86400  # seconds a report covers (a UTC day; shorter: tests only)


@dataclass
class RelayConfig:
    # Null client (docs/unix.md): nothing is local, every message goes to the smarthost
    null_client: bool = False
    smarthost: str = ""
    username: str = ""
    password: str = ""
    tls: str = "opportunistic"  # "opportunistic" | "starttls" | "implicit" | "none"


@dataclass
class DKIMConfig:
    enabled: bool = True
    selector: str = "carteiro"


@dataclass
class MailAuthConfig:
    """Checks on mail received on the `smtp` (MX) listener: iprev, SPF, DKIM, DMARC and ARC,
    recorded in Authentication-Results (reference: docs/mailauth.md)."""

    enabled: bool = True
    authserv_id: str = ""  # RFC 8601 2.5: the name in our Authentication-Results; "" = hostname
    # Clients here are ours (local tools, content filters): not checked, as OpenDMARC's IgnoreHosts
    ignore_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    dmarc_policy: bool = True  # act on p=reject (550 5.7.1) and p=quarantine (Junk)
    spf_fail: str = "dmarc"  # "dmarc": act through DMARC only; "reject": 550 5.7.23 at RCPT
    temperror: str = (
        "defer"  # a DNS failure that could change the verdict: "defer" (451) | "accept"
    )
    require_iprev: bool = False  # refuse clients without forward-confirmed reverse DNS (550 5.7.25)
    # HELO/EHLO name checks, always recorded (x-helo); refused from this level on:
    # "none" | "valid" (syntax, address literal) | "known" (+ has A/AAAA/MX) | "confirmed"
    require_helo: str = "none"
    verify_max_size: int = 20 * 1024 * 1024  # larger messages: DKIM/ARC not verified (policy)
    arc_trusted_sealers: list[str] = field(default_factory=list)  # forwarders whose ARC we trust
    arc_seal: bool = True  # seal checked mail we forward (aliases to remote addresses), RFC 8617
    # DMARC aggregate reports (RFC 7489 7.2) to the rua= of the domains whose mail we checked
    dmarc_reports: bool = True
    # the longest report period; periods are whole UTC days, or the whole hours ri= asks for
    dmarc_report_interval: float = 86400.0
    dmarc_report_from: str = ""  # "" = postmaster@ the first of our domains
    dmarc_report_org: str = ""  # org_name in the reports; "" = hostname
    # RFC 7489 7.3 failure reports to ruf= (headers only, 10 a domain an hour); needs dmarc_reports
    dmarc_failure_reports: bool = False
    dns_timeout: float = 20.0  # all lookups of one check together (RFC 7208 4.6.4: at least 20 s)


@dataclass
class LimitsConfig:
    """Abuse limits on SMTP (reference: docs/mailauth.md). 0 turns a limit off. The per-address
    limits spare [smtp] relay_networks and [mailauth] ignore_networks."""

    connections_per_minute_per_ip: int = 120  # new SMTP connections; over it: 421 and close
    messages_per_minute_per_ip: int = 300
    recipients_per_minute_per_ip: int = 1500
    messages_per_minute_per_user: int = 120
    recipients_per_minute_per_user: int = 1000
    # MX clients that talk before the greeting are refused (as postscreen's pregreet test);
    # the greeting waits this long for them. 0 disables.
    pregreet_wait: float = 1.0
    dnsbl_zones: list[str] = field(default_factory=list)  # e.g. ["zen.spamhaus.org"]
    greylist: bool = False  # defer a new (client /24, sender, recipient) once, postgrey-style
    greylist_delay: float = 300.0  # a retry sooner than this is deferred again


@dataclass
class WebConfig:
    """The webmail (docs/web.md): an IMAP and submission client of this server."""

    # "on": HTTPS with the certificate below (the lists' one-click links, RFC 8058, must be
    # https too); "off": plain HTTP, for a loopback listener behind a TLS proxy only.
    tls: str = "on"  # "on" | "off"
    cert: str = ""  # default: [tls] cert (the data dir's certificate)
    key: str = ""
    idle_timeout: float = 1800.0  # a session ends after this long without a request
    max_upload: int = 25 * 1024 * 1024  # attachments of one message together
    public_hostname: str = ""  # the name clients are told in autoconfiguration (default: hostname)
    min_password_length: int = 10  # Settings -> change password (NIST SP 800-63B: at least 8)
    # What uvicorn lacks (web/guard.py): deadlines for a request's header section and between
    # the reads of its body, and connection caps. With tls = "off" (behind a proxy, every client
    # has the proxy's address) there is no per-address cap.
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0  # a response whose client takes nothing for this long is dropped
    max_connections_per_ip: int = 50  # connections that have shown no session yet, per address
    # a connection whose request carries a valid session counts per account and address instead
    # (as IMAP's logged-in sessions do): an office's browsers behind one NAT address; 0: no limit
    max_userip_connections: int = 20
    max_connections: int = 1000


@dataclass
class SieveConfig:
    """Mail filtering (docs/sieve.md)."""

    enabled: bool = True  # run each account's active Sieve script at delivery
    max_scripts: int = 20  # per account (ManageSieve QUOTA/MAXSCRIPTS)
    max_script_size: int = 64 * 1024  # octets per script (QUOTA/MAXSIZE)
    max_cpu: int = 2_000_000  # cost units per message (about 1 s of CPU); then keep + a note
    max_redirects: int = 4  # redirect actions per message
    # ManageSieve ([listen] sieve): the same limits and throttling as IMAP
    allow_plaintext_auth: bool = False  # AUTHENTICATE only after STARTTLS
    login_timeout: float = 120.0
    idle_timeout: float = 1800.0
    max_connections_per_ip: int = 20  # connections not logged in, per address
    max_userip_connections: int = 10  # logged-in sessions per (account, address); 0: no limit
    max_connections: int = 1000
    max_line_length: int = 8192
    max_errors: int = 10  # bad commands before BYE
    max_auth_failures: int = 3  # failed logins on one connection before BYE


@dataclass
class ListsConfig:
    """Mailing lists (docs/lists.md); the lists themselves are made with `carteiro list`."""

    # The public https://... base of the web listener, for RFC 8058 one-click unsubscribe links.
    # "": https://HOSTNAME:PORT of [listen] web (no one-click links when web is disabled).
    web_url: str = ""
    batch: int = 1000  # members per queue message


@dataclass
class QuotaConfig:
    """Default mail quota of every account (RFC 9208); `carteiro user quota` sets one account's."""

    storage: int = 0  # octets over all the account's mailboxes; 0: no limit
    messages: int = 0  # messages; 0: no limit


@dataclass
class LogConfig:
    level: str = "info"
    trace: list[str] = field(default_factory=list)  # protocols to trace: "smtp", "imap", "pop3"
    format: str = "text"  # "text" (one line per event) or "json" (one object per line)
    # per subsystem (the logger carteiro.NAME): {smtp = "debug", queue = "warning"}
    levels: dict[str, str] = field(default_factory=dict)


@dataclass
class ServerConfig:
    """Who the server runs as once its ports are bound (started as root)."""

    user: str = ""  # switch to this user (and its group) after binding; "" = stay as started
    group: str = ""  # "" = the user's primary group


@dataclass
class FetchConfig:
    """One remote mailbox polled for a local account (fetchmail's role; docs/fetch.md)."""

    account: str = ""  # the local account that receives
    server: str = ""  # host:port (the protocol's port by default)
    protocol: str = "pop3"  # "pop3" | "imap"
    tls: str = "implicit"  # "implicit" | "starttls" | "none" (loopback only)
    user: str = ""
    password_file: str = ""  # relative to the data dir; its first line is the password
    folders: list[str] = field(default_factory=lambda: ["INBOX"])  # IMAP only
    keep: bool = True  # false: deleted on the server once delivered here
    interval: str = "5m"
    tls_verify: bool = True
    tls_cafile: str = ""  # extra CA file (relative to the data dir)


@dataclass
class MTASTSConfig:
    """The MTA-STS policy published for our domains (RFC 8461; docs/queue.md): the web listener
    serves it at /.well-known/mta-sts.txt and `carteiro dns-records` prints its records."""

    mode: str = ""  # "": none published; "testing", "enforce", or "none" (to withdraw one)
    mx: list[str] = field(default_factory=list)  # MX host patterns; empty: [hostname]
    max_age: int = 604800  # seconds senders keep the policy (a week)


@dataclass
class Config:
    hostname: str = "localhost"
    domains: list[str] = field(default_factory=list)
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    pop3: POP3Config = field(default_factory=POP3Config)
    dns: DNSConfig = field(default_factory=DNSConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    transport: dict[str, str] = field(default_factory=dict)
    # Outbound address rewriting (Postfix's canonical/generic maps): "user@host" or "@domain"
    canonical: dict[str, str] = field(default_factory=dict)
    dkim: DKIMConfig = field(default_factory=DKIMConfig)
    mailauth: MailAuthConfig = field(default_factory=MailAuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    sieve: SieveConfig = field(default_factory=SieveConfig)
    lists: ListsConfig = field(default_factory=ListsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    fetch: list[FetchConfig] = field(default_factory=list)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    mta_sts: MTASTSConfig = field(default_factory=MTASTSConfig)
    # Not from the file: where it was read from.
    data_dir: Path = field(default=Path("var"), metadata={"internal": True})

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the data dir."""
        p = Path(relative)
        return p if p.is_absolute() else self.data_dir / p


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return _build(tp, value, where)
    if origin in (list,):
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict,):
        _key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return {str(k): _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        for alt in typing.get_args(tp):
            if alt is type(None) and value is None:
                return None
            try:
                return _convert(value, alt, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: unexpected value {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{name}: unknown key (known here: {known})")
        kwargs[key] = _convert(value, hints[key], name)
    return cls(**kwargs)


def _check_domain_in(key: str, domain: str) -> None:
    """A domain name (IDNA included) at `key`, or ConfigError saying why it is not one."""
    try:
        check_domain(domain)
    except AddressError as e:
        raise ConfigError(f"{key}: {e}") from None


def _validate(cfg: Config) -> None:
    try:
        check_domain(cfg.hostname)
    except AddressError as e:
        raise ConfigError(f"hostname: {e}") from None
    for i, d in enumerate(cfg.domains):
        try:
            check_domain(d)
        except AddressError as e:
            raise ConfigError(f"domains[{i}]: {e}") from None
    for f in dataclasses.fields(ListenConfig):
        value = getattr(cfg.listen, f.name)
        if value and not (value.startswith("unix:/") and len(value) > 6):
            try:
                parse_hostport(value)
            except ValueError as e:
                raise ConfigError(f"listen.{f.name}: {e}") from None
    for i, net in enumerate(cfg.smtp.relay_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"smtp.relay_networks[{i}]: {net!r} is not a network") from None
    for i, net in enumerate(cfg.auth.trusted_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"auth.trusted_networks[{i}]: {net!r} is not a network") from None
    positive = {
        "smtp.max_message_size": cfg.smtp.max_message_size,
        "smtp.max_recipients": cfg.smtp.max_recipients,
        "smtp.max_errors": cfg.smtp.max_errors,
        "smtp.max_connections_per_ip": cfg.smtp.max_connections_per_ip,
        "smtp.idle_timeout": cfg.smtp.idle_timeout,
        "smtp.data_deadline": cfg.smtp.data_deadline,
        "smtp.max_line_length": cfg.smtp.max_line_length,
        "imap.max_line_length": cfg.imap.max_line_length,
        "imap.max_literal_size": cfg.imap.max_literal_size,
        "queue.max_concurrency": cfg.queue.max_concurrency,
        "queue.max_per_destination": cfg.queue.max_per_destination,
        "auth.max_failures": cfg.auth.max_failures,
        "auth.max_in_flight_per_ip": cfg.auth.max_in_flight_per_ip,
        "auth.max_in_flight_per_account": cfg.auth.max_in_flight_per_account,
        "smtp.mbox_lock_timeout": cfg.smtp.mbox_lock_timeout,
        "imap.login_timeout": cfg.imap.login_timeout,
        "pop3.max_connections": cfg.pop3.max_connections,
        "pop3.max_connections_per_ip": cfg.pop3.max_connections_per_ip,
        "pop3.max_line_length": cfg.pop3.max_line_length,
        "pop3.max_errors": cfg.pop3.max_errors,
        "pop3.max_auth_failures": cfg.pop3.max_auth_failures,
        "imap.max_connections": cfg.imap.max_connections,
        "imap.max_connections_per_ip": cfg.imap.max_connections_per_ip,
        "imap.metadata_max_value": cfg.imap.metadata_max_value,
        "imap.metadata_max_entries_per_mailbox": cfg.imap.metadata_max_entries_per_mailbox,
        "imap.metadata_max_entries": cfg.imap.metadata_max_entries,
        "imap.metadata_max_size": cfg.imap.metadata_max_size,
        "lists.batch": cfg.lists.batch,
        "web.header_timeout": cfg.web.header_timeout,
        "web.body_timeout": cfg.web.body_timeout,
        "web.send_timeout": cfg.web.send_timeout,
        "web.max_connections": cfg.web.max_connections,
        "web.max_connections_per_ip": cfg.web.max_connections_per_ip,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be greater than 0, got {value}")
    for key, value in (
        ("smtp.memory_buffer_max", cfg.smtp.memory_buffer_max),
        ("smtp.max_junk_commands", cfg.smtp.max_junk_commands),
        ("sieve.max_userip_connections", cfg.sieve.max_userip_connections),
        ("web.max_userip_connections", cfg.web.max_userip_connections),
        ("imap.message_cache_mb", cfg.imap.message_cache_mb),
        ("auth.account_free_failures", cfg.auth.account_free_failures),
        ("auth.account_delay", cfg.auth.account_delay),
        ("auth.account_max_delay", cfg.auth.account_max_delay),
        ("auth.slot_wait", cfg.auth.slot_wait),
        ("quota.storage", cfg.quota.storage),
        ("quota.messages", cfg.quota.messages),
    ):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
    if cfg.web.tls not in ("on", "off"):
        raise ConfigError(f"web.tls: {cfg.web.tls!r} is not one of on, off")
    if cfg.web.tls == "off" and cfg.listen.web:
        web_host = parse_hostport(cfg.listen.web)[0]
        if web_host not in ("localhost", "::1") and not web_host.startswith("127."):
            raise ConfigError(
                "web.tls: off (passwords over plain HTTP) only for a loopback [listen] web"
            )
    if cfg.dns.inet_protocols not in ("any", "ipv4", "ipv6"):
        raise ConfigError(
            f"dns.inet_protocols: {cfg.dns.inet_protocols!r} is not one of any, ipv4, ipv6"
        )
    if cfg.smtp.bare_newline not in ("reject", "normalise"):
        raise ConfigError(
            f"smtp.bare_newline: {cfg.smtp.bare_newline!r} is not one of reject, normalise"
        )
    if cfg.smtp.max_line_length < 1000:
        raise ConfigError("smtp.max_line_length: RFC 5321 4.5.3.1.6 needs at least 1000")
    if cfg.pop3.idle_timeout < 600:
        raise ConfigError("pop3.idle_timeout: RFC 1939 3 needs at least 600 seconds")
    if not 1 <= cfg.web.min_password_length <= 1024:
        raise ConfigError("web.min_password_length: must be between 1 and 1024")
    if cfg.imap.idle_timeout < 1800:
        raise ConfigError("imap.idle_timeout: RFC 3501 5.4 needs at least 1800 seconds")
    if not 1 <= cfg.queue.remote_port <= 65535:
        raise ConfigError(f"queue.remote_port: {cfg.queue.remote_port} is not a port")
    if cfg.relay.tls not in ("opportunistic", "starttls", "implicit", "none"):
        raise ConfigError(
            f"relay.tls: {cfg.relay.tls!r} is not one of opportunistic, starttls, implicit, none"
        )
    for key, value in (
        ("relay.smarthost", cfg.relay.smarthost),
        *((f"transport.{k}", v) for k, v in cfg.transport.items()),
    ):
        if value:
            try:
                parse_hostport(value, 25) if key == "relay.smarthost" else parse_nexthop(value)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
    for i, net in enumerate(cfg.mailauth.ignore_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"mailauth.ignore_networks[{i}]: {net!r} is not a network") from None
    if cfg.mailauth.spf_fail not in ("dmarc", "reject"):
        raise ConfigError(
            f"mailauth.spf_fail: {cfg.mailauth.spf_fail!r} is not one of dmarc, reject"
        )
    if cfg.mailauth.require_helo not in ("none", "valid", "known", "confirmed"):
        raise ConfigError(
            f"mailauth.require_helo: {cfg.mailauth.require_helo!r} is not one of "
            "none, valid, known, confirmed"
        )
    if cfg.mailauth.temperror not in ("defer", "accept"):
        raise ConfigError(
            f"mailauth.temperror: {cfg.mailauth.temperror!r} is not one of defer, accept"
        )
    for key in ("connections_per_minute_per_ip", "messages_per_minute_per_ip", "recipients_per_minute_per_ip",
                "messages_per_minute_per_user", "recipients_per_minute_per_user", "pregreet_wait"):  # fmt: skip
        if getattr(cfg.limits, key) < 0:
            raise ConfigError(f"limits.{key}: must not be negative")
    if cfg.mailauth.dmarc_report_interval < 1:
        raise ConfigError("mailauth.dmarc_report_interval: at least 1 second")
    if cfg.mailauth.dns_timeout <= 0:
        raise ConfigError("mailauth.dns_timeout: must be greater than 0")
    for k, v in cfg.transport.items():
        local, at, domain = k.rpartition("@")
        if at and (not local or any(c in k for c in " <>,;\r\n")):
            raise ConfigError(f"transport.{k}: a key is a domain, .parent or user@domain")
        _check_domain_in(f"transport.{k}", domain.removeprefix(".") if not at else domain)
        if v.startswith("lmtp:") and k.lower().rstrip(".") in {d.lower() for d in cfg.domains}:
            # local delivery wins over [transport]: the hand-off would silently not happen
            raise ConfigError(
                f"transport.{k}: {k} is in domains (delivered here); a domain handed to "
                "another server over LMTP must not be one of ours"
            )
    for i, ns in enumerate(cfg.dns.nameservers):
        try:
            parse_hostport(ns, 53)
        except ValueError as e:
            raise ConfigError(f"dns.nameservers[{i}]: {e}") from None
    if cfg.relay.null_client and not cfg.relay.smarthost:
        raise ConfigError("relay.null_client: needs relay.smarthost (where everything goes)")
    for k, v in cfg.canonical.items():
        both_domains = k.startswith("@") and v.startswith("@")
        both_addresses = not k.startswith("@") and "@" in k and "@" in v and not v.startswith("@")
        if not (both_domains or both_addresses) or any(c in k + v for c in " <>,;\r\n"):
            raise ConfigError(
                f"canonical.{k}: map an address to an address or @domain to @domain, not {v!r}"
            )
        for side in (k, v):
            _check_domain_in(f"canonical.{k}", side.rpartition("@")[2])
    if cfg.web.public_hostname:
        _check_domain_in("web.public_hostname", cfg.web.public_hostname)
    for i, sealer in enumerate(cfg.mailauth.arc_trusted_sealers):
        _check_domain_in(f"mailauth.arc_trusted_sealers[{i}]", sealer)
    for i, fc in enumerate(cfg.fetch):
        _check_fetch(fc, f"fetch[{i}]")
    if cfg.lists.web_url and not cfg.lists.web_url.startswith("https://"):
        raise ConfigError("lists.web_url: RFC 8058 needs an https:// URL")
    if cfg.log.level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: {cfg.log.level!r} is not one of debug, info, warning, error")
    if cfg.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: {cfg.log.format!r} is not one of text, json")
    for name, level in cfg.log.levels.items():
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log.levels.{name}: {level!r} is not one of debug, info, warning, error"
            )
        if name not in LOG_SUBSYSTEMS:
            raise ConfigError(
                f"log.levels.{name}: unknown subsystem (known: {', '.join(LOG_SUBSYSTEMS)})"
            )
    _check_mta_sts(cfg)
    if cfg.server.group and not cfg.server.user:
        raise ConfigError("server.group: set server.user too (the group alone is not used)")
    for i, proto in enumerate(cfg.log.trace):
        if proto not in ("smtp", "imap", "pop3", "lmtp"):
            raise ConfigError(f"log.trace[{i}]: {proto!r} is not one of smtp, imap, pop3")


def _check_mta_sts(cfg: Config) -> None:
    from carteiro.queue.mta_sts import MAX_AGE_LIMIT, valid_pattern

    m = cfg.mta_sts
    if m.mode not in ("", "testing", "enforce", "none"):
        raise ConfigError(f'mta_sts.mode: {m.mode!r} is not one of testing, enforce, none (or "")')
    if not 0 < m.max_age <= MAX_AGE_LIMIT:
        raise ConfigError(f"mta_sts.max_age: from 1 to {MAX_AGE_LIMIT} seconds (a year)")
    for i, pattern in enumerate(m.mx):
        if not valid_pattern(pattern):
            raise ConfigError(
                f"mta_sts.mx[{i}]: {pattern!r} is not a host name or *.domain pattern"
            )
    if cfg.queue.mta_sts_port <= 0 or cfg.queue.mta_sts_port > 65535:
        raise ConfigError("queue.mta_sts_port: a TCP port")
    if not 0 < cfg.queue.tls_report_period <= 86400 or 86400 % cfg.queue.tls_report_period:
        raise ConfigError("queue.tls_report_period: a divisor of 86400 seconds (a day)")


def load(data_dir: Path) -> Config:
    """Read DATA/carteiro.toml. Raises ConfigError naming the file and key."""
    path = data_dir / CONFIG_NAME
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found (run `carteiro init --data {data_dir}` first)"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        cfg: Config = _build(Config, table, "")
        _validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    cfg.domains = [check_domain(d) for d in cfg.domains]  # validated above: no error here
    cfg.data_dir = data_dir
    return cfg


def loads(text: str, data_dir: Path = Path("var")) -> Config:
    """Parse TOML text (for tests)."""
    try:
        cfg: Config = _build(Config, tomllib.loads(text), "")
        _validate(cfg)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(e)) from None
    cfg.domains = [check_domain(d) for d in cfg.domains]  # validated above: no error here
    cfg.data_dir = data_dir
    return cfg


def _check_fetch(fc: FetchConfig, where: str) -> None:
    if "@" not in fc.account:
        raise ConfigError(f"{where}.account: {fc.account!r} is not an address")
    if fc.protocol not in ("pop3", "imap"):
        raise ConfigError(f"{where}.protocol: {fc.protocol!r} is not pop3 or imap")
    if fc.tls not in ("implicit", "starttls", "none"):
        raise ConfigError(f"{where}.tls: {fc.tls!r} is not implicit, starttls or none")
    try:
        host, _ = parse_hostport(fc.server, 1)
    except ValueError as e:
        raise ConfigError(f"{where}.server: {e}") from None
    if not host:
        raise ConfigError(f"{where}.server: no host")
    if fc.tls == "none":
        # the password would cross the network in clear: loopback only
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConfigError(f'{where}.tls: "none" is only allowed for a loopback server')
    if not fc.user or not fc.password_file:
        raise ConfigError(f"{where}: user and password_file are required")
    try:
        parse_duration(fc.interval)
    except ValueError as e:
        raise ConfigError(f"{where}.interval: {fc.interval!r}: {e}") from None
    if not fc.folders:
        raise ConfigError(f"{where}.folders: at least one folder")


def default_text(hostname: str, domains: list[str]) -> str:
    """The carteiro.toml that `carteiro init` writes."""
    doms = ", ".join(f'"{d}"' for d in domains)
    return f"""# carteiro configuration. Reference: docs/configuration.md
hostname = "{hostname}"
domains = [{doms}]

[listen]                          # "host:port"; "" disables that service
smtp = "127.0.0.1:2525"           # MX role (port 25 in production)
submission = "127.0.0.1:2587"     # STARTTLS + AUTH (587)
submissions = "127.0.0.1:2465"    # implicit TLS (465)
imap = "127.0.0.1:2143"
imaps = "127.0.0.1:2993"
pop3 = "127.0.0.1:2110"
pop3s = "127.0.0.1:2995"
web = "127.0.0.1:8025"
metrics = ""                      # e.g. "127.0.0.1:9425": Prometheus /metrics, /healthz
sieve = "127.0.0.1:4190"          # ManageSieve: clients edit their filters (4190)
lmtp = ""                         # LMTP from another MTA: "127.0.0.1:2024" or "unix:/path"; no AUTH
odmr = "127.0.0.1:2366"           # On-Demand Mail Relay: ATRN for held domains (366)

[tls]
cert = "tls/cert.pem"             # relative to the data dir; created self-signed by init when absent
key = "tls/key.pem"

[smtp]
relay_networks = []               # never an open relay: empty means only authenticated users relay
"""
