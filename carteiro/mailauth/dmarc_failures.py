"""DMARC failure reports (RFC 7489 7.3): a report per failing message to the ruf= addresses, in
the authentication failure format of RFC 6591 (an ARF report, RFC 5965).

Off by default (`[mailauth] dmarc_failure_reports`): a failure report carries another party's
message, and most large receivers send none for that reason. When on, the report carries the
header section only, never the body (RFC 7489 9.5 lets the reporter redact), at most
`RATE_PER_HOUR` reports per policy domain, and the cases wait in a bounded outbox that the
aggregate-report task drains: the SMTP session never waits for it and a forgery flood cannot
turn us into a mail cannon.
"""

from __future__ import annotations

import email.utils
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from carteiro.mailauth.dkim_verify import Signature
from carteiro.mailauth.dmarc import Evaluation
from carteiro.mailauth.spf import SPFResult

RATE_PER_HOUR = 10  # reports per policy domain
MAX_PENDING = 1000  # cases waiting for the report task
MAX_HEADER = 64 * 1024  # octets of the original header section carried


def wanted(ev: Evaluation, spf: SPFResult | None, signatures: Sequence[Signature]) -> bool:
    """RFC 7489 6.3 fo=: "0" (the default) when no mechanism gave an aligned pass (DMARC fails),
    "1" when any did not, "d" when a DKIM signature failed to verify whatever its domain, "s"
    when SPF failed whatever its domain. Several options are joined with ":"."""
    record = ev.record
    if record is None or not record.ruf or ev.result not in ("pass", "fail"):
        return False
    options = {o.strip().lower() for o in record.fo.split(":") if o.strip()} or {"0"}
    if "0" in options and ev.result == "fail":
        return True
    if "1" in options and not (ev.spf_aligned and ev.dkim_aligned):
        return True
    if "d" in options and any(s.result == "fail" for s in signatures):
        return True
    return "s" in options and spf is not None and spf.result == "fail"


@dataclass(frozen=True, slots=True)
class Case:
    """What one report says about one message."""

    policy_domain: str
    ruf: tuple[str, ...]
    from_domain: str
    source_ip: str
    mail_from: str
    arrival: float
    results: str  # our Authentication-Results field, unfolded, without its name
    alignment: str  # RFC 7489 7.3.1 Identity-Alignment: "dkim", "spf", "dkim, spf" or "none"
    delivery: str  # RFC 6591 3.1 Delivery-Result: delivered, spam, reject
    header: bytes  # the message's header section (CRLF lines), at most MAX_HEADER octets


def case_of(
    ev: Evaluation,
    *,
    source_ip: str,
    mail_from: str,
    results_field: bytes,
    header: bytes,
    action: str,
    now: float | None = None,
) -> Case:
    assert ev.record is not None
    aligned = [n for n, ok in (("dkim", ev.dkim_aligned), ("spf", ev.spf_aligned)) if ok]
    value = results_field.split(b":", 1)[-1]
    results = " ".join(value.decode("utf-8", "replace").split())
    head = header[:MAX_HEADER]
    if len(header) > MAX_HEADER:
        head = head[: head.rfind(b"\r\n") + 2] if b"\r\n" in head else b""
    return Case(
        policy_domain=ev.record_domain,
        ruf=ev.record.ruf,
        from_domain=ev.from_domain,
        source_ip=source_ip,
        mail_from=mail_from,
        arrival=time.time() if now is None else now,
        results=results,
        alignment=", ".join(aligned) or "none",
        delivery={"reject": "reject", "quarantine": "spam"}.get(action, "delivered"),
        header=head,
    )


class Outbox:
    """Cases waiting for the report task; at most RATE_PER_HOUR per policy domain a (fixed)
    hour, and MAX_PENDING in all. Thread-safe (sessions add, the task drains)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[Case] = []
        self._hour = -1
        self._counts: dict[str, int] = {}
        self.dropped = 0

    def allow(self, policy_domain: str) -> bool:
        """Whether a report for `policy_domain` may be made now (counted when it is)."""
        hour = int(self._clock() // 3600)
        with self._lock:
            if hour != self._hour:
                self._hour, self._counts = hour, {}
            n = self._counts.get(policy_domain, 0)
            if n >= RATE_PER_HOUR or len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return False
            self._counts[policy_domain] = n + 1
            return True

    def add(self, case: Case) -> None:
        with self._lock:
            if len(self._pending) < MAX_PENDING:
                self._pending.append(case)

    def drain(self) -> list[Case]:
        with self._lock:
            out, self._pending = self._pending, []
        return out


def compose(case: Case, org: str, sender: str, to: Sequence[str], hostname: str) -> bytes:
    """The report: multipart/report (RFC 6522) with a human-readable part, the
    message/feedback-report part (RFC 5965 3, RFC 6591 3.1, RFC 7489 7.3.1) and the original
    header section as text/rfc822-headers."""
    boundary = f"=_dmarc_{uuid.uuid4().hex}"
    date = email.utils.formatdate(case.arrival, localtime=False)
    report_id = f"{uuid.uuid4().hex}@{hostname}"
    top = [
        f"From: {sender}",
        f"To: {', '.join(to)}",
        f"Subject: DMARC failure report for {case.from_domain} from {case.source_ip}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: <{report_id}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"',
    ]
    text = (
        f"A message that claims to be from {case.from_domain} reached {org} from "
        f"{case.source_ip} on {date} and did not pass DMARC as its domain {case.policy_domain} "
        "asks (RFC 7489). Its header section follows; the body is not included.\r\n"
    )
    feedback = [
        "Feedback-Type: auth-failure",
        "User-Agent: carteiro",
        "Version: 1",
        f"Original-Mail-From: <{_line(case.mail_from)}>",
        f"Arrival-Date: {date}",
        f"Source-IP: {case.source_ip}",
        f"Reported-Domain: {_line(case.from_domain)}",
        f"Authentication-Results: {_line(case.results)}",
        "Auth-Failure: dmarc",
        f"Identity-Alignment: {case.alignment}",
        f"Delivery-Result: {case.delivery}",
    ]
    parts = [
        "\r\n".join(top),
        "",
        "This is a DMARC failure report (RFC 7489 7.3).",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        text,
        f"--{boundary}",
        "Content-Type: message/feedback-report",
        "",
        "\r\n".join(feedback) + "\r\n",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    head = "\r\n".join(parts).encode("utf-8") + b"\r\n" + case.header
    if not head.endswith(b"\r\n"):
        head += b"\r\n"
    return head + f"\r\n--{boundary}--\r\n".encode()


def _line(value: str) -> str:
    """A value from the client as one printable line (no header injection)."""
    return "".join(c if c.isprintable() else " " for c in value)[: 998 - 40]
