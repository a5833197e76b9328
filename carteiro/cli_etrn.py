"""`carteiro etrn SERVER DOMAIN...`: ask the relay that holds our mail to send it now (RFC 1985),
as a site that is not always connected does when it comes online (e.g. from cron or an if-up
hook). Uses stdlib smtplib; STARTTLS when the relay offers it.
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import ssl
import sys

from carteiro.core.hostport import parse_hostport

EX_OK = 0
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_USAGE = 64


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("etrn", help="ask a relay to send the mail it holds for our domains (ETRN)")
    p.add_argument("server", help="the relay's MX, host[:port] (default port 25)")
    p.add_argument("domain", nargs="+", help="domain (or @domain for its subdomains too)")
    p.add_argument("--helo", default=socket.getfqdn(), help="our name in EHLO")
    p.add_argument("--no-tls", action="store_true", help="do not use STARTTLS when offered")
    p.add_argument("--data", help=argparse.SUPPRESS)  # accepted like every command; unused
    p.set_defaults(func=cmd_etrn)


def cmd_etrn(args: argparse.Namespace) -> int:
    try:
        host, port = parse_hostport(args.server, 25)
    except ValueError as e:
        print(f"carteiro etrn: {e}", file=sys.stderr)
        return EX_USAGE
    status = EX_OK
    try:
        with smtplib.SMTP(host, port, local_hostname=args.helo, timeout=60) as c:
            c.ehlo()
            if c.has_extn("starttls") and not args.no_tls:
                # the relay's name may not match a private certificate: ETRN carries no secret
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                c.starttls(context=ctx)
                c.ehlo()
            if not c.has_extn("etrn"):
                print(f"carteiro etrn: {args.server} does not offer ETRN", file=sys.stderr)
                return EX_UNAVAILABLE
            for d in args.domain:
                code, text = c.docmd("ETRN", d)
                print(f"{d}: {code} {text.decode('utf-8', 'replace')}")
                if code >= 500:
                    status = EX_UNAVAILABLE
                elif code >= 400 and status == EX_OK:
                    status = EX_TEMPFAIL
    except (OSError, smtplib.SMTPException) as e:
        print(f"carteiro etrn: {args.server}: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    return status
