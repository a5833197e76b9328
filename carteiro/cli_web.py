"""`carteiro web`: the webmail on its own, in front of any IMAP server and SMTP submission server
(carteiro's, Dovecot and Postfix, ...), with no data dir: it keeps no mail and no state on disk.

    carteiro web --imap mail.example.org:993 --smtp mail.example.org:587 --listen 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

EX_USAGE = 64
EX_CONFIG = 78


def _tls_mode(value: str, port: int, implicit_ports: tuple[int, ...]) -> str:
    if value != "auto":
        return value
    return "implicit" if port in implicit_ports else "starttls"


def cmd_web(args: argparse.Namespace) -> int:
    from carteiro.core.hostport import parse_hostport
    from carteiro.web.app import create_app
    from carteiro.web.autoconfig import Service, Services
    from carteiro.web.imap import Endpoint
    from carteiro.web.server import WebServer, is_loopback
    from carteiro.web.settings import WebSettings

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        ihost, iport = parse_hostport(args.imap, 993)
        shost, sport = parse_hostport(args.smtp, 587)
        lhost, _ = parse_hostport(args.listen)
    except ValueError as e:
        print(f"carteiro: {e}", file=sys.stderr)
        return EX_USAGE
    verify = not args.insecure
    imap = Endpoint(
        ihost, iport, _tls_mode(args.imap_tls, iport, (993,)), args.cafile or "", verify
    )
    smtp = Endpoint(
        shost, sport, _tls_mode(args.smtp_tls, sport, (465,)), args.cafile or "", verify
    )
    sieve = None
    if args.sieve:
        try:
            vhost, vport = parse_hostport(args.sieve, 4190)
        except ValueError as e:
            print(f"carteiro: {e}", file=sys.stderr)
            return EX_USAGE
        # RFC 5804 1.8: ManageSieve is STARTTLS on 4190 (no implicit-TLS port is registered)
        sieve = Endpoint(vhost, vport, "starttls", args.cafile or "", verify)
    public = args.hostname or ihost
    services = Services(
        public,
        (Service("imap", iport, "implicit" if imap.tls == "implicit" else "starttls"),
         Service("smtp", sport, "implicit" if smtp.tls == "implicit" else "starttls")),
    )  # fmt: skip
    https = bool(args.cert)
    if not https and not is_loopback(lhost):
        print(
            "carteiro: refusing to serve passwords over plain HTTP on a non-loopback address; "
            "give --cert and --key (or put a TLS proxy in front and listen on loopback)",
            file=sys.stderr,
        )
        return EX_CONFIG
    settings = WebSettings(
        imap=imap,
        smtp=smtp,
        hostname=public,
        services=services,
        idle_timeout=args.idle_timeout,
        secure_cookies=https or args.behind_https,
        sieve=sieve,
    )
    server = WebServer(
        create_app(settings),
        args.listen,
        Path(args.cert) if args.cert else None,
        Path(args.key or args.cert) if args.cert else None,
    )

    async def run() -> int:
        try:
            await server.start()
        except OSError as e:
            print(f"carteiro: {e.strerror or e}", file=sys.stderr)
            return EX_CONFIG
        assert server.bound is not None
        logging.getLogger("carteiro").info(
            "webmail on %s://%s:%d (IMAP %s:%d %s, SMTP %s:%d %s)",
            "https" if https else "http",
            *server.bound,
            imap.host,
            imap.port,
            imap.tls,
            smtp.host,
            smtp.port,
            smtp.tls,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        return 0

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "web",
        help="run the webmail alone, as a client of any IMAP and SMTP submission server",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--imap", required=True, metavar="HOST:PORT", help="the IMAP server")
    p.add_argument("--smtp", required=True, metavar="HOST:PORT", help="the submission server")
    p.add_argument(
        "--sieve", metavar="HOST:PORT", help="the ManageSieve server (filters in Settings)"
    )
    p.add_argument("--listen", default="127.0.0.1:8025", metavar="HOST:PORT")
    for proto in ("imap", "smtp"):
        p.add_argument(
            f"--{proto}-tls",
            choices=["auto", "implicit", "starttls", "none"],
            default="auto",
            help="auto: implicit TLS on 993/465, else STARTTLS",
        )
    p.add_argument("--cafile", help="CA certificates to verify the servers with")
    p.add_argument(
        "--insecure", action="store_true", help="encrypt but do not verify server certificates"
    )
    p.add_argument("--hostname", help="the mail host name told to clients (autoconfig)")
    p.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--key", help="the certificate's key (PEM; default: in --cert)")
    p.add_argument(
        "--behind-https", action="store_true", help="a TLS proxy in front: Secure cookies"
    )
    p.add_argument("--idle-timeout", type=float, default=1800.0, metavar="SECONDS")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.set_defaults(func=cmd_web)
