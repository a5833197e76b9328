"""TLS material: the self-signed certificate `carteiro init` makes, and server/client contexts.

Servers accept TLS 1.2 and 1.3 only (RFC 8996 deprecates older versions; RFC 8314 4.1).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_self_signed(
    cert_path: Path, key_path: Path, hostname: str, days: int = 825, also: Sequence[str] = ()
) -> None:
    """Write an ECDSA P-256 key (mode 0600) and a self-signed certificate for `hostname` (and
    the names in `also`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    sans += [x509.DNSName(n) for n in also]
    sans += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class TLSFileError(Exception):
    """A certificate or key that cannot be used; the message names the file, the config key and
    the fix, in one line."""


def check_server_files(cert_path: Path, key_path: Path) -> x509.Certificate:
    """Read and check the certificate chain and key before OpenSSL sees them (its errors name
    neither the file nor the problem: "PEM lib"). Returns the leaf certificate."""
    fix_init = "remove it and run `carteiro init` to make a self-signed one"
    blobs: dict[str, bytes] = {}
    for key_name, path in (("tls.cert", cert_path), ("tls.key", key_path)):
        try:
            blobs[key_name] = path.read_bytes()
        except FileNotFoundError:
            raise TLSFileError(
                f"{key_name}: {path} does not exist (set [tls] {key_name[4:]} in carteiro.toml "
                "to your file, or run `carteiro init` to make a self-signed certificate)"
            ) from None
        except PermissionError:
            raise TLSFileError(
                f"{key_name}: {path} is not readable by this user (uid {os.getuid()}); "
                "fix its owner or mode"
            ) from None
        except IsADirectoryError:
            raise TLSFileError(f"{key_name}: {path} is a directory, not a PEM file") from None
        except OSError as e:
            raise TLSFileError(f"{key_name}: {path}: {e.strerror or e}") from None
    try:
        chain = x509.load_pem_x509_certificates(blobs["tls.cert"])
    except ValueError:
        raise TLSFileError(
            f"tls.cert: {cert_path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
            f"give the certificate (chain) file, or {fix_init}"
        ) from None
    try:
        key = serialization.load_pem_private_key(blobs["tls.key"], password=None)
    except TypeError:
        raise TLSFileError(
            f"tls.key: {key_path} is encrypted with a passphrase; give an unencrypted key "
            "(openssl pkey -in KEY -out KEY.new), readable by this user only"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSFileError(
            f"tls.key: {key_path} holds no PEM private key (-----BEGIN PRIVATE KEY-----); "
            f"give the key file, or {fix_init}"
        ) from None
    leaf = chain[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ) != key.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise TLSFileError(
            f"tls.key: {key_path} is not the key of the certificate {cert_path} "
            "(check that [tls] cert and key are a pair)"
        )
    return leaf


def load_server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """`server_context` with every failure as one TLSFileError naming file, key and fix."""
    check_server_files(cert_path, key_path)
    try:
        return server_context(cert_path, key_path)
    except (ssl.SSLError, OSError) as e:
        raise TLSFileError(
            f"tls.cert/tls.key: {cert_path}, {key_path}: OpenSSL refused them: {e}"
        ) from None


def reload_server_context(ctx: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    """Load a new certificate and key into the live context: connections accepted from now on
    use them; sessions already running keep theirs (nothing is dropped). Checked first on a
    fresh context, so a bad file leaves the old pair in place (raises TLSFileError)."""
    load_server_context(cert_path, key_path)
    ctx.load_cert_chain(str(cert_path), str(key_path))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def client_context(verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """For outbound SMTP and for tests; unverified contexts are for opportunistic TLS only."""
    if verify:
        ctx = ssl.create_default_context()  # the system's trust anchors
        if cafile:  # and extra ones (a private CA; tests), not instead of them
            ctx.load_verify_locations(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
