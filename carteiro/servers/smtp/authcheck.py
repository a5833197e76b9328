"""The SMTP session's side of mail authentication: when each check starts (iprev at connect, SPF
at MAIL FROM, DKIM/DMARC/ARC at the end of data), what the session answers, and the message as
delivered: our Authentication-Results on top, forged ones under our authserv-id removed.

The checks run as tasks while the client goes on sending (PIPELINING is not slowed); the session
waits for them only where their answer decides a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from carteiro.mailauth import dmarc_failures, dnsbl, helo, iprev, spf
from carteiro.mailauth.dmarc_reports import Recorder, seen_from
from carteiro.mailauth.greylist import Greylist
from carteiro.mailauth.inbound import Checker, Refusal, Verdict
from carteiro.mailauth.results_header import has_field, strip_ours
from carteiro.servers.smtp.message import HEAD_MAX, _mkstemp, header_end

log = logging.getLogger("carteiro.smtp.auth")


def in_networks(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


def _cancel(task: asyncio.Task[object] | None) -> None:
    if task is not None and not task.done():
        task.cancel()


class SessionChecks:
    """One per SMTP session whose mail is checked (the MX role, a client not ours)."""

    def __init__(
        self,
        checker: Checker,
        ip: str,
        recorder: Recorder | None = None,
        greylist: Greylist | None = None,
    ) -> None:
        self.checker = checker
        self.recorder = recorder
        self.greylist = greylist
        self.ip = ip
        self._iprev: asyncio.Task[iprev.IPRevResult] = asyncio.get_running_loop().create_task(
            checker.check_iprev(ip)
        )
        self._spf: asyncio.Task[spf.SPFResult] | None = None
        # RFC 7208 2.3: the HELO identity, checked once per session (reported as smtp.helo)
        self._helo_spf: asyncio.Task[spf.SPFResult] | None = None
        self._helo_checked = ""
        # the HELO/EHLO name itself (syntax, forward confirmation), from the greeting on
        self._helo_name: asyncio.Task[helo.HeloResult] | None = None
        self._helo_named = ""
        self._dnsbl: asyncio.Task[dnsbl.Listing | None] | None = None
        if checker.settings.dnsbl_zones:
            self._dnsbl = asyncio.get_running_loop().create_task(checker.check_dnsbl(ip))
        self.helo = ""
        self.mail_from = ""

    def close(self) -> None:
        _cancel(self._iprev)  # type: ignore[arg-type]
        _cancel(self._spf)  # type: ignore[arg-type]
        _cancel(self._dnsbl)  # type: ignore[arg-type]
        _cancel(self._helo_spf)  # type: ignore[arg-type]
        _cancel(self._helo_name)  # type: ignore[arg-type]

    # ---- connect / MAIL FROM / RCPT ---------------------------------------------------------

    def greeted(self, name: str) -> None:
        """HELO/EHLO `name`: its check starts now, in the background (again only for a new
        name)."""
        if self._helo_name is not None and self._helo_named == name:
            return
        _cancel(self._helo_name)  # type: ignore[arg-type]
        self._helo_named = name
        loop = asyncio.get_running_loop()
        self._helo_name = loop.create_task(self.checker.check_helo(name, self.ip))

    async def mail_refusal(self) -> Refusal | None:
        """Before MAIL is accepted: DNS blocklists (RFC 5782), then the client's reverse DNS
        and its HELO name when policy requires them."""
        if self._dnsbl is not None:
            refusal = self.checker.dnsbl_refusal(self.ip, await self._dnsbl)
            if refusal is not None:
                return refusal
        settings = self.checker.settings
        if settings.require_helo != "none" and self._helo_name is not None:
            refusal = self.checker.helo_refusal(await self._helo_name)
            if refusal is not None:
                return refusal
        if not settings.require_iprev:
            return None
        return self.checker.iprev_refusal(await self._iprev)

    def mail(self, helo: str, mail_from: str) -> None:
        """MAIL FROM accepted: its SPF check starts now, in the background."""
        _cancel(self._spf)  # type: ignore[arg-type]
        self.helo, self.mail_from = helo, mail_from
        loop = asyncio.get_running_loop()
        self._spf = loop.create_task(self.checker.check_spf(self.ip, mail_from, helo))
        if helo and helo != self._helo_checked:
            _cancel(self._helo_spf)  # type: ignore[arg-type]
            self._helo_checked = helo
            self._helo_spf = loop.create_task(self.checker.check_spf(self.ip, "", helo))

    async def rcpt_refusal(self, recipient: str, greylist: bool = True) -> Refusal | None:
        """Before a RCPT is accepted: SPF fail, when policy refuses it (spf_fail = "reject");
        then greylisting, when on."""
        if self.checker.settings.spf_fail == "reject" and self._spf is not None:
            refusal = self.checker.spf_refusal(await self._spf)
            if refusal is not None:
                return refusal
        grey = self.greylist
        if grey is None or not greylist or grey.known_client(self.ip):
            return None
        if await asyncio.to_thread(grey.check, self.ip, self.mail_from, recipient) == "defer":
            log.info("greylisted [%s] <%s> -> <%s>", self.ip, self.mail_from, recipient)
            return Refusal(451, "4.7.1", "Greylisted: please try again later")
        return None

    # ---- end of data ------------------------------------------------------------------------

    async def verdict(self, source: bytes | Path, prefix_len: int, size: int) -> Verdict:
        """`source` is the message with our `prefix_len` octets of trace fields on top."""
        limit = self.checker.settings.verify_max_size
        message: bytes | None
        head: bytes | None = None
        if size - prefix_len > limit:
            message = None
            head = await asyncio.to_thread(_read_head, source, prefix_len)
        elif isinstance(source, bytes):
            message = source[prefix_len:]
        else:
            message = await asyncio.to_thread(_read_from, source, prefix_len)
        iprev_result = await self._iprev
        spf_result = await self._spf if self._spf is not None else None
        helo_result = None
        if self._helo_spf is not None and self.mail_from:  # for <> the MAIL FROM check is it
            helo_result = await self._helo_spf
        helo_name = await self._helo_name if self._helo_name is not None else None
        verdict = await self.checker.message(
            message,
            ip=self.ip,
            helo=self.helo,
            mail_from=self.mail_from,
            iprev_result=iprev_result,
            spf_result=spf_result,
            helo_result=helo_result,
            helo_name=helo_name,
            size=size - prefix_len,
            head=head,
        )
        if self.recorder is not None and verdict.dmarc is not None and verdict.action != "defer":
            seen = seen_from(
                verdict.dmarc, self.ip, self.mail_from, self.helo, verdict.signatures, spf_result
            )
            if seen is not None:
                self.recorder.record(seen)
            if self.checker.settings.dmarc_failure_reports:
                self._failure_report(verdict, message if message is not None else head, spf_result)
        return verdict

    def _failure_report(
        self, verdict: Verdict, data: bytes | None, spf_result: spf.SPFResult | None
    ) -> None:
        """RFC 7489 7.3: a failure report for the domain's ruf=, when its fo= asks for one and
        its hourly allowance is not spent (dmarc_failures)."""
        ev, outbox = verdict.dmarc, self.recorder.failures if self.recorder else None
        if ev is None or outbox is None or data is None:
            return
        if not dmarc_failures.wanted(ev, spf_result, verdict.signatures):
            return
        if not outbox.allow(ev.record_domain):
            return
        end = header_end(data)
        case = dmarc_failures.case_of(
            ev,
            source_ip=self.ip,
            mail_from=self.mail_from,
            results_field=verdict.header,
            header=data[:end] if end >= 0 else data[: dmarc_failures.MAX_HEADER],
            action=verdict.action,
        )
        outbox.add(case)


def _read_head(source: bytes | Path, offset: int) -> bytes:
    """The header section of the message after our `offset` octets of trace fields."""
    if isinstance(source, bytes):
        data = source[offset : offset + HEAD_MAX]
    else:
        with open(source, "rb") as f:
            f.seek(offset)
            data = f.read(HEAD_MAX)
    end = header_end(data)
    return data if end < 0 else data[: end + 2]


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


@dataclass
class Rewritten:
    """The message to deliver; `temp` is a file of ours to remove after delivery."""

    source: bytes | Path
    temp: Path | None = None

    def discard(self) -> None:
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()
            self.temp = None


def rewrite(
    source: bytes | Path,
    at: int,
    prefix_len: int,
    header: bytes,
    authserv_id: str,
    tmp_dir: Path,
) -> Rewritten:
    """`header` inserted at offset `at` (after Return-Path, above our Received), and the
    client's header section (from `prefix_len`) without Authentication-Results fields that claim
    `authserv_id` (RFC 8601 5). Blocking for a file: call from a thread."""
    if isinstance(source, bytes):
        head = _head_of(source[prefix_len : prefix_len + HEAD_MAX], len(source) - prefix_len)
        body_from = prefix_len + len(head)
        if has_field(head):
            head, _n = strip_ours(head, authserv_id)
        return Rewritten(source[:at] + header + source[at:prefix_len] + head + source[body_from:])
    size = source.stat().st_size
    with open(source, "rb") as f:
        top = f.read(prefix_len)
        head = _head_of(f.read(HEAD_MAX), size - prefix_len)
        f.seek(prefix_len + len(head))
        if has_field(head):
            head, _n = strip_ours(head, authserv_id)
        fd, name = _mkstemp(tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(top[:at] + header + top[at:] + head)
                while block := f.read(1 << 20):
                    out.write(block)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
    return Rewritten(Path(name), Path(name))


def _head_of(data: bytes, total: int) -> bytes:
    """The header section (its fields, without the blank line) at the start of `data`, of a
    message of `total` octets; b"" (left as it is) when its end is not within HEAD_MAX."""
    end = header_end(data)
    if end >= 0:
        return data[:end]
    return data if total == len(data) else b""
