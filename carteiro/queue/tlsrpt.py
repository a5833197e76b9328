"""SMTP TLS Reporting (RFC 8460): what our deliveries met when they negotiated TLS with recipient
domains' MX hosts, reported once a day to each domain that asks for reports.

Recording: every SMTP session the queue holds with an MX host is counted for the recipient domain,
under the MTA-STS policy in force for it (policy type "sts") or none ("no-policy-found"): a success
when the session was encrypted, else a failure of one of RFC 8460 4.3's result types (STARTTLS not
offered, the certificate not matching, expired, not trusted, another validation failure), with the
addresses involved. A policy that cannot be fetched or is invalid is a failure too
(sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid). Counts are kept in memory and
written to DATA/queue/tlsrpt.sqlite in batches (Recorder.flush, off the event loop).

Reporting: after each period (a UTC day), a domain whose `_smtp._tls.<domain>` TXT record
("v=TLSRPTv1; rua=mailto:...") names mail addresses gets the period's JSON report (RFC 8460 4.4),
gzip-compressed, in a multipart/report message (5.3), through the outbound queue (so DKIM-signed).
Domains without such a record are simply forgotten. https: URIs get the gzip-compressed JSON by
HTTPS POST (5.3.2), kept in the database's outbox until posted (retried for three days).
"""

from __future__ import annotations

import datetime
import email.message
import email.policy
import email.utils
import gzip
import json
import sqlite3
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from carteiro.queue.mta_sts import Policy, policy_text
from carteiro.queue.transport import TLSARecord

DB_NAME = "tlsrpt.sqlite"
DAY = 86400
MAX_PERIODS = 30  # reports per domain in one pass (a server that was down catches up)
MAX_DETAILS = 1000  # failure-details entries per policy in one report (the biggest counts)

STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
RESULT_TYPES = frozenset(
    {
        STARTTLS_NOT_SUPPORTED,
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  begin INTEGER NOT NULL, domain TEXT NOT NULL, policy TEXT NOT NULL, result TEXT NOT NULL,
  sending_ip TEXT NOT NULL, mx_host TEXT NOT NULL, receiving_ip TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (begin, domain, policy, result, sending_ip, mx_host, receiving_ip));
CREATE TABLE IF NOT EXISTS posts (
  uri TEXT NOT NULL, report_id TEXT NOT NULL, domain TEXT NOT NULL, body BLOB NOT NULL,
  created INTEGER NOT NULL, next_try INTEGER NOT NULL, tries INTEGER NOT NULL,
  PRIMARY KEY (uri, report_id));
"""


def classify(status: str, text: str) -> str:
    """The RFC 8460 result type of a TLS failure our SMTP client reported (4.7.4: STARTTLS not
    offered; 4.7.5: the handshake or the certificate check failed, OpenSSL's reason in the
    text), "" when the reply is no TLS failure."""
    if status == "4.7.4":
        return STARTTLS_NOT_SUPPORTED
    if status != "4.7.5":
        return ""
    t = text.lower()
    if t.startswith("dane:"):
        return "tlsa-invalid"  # no TLSA record matched the chain (RFC 8460 4.3.2.1)
    if "hostname mismatch" in t or "doesn't match" in t or "ip address mismatch" in t:
        return "certificate-host-mismatch"
    if "expired" in t:
        return "certificate-expired"
    if "self-signed" in t or "self signed" in t or "local issuer" in t or "unknown ca" in t:
        return "certificate-not-trusted"
    return "validation-failure"


def policy_key(policy: Policy | tuple[TLSARecord, ...] | None) -> str:
    """How a session's policy is kept in a row: JSON of (type, policy-string, mx-host): an
    MTA-STS policy, a host's DANE TLSA records, or none."""
    if policy is None:
        return json.dumps(["no-policy-found", [], []])
    if isinstance(policy, tuple):
        return json.dumps(["tlsa", [f"{u} {s} {m} {d.hex().upper()}" for u, s, m, d in policy], []])
    text = policy_text(policy.mode, list(policy.mx), policy.max_age)
    return json.dumps(["sts", text.strip("\r\n").split("\r\n"), list(policy.mx)])


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    return conn


class Recorder:
    """Session outcomes, counted in memory (thread-safe, cheap: called by the queue for every
    session) and written by flush()."""

    def __init__(
        self, path: Path, period: int = DAY, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.period = max(1, int(period))  # a report's span (a UTC day; shorter in tests)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[tuple[int, str, str, str, str, str, str]] = Counter()

    def session(
        self,
        domain: str,
        policy: Policy | tuple[TLSARecord, ...] | None,
        result: str,
        mx_host: str = "",
        receiving_ip: str = "",
        sending_ip: str = "",
    ) -> None:
        """One session (or policy discovery) with `domain`'s MX host: `result` is "success" or
        an RFC 8460 result type."""
        begin = int(self._clock()) // self.period * self.period
        key = (
            begin,
            domain.lower().rstrip("."),
            policy_key(policy),
            result,
            sending_ip,
            mx_host.lower().rstrip("."),
            receiving_ip,
        )
        with self._lock:
            self._counts[key] += 1

    def flush(self) -> int:
        """Write what was counted since the last flush (blocking). Returns the rows written."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = open_db(self.path)
            try:
                with conn:
                    conn.executemany(
                        "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT"
                        " (begin, domain, policy, result, sending_ip, mx_host, receiving_ip)"
                        " DO UPDATE SET count = count + excluded.count",
                        [(*k, n) for k, n in counts.items()],
                    )
            finally:
                conn.close()
        except BaseException:
            with self._lock:
                self._counts.update(counts)  # kept for the next flush
            raise
        return len(counts)


# ---- the domain's request -----------------------------------------------------------------------


def parse_record(records: list[str]) -> list[str] | None:
    """The rua URIs of `_smtp._tls` TXT records (RFC 8460 3), or None without exactly one
    valid TLSRPTv1 record."""
    ours = [r for r in records if r.startswith("v=TLSRPTv1")]
    if len(ours) != 1:
        return None
    fields: dict[str, str] = {}
    for part in ours[0].split(";"):
        key, eq, value = part.strip(" \t").partition("=")
        if eq:
            fields.setdefault(key.strip(" \t"), value.strip(" \t"))
    if fields.get("v") != "TLSRPTv1" or not fields.get("rua"):
        return None
    return [u.strip() for u in fields["rua"].split(",") if u.strip()]


MAX_HTTPS = 4  # https: report URIs of one record that get the report (the rest are logged)
POST_RETRY = (300, 1800, 7200, 21600, 43200)  # seconds before each new try of a failed POST
POST_GIVE_UP = 3 * DAY  # a report not posted by then is dropped


def https_uris(uris: Sequence[str]) -> list[str]:
    """The usable `https:` URIs of a record's rua (RFC 8460 3): an absolute https URL with a
    host and no user information; at most MAX_HTTPS."""
    out = []
    for uri in uris:
        if uri[:8].lower() != "https://" or any(c in uri for c in " \t\r\n<>\\"):
            continue
        try:
            parts = urllib.parse.urlsplit(uri)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            continue
        if parts.hostname and "@" not in parts.netloc and not parts.fragment:
            out.append(uri)
    return out[:MAX_HTTPS]


def post_target(uri: str) -> tuple[str, int, str]:
    """(host, port, request target) of a URI https_uris kept."""
    parts = urllib.parse.urlsplit(uri)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return str(parts.hostname), parts.port or 443, target


def queue_posts(path: Path, report: Report, uris: Sequence[str], now: float) -> None:
    """Keep the report's gzip-compressed JSON for each https URI until it is posted (in the
    same transaction that forgets the report's sessions, so neither is lost nor sent twice)."""
    body = gzip.compress(report.body, mtime=0)
    conn = open_db(path)
    try:
        with conn:
            conn.executemany(
                "INSERT OR IGNORE INTO posts VALUES (?, ?, ?, ?, ?, ?, 0)",
                [(u, report.report_id, report.domain, body, int(now), int(now)) for u in uris],
            )
            conn.execute(
                "DELETE FROM sessions WHERE domain = ? AND begin = ?", (report.domain, report.begin)
            )
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Post:
    uri: str
    report_id: str
    domain: str
    body: bytes
    created: int
    tries: int


def due_posts(path: Path, now: float, limit: int = 100) -> list[Post]:
    if not path.exists():
        return []
    conn = open_db(path)
    try:
        rows = conn.execute(
            "SELECT uri, report_id, domain, body, created, tries FROM posts WHERE next_try <= ?"
            " ORDER BY next_try LIMIT ?",
            (int(now), limit),
        ).fetchall()
    finally:
        conn.close()
    return [Post(u, r, d, bytes(b), c, t) for u, r, d, b, c, t in rows]


def post_done(path: Path, post: Post, ok: bool, now: float) -> bool:
    """Record an attempt: posted, or failed (tried again later, or dropped once POST_GIVE_UP
    has passed). True when the post is gone from the outbox."""
    conn = open_db(path)
    try:
        with conn:
            if ok or now - post.created >= POST_GIVE_UP:
                conn.execute(
                    "DELETE FROM posts WHERE uri = ? AND report_id = ?", (post.uri, post.report_id)
                )
                return True
            wait = POST_RETRY[min(post.tries, len(POST_RETRY) - 1)]
            conn.execute(
                "UPDATE posts SET tries = tries + 1, next_try = ? WHERE uri = ? AND report_id = ?",
                (int(now) + wait, post.uri, post.report_id),
            )
            return False
    finally:
        conn.close()


def mailto_addresses(uris: Sequence[str]) -> list[str]:
    out = []
    for uri in uris:
        if uri[:7].lower() == "mailto:":
            addr = email.utils.unquote(uri[7:].split("?", 1)[0]).strip()
            if "@" in addr and not any(c in addr for c in " <>,;\r\n"):
                out.append(addr)
    return out


# ---- the reports --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    domain: str
    begin: int
    end: int  # the period's last second
    report_id: str
    body: bytes  # the JSON document (RFC 8460 4.4)
    sessions: int


def _iso(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_json(
    org: str,
    contact: str,
    report_id: str,
    domain: str,
    begin: int,
    end: int,
    rows: Sequence[tuple[str, str, str, str, str, int]],
) -> dict[str, object]:
    """RFC 8460 4.4 from rows (policy key, result, sending IP, MX host, receiving IP, count)."""
    by_policy: dict[str, list[tuple[str, str, str, str, int]]] = {}
    for pol, result, sip, host, rip, n in rows:
        by_policy.setdefault(pol, []).append((result, sip, host, rip, n))
    policies = []
    for pol, entries in sorted(by_policy.items()):
        ptype, pstring, mx = json.loads(pol)
        policy: dict[str, object] = {"policy-type": ptype, "policy-domain": domain}
        if ptype != "no-policy-found":
            policy["policy-string"] = pstring
        if mx:
            policy["mx-host"] = mx
        ok = sum(n for result, *_rest, n in entries if result == "success")
        failures = sorted((e for e in entries if e[0] != "success"), key=lambda e: (-e[4], e[:4]))
        item: dict[str, object] = {
            "policy": policy,
            "summary": {
                "total-successful-session-count": ok,
                "total-failure-session-count": sum(e[4] for e in failures),
            },
        }
        if failures:
            details = []
            for result, sip, host, rip, n in failures[:MAX_DETAILS]:
                d: dict[str, object] = {"result-type": result}
                if sip:
                    d["sending-mta-ip"] = sip
                if host:
                    d["receiving-mx-hostname"] = host
                if rip:
                    d["receiving-ip"] = rip
                d["failed-session-count"] = n
                details.append(d)
            item["failure-details"] = details
        policies.append(item)
    return {
        "organization-name": org,
        "date-range": {"start-datetime": _iso(begin), "end-datetime": _iso(end)},
        "contact-info": contact,
        "report-id": report_id,
        "policies": policies,
    }


def due_reports(
    path: Path, org: str, contact: str, period: int = DAY, now: float | None = None
) -> list[Report]:
    """One report per domain and completed period (a UTC day) that saw sessions (blocking)."""
    if not path.exists():
        return []
    cutoff = int(now if now is not None else time.time()) // period * period
    conn = open_db(path)
    out: list[Report] = []
    try:
        periods = conn.execute(
            "SELECT DISTINCT domain, begin FROM sessions WHERE begin < ? ORDER BY domain, begin",
            (cutoff,),
        ).fetchall()
        per_domain: Counter[str] = Counter()
        for domain, begin in periods:
            per_domain[domain] += 1
            if per_domain[domain] > MAX_PERIODS:
                continue
            rows = conn.execute(
                "SELECT policy, result, sending_ip, mx_host, receiving_ip, count FROM sessions"
                " WHERE domain = ? AND begin = ?",
                (domain, begin),
            ).fetchall()
            end = begin + period - 1
            report_id = f"{_iso(begin)[:10]}.{uuid.uuid4().hex[:16]}@{org}"
            doc = report_json(org, contact, report_id, domain, begin, end, rows)
            out.append(
                Report(
                    domain,
                    begin,
                    end,
                    report_id,
                    json.dumps(doc, indent=1).encode(),
                    sum(int(r[5]) for r in rows),
                )
            )
    finally:
        conn.close()
    return out


def forget(path: Path, report: Report) -> None:
    """The report's period is done (sent, or nobody asked for it): its rows go."""
    conn = open_db(path)
    try:
        with conn:
            conn.execute(
                "DELETE FROM sessions WHERE domain = ? AND begin = ?", (report.domain, report.begin)
            )
    finally:
        conn.close()


def compose(org: str, sender: str, to: Sequence[str], report: Report, hostname: str) -> bytes:
    """RFC 8460 5.3: multipart/report; report-type="tlsrpt", a human-readable part and the
    gzip-compressed JSON named submitter!policy-domain!begin!end!id.json.gz."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = (
        f"Report Domain: {report.domain} Submitter: {org} Report-ID: <{report.report_id}>"
    )
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{hostname}>"
    msg["TLS-Report-Domain"] = report.domain
    msg["TLS-Report-Submitter"] = org
    msg.set_content(
        f"SMTP TLS report (RFC 8460) from {org} for {report.domain}: {report.sessions} sessions,"
        f" {_iso(report.begin)} to {_iso(report.end)}.\n"
    )
    unique = report.report_id.split("@", 1)[0].split(".", 1)[-1]
    msg.add_attachment(
        gzip.compress(report.body, mtime=0),
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=f"{org}!{report.domain}!{report.begin}!{report.end + 1}!{unique}.json.gz",
    )
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    raw: bytes = msg.as_bytes()
    return raw


# ---- reports we receive -------------------------------------------------------------------------

MAX_RECEIVED = 10 * 1024 * 1024  # a received report's JSON, uncompressed


@dataclass(frozen=True, slots=True)
class Received:
    """What one received report says (RFC 8460 4.4), as far as an operator acts on it."""

    org: str
    report_id: str
    begin: str  # the date-range as written
    end: str
    # (policy type, policy domain, successful sessions, failed sessions,
    #  ((result type, receiving MX host, sending IP, count), ...))
    policies: tuple[tuple[str, str, int, int, tuple[tuple[str, str, str, int], ...]], ...]


def _json_part(message: email.message.Message) -> bytes | None:
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = (part.get_filename() or "").lower()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if ctype == "application/tlsrpt+gzip" or name.endswith(".json.gz"):
            try:
                data = zlib.decompressobj(wbits=31).decompress(payload, MAX_RECEIVED + 1)
            except zlib.error:
                return None
            return data if len(data) <= MAX_RECEIVED else None
        if ctype == "application/tlsrpt+json" or name.endswith(".json"):
            return payload[:MAX_RECEIVED]
    return None


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_received(raw: bytes) -> Received | None:
    """A TLS report mailed to us (multipart/report; report-type=tlsrpt, or any message with a
    .json.gz / application/tlsrpt part), or None. Never raises on a stranger's bytes."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        data = _json_part(msg)
        if data is None:
            return None
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), list):
        return None
    dates = _dict(doc.get("date-range"))
    policies = []
    for item in doc["policies"]:
        if not isinstance(item, dict):
            continue
        pol = _dict(item.get("policy"))
        summ = _dict(item.get("summary"))
        details = []
        listed = item.get("failure-details")
        for d in listed if isinstance(listed, list) else []:
            if isinstance(d, dict):
                details.append(
                    (
                        str(d.get("result-type", "?"))[:64],
                        str(d.get("receiving-mx-hostname", ""))[:255],
                        str(d.get("sending-mta-ip", ""))[:64],
                        _int(d.get("failed-session-count")),
                    )
                )
        policies.append(
            (
                str(pol.get("policy-type", "?"))[:32],
                str(pol.get("policy-domain", "?"))[:255],
                _int(summ.get("total-successful-session-count")),
                _int(summ.get("total-failure-session-count")),
                tuple(details[:MAX_DETAILS]),
            )
        )
    return Received(
        str(doc.get("organization-name", "?"))[:255],
        str(doc.get("report-id", ""))[:255],
        str(dates.get("start-datetime", "?"))[:40],
        str(dates.get("end-datetime", "?"))[:40],
        tuple(policies),
    )


def summary(reports: Sequence[Received]) -> list[str]:
    """One line per reporting organization, period and policy, then each kind of failure."""
    seen: set[tuple[str, str]] = set()
    lines: list[str] = []
    for r in sorted(reports, key=lambda r: (r.begin, r.org)):
        if (r.org, r.report_id) in seen:  # the same report delivered twice
            continue
        seen.add((r.org, r.report_id))
        for ptype, domain, ok, failed, details in r.policies:
            lines.append(
                f"{domain}: {r.org} ({r.begin} - {r.end}, {ptype}): {ok} sessions with TLS,"
                f" {failed} failed"
            )
            for result, host, ip, n in details:
                where = f" at {host}" if host else ""
                sender = f" from {ip}" if ip else ""
                lines.append(f"  {result}: {n}{where}{sender}")
    return lines
