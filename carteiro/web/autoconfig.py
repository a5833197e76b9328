"""Client autoconfiguration documents: Thunderbird's config-v1.1.xml, Microsoft's Autodiscover POX
answer, and an Apple .mobileconfig profile, each naming our IMAP, POP3 and submission services
with their TLS modes. Pure: built from a Services value; no password is ever put in them.
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Service:
    protocol: str  # "imap" | "pop3" | "smtp"
    port: int
    tls: str  # "implicit" | "starttls"


@dataclass(frozen=True)
class Services:
    hostname: str
    services: tuple[Service, ...]

    def by(self, protocol: str) -> list[Service]:
        # RFC 8314 3: implicit TLS first, STARTTLS as the alternative.
        return sorted(
            (s for s in self.services if s.protocol == protocol),
            key=lambda s: s.tls != "implicit",
        )


def thunderbird(svc: Services, domain: str) -> str:
    """https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat"""
    h = escape(svc.hostname)
    d = escape(domain)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{d}">',
        f"    <domain>{d}</domain>",
        f"    <displayName>{d} mail</displayName>",
        f"    <displayShortName>{d}</displayShortName>",
    ]
    kinds = {"imap": "incomingServer", "pop3": "incomingServer", "smtp": "outgoingServer"}
    for proto in ("imap", "pop3", "smtp"):
        for s in svc.by(proto):
            tag = kinds[proto]
            out += [
                f'    <{tag} type="{proto}">',
                f"      <hostname>{h}</hostname>",
                f"      <port>{s.port}</port>",
                f"      <socketType>{'SSL' if s.tls == 'implicit' else 'STARTTLS'}</socketType>",
                "      <username>%EMAILADDRESS%</username>",
                "      <authentication>password-cleartext</authentication>",
                f"    </{tag}>",
            ]
    out += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(out)


def autodiscover(svc: Services, email: str) -> str:
    """Outlook's POX Autodiscover response (responseschema/2006a), settings action."""
    e = escape(email)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">',
        '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">',
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
    ]
    names = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
    for proto in ("imap", "pop3", "smtp"):
        for s in svc.by(proto)[:1]:
            parts += [
                "      <Protocol>",
                f"        <Type>{names[proto]}</Type>",
                f"        <Server>{escape(svc.hostname)}</Server>",
                f"        <Port>{s.port}</Port>",
                f"        <LoginName>{e}</LoginName>",
                "        <DomainRequired>off</DomainRequired>",
                "        <SPA>off</SPA>",
                f"        <Encryption>{'SSL' if s.tls == 'implicit' else 'TLS'}</Encryption>",
                "        <AuthRequired>on</AuthRequired>",
                "      </Protocol>",
            ]
    parts += ["    </Account>", "  </Response>", "</Autodiscover>", ""]
    return "\n".join(parts)


def request_email(body: bytes) -> str:
    """The EMailAddress of an Autodiscover request (plain text search: no XML parser on untrusted
    input, so no entity expansion)."""
    text = body[:65536].decode("utf-8", "replace")
    start = text.find("<EMailAddress>")
    end = text.find("</EMailAddress>")
    if start < 0 or end < start:
        return ""
    return text[start + len("<EMailAddress>") : end].strip()[:320]


def mobileconfig(svc: Services, email: str, name: str = "") -> bytes:
    """An Apple configuration profile with one com.apple.mail.managed payload (IMAP or POP3 in,
    submission out); the device asks for the password when it installs it."""
    incoming = svc.by("imap")[:1] or svc.by("pop3")[:1]
    outgoing = svc.by("smtp")[:1]
    domain = email.rpartition("@")[2]
    ident = ".".join(reversed(svc.hostname.split(".")))
    mail: dict[str, object] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.mail.{uuid.uuid5(uuid.NAMESPACE_DNS, email)}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "mail:" + email)).upper(),
        "PayloadDisplayName": email,
        "EmailAccountDescription": email,
        "EmailAccountName": name or email,
        "EmailAddress": email,
        "EmailAccountType": "EmailTypeIMAP"
        if incoming and incoming[0].protocol == "imap"
        else "EmailTypePOP",
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": svc.hostname,
        "IncomingMailServerUsername": email,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": svc.hostname,
        "OutgoingMailServerUsername": email,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    if incoming:
        mail["IncomingMailServerPortNumber"] = incoming[0].port
        mail["IncomingMailServerUseSSL"] = True  # STARTTLS or implicit: both encrypt
    if outgoing:
        mail["OutgoingMailServerPortNumber"] = outgoing[0].port
        mail["OutgoingMailServerUseSSL"] = True
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.profile.{domain}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "profile:" + email)).upper(),
        "PayloadDisplayName": f"{domain} mail",
        "PayloadContent": [mail],
    }
    return plistlib.dumps(profile)
