"""Mailbox and account name validation, and their encoding as directory names on disk.

Every name that reaches a path goes through here first: a name can never escape its account
(no "..", "/", NUL, control characters, empty components or overlong names). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import unicodedata

from carteiro.store.api import SEPARATOR, InvalidName

INBOX = "INBOX"
MAX_NAME_OCTETS = 1000  # whole mailbox name, UTF-8
MAX_COMPONENT_OCTETS = 255  # one hierarchy level as encoded on disk (NAME_MAX)
MAX_DIR_OCTETS = 255  # a Maildir++ folder is one directory entry: ".A.B.C"
LONG_DIR_PREFIX = ".&&"  # never produced by the modified UTF-7 encoder: marks hashed folder dirs
# RFC 3501 6.3.8: "*" and "%" are LIST wildcards; a mailbox named with them could never be listed alone.
_FORBIDDEN = frozenset("*%")


def normalize_mailbox_name(name: str) -> str:
    """The canonical form of a client-supplied mailbox name; raises InvalidName with the reason.

    INBOX is case-insensitive (RFC 3501 5.1), also as the first level of a hierarchy ("inbox/x").
    """
    if not isinstance(name, str):
        raise InvalidName("mailbox name must be a string")
    if not name:
        raise InvalidName("mailbox name is empty")
    try:
        octets = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidName("mailbox name is not valid Unicode") from None
    if octets > MAX_NAME_OCTETS:
        raise InvalidName(f"mailbox name is too long ({octets} > {MAX_NAME_OCTETS} octets)")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch == "\x7f":
            raise InvalidName(f"mailbox name contains control character U+{ord(ch):04X}")
        if ch in _FORBIDDEN:
            raise InvalidName(f"mailbox name contains the wildcard {ch!r}")
    parts = name.split(SEPARATOR)
    for part in parts:
        if not part:
            raise InvalidName(f"mailbox name {name!r} has an empty hierarchy level")
        if part in (".", ".."):
            raise InvalidName(f"mailbox name {name!r} has a {part!r} level")
        encoded = len(encode_component(part))
        if encoded > MAX_COMPONENT_OCTETS:
            raise InvalidName(
                f"mailbox name level is too long ({encoded} > {MAX_COMPONENT_OCTETS} octets on disk)"
            )
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return SEPARATOR.join(parts)


def is_inbox(name: str) -> bool:
    return name == INBOX


def parents(name: str) -> list[str]:
    """Proper ancestors of a (normalized) name, outermost first: "a/b/c" -> ["a", "a/b"]."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def is_inferior(name: str, ancestor: str) -> bool:
    return name.startswith(ancestor + SEPARATOR)


def parent_of(name: str) -> str | None:
    head, sep, _ = name.rpartition(SEPARATOR)
    return head if sep else None


# ---- modified UTF-7 (RFC 3501 5.1.3) with "." escaped, as Dovecot's Maildir++ layout does ----


def _b64_encode(chunk: str) -> str:
    import base64

    raw = chunk.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def _b64_decode(text: str) -> str:
    import base64

    padded = text.replace(",", "/")
    padded += "=" * (-len(padded) % 4)
    return base64.b64decode(padded, validate=True).decode("utf-16-be")


def encode_component(part: str) -> str:
    """One hierarchy level as a Maildir++ directory fragment: modified UTF-7 where "." (the Maildir++
    separator) is also base64-encoded ("&AC4-"), so the on-disk name splits back unambiguously."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append("&" + _b64_encode("".join(pending)) + "-")
            pending.clear()

    for ch in part:
        if "\x20" <= ch <= "\x7e" and ch != ".":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_component(text: str) -> str:
    """Inverse of encode_component; raises ValueError on malformed input."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i)
        if end < 0:
            raise ValueError(f"unterminated modified UTF-7 in {text!r}")
        if end == i + 1:
            out.append("&")
        else:
            out.append(_b64_decode(text[i + 1 : end]))
        i = end + 1
    return "".join(out)


def folder_dir(name: str) -> str:
    """The directory (relative to the account's Maildir) holding a normalized mailbox name.

    INBOX is the Maildir itself (""); others are Maildir++ folders ".Parent.Child". A name whose
    folder would exceed NAME_MAX gets a hashed directory; its real name is kept in the folder's
    metadata file and in the index.
    """
    if name == INBOX:
        return ""
    encoded = "." + ".".join(encode_component(p) for p in name.split(SEPARATOR))
    if len(encoded.encode("ascii")) <= MAX_DIR_OCTETS:
        return encoded
    return LONG_DIR_PREFIX + hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]


def name_from_folder_dir(dirname: str) -> str | None:
    """The mailbox name a Maildir++ folder directory encodes, or None if it is not one."""
    if dirname == "":
        return INBOX
    if not dirname.startswith(".") or dirname in (".", "..") or dirname.startswith(LONG_DIR_PREFIX):
        return None
    try:
        parts = [decode_component(p) for p in dirname[1:].split(".")]
        return normalize_mailbox_name(SEPARATOR.join(parts))
    except (ValueError, InvalidName):
        return None


# ---- accounts --------------------------------------------------------------------------------


def validate_account(account: str) -> str:
    """Checks an account name ("local@domain", or a bare name) can be stored; returns it."""
    if not isinstance(account, str) or not account:
        raise InvalidName("account name is empty")
    if len(account.encode("utf-8", "surrogatepass")) > 320:
        raise InvalidName("account name is too long")
    for ch in account:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch == "\x7f":
            raise InvalidName(f"account name contains control character U+{ord(ch):04X}")
    local, _, domain = account.rpartition("@")
    if "@" in account and (not local or not domain):
        raise InvalidName(f"account name {account!r} has an empty local part or domain")
    if "/" in domain or domain in (".", ".."):
        raise InvalidName(f"account domain {domain!r} is not a domain")
    if any(piece in (".", "..") for piece in account.split("/")) or ".." in local.split("/"):
        raise InvalidName(f"account name {account!r} contains a '.' or '..' path segment")
    return account


def _escape_path_part(part: str) -> str:
    text = part.replace("%", "%25").replace("/", "%2F")
    if text.startswith("."):
        text = "%2E" + text[1:]
    return text


def _unescape_path_part(text: str) -> str:
    if text.startswith("%2E"):
        text = "." + text[3:]
    return text.replace("%2F", "/").replace("%25", "%")


NO_DOMAIN = "_"  # bare account names (no "@") live under mail/_/<name>


def account_path_parts(account: str) -> tuple[str, str]:
    """(domain dir, local dir) under DATA/mail/ for a validated account name."""
    local, at, domain = validate_account(account).rpartition("@")
    if not at:
        local, domain = account, NO_DOMAIN
    return _escape_path_part(domain.lower()), _escape_path_part(local)


def account_from_path_parts(domain_dir: str, local_dir: str) -> str:
    local = _unescape_path_part(local_dir)
    if domain_dir == NO_DOMAIN:
        return local
    return f"{local}@{_unescape_path_part(domain_dir)}"
