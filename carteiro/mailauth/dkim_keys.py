"""The DKIM keys of each domain: RSA (RFC 6376) and Ed25519 (RFC 8463), and their life cycle.

A key is "pending" (made, its record to be published), "active" (mail is signed with it; one per
algorithm, so mail carries an RSA and an Ed25519 signature) or "retiring" (replaced, still
published so mail in flight verifies, until the admin retires it). The state of DOMAIN is
DATA/dkim/DOMAIN.json; without one, the [dkim] selector's RSA key is the active key, as before.
Private keys are files of mode 0600, written atomically.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

KEY_BITS = 2048  # RFC 8301 3.2: at least 1024, 2048 recommended
DKIM_DIR = "dkim"


def key_path(data_dir: Path, domain: str, selector: str) -> Path:
    return Path(data_dir) / DKIM_DIR / f"{domain.lower()}.{selector}.key"


Algorithm = Literal["rsa", "ed25519"]
State = Literal["pending", "active", "retiring"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa", "ed25519")


class KeyError_(Exception):
    """A refused key operation; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    selector: str
    algorithm: Algorithm
    state: State
    created: float = 0.0


def state_path(data_dir: Path, domain: str) -> Path:
    return Path(data_dir) / DKIM_DIR / f"{domain.lower().rstrip('.')}.json"


def _write_private(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def generate(path: Path, algorithm: Algorithm) -> None:
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what dkimpy reads
            serialization.NoEncryption(),
        )
    else:
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    _write_private(path, pem)


def load_private(path: Path) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyError_(f"{path}: neither an RSA nor an Ed25519 key")
    return key


def algorithm_of(path: Path) -> Algorithm:
    return "ed25519" if isinstance(load_private(path), ed25519.Ed25519PrivateKey) else "rsa"


def txt_record(path: Path) -> str:
    """SELECTOR._domainkey.DOMAIN TXT (RFC 6376 3.6.1; RFC 8463 4.2: k=ed25519 with the raw
    32-octet public key)."""
    key = load_private(path)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def entries(data_dir: Path, domain: str, default_selector: str) -> list[Entry]:
    path = state_path(data_dir, domain)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        if key_path(data_dir, domain, default_selector).exists():
            return [Entry(default_selector, "rsa", "active")]
        return []
    except ValueError as e:
        raise KeyError_(f"{path}: {e}") from None
    out = []
    for item in raw.get("keys", []):
        out.append(
            Entry(
                str(item["selector"]),
                "ed25519" if item.get("algorithm") == "ed25519" else "rsa",
                item["state"]
                if item.get("state") in ("pending", "active", "retiring")
                else "pending",
                float(item.get("created", 0.0)),
            )
        )
    return out


def _save(data_dir: Path, domain: str, items: list[Entry]) -> None:
    path = state_path(data_dir, domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"keys": [asdict(e) for e in items]}, indent=1) + "\n")
    os.replace(tmp, path)


def active(data_dir: Path, domain: str, default_selector: str) -> list[Entry]:
    return [e for e in entries(data_dir, domain, default_selector) if e.state == "active"]


def ensure_defaults(data_dir: Path, domain: str, selector: str) -> list[Entry]:
    """`carteiro init`: an RSA key at `selector` and an Ed25519 key at SELECTOR-ed. On a new
    domain both are active (their records are published together); where the RSA key already
    signed mail, the new Ed25519 key waits as pending until `carteiro dkim activate`."""
    if state_path(data_dir, domain).exists():
        return entries(data_dir, domain, selector)
    rsa_path = key_path(data_dir, domain, selector)
    existed = rsa_path.exists()
    if not existed:
        generate(rsa_path, "rsa")
    ed_selector = f"{selector}-ed"
    ed_path = key_path(data_dir, domain, ed_selector)
    if not ed_path.exists():
        generate(ed_path, "ed25519")
    now = time.time()
    items = [
        Entry(selector, "rsa", "active", now),
        Entry(ed_selector, "ed25519", "pending" if existed else "active", now),
    ]
    _save(data_dir, domain, items)
    return items


def rotate(
    data_dir: Path,
    domain: str,
    algorithm: Algorithm,
    default_selector: str,
    selector: str | None = None,
    now: float | None = None,
) -> Entry:
    """A new key (pending): publish its record, then `activate` it."""
    items = entries(data_dir, domain, default_selector)
    now = time.time() if now is None else now
    if selector is None:
        stamp = time.strftime("%Y%m%d", time.gmtime(now))
        base = f"c{stamp}{'e' if algorithm == 'ed25519' else 'r'}"
        selector, n = base, 1
        while (
            any(e.selector == selector for e in items)
            or key_path(data_dir, domain, selector).exists()
        ):
            n += 1
            selector = f"{base}{n}"
    if not selector or not all(c.isalnum() or c in "-_" for c in selector):
        raise KeyError_(f"{selector!r} is not a selector (letters, digits, - and _)")
    if any(e.selector == selector for e in items):
        raise KeyError_(f"selector {selector} already exists for {domain}")
    generate(key_path(data_dir, domain, selector), algorithm)
    entry = Entry(selector, algorithm, "pending", now)
    _save(data_dir, domain, [*items, entry])
    return entry


def activate(data_dir: Path, domain: str, selector: str, default_selector: str) -> list[Entry]:
    """`selector` signs from now on; the key it replaces (same algorithm) is retiring."""
    items = entries(data_dir, domain, default_selector)
    target = next((e for e in items if e.selector == selector), None)
    if target is None:
        raise KeyError_(f"no key {selector} for {domain}")
    out = []
    for e in items:
        if e.selector == selector:
            out.append(Entry(e.selector, e.algorithm, "active", e.created))
        elif e.algorithm == target.algorithm and e.state == "active":
            out.append(Entry(e.selector, e.algorithm, "retiring", e.created))
        else:
            out.append(e)
    _save(data_dir, domain, out)
    return out


def retire(data_dir: Path, domain: str, selector: str, default_selector: str) -> Entry:
    """Forget a key and delete its private half (after its DNS record has been removed)."""
    items = entries(data_dir, domain, default_selector)
    target = next((e for e in items if e.selector == selector), None)
    if target is None:
        raise KeyError_(f"no key {selector} for {domain}")
    if target.state == "active":
        raise KeyError_(
            f"{selector} signs {domain}'s mail: activate its successor first "
            f"(carteiro dkim rotate, then carteiro dkim activate)"
        )
    _save(data_dir, domain, [e for e in items if e.selector != selector])
    key_path(data_dir, domain, selector).unlink(missing_ok=True)
    return target
