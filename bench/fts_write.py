"""What writing the search index's FTS rows costs (issue 10): the same texts into FTS5 tables
defined as main's and this tree's search_text (or contentless), in WAL with synchronous=FULL and
the indexer's transactions (100 messages), alternated; process CPU and size per message.

Texts: "words" (a Zipf draw over 30,000 made-up words, like real mail) or "x" (smtp-source's
lines of one repeated letter). Not a timed test.
Run: .venv/bin/python bench/fts_write.py [--text words|x] [--size 100000] [--messages 600]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carteiro.store import search_index

TABLES = {
    "positions, automerge 4 (fb07ea6)": (
        "body, head, tokenize = 'unicode61 remove_diacritics 2'",
        4,
    ),
    "this tree": (search_index.SEARCH_TEXT, search_index.AUTOMERGE),
    "contentless": (search_index.SEARCH_TEXT + ", content = ''", search_index.AUTOMERGE),
    "no columns (detail=none)": (
        search_index.SEARCH_TEXT.replace("detail = column", "detail = none"),
        search_index.AUTOMERGE,
    ),
}


def texts(kind: str, size: int) -> list[str]:
    rng = random.Random(1)
    if kind == "x":
        lines = [f"{i % 10}" + "X" * 77 for i in range(size // 80)]
        return ["\r\n".join(lines)]
    vocab = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10)))
        for _ in range(30000)
    ]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    out = []
    for _ in range(20):
        words = rng.choices(vocab, weights, k=size // 6)
        out.append(
            "\r\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12)).upper()
        )
    return out


def run(d: str, name: str, ddl: str, merge: int, bodies: list[str], n: int) -> None:
    path = f"{d}/{abs(hash(name))}.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5({ddl})")
    conn.execute("INSERT INTO t (t, rank) VALUES ('automerge', ?)", (merge,))
    head = "FROM: <SENDER@EXAMPLE.ORG>\r\nTO: <BENCH@EXAMPLE.TEST>\r\nSUBJECT: BENCH\r\n"
    cpu = time.process_time()
    for first in range(1, n + 1, 100):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t (rowid, body, head) VALUES (?, ?, ?)",
            [(i, bodies[i % len(bodies)], head) for i in range(first, min(first + 100, n + 1))],
        )
        conn.execute("COMMIT")
    cpu = (time.process_time() - cpu) / n * 1e6
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"  {name:36s} {cpu:7.0f} us CPU  {os.path.getsize(path) / n / 1000:7.1f} KB per message")
    os.unlink(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", choices=("words", "x"), default="words")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    bodies = texts(args.text, args.size)
    print(f"FTS5 INSERT of {args.messages} messages of {args.size} characters ({args.text})")
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.rounds):
            for name, (ddl, merge) in TABLES.items():
                run(d, name, ddl, merge, bodies, args.messages)


if __name__ == "__main__":
    main()
