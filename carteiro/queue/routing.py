"""Where a recipient's mail goes: local store, smarthost, a per-domain transport, or the domain's MX.

RFC 5321 5.1 (MX order, implicit MX, our own host in the list), RFC 7505 (null MX) and RFC 5321
4.1.3 (address literals). DNS comes through the injected `Resolver`; the shuffle among equal
preferences through an injected random.Random, so tests are deterministic. No sockets here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from carteiro.core.address import AddressError, domain_to_ascii, normalize_domain
from carteiro.core.hostport import parse_hostport
from carteiro.core.nexthop import address_entry, parse_nexthop, transport_entry, transport_table
from carteiro.queue.mta_sts import Policies, Policy
from carteiro.queue.transport import Hop, Reply, TLSARecord, TLSPolicy

log = logging.getLogger("carteiro.queue.routing")

DNSStatus = Literal["ok", "nxdomain", "nodata", "temp"]
MAX_MX_HOSTS = 10  # RFC 5321 5.1 allows a configurable limit; Postfix uses 5 addresses
MAX_HOPS = 10
DEST_TTL = 1.0  # seconds a domain's destination (local? held?) is reused
STS_WARN_EVERY = 3600.0  # seconds between two log lines of one domain's MTA-STS mismatch
TRANSPORT_CACHE = 1024  # [transport] destinations kept parsed (domains under a ".parent" entry)


@dataclass(frozen=True, slots=True)
class MXAnswer:
    status: DNSStatus
    records: tuple[tuple[int, str], ...] = ()  # (preference, exchange without the trailing dot)
    error: str = ""
    secure: bool = False  # DNSSEC-validated (the resolver's AD bit; asked only for DANE)


@dataclass(frozen=True, slots=True)
class AddressAnswer:
    status: DNSStatus
    addresses: tuple[str, ...] = ()  # IPv6 and IPv4, as the resolver found them
    error: str = ""
    secure: bool = False  # every lookup DNSSEC-validated


@dataclass(frozen=True, slots=True)
class TLSAAnswer:
    status: DNSStatus
    records: tuple[TLSARecord, ...] = ()
    error: str = ""
    secure: bool = False


class Resolver(Protocol):
    async def mx(self, domain: str) -> MXAnswer:
        """MX records of `domain` (A-label form)."""
        ...

    async def addresses(self, host: str) -> AddressAnswer:
        """AAAA and A records of `host`: ok when either has data, temp when any lookup failed
        and none had data."""
        ...


def usable_tlsa(records: tuple[TLSARecord, ...]) -> tuple[TLSARecord, ...]:
    """The TLSA records an SMTP client can use (RFC 7672 3.1: DANE-TA(2) and DANE-EE(3) only;
    RFC 6698's selectors 0/1 and matching types 0/1/2)."""
    return tuple(r for r in records if r[0] in (2, 3) and r[1] in (0, 1) and r[2] in (0, 1, 2))


class DANEResolver(Resolver, Protocol):
    async def tlsa(self, name: str) -> TLSAAnswer:
        """TLSA records at `name` (`_25._tcp.mx.example.`), with whether they are secure."""
        ...


DestinationKind = Literal["local", "smarthost", "transport", "mx", "literal", "held"]


@dataclass(frozen=True, slots=True)
class Destination:
    """A next hop. Recipients with the same key share transactions and a concurrency limit."""

    key: str
    kind: DestinationKind
    domain: str = ""
    host: str = ""
    port: int = 25
    protocol: Literal["smtp", "lmtp"] = "smtp"
    path: str = ""  # an LMTP Unix socket


@dataclass(frozen=True, slots=True)
class Route:
    hops: tuple[Hop, ...] = ()
    error: Reply | None = None  # no hop: why (5xx bounce now, 4xx retry later)
    sts: Policy | None = None  # the MTA-STS policy the MX hosts were chosen under (TLS reports)
    dnssec_failed: tuple[str, ...] = ()  # MX hosts left out: their TLSA lookup failed (DANE)


@dataclass
class RoutingConfig:
    hostname: str = "localhost"
    remote_port: int = 25
    smarthost: str = ""  # "host:port"
    relay_tls: TLSPolicy = "opportunistic"
    relay_username: str = ""
    relay_password: str = field(default="", repr=False)
    transport: Mapping[str, str] = field(default_factory=dict)  # domain or ".parent" -> host:port
    tls_verify: bool = False  # require verified TLS towards every MX host (else: MTA-STS's say)
    cafile: str = ""
    inet_protocols: str = "any"  # "any" | "ipv4" | "ipv6"
    dane: bool = False  # DANE (RFC 7672): the resolver's DNSSEC-validated TLSA records


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _family_ok(address: str, inet: str) -> bool:
    if inet == "any":
        return True
    version = ipaddress.ip_address(address).version
    return (version == 4) == (inet == "ipv4")


def _interleave(addresses: tuple[str, ...], inet: str) -> list[str]:
    """IPv6 and IPv4 alternately, IPv6 first (RFC 8305 4), filtered by `inet`."""
    v6 = [a for a in addresses if ":" in a and _family_ok(a, inet)]
    v4 = [a for a in addresses if ":" not in a and _family_ok(a, inet)]
    out: list[str] = []
    for i in range(max(len(v6), len(v4))):
        out += v6[i : i + 1] + v4[i : i + 1]
    return out


class Router:
    def __init__(
        self,
        resolver: Resolver,
        config: RoutingConfig,
        is_local: Callable[[str], bool],
        rng: random.Random | None = None,
        prefer: Callable[[Hop], bool] | None = None,
        is_held: Callable[[str], bool] | None = None,
        sts: Policies | None = None,
    ) -> None:
        self.resolver = resolver
        # MTA-STS policies of recipient domains (RFC 8461), for MX delivery; None: not looked up
        self.sts = sts
        self._sts_warned: dict[tuple[str, str], float] = {}  # (domain, policy id) -> until
        self.config = config
        self.is_local = is_local
        # held domains (ETRN/ATRN): their mail waits until the domain's host asks
        self.is_held = is_held
        self.rng = rng or random.Random()
        # Among equal preferences, hosts we already hold a connection to go first.
        self.prefer = prefer
        self._transport = transport_table(config.transport)
        # Per-address entries (Mailman's lists in a shared domain) are rare: without any, a
        # recipient's own entry is not looked for at all.
        self._per_address = any("@" in k for k in self._transport)
        # A [transport] destination is the same for every message to that domain: parsed once.
        self._transport_dests: dict[tuple[str, str], Destination] = {}
        # domain -> (until, destination): is_local and is_held are directory queries, asked
        # for every recipient of every attempt; an answer is reused for DEST_TTL seconds.
        self._dests: dict[str, tuple[float, Destination]] = {}

    # ---- which destination ----------------------------------------------------------------

    def _transport_for(self, domain: str) -> str | None:
        return transport_entry(self._transport, domain)

    def destination_for(self, address: str, release: bool = False) -> Destination:
        """The next hop for one recipient: its own `[transport]` entry (a list handed to
        Mailman 3 in a domain that is otherwise delivered here), else its domain's."""
        entry = address_entry(self._transport, address) if self._per_address else None
        domain = address.rpartition("@")[2]
        if entry is None or normalize_domain(domain).startswith("["):
            return self.destination(domain, release)
        return self._transport_destination(normalize_domain(domain), entry)

    def _transport_destination(self, d: str, entry: str) -> Destination:
        dest = self._transport_dests.get((d, entry))
        if dest is not None:
            return dest
        nh = parse_nexthop(entry, self.config.remote_port)
        dest = Destination(
            key=f"transport:{nh.key}",
            kind="transport",
            domain=d,
            host=nh.host,
            port=nh.port,
            protocol=nh.protocol,
            path=nh.path,
        )
        if len(self._transport_dests) >= TRANSPORT_CACHE:  # ".parent" entries: many domains
            self._transport_dests.clear()
        self._transport_dests[(d, entry)] = dest
        return dest

    def destination(self, domain: str, release: bool = False) -> Destination:
        """The next hop for a recipient domain. Local domains never leave the machine; held
        ones wait ("held") unless `release` (their host asked, with ETRN).

        Answers are kept DEST_TTL seconds: a domain added or held by `carteiro domain` counts
        from then on, as if the attempts of that second had been made a second earlier."""
        if release:
            return self._destination(normalize_domain(domain), True)
        now = time.monotonic()
        hit = self._dests.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        dest = self._destination(normalize_domain(domain), False)
        if len(self._dests) >= TRANSPORT_CACHE:
            self._dests.clear()
        self._dests[domain] = (now + DEST_TTL, dest)
        return dest

    def _destination(self, d: str, release: bool) -> Destination:
        if d.startswith("["):
            return Destination(key=d, kind="literal", domain=d)
        if self.is_local(d):
            return Destination(key="local", kind="local", domain=d)
        if not release and self.is_held is not None and self.is_held(d):
            return Destination(key=f"held:{d}", kind="held", domain=d)
        override = self._transport_for(d)
        if override:
            return self._transport_destination(d, override)
        if self.config.smarthost:
            host, port = parse_hostport(self.config.smarthost, 25)
            return Destination(key=f"relay:{host}:{port}", kind="smarthost", host=host, port=port)
        return Destination(key=d, kind="mx", domain=d)

    # ---- which hosts ----------------------------------------------------------------------

    async def route(self, dest: Destination) -> Route:
        if dest.kind == "local" or dest.kind == "held":
            raise ValueError(f"{dest.kind} destinations have no route")
        if dest.kind == "literal":
            return self._literal(dest.domain)
        if dest.kind == "smarthost":
            c = self.config
            return await self._direct(
                dest.host, dest.port, c.relay_tls, c.tls_verify, c.relay_username, c.relay_password
            )
        if dest.kind == "transport" and dest.protocol == "lmtp":
            # RFC 2033: a store or list manager on this host or a trusted network; no TLS
            if dest.path:
                hop = Hop("localhost", f"unix:{dest.path}", 0, "none", protocol="lmtp")
                return Route(hops=(hop,))
            route = await self._direct(dest.host, dest.port, "none", False, "", "")
            return Route(
                hops=tuple(dataclasses.replace(h, protocol="lmtp") for h in route.hops),
                error=route.error,
            )
        if dest.kind == "transport":
            tls: TLSPolicy = "starttls" if self.config.tls_verify else "opportunistic"
            return await self._direct(dest.host, dest.port, tls, self.config.tls_verify, "", "")
        return await self._mx(dest.domain)

    def _mx_hop(self, host: str, address: str, required_by: str = "") -> Hop:
        """`required_by`: a policy (MTA-STS) that requires verified TLS to this host."""
        c = self.config
        verify = c.tls_verify or bool(required_by)
        return Hop(
            host=host,
            address=address,
            port=c.remote_port,
            tls="starttls" if verify else "opportunistic",
            verify=verify,
            cafile=c.cafile,
            required_by=required_by,
        )

    def _literal(self, literal: str) -> Route:
        # RFC 5321 4.1.3: [192.0.2.1] or [IPv6:2001:db8::1]; delivered to that address directly.
        inner = literal[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        if not _is_ip(inner):
            return Route(error=Reply(550, "5.1.2", f"bad address literal {literal}"))
        return Route(hops=(self._mx_hop(inner, inner),))

    async def _direct(
        self, host: str, port: int, tls: TLSPolicy, verify: bool, user: str, password: str
    ) -> Route:
        """A configured host (smarthost, transport map): A/AAAA only, no MX lookup."""
        if _is_ip(host):
            addresses: list[str] = [host]
        else:
            ans = await self.resolver.addresses(host)
            if ans.status == "temp":
                return Route(error=Reply(451, "4.4.3", f"DNS lookup of {host} failed: {ans.error}"))
            addresses = _interleave(ans.addresses, self.config.inet_protocols)
            if not addresses:
                # Our own configuration is wrong: keep the mail and let the operator fix it.
                return Route(error=Reply(451, "4.4.4", f"relay host {host} has no address"))
        hops = tuple(
            Hop(host, a, port, tls, verify, user, password, self.config.cafile)
            for a in addresses[:MAX_HOPS]
        )
        return Route(hops=hops)

    def _is_me(self, host: str) -> bool:
        return normalize_domain(host) == normalize_domain(self.config.hostname)

    async def _mx(self, domain: str) -> Route:
        try:
            qname = domain_to_ascii(domain)
        except AddressError as e:
            return Route(error=Reply(550, "5.1.2", str(e)))
        policy: Policy | None = None
        if self.sts is not None:
            ans, policy = await asyncio.gather(self.resolver.mx(qname), self.sts.policy(qname))
        else:
            ans = await self.resolver.mx(qname)
        if ans.status == "temp":
            return Route(
                error=Reply(451, "4.4.3", f"DNS MX lookup of {domain} failed: {ans.error}")
            )
        if ans.status == "nxdomain":
            return Route(error=Reply(550, "5.1.2", f"Host or domain name not found: {domain}"))
        records = [(p, h.rstrip(".").lower()) for p, h in ans.records]
        if ans.status == "nodata" or not records:
            # RFC 5321 5.1: no MX -> the domain itself is the implicit MX (preference 0).
            return await self._hosts(domain, [(0, qname)], True, policy, ans.secure)
        # RFC 7505 3: a single MX "." (any preference) says the domain accepts no mail.
        if len(records) == 1 and records[0][1] in ("", "."):
            return Route(
                error=Reply(
                    556, "5.1.10", f"Recipient address has null MX: {domain} accepts no mail"
                )
            )
        records = [r for r in records if r[1] not in ("", ".")]
        return await self._hosts(domain, records, False, policy, ans.secure)

    def _order(self, records: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Lowest preference first; random order among equal preferences (RFC 5321 5.1)."""
        by_pref: dict[int, list[str]] = {}
        for pref, host in records:
            if host not in by_pref.setdefault(pref, []):
                by_pref[pref].append(host)
        ordered: list[tuple[int, str]] = []
        for pref in sorted(by_pref):
            hosts = by_pref[pref]
            self.rng.shuffle(hosts)
            ordered += [(pref, h) for h in hosts]
        return ordered

    async def _hosts(
        self,
        domain: str,
        records: list[tuple[int, str]],
        implicit: bool,
        policy: Policy | None = None,
        mx_secure: bool = False,
    ) -> Route:
        ordered = self._order(records)
        # RFC 5321 5.1: when we are one of the MX hosts, drop our record and every one with an
        # equal or higher preference value; nothing left means a routing loop.
        mine = [p for p, h in ordered if self._is_me(h)]
        if mine:
            ordered = [(p, h) for p, h in ordered if p < min(mine)]
            if not ordered:
                return Route(error=Reply(554, "5.4.6", f"mail for {domain} loops back to myself"))
        if self.config.dane and mx_secure:
            dane = await self._dane(domain, ordered[:MAX_MX_HOSTS])
            if dane is not None:
                return dane  # (DANE takes precedence over MTA-STS: RFC 8461 2)
        required_by = ""
        if policy is not None:
            # RFC 8461 4.1: only MX hosts the policy names; enforce: only those, over verified
            # TLS; testing: all, as before, and a line in the log for what enforce would refuse
            named = [(p, h) for p, h in ordered if policy.matches(h)]
            if len(named) < len(ordered) and self._warn_once(domain, policy):
                others = ", ".join(h for p, h in ordered if not policy.matches(h))
                log.warning(
                    "mta-sts: %s (%s): MX %s not in its policy (mx: %s)%s",
                    domain,
                    policy.mode,
                    others,
                    " ".join(policy.mx),
                    "; not used" if policy.mode == "enforce" else "; used anyway (testing)",
                )
            if policy.mode == "enforce":
                if not named:
                    # 4.2: never a bounce for this before the policy was looked up again
                    return Route(
                        error=Reply(
                            451,
                            "4.7.5",
                            f"MTA-STS policy of {domain} names none of its MX hosts"
                            f" ({', '.join(h for _, h in ordered)})",
                        ),
                        sts=policy,
                    )
                ordered = named
                required_by = f"MTA-STS policy of {domain}"
        ordered = ordered[:MAX_MX_HOSTS]
        hops: list[Hop] = []
        temp_errors: list[str] = []
        answers = await asyncio.gather(*(self._host_addresses(h) for _, h in ordered))
        groups: dict[int, list[list[Hop]]] = {}
        for (pref, host), ans in zip(ordered, answers, strict=True):
            if ans.status == "temp":
                temp_errors.append(f"{host}: {ans.error}")
                continue
            host_hops = [
                self._mx_hop(host, a, required_by)
                for a in _interleave(ans.addresses, self.config.inet_protocols)
            ]
            if host_hops:
                groups.setdefault(pref, []).append(host_hops)
        for pref in sorted(groups):
            host_lists = groups[pref]
            if self.prefer is not None:
                # Stable sort keeps the random order among hosts equally (un)preferred.
                host_lists.sort(key=lambda hl: not any(self.prefer(h) for h in hl))  # type: ignore[misc]
            for hl in host_lists:
                hops += hl
        if hops:
            return Route(hops=tuple(hops[:MAX_HOPS]), sts=policy)
        if temp_errors:
            return Route(
                error=Reply(451, "4.4.3", "DNS address lookup failed: " + "; ".join(temp_errors))
            )
        if implicit:
            return Route(
                error=Reply(
                    550, "5.1.2", f"Host or domain name not found: {domain} has no MX, A or AAAA"
                )
            )
        return Route(
            error=Reply(550, "5.4.4", f"Unable to route: no MX host of {domain} has an address")
        )

    async def _dane(self, domain: str, ordered: list[tuple[int, str]]) -> Route | None:
        """RFC 7672 2.2: the route when DANE applies to `domain` (its MX records validated, and
        at least one MX host whose validated addresses have a validated TLSA RRset), else None.
        A host with usable TLSA records is authenticated by them; one whose records are all
        unusable still gets mandatory TLS, unauthenticated; one whose TLSA lookup failed is not
        used (an attacker could be hiding its records: when that leaves no host the mail
        waits, it never falls back to plain opportunistic TLS); the others are opportunistic."""
        tlsa_of = getattr(self.resolver, "tlsa", None)
        if tlsa_of is None:
            return None
        port = self.config.remote_port
        answers = await asyncio.gather(*(self._host_addresses(h) for _, h in ordered))
        secure = [h for (_, h), a in zip(ordered, answers, strict=True) if a.secure and a.addresses]
        tlsas = await asyncio.gather(*(tlsa_of(f"_{port}._tcp.{h}") for h in secure))
        found: dict[str, TLSAAnswer] = {}
        for host, t in zip(secure, tlsas, strict=True):
            if t.status == "temp" or (t.status == "ok" and t.secure):
                found[host] = t
        if not found:
            return None  # no validated TLSA RRset, and no failed lookup that could hide one
        hops: list[Hop] = []
        failed: list[str] = []
        failed_hosts: list[str] = []
        c = self.config
        for (_pref, host), ans in zip(ordered, answers, strict=True):
            t = found.get(host)
            addresses = _interleave(ans.addresses, c.inet_protocols)
            if t is None:
                hops += [self._mx_hop(host, a) for a in addresses]
                continue
            if t.status != "ok":
                failed.append(f"{host}: {t.error}")
                failed_hosts.append(host)
                continue
            records = usable_tlsa(t.records)
            why = f"DANE TLSA of {host}" if records else f"DANE (unusable TLSA records of {host})"
            hops += [
                Hop(host, a, c.remote_port, "starttls", False, cafile=c.cafile,
                    required_by=why, tlsa=records)
                for a in addresses
            ]  # fmt: skip
        if hops:
            return Route(hops=tuple(hops[:MAX_HOPS]), dnssec_failed=tuple(failed_hosts))
        return Route(
            error=Reply(451, "4.7.5", f"DANE: TLSA lookup failed ({'; '.join(failed)})"),
            dnssec_failed=tuple(failed_hosts),
        )

    def _warn_once(self, domain: str, policy: Policy) -> bool:
        """Whether to log a policy mismatch now: once an hour per domain and policy, not at
        every delivery attempt."""
        now = time.monotonic()
        key = (domain, policy.id)
        if self._sts_warned.get(key, 0.0) > now:
            return False
        if len(self._sts_warned) >= TRANSPORT_CACHE:
            self._sts_warned.clear()
        self._sts_warned[key] = now + STS_WARN_EVERY
        return True

    async def _host_addresses(self, host: str) -> AddressAnswer:
        if _is_ip(host):
            # An MX that names an IP is invalid (RFC 5321 5.1) but common; honour it.
            return AddressAnswer("ok", (host,))
        return await self.resolver.addresses(host)
