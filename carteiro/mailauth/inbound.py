"""The verdict on one inbound message: iprev, SPF, DKIM, DMARC (and ARC) combined into the
Authentication-Results field we add and the action the SMTP server takes before its reply.

Never a pass or a fail on missing evidence: when a lookup that could change the action failed
for now, the action is "defer" (4xx) unless configured to accept. Pure policy over the checks;
the SMTP server owns the timing (connect, MAIL FROM, end of data).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from carteiro.mailauth import arc, dkim_verify, dmarc, dnsbl, helo, iprev, spf
from carteiro.mailauth.lookup import Resolver
from carteiro.mailauth.results_header import MethodResult, render

log = logging.getLogger("carteiro.mailauth")

Action = Literal["accept", "quarantine", "reject", "defer"]


@dataclass(frozen=True, slots=True)
class Settings:
    authserv_id: str
    dmarc_policy: bool = True
    spf_fail: str = "dmarc"  # "dmarc" | "reject"
    temperror: str = "defer"  # "defer" | "accept"
    require_iprev: bool = False
    require_helo: str = "none"  # "none" | "valid" | "known" | "confirmed" (helo_refusal)
    verify_max_size: int = 20 * 1024 * 1024
    dns_timeout: float = 20.0
    arc_trusted_sealers: tuple[str, ...] = ()
    dnsbl_zones: tuple[str, ...] = ()
    dmarc_failure_reports: bool = False  # RFC 7489 7.3 reports to ruf= (dmarc_failures)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int
    status: str
    text: str


@dataclass
class Verdict:
    action: Action
    header: bytes  # the Authentication-Results field to prepend
    refusal: Refusal | None = None  # for "reject" and "defer"
    dmarc: dmarc.Evaluation | None = None
    signatures: list[dkim_verify.Signature] = field(default_factory=list)
    arc: arc.ARCResult | None = None


def _timeout_result(ip: str) -> iprev.IPRevResult:
    return iprev.IPRevResult("temperror", ip, reason="DNS lookups took too long")


class Checker:
    """One per server: the resolver (with its cache) and the policy."""

    def __init__(
        self,
        resolver: Resolver,
        settings: Settings,
        sample: Callable[[], float] = random.random,
        ours: Callable[[str], bool] | None = None,
    ) -> None:
        self.resolver = resolver
        self.settings = settings
        self.sample = sample
        self.ours = ours  # this server's own names (host name, local domains): helo.check

    async def check_iprev(self, ip: str) -> iprev.IPRevResult:
        try:
            async with asyncio.timeout(self.settings.dns_timeout):
                return await iprev.check(self.resolver, ip)
        except TimeoutError:
            return _timeout_result(ip)

    async def check_helo(self, name: str, ip: str) -> helo.HeloResult:
        try:
            async with asyncio.timeout(self.settings.dns_timeout):
                return await helo.check(self.resolver, name, ip, self.ours)
        except TimeoutError:
            return helo.HeloResult("temperror", "dns", name, "DNS lookups took too long")

    async def check_spf(self, ip: str, mail_from: str, helo: str) -> spf.SPFResult:
        return await spf.check_host(
            self.resolver,
            ip,
            mail_from,
            helo,
            receiver=self.settings.authserv_id,
            timeout=self.settings.dns_timeout,
        )

    async def check_dnsbl(self, ip: str) -> dnsbl.Listing | None:
        try:
            async with asyncio.timeout(self.settings.dns_timeout):
                return await dnsbl.check(self.resolver, ip, self.settings.dnsbl_zones)
        except TimeoutError:
            return None  # a list that does not answer lists nobody

    def dnsbl_refusal(self, ip: str, listing: dnsbl.Listing | None) -> Refusal | None:
        if listing is None:
            return None
        why = f": {listing.reason}" if listing.reason else ""
        return Refusal(554, "5.7.1", f"Client [{ip}] is listed in {listing.zone}{why}")

    def iprev_refusal(self, result: iprev.IPRevResult) -> Refusal | None:
        """With require_iprev: RFC 7372 3.3 X.7.25 for a client whose reverse DNS does not
        confirm; 4xx while that cannot be told."""
        if not self.settings.require_iprev or result.result == "pass":
            return None
        if result.result == "temperror":
            if self.settings.temperror == "accept":
                return None
            return Refusal(451, "4.7.25", f"reverse DNS of {result.ip} cannot be checked now")
        return Refusal(550, "5.7.25", f"reverse DNS of {result.ip} does not match")

    def helo_refusal(self, result: helo.HeloResult) -> Refusal | None:
        """With require_helo, as local policy (RFC 5321 4.1.4 forbids refusing mail only because
        the name does not match, so the default refuses nothing). Each level refuses what the
        one before it does, and more; the codes are Postfix's for the same checks:
          valid      a name that is not a host name or address literal (501 5.5.2), a one-label
                     name (504 5.5.2), an address literal that is not the client's, this
                     server's own name from a client it does not resolve to (550 5.7.1)
          known      also a name without A, AAAA or MX records (450 4.7.1: a DNS mistake
                     should cost a retry, not the mail), and a lookup that failed for now
          confirmed  also a name whose A/AAAA records are not the client's address (550 5.7.1)
        """
        level = self.settings.require_helo
        if level == "none":
            return None
        name = result.name
        if result.kind == "invalid":
            return Refusal(501, "5.5.2", f"HELO {name}: not a valid host name")
        if result.kind == "non-fqdn":
            return Refusal(504, "5.5.2", f"HELO {name}: need a fully-qualified host name")
        if result.kind in ("literal-mismatch", "ours"):
            return Refusal(550, "5.7.1", f"HELO {name}: {result.reason}")
        if level == "valid":
            return None
        if result.kind == "dns":
            if self.settings.temperror == "accept":
                return None
            return Refusal(450, "4.7.1", f"HELO {name}: cannot be checked now")
        if result.kind == "unknown":
            return Refusal(450, "4.7.1", f"HELO {name}: host not found")
        if level == "confirmed" and result.kind == "mismatch":
            return Refusal(550, "5.7.1", f"HELO {name}: {result.reason}")
        return None

    def spf_refusal(self, result: spf.SPFResult) -> Refusal | None:
        """With spf_fail = "reject": RFC 7372 3.2 X.7.23 / X.7.24."""
        if self.settings.spf_fail != "reject":
            return None
        if result.result == "fail":
            why = result.explanation or "not authorized"
            return Refusal(550, "5.7.23", f"SPF of {result.domain}: {why}")
        if result.result == "temperror" and self.settings.temperror == "defer":
            return Refusal(451, "4.7.24", f"SPF of {result.domain} cannot be checked now")
        return None

    async def message(
        self,
        message: bytes | None,
        *,
        ip: str,
        helo: str,
        mail_from: str,
        iprev_result: iprev.IPRevResult | None,
        spf_result: spf.SPFResult | None,
        helo_result: spf.SPFResult | None = None,
        helo_name: helo.HeloResult | None = None,
        size: int = 0,
        head: bytes | None = None,
    ) -> Verdict:
        """`message` is the data as received. None when larger than verify_max_size: then
        neither DKIM nor ARC is verified (the results say so), DMARC is evaluated on SPF and
        the author in `head` (the header section) alone, and its reject becomes quarantine: a
        forgery cannot pass by being large, and mail that would pass on its DKIM signature is
        not refused for our limit."""
        settings = self.settings
        signatures: list[dkim_verify.Signature] = []
        arc_result: arc.ARCResult | None = None
        authors: list[str] = []
        lookups: list[dmarc.Lookup] = []
        try:
            async with asyncio.timeout(settings.dns_timeout):
                if message is not None:
                    fields = dkim_verify.header_fields(message)  # parsed once for the three
                    authors = dmarc.author_domains(fields)
                    signatures, arc_result = await asyncio.gather(
                        dkim_verify.verify(self.resolver, message, fields),
                        arc.verify(self.resolver, message, settings.arc_trusted_sealers, fields),
                    )
                elif head is not None:
                    authors = dmarc.author_domains(dkim_verify.header_fields(head))
                lookups = list(
                    await asyncio.gather(*(dmarc.lookup(self.resolver, a) for a in authors))
                )
        except TimeoutError:
            lookups = [
                dmarc.Lookup("temperror", reason="DNS lookups took too long") for _ in authors
            ]
        results: list[MethodResult] = []
        if iprev_result is not None:
            results.append(
                MethodResult(
                    "iprev",
                    iprev_result.result,
                    iprev_result.name or iprev_result.reason,
                    (("policy.iprev", iprev_result.ip),),
                )
            )
        if helo_name is not None:
            # no method is registered for the HELO name: an extension method, which readers
            # that do not know it skip; smtp.helo is the registered property for the name
            results.append(
                MethodResult(
                    "x-helo",
                    helo_name.result,
                    helo_name.reason,
                    (("smtp.helo", helo_name.name), ("policy.helo", helo_name.kind)),
                )
            )
        if spf_result is not None:
            prop = "smtp.mailfrom" if spf_result.identity == "mailfrom" else "smtp.helo"
            value = mail_from if spf_result.identity == "mailfrom" else helo
            results.append(
                MethodResult(
                    "spf",
                    spf_result.result,
                    _spf_comment(spf_result, ip),
                    ((prop, value or spf_result.domain),),
                )
            )
        if helo_result is not None and helo_result.result != "none":
            results.append(
                MethodResult(
                    "spf", helo_result.result, _spf_comment(helo_result, ip), (("smtp.helo", helo),)
                )
            )
        if message is None:
            results.append(MethodResult("dkim", "policy", f"not verified: over {size} octets"))
        elif not signatures:
            results.append(MethodResult("dkim", "none"))
        for s in signatures:
            props = [("header.d", s.domain), ("header.s", s.selector), ("header.a", s.algorithm)]
            if s.i_differs_from_d:
                props.insert(0, ("header.i", s.identity))
            if s.b_prefix:
                props.append(("header.b", s.b_prefix))
            results.append(MethodResult("dkim", s.result, s.reason, tuple(props)))
        evaluation: dmarc.Evaluation | None = None
        evaluations = [
            dmarc.evaluate(found, a, spf_result, signatures, self.sample)
            for a, found in zip(authors, lookups, strict=True)
        ]
        for ev in evaluations:
            comment = ""
            if ev.record is not None:
                comment = f"p={ev.policy} dis={ev.disposition}"
            elif ev.reason:
                comment = ev.reason
            results.append(
                MethodResult("dmarc", ev.result, comment, (("header.from", ev.from_domain),))
            )
        if evaluations:
            evaluation = dmarc.strictest(evaluations)
            author = evaluation.from_domain
        else:
            results.append(MethodResult("dmarc", "none", "no author domain"))
        if arc_result is not None and arc_result.result != "none":
            results.append(
                MethodResult("arc", arc_result.result, arc_result.reason, arc_result.properties())
            )
        header = render(settings.authserv_id, results)
        verdict = Verdict("accept", header, None, evaluation, signatures, arc_result)
        if evaluation is None or not settings.dmarc_policy:
            return verdict
        if evaluation.result == "temperror":
            if settings.temperror == "defer":
                verdict.action = "defer"
                verdict.refusal = Refusal(
                    451, "4.4.3", f"DMARC of {author} cannot be checked now: {evaluation.reason}"
                )
            return verdict
        if evaluation.result != "fail":
            return verdict
        if arc_result is not None and arc_result.trusted_pass:
            # RFC 7489 / RFC 8617 7.2: a trusted forwarder's chain vouches for the original
            # authentication (a mailing list that changed the message): local policy override
            log.info("dmarc: %s fails but a trusted ARC chain passes; accepted", author)
            return verdict
        if evaluation.disposition == "reject" and message is None:
            verdict.action = "quarantine"  # DKIM unverified (too large): see the docstring
        elif evaluation.disposition == "reject":
            verdict.action = "reject"
            verdict.refusal = Refusal(
                550, "5.7.1", f"DMARC policy of {author} rejects this message (no aligned pass)"
            )
        elif evaluation.disposition == "quarantine":
            verdict.action = "quarantine"
        return verdict


def _spf_comment(result: spf.SPFResult, ip: str) -> str:
    who = f"{result.domain}: {ip}"
    if result.result == "pass":
        return f"{who} is authorized"
    if result.result in ("fail", "softfail"):
        return f"{who} is not authorized"
    return result.explanation or who
