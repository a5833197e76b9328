"""DMARC aggregate reports (RFC 7489 7.2): recording what we saw, sending each domain's report to
its rua= addresses, and reading the reports other receivers send us.

Results are kept in DATA/dmarc.sqlite, written in batches off the event loop (one row per source
address, author domain and outcome, with a count). Reports are gzip-compressed XML in the schema
of RFC 7489 Appendix C, mailed through the outbound queue. Reports we receive are parsed with a
size limit (no entity expansion beyond expat's own guards) and kept by report id, so reading a
mailbox twice counts nothing twice.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import gzip
import io
import json
import logging
import sqlite3
import threading
import time
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import Path

from carteiro.core.plural import plural
from carteiro.mailauth.dkim_verify import Signature
from carteiro.mailauth.dmarc import Evaluation, organizational_domain
from carteiro.mailauth.dmarc_failures import Outbox
from carteiro.mailauth.lookup import Resolver, txt_strings
from carteiro.mailauth.spf import SPFResult

log = logging.getLogger("carteiro.dmarc")

DB_NAME = "dmarc.sqlite"
MAX_REPORT = 10 * 1024 * 1024  # a received report's XML, uncompressed
MAX_RECORDS = 100_000  # rows of one received report we keep

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
  ts INTEGER NOT NULL, policy_domain TEXT NOT NULL, header_from TEXT NOT NULL,
  source_ip TEXT NOT NULL, envelope_from TEXT NOT NULL, disposition TEXT NOT NULL,
  dkim_aligned TEXT NOT NULL, spf_aligned TEXT NOT NULL, dkim TEXT NOT NULL,
  spf TEXT NOT NULL, policy TEXT NOT NULL, rua TEXT NOT NULL, count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_domain ON seen(policy_domain, ts);
CREATE TABLE IF NOT EXISTS sent (policy_domain TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS received (
  report_id TEXT NOT NULL, org TEXT NOT NULL, domain TEXT NOT NULL,
  begin INTEGER NOT NULL, end INTEGER NOT NULL, policy TEXT NOT NULL, rows TEXT NOT NULL,
  PRIMARY KEY (org, report_id));
"""


