"""Hostile messages for tests and benchmarks: each builder makes a message whose parsing cost
grows with `n` (address lists, encoded words, MIME width and depth, header lines). Shared by the
MIME unit tests and the IMAP session tests that check one such message never stalls a server."""

from __future__ import annotations

BASE = b"From: a@example.org\r\nSubject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"


def commas(n: int) -> bytes:
    return b"To: " + b"," * n + b"\r\n" + BASE + b"\r\nbody\r\n"


def addresses(n: int) -> bytes:
    to = b", ".join(b"user%d@example.org" % i for i in range(n))
    return b"To: " + to + b"\r\n" + BASE + b"\r\nbody\r\n"


def encoded_words(n: int) -> bytes:
    subject = b" ".join(b"=?utf-8?q?ab=C3=A9?=" for _ in range(n))
    return b"From: a@example.org\r\nTo: b@example.org\r\nSubject: " + subject + b"\r\n\r\nbody\r\n"


def wide(n: int) -> bytes:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(n))
    mime = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    return BASE + mime + parts + b"--b--\r\n"


def deep(n: int) -> bytes:
    out = bytearray(BASE + b"MIME-Version: 1.0\r\n")
    for i in range(n):
        out += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
    out += b"\r\nleaf\r\n"
    for i in reversed(range(n)):
        out += b"--b%d--\r\n" % i
    return bytes(out)


def header_lines(n: int) -> bytes:
    return BASE + b"X: y\r\n" * n + b"\r\nbody\r\n"
