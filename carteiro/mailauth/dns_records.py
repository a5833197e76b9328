"""The DNS records a domain must publish for carteiro: MX, SPF (RFC 7208), DKIM (RFC 6376),
DMARC (RFC 7489), printed as zone-file lines by `carteiro dns-records`. Pure apart from reading the
DKIM key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carteiro.mailauth.dkim import key_path, txt_record


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # fully qualified, with the final dot
    type: str
    value: str  # zone-file presentation (TXT already quoted)
    comment: str = ""


def _quote_txt(value: str) -> str:
    # RFC 1035 3.3.14: a TXT string is at most 255 octets; long values are several strings.
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


def _fqdn(name: str) -> str:
    return name.rstrip(".") + "."


def records_for(
    domain: str, hostname: str, data_dir: Path, selector: str, dkim_enabled: bool = True
) -> list[Record]:
    d = domain.lower().rstrip(".")
    out = [
        Record(_fqdn(d), "MX", f"10 {_fqdn(hostname)}", f"mail for {d} goes to {hostname}"),
        Record(
            _fqdn(d),
            "TXT",
            _quote_txt("v=spf1 mx -all"),
            "SPF: only this domain's MX hosts send its mail",
        ),
    ]
    if dkim_enabled:
        kp = key_path(data_dir, d, selector)
        if kp.exists():
            out.append(
                Record(
                    _fqdn(f"{selector}._domainkey.{d}"),
                    "TXT",
                    _quote_txt(txt_record(kp)),
                    "DKIM public key",
                )
            )
        else:
            out.append(
                Record(
                    _fqdn(f"{selector}._domainkey.{d}"),
                    "TXT",
                    '""',
                    f"no DKIM key yet: run `carteiro init` again (it creates {kp})",
                )
            )
    out.append(
        Record(
            _fqdn(f"_dmarc.{d}"),
            "TXT",
            _quote_txt(f"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{d}"),
            "DMARC: start with p=none to watch reports first if other systems send as this domain",
        )
    )
    return out


def format_zone(records: list[Record], hostname: str) -> str:
    lines = [
        f"; Publish an A (and AAAA) record for {_fqdn(hostname)} with this server's address,",
        "; and ask your provider for a matching PTR (reverse DNS) record.",
    ]
    width = max(len(r.name) for r in records) if records else 0
    for r in records:
        if r.comment:
            lines.append(f"; {r.comment}")
        lines.append(f"{r.name:<{width}}  3600 IN {r.type:<3} {r.value}")
    return "\n".join(lines) + "\n"


# RFC 6186 3 (and RFC 8314 5.1 for _submissions): one SRV per service a client can find.
SRV_SERVICES = ("imaps", "imap", "pop3s", "pop3", "submissions", "submission")


def client_records(domain: str, hostname: str, ports: dict[str, int]) -> list[Record]:
    """SRV records for mail clients (RFC 6186) for the services in `ports` (name -> port), and
    the names Thunderbird and Outlook try for autoconfiguration, pointing at this host."""
    d = domain.lower().rstrip(".")
    target = _fqdn(hostname)
    out = []
    for i, svc in enumerate(s for s in SRV_SERVICES if ports.get(s)):
        out.append(
            Record(
                _fqdn(f"_{svc}._tcp.{d}"),
                "SRV",
                f"0 1 {ports[svc]} {target}",
                "mail clients find the servers here (RFC 6186)" if i == 0 else "",
            )
        )
    out.append(
        Record(
            _fqdn(f"autoconfig.{d}"),
            "CNAME",
            target,
            "Thunderbird autoconfig: the webmail answers /mail/config-v1.1.xml (serve it on 443)",
        )
    )
    out.append(
        Record(
            _fqdn(f"autodiscover.{d}"), "CNAME", target, "Outlook: /autodiscover/autodiscover.xml"
        )
    )
    out.append(
        Record(
            _fqdn(f"_autodiscover._tcp.{d}"), "SRV", f"0 1 443 {target}", "Outlook finds the name"
        )
    )
    return out