def open_db(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(Path(data_dir) / DB_NAME, timeout=30, check_same_thread=False)
    conn.executescript(_SCHEMA)
    return conn


@dataclass(frozen=True, slots=True)
class Seen:
    """One checked message, for the report of its author's DMARC domain."""

    ts: int
    policy_domain: str
    header_from: str
    source_ip: str
    envelope_from: str
    disposition: str
    dkim_aligned: str  # "pass" | "fail"
    spf_aligned: str
    dkim: str  # JSON [[domain, selector, result], ...]
    spf: str  # JSON [domain, scope, result]
    policy: str  # JSON of the published policy (p, sp, adkim, aspf, pct)
    rua: str  # space-separated mailto: URIs


def seen_from(
    evaluation: Evaluation,
    source_ip: str,
    mail_from: str,
    helo: str,
    signatures: Sequence[Signature],
    spf: SPFResult | None,
    now: float | None = None,
) -> Seen | None:
    """What to record of a DMARC evaluation; None when the domain asks for no reports."""
    record = evaluation.record
    if record is None or not record.rua:
        return None
    env_domain = (mail_from.rpartition("@")[2] or helo).lower()
    return Seen(
        ts=int(now if now is not None else time.time()),
        policy_domain=evaluation.record_domain,
        header_from=evaluation.from_domain,
        source_ip=source_ip,
        envelope_from=env_domain,
        disposition=evaluation.disposition,
        dkim_aligned="pass" if evaluation.dkim_aligned else "fail",
        spf_aligned="pass" if evaluation.spf_aligned else "fail",
        dkim=json.dumps([[s.domain, s.selector, s.result] for s in signatures]),
        spf=json.dumps(
            [spf.domain, spf.identity, spf.result] if spf else [env_domain, "mfrom", "none"]
        ),
        policy=json.dumps(
            {
                "p": record.p,
                "sp": record.sp or record.p,
                "adkim": record.adkim,
                "aspf": record.aspf,
                "pct": record.pct,
                "ri": record.ri,
            }
        ),
        rua=" ".join(record.rua),
    )


class Recorder:
    """Collects `Seen` rows in memory and writes them in one transaction per `flush` (from a
    thread: the SMTP session never waits on SQLite)."""

    MAX_PENDING = 50_000  # rows waiting for a flush; beyond that the oldest are dropped, logged

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.failures = Outbox()  # failure reports (ruf=) waiting for the report task
        self._pending: list[Seen] = []
        self._lock = threading.Lock()
        self._dropped = 0

    def record(self, seen: Seen) -> None:
        with self._lock:
            if len(self._pending) >= self.MAX_PENDING:
                self._pending.pop(0)
                self._dropped += 1
            self._pending.append(seen)

    def flush(self) -> int:
        with self._lock:
            rows, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("dmarc: %d results not recorded (too many waiting)", dropped)
        if not rows:
            return 0
        conn = open_db(self.data_dir)
        try:
            with conn:
                conn.executemany(
                    "INSERT INTO seen VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)",
                    [
                        (
                            r.ts,
                            r.policy_domain,
                            r.header_from,
                            r.source_ip,
                            r.envelope_from,
                            r.disposition,
                            r.dkim_aligned,
                            r.spf_aligned,
                            r.dkim,
                            r.spf,
                            r.policy,
                            r.rua,
                        )
                        for r in rows
                    ],
                )
        finally:
            conn.close()
        return len(rows)


# ---- sending ---------------------------------------------------------------------------------


@dataclass
class Outgoing:
    policy_domain: str
    recipients: list[str]
    message: bytes
    begin: int
    end: int
    rows: int


def parse_mailto(uri: str) -> tuple[str, int] | None:
    """RFC 7489 6.2: "mailto:addr" with an optional "!size[kmgt]" limit."""
    uri = uri.strip()
    if not uri.lower().startswith("mailto:"):
        return None
    addr, _bang, size = uri[7:].partition("!")
    limit = 0
    if size:
        unit = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(size[-1:].lower(), 1)
        digits = size[:-1] if size[-1:].isalpha() else size
        limit = int(digits) * unit if digits.isdigit() else 0
    addr = addr.strip()
    return (addr, limit) if "@" in addr else None


async def authorized(resolver: Resolver, policy_domain: str, address: str) -> bool | None:
    """RFC 7489 7.1: a report address outside the policy domain's organization must publish
    POLICYDOMAIN._report._dmarc.RUADOMAIN "v=DMARC1" to receive reports. None when the lookup
    failed for now: the caller asks again later (a report is not dropped for a DNS hiccup)."""
    rua_domain = address.rpartition("@")[2].lower()
    if organizational_domain(rua_domain) == organizational_domain(policy_domain):
        return True
    answer = await resolver.lookup(f"{policy_domain}._report._dmarc.{rua_domain}", "TXT")
    if answer.temporary:
        return None
    return any(t.startswith(b"v=DMARC1") for t in txt_strings(answer))


def _group(rows: Iterable[tuple[object, ...]]) -> dict[tuple[object, ...], int]:
    out: dict[tuple[object, ...], int] = {}
    for r in rows:
        key = tuple(r[:-1])
        out[key] = out.get(key, 0) + int(r[-1])  # type: ignore[call-overload]
    return out


def build_xml(
    org: str, email_addr: str, report_id: str, policy_domain: str, policy: dict[str, object],
    begin: int, end: int, rows: dict[tuple[object, ...], int],
) -> bytes:  # fmt: skip
    """The feedback document of RFC 7489 Appendix C."""
    fb = ET.Element("feedback")
    meta = ET.SubElement(fb, "report_metadata")
    ET.SubElement(meta, "org_name").text = org
    ET.SubElement(meta, "email").text = email_addr
    ET.SubElement(meta, "report_id").text = report_id
    rng = ET.SubElement(meta, "date_range")
    ET.SubElement(rng, "begin").text = str(begin)
    ET.SubElement(rng, "end").text = str(end)
    pp = ET.SubElement(fb, "policy_published")
    ET.SubElement(pp, "domain").text = policy_domain
    for tag in ("adkim", "aspf", "p", "sp", "pct"):
        ET.SubElement(pp, tag).text = str(policy.get(tag, ""))
    for key, count in rows.items():
        header_from, ip, env, disposition, dkim_al, spf_al, dkim_json, spf_json = key
        rec = ET.SubElement(fb, "record")
        row = ET.SubElement(rec, "row")
        ET.SubElement(row, "source_ip").text = str(ip)
        ET.SubElement(row, "count").text = str(count)
        pe = ET.SubElement(row, "policy_evaluated")
        ET.SubElement(pe, "disposition").text = str(disposition)
        ET.SubElement(pe, "dkim").text = str(dkim_al)
        ET.SubElement(pe, "spf").text = str(spf_al)
        ids = ET.SubElement(rec, "identifiers")
        ET.SubElement(ids, "header_from").text = str(header_from)
        ET.SubElement(ids, "envelope_from").text = str(env)
        ar = ET.SubElement(rec, "auth_results")
        for d, s, result in json.loads(str(dkim_json)):
            dk = ET.SubElement(ar, "dkim")
            ET.SubElement(dk, "domain").text = d
            ET.SubElement(dk, "selector").text = s
            ET.SubElement(dk, "result").text = result
        sd, scope, sr = json.loads(str(spf_json))
        sp = ET.SubElement(ar, "spf")
        ET.SubElement(sp, "domain").text = sd
        ET.SubElement(sp, "scope").text = "helo" if scope == "helo" else "mfrom"
        ET.SubElement(sp, "result").text = sr
    body: bytes = ET.tostring(fb, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def compose(
    org: str, sender: str, to: Sequence[str], policy_domain: str, report_id: str,
    begin: int, end: int, xml: bytes, hostname: str,
) -> bytes:  # fmt: skip
    """RFC 7489 7.2.1.1: the report as a gzip attachment named
    receiver!policy-domain!begin!end.xml.gz, and the subject the RFC suggests."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = f"Report Domain: {policy_domain} Submitter: {org} Report-ID: <{report_id}>"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{report_id}@{hostname}>"
    msg.set_content(
        f"DMARC aggregate report from {org} for {policy_domain}, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(begin))} to "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(end))} UTC.\n"
    )
    msg.add_attachment(
        gzip.compress(xml, mtime=0),
        maintype="application",
        subtype="gzip",
        filename=f"{org}!{policy_domain}!{begin}!{end}.xml.gz",
    )
    raw: bytes = msg.as_bytes()
    return raw


DAY = 86400
MAX_PERIODS = 100  # reports per domain in one pass (a server that was down for long catches up)


def period_of(ri: int, interval: float) -> int:
    """The report period for a domain asking for `ri` seconds between reports (RFC 7489 6.3,
    at least an hour when parsed) from a receiver configured for `interval`: the shorter, at
    most a day, rounded down to a divisor of a day. Periods then start at multiples of it since
    the epoch, so a daily report covers one whole UTC day, 00:00:00 to 23:59:59, and hourly
    ones whole UTC hours (RFC 7489 7.2: "adhere to hour boundaries ... begin that period at
    00:00 UTC", so that reports of different receivers can be put side by side)."""
    want = max(1, min(int(ri), int(interval), DAY))
    if want >= 3600:
        hours = want // 3600
        while 24 % hours:
            hours -= 1
        return hours * 3600
    while DAY % want:  # under an hour: only tests and benchmarks ask for it
        want -= 1
    return want


def due_reports(
    data_dir: Path, org: str, sender: str, hostname: str, interval: float, now: float | None = None
) -> list[Outgoing]:
    """One report per domain and completed period that saw mail (see period_of). Blocking."""
    now_i = int(now if now is not None else time.time())
    conn = open_db(data_dir)
    out: list[Outgoing] = []
    try:
        domains = [r[0] for r in conn.execute("SELECT DISTINCT policy_domain FROM seen")]
        for domain in domains:
            meta = conn.execute(
                "SELECT policy, rua FROM seen WHERE policy_domain = ? ORDER BY ts DESC LIMIT 1",
                (domain,),
            ).fetchone()
            if meta is None:
                continue
            policy = json.loads(meta[0])
            period = period_of(int(policy.get("ri", DAY)), interval)
            cutoff = now_i // period * period  # the end of the last completed period
            # a result recorded after its period was reported (it waited in the Recorder) is
            # not reported twice: periods end once
            sent = conn.execute("SELECT until FROM sent WHERE policy_domain = ?", (domain,))
            row = sent.fetchone()
            until = int(row[0]) if row else 0
            starts = [
                int(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT (ts / ?) * ? FROM seen"
                    " WHERE policy_domain = ? AND ts >= ? AND ts < ? ORDER BY 1 LIMIT ?",
                    (period, period, domain, until, cutoff, MAX_PERIODS),
                )
            ]
            for begin in starts:
                rows = conn.execute(
                    "SELECT header_from, source_ip, envelope_from, disposition, dkim_aligned,"
                    " spf_aligned, dkim, spf, count FROM seen"
                    " WHERE policy_domain = ? AND ts >= ? AND ts < ?",
                    (domain, begin, begin + period),
                ).fetchall()
                if rows:
                    out.append(
                        _outgoing(org, sender, hostname, domain, policy, str(meta[1]),
                                  begin, period, rows)
                    )  # fmt: skip
    finally:
        conn.close()
    return out


def _outgoing(
    org: str, sender: str, hostname: str, domain: str, policy: dict[str, object], rua: str,
    begin: int, period: int, rows: list[tuple[object, ...]],
) -> Outgoing:  # fmt: skip
    # date_range end is the period's last second, as the RFC's "0000-2359 UTC" day
    end = begin + period - 1
    report_id = f"{begin}.{uuid.uuid4().hex[:12]}"
    xml = build_xml(org, sender, report_id, domain, policy, begin, end, _group(rows))
    to = []
    for uri in rua.split():
        parsed = parse_mailto(uri)
        if parsed and (not parsed[1] or len(xml) // 2 < parsed[1]):
            to.append(parsed[0])
    message = compose(org, sender, to, domain, report_id, begin, end, xml, hostname)
    return Outgoing(domain, to, message, begin, end, len(rows))


def mark_sent(data_dir: Path, report: Outgoing) -> None:
    """The report's period is done: its results are forgotten (once sent, or refused)."""
    conn = open_db(data_dir)
    try:
        with conn:
            conn.execute(
                "INSERT INTO sent VALUES (?, ?) ON CONFLICT(policy_domain) DO UPDATE"
                " SET until = max(until, excluded.until)",
                (report.policy_domain, report.end + 1),
            )
            conn.execute(
                "DELETE FROM seen WHERE policy_domain = ? AND ts <= ?",
                (report.policy_domain, report.end),
            )
    finally:
        conn.close()


# ---- receiving -------------------------------------------------------------------------------


@dataclass
class Received:
    report_id: str
    org: str
    domain: str
    begin: int
    end: int
    policy: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, object]] = field(default_factory=list)


def _xml_from(message: Message) -> bytes | None:
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = (part.get_filename() or "").lower()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if ctype in ("application/gzip", "application/x-gzip") or name.endswith(".gz"):
            with gzip.GzipFile(fileobj=io.BytesIO(payload)) as gz:
                data = gz.read(MAX_REPORT + 1)
            return data if len(data) <= MAX_REPORT else None
        if ctype in ("application/zip", "application/x-zip-compressed") or name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(payload)) as zf:
                for info in zf.infolist():
                    if info.filename.lower().endswith(".xml") and info.file_size <= MAX_REPORT:
                        return zf.read(info)
            return None
        if ctype in ("text/xml", "application/xml") or name.endswith(".xml"):
            return payload[:MAX_REPORT]
    return None


def parse_report(raw: bytes) -> Received | None:
    """A DMARC aggregate report in `raw` (a message); None when it holds none."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    try:
        xml = _xml_from(message)
        if xml is None:
            return None
        root = ET.fromstring(xml)
    except (OSError, EOFError, zipfile.BadZipFile, ET.ParseError, ValueError):
        return None
    if root.tag != "feedback":
        return None

    def text(node: ET.Element | None, path: str) -> str:
        found = node.find(path) if node is not None else None
        return (found.text or "").strip() if found is not None else ""

    meta = root.find("report_metadata")
    pp = root.find("policy_published")
    try:
        begin = int(text(meta, "date_range/begin") or 0)
        end = int(text(meta, "date_range/end") or 0)
    except ValueError:
        return None
    rep = Received(
        report_id=text(meta, "report_id"),
        org=text(meta, "org_name"),
        domain=text(pp, "domain"),
        begin=begin,
        end=end,
        policy={t: text(pp, t) for t in ("p", "sp", "adkim", "aspf", "pct")},
    )
    for rec in root.findall("record")[:MAX_RECORDS]:
        try:
            count = int(text(rec, "row/count") or 0)
        except ValueError:
            count = 0
        rep.rows.append(
            {
                "source_ip": text(rec, "row/source_ip"),
                "count": count,
                "disposition": text(rec, "row/policy_evaluated/disposition"),
                "dkim": text(rec, "row/policy_evaluated/dkim"),
                "spf": text(rec, "row/policy_evaluated/spf"),
                "header_from": text(rec, "identifiers/header_from"),
            }
        )
    if not rep.report_id or not rep.org:
        return None
    return rep


def store_received(data_dir: Path, reports: Iterable[Received]) -> int:
    """Keep reports not seen before (by reporting org and report id). Returns how many new."""
    conn = open_db(data_dir)
    n = 0
    try:
        with conn:
            for r in reports:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO received VALUES (?,?,?,?,?,?,?)",
                    (r.report_id, r.org, r.domain, r.begin, r.end, json.dumps(r.policy),
                     json.dumps(r.rows)),
                )  # fmt: skip
                n += cur.rowcount
    finally:
        conn.close()
    return n


def summary(data_dir: Path, since: int = 0) -> list[str]:
    """One line per report: who, for which domain, when, messages passing and failing DMARC,
    then the sources that failed (the lines an admin acts on)."""
    conn = open_db(data_dir)
    lines: list[str] = []
    try:
        reports = conn.execute(
            "SELECT org, domain, begin, end, rows, report_id FROM received WHERE end >= ?"
            " ORDER BY end, org",
            (since,),
        ).fetchall()
    finally:
        conn.close()
    for org, domain, begin, end, rows_json, report_id in reports:
        rows = json.loads(rows_json)
        passed = sum(int(r["count"]) for r in rows if "pass" in (r.get("dkim"), r.get("spf")))
        total = sum(int(r["count"]) for r in rows)
        period = (
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(begin))}"
            f" - {time.strftime('%Y-%m-%d %H:%M', time.gmtime(end))}"
        )
        lines.append(
            f"{domain}: {org} ({period} UTC, report {report_id}): "
            f"{plural(total, 'message')}, {passed} pass DMARC, {total - passed} fail"
        )
        for r in rows:
            if "pass" not in (r.get("dkim"), r.get("spf")):
                lines.append(
                    f"  fail: {r['count']} from {r['source_ip']} (header.from {r['header_from']},"
                    f" disposition {r['disposition']})"
                )
    return lines
