"""Health of a running server, as /healthz answers it: listeners, queue, store, disk, certificate.

`ok` is false when mail cannot flow (a listener down, the queue stopped, the store not answering
within STORE_TIMEOUT, the disk all but full, the certificate expired); warnings (a certificate
expiring within CERT_WARN_DAYS, little disk left) keep `ok` true. Reports counts, never content.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from carteiro.store.api import AccountNotFound

if TYPE_CHECKING:
    from carteiro.app import App

STORE_TIMEOUT = 5.0
CERT_WARN_DAYS = 14
DISK_MIN = 64 * 1024 * 1024  # below this the store refuses mail (it keeps a reserve): not ok
DISK_WARN = 1024 * 1024 * 1024


def certificate_info(path: Path, now: float | None = None) -> dict[str, Any]:
    """Subject names and expiry of the first certificate in `path`."""
    now = time.time() if now is None else now
    try:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError) as e:
        return {"path": str(path), "error": str(e)}
    expires = cert.not_valid_after_utc
    days = (expires.timestamp() - now) / 86400
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return {
        "path": str(path),
        "names": names,
        "expires": expires.isoformat(),
        "days_left": round(days, 1),
        "self_signed": cert.issuer == cert.subject,
    }


def disk_info(path: Path) -> dict[str, Any]:
    usage = shutil.disk_usage(path)
    return {"free_bytes": usage.free, "total_bytes": usage.total}


async def check_health(app: App) -> dict[str, Any]:
    cfg = app.config
    problems: list[str] = []
    warnings: list[str] = []
    listeners = {}
    for lst in app.listeners:
        serving = lst.bound is not None and (
            any(s.is_serving() for s in lst.servers) or bool(lst._tls_accepting)
        )
        listeners[lst.service] = {
            "address": f"{lst.bound[0]}:{lst.bound[1]}" if lst.bound else lst.address,
            "serving": serving,
            "connections": len(lst.active),
        }
        if not serving:
            problems.append(f"{lst.service} is not accepting connections")
    queue: dict[str, Any] = {"running": False}
    if app.queue is not None:
        msgs = list(app.queue.spool.messages.values())
        now = time.time()
        queue = {
            "running": app.queue.running,
            "messages": len(msgs),
            "oldest_age": round(max((now - m.arrival for m in msgs), default=0.0), 1),
        }
        if not app.queue.running:
            problems.append("the outbound queue is not running")
    store: dict[str, Any] = {"answering": False}
    if app.ctx is not None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                # a real lookup through the store's read path (index reachable and answering)
                await app.ctx.store.account("healthz@invalid")
        except AccountNotFound:
            store = {"answering": True, "seconds": round(time.monotonic() - started, 4)}
        except TimeoutError:
            problems.append(f"the store did not answer within {STORE_TIMEOUT:.0f} s")
        except Exception as e:
            problems.append(f"the store failed: {e}")
        else:
            store = {"answering": True, "seconds": round(time.monotonic() - started, 4)}
    disk = disk_info(cfg.data_dir)
    if disk["free_bytes"] < DISK_MIN:
        problems.append(f"the data dir's disk is full ({disk['free_bytes']} bytes free)")
    elif disk["free_bytes"] < DISK_WARN:
        warnings.append(f"little disk left in the data dir ({disk['free_bytes']} bytes free)")
    cert = certificate_info(cfg.path(cfg.tls.cert))
    if "error" in cert:
        problems.append(f"certificate unreadable: {cert['error']}")
    elif cert["days_left"] < 0:
        problems.append(f"the certificate expired on {cert['expires']}")
    elif cert["days_left"] < CERT_WARN_DAYS:
        warnings.append(f"the certificate expires in {cert['days_left']:.0f} days")
    return {
        "ok": not problems,
        "problems": problems,
        "warnings": warnings,
        "uptime": round(time.time() - app.started, 1) if app.started else 0.0,
        "now": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "listeners": listeners,
        "queue": queue,
        "store": store,
        "disk": disk,
        "certificate": cert,
    }
