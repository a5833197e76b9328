"""CPU of the search indexer's MIME extraction per delivered message (issue 10, SMTP CPU): the
store's `search_index.extract` (parse, the SEARCH header texts, the SORT/THREAD fields, body
and header texts, each folded) on a corpus of typical messages, this tree against a baseline
tree in the same run.

Each tree runs in a child process of its own (cwd and PYTHONPATH set to it), the trees
alternating `--pairs` times; a figure is the best of `--rounds` rounds of `--calls` calls
(thread CPU time per call: the best round is the one the other processes on the machine
disturbed least). The children also print a digest of every `extract` result, and the run stops
if the trees disagree: the point is the same rows for less CPU.
`--instructions` adds callgrind instruction counts per call (a figure noise does not move):
each child runs under valgrind twice, with N and 2N calls, and the difference is divided by N.

Run: .venv/bin/python bench/mime_extract.py [--baseline DIR] [--pairs 2] [--instructions]
(without --baseline, main is exported with `git archive` into a temporary directory). Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


# ---- the corpus ----


def _received(i: int) -> bytes:
    return (
        b"Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n"
        b"\tby mail.example.org (carteiro) with ESMTPS id 4Xk%dQz\r\n"
        b"\tfor <alice@example.org>; Mon, 7 Dec 2026 08:1%d:05 +0000\r\n" % (i, i, i, i, i)
    )


_PROSE = (
    b"Hello Alice,\r\n\r\nthe quarterly report is attached to the shared folder; please have a"
    b" look at the\r\nfigures for the north region before Thursday's meeting. The budget line"
    b" for travel\r\nwas moved to the project account, as we agreed last week.\r\n\r\n"
)


def plain_1k() -> bytes:
    head = (
        _received(1) + _received(2) + b"From: Bob Example <bob@example.net>\r\n"
        b"To: Alice <alice@example.org>\r\n"
        b"Subject: Quarterly report for the north region\r\n"
        b"Date: Mon, 7 Dec 2026 08:10:00 +0100\r\n"
        b"Message-ID: <20261207081000.12345@example.net>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n\r\n"
    )
    body = _PROSE * 3
    return (head + body)[:1000] + b"\r\n-- \r\nBob\r\n"


def alternative_html() -> bytes:
    text = _PROSE * 4
    html = (
        b'<html><head><meta charset=3D"utf-8"></head><body>\r\n'
        + b"".join(
            b'<p style=3D"margin:0">' + line + b"</p>\r\n" for line in text.split(b"\r\n") if line
        )
        + b"<p>Caf=C3=A9 =E2=80=94 na=C3=AFve r=C3=A9sum=C3=A9</p></body></html>\r\n"
    )
    return (
        _received(1) + b'From: "Newsletter" <news@shop.example.com>\r\n'
        b"To: alice@example.org\r\n"
        b"Subject: Your weekly offers\r\n"
        b"Date: Sun, 6 Dec 2026 22:00:00 -0500\r\n"
        b"Message-ID: <offers.2026w49@shop.example.com>\r\n"
        b"List-Unsubscribe: <https://shop.example.com/unsub?u=alice>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="=_alt_0123456789"\r\n\r\n'
        b"--=_alt_0123456789\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + text + b"\r\n"
        b"--=_alt_0123456789\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + html + b"\r\n"
        b"--=_alt_0123456789--\r\n"
    )


def reply_encoded() -> bytes:
    refs = b"\r\n ".join(b"<thread.%d.%d@example.net>" % (i, i * 7919) for i in range(8))
    return (
        _received(1)
        + _received(2)
        + _received(3)
        + b"From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\r\n"
        b'To: Alice <alice@example.org>, "Bob Example" <bob@example.net>\r\n'
        b"Cc: team@example.org, =?ISO-8859-1?Q?Fran=E7ois?= <francois@example.fr>\r\n"
        b"Subject: Re: [team] =?UTF-8?Q?R=C3=A9union_de_l'=C3=A9quipe?=\r\n"
        b" =?UTF-8?B?4oCUIG5vdGVz?=\r\n"
        b"Date: Mon, 07 Dec 2026 09:41:17 +0100 (CET)\r\n"
        b"Message-ID: <reply.42@example.de>\r\n"
        b"In-Reply-To: <thread.7.55433@example.net>\r\n"
        b"References: " + refs + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + "Bonjour à tous,\r\n\r\nvoici les notes de la réunion.\r\n\r\n".encode()
        + b"".join(b"> " + line + b"\r\n" for line in _PROSE.split(b"\r\n"))
    )


def digest() -> bytes:
    parts = []
    for i in range(10):
        parts.append(
            b"--digest_boundary\r\n\r\n"
            b"From: member%d@example.com (Member %d)\r\n"
            b"Subject: Re: [list] topic number %d\r\n"
            b"Date: Sun, 6 Dec 2026 1%d:00:00 +0000\r\n"
            b"Message-ID: <m%d@example.com>\r\n\r\n" % (i, i, i, i, i) + _PROSE + b"\r\n"
        )
    return (
        _received(1) + b"From: list-request@lists.example.org\r\n"
        b"To: list@lists.example.org\r\n"
        b"Reply-To: list@lists.example.org\r\n"
        b"Subject: list Digest, Vol 12, Issue 3\r\n"
        b"Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n"
        b"Message-ID: <digest.12.3@lists.example.org>\r\n"
        b"List-Id: The list <list.lists.example.org>\r\n"
        b"List-Post: <mailto:list@lists.example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/digest; boundary="digest_boundary"\r\n\r\n'
        + b"".join(parts)
        + b"--digest_boundary--\r\n"
    )


def attachment_100k() -> bytes:
    import base64
    import random

    blob = random.Random(7).randbytes(75_000)
    b64 = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    return (
        _received(1) + _received(2) + b"From: Carol <carol@example.com>\r\n"
        b"To: alice@example.org\r\n"
        b"Subject: Contract draft\r\n"
        b"Date: Mon, 7 Dec 2026 07:55:00 +0000\r\n"
        b"Message-ID: <contract.draft.1@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="mixed-xyz"\r\n\r\n'
        b"--mixed-xyz\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + _PROSE + b"\r\n"
        b"--mixed-xyz\r\n"
        b'Content-Type: application/pdf; name="contract.pdf"\r\n'
        b'Content-Disposition: attachment; filename="contract.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"\r\n"
        b"--mixed-xyz--\r\n"
    )


CORPUS = {
    "plain 1 KB": plain_1k,
    "alternative + HTML": alternative_html,
    "reply, encoded words": reply_encoded,
    "list digest": digest,
    "100 KB attachment": attachment_100k,
}


# ---- the child: one tree ----


def child(calls: int, rounds: int) -> None:
    """Runs in the tree under test (cwd): prints {name: [best us per call, digest, size]}."""
    sys.path.insert(0, os.getcwd())
    from carteiro.store.search_index import extract

    out = {}
    for name, make in CORPUS.items():
        data = make()
        result = extract(1, data, 1.7e9)
        digest = hashlib.sha256(
            repr((result.state, result.fields, result.body, result.head)).encode()
        )
        for _ in range(3):  # warm up (caches of the codecs, the title table, regexes)
            extract(1, data, 1.7e9)
        best = float("inf")
        for _ in range(rounds):
            t0 = time.thread_time_ns()
            for _ in range(calls):
                extract(1, data, 1.7e9)
            best = min(best, (time.thread_time_ns() - t0) / calls / 1e3)
        out[name] = [best, digest.hexdigest()[:16], len(data)]
    print(json.dumps(out))


def instructions_child(calls: int) -> None:
    sys.path.insert(0, os.getcwd())
    from carteiro.store.search_index import extract

    name = os.environ["MIME_EXTRACT_MESSAGE"]
    data = CORPUS[name]()
    for _ in range(2):
        extract(1, data, 1.7e9)
    for _ in range(calls):
        extract(1, data, 1.7e9)


def _run_child(tree: Path, args: list[str], valgrind: list[str] | None = None) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    cmd = [*(valgrind or []), sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True).stdout


def _instructions(tree: Path, name: str, calls: int) -> float:
    counts = []
    for n in (calls, 2 * calls):
        with tempfile.NamedTemporaryFile(prefix="callgrind-", suffix=".out") as f:
            env_name = {"MIME_EXTRACT_MESSAGE": name}
            os.environ.update(env_name)
            _run_child(
                tree,
                ["--instructions-child", str(n)],
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={f.name}"],
            )
            total = 0
            for line in Path(f.name).read_text().splitlines():
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
            counts.append(total)
    return (counts[1] - counts[0]) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="baseline source tree (default: main exported)")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--instructions", action="store_true")
    ap.add_argument("--only", default="", help="--instructions for the messages named so only")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--instructions-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.calls, args.rounds)
        return
    if args.instructions_child:
        instructions_child(args.instructions_child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-mime-") as tmp:
        baseline = args.baseline
        if baseline is None:
            baseline = Path(tmp) / "main"
            baseline.mkdir()
            archive = subprocess.run(
                ["git", "archive", "main"], cwd=HERE, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        trees = {"baseline": baseline.resolve(), "this": HERE}
        print(
            f"load average {os.getloadavg()[0]:.1f}; best of {args.rounds} rounds of"
            f" {args.calls} extract() calls; {args.pairs} pairs alternating"
        )
        best: dict[str, dict[str, float]] = {t: {} for t in trees}
        digests: dict[str, dict[str, str]] = {t: {} for t in trees}
        sizes: dict[str, int] = {}
        for _ in range(args.pairs):
            for label, tree in trees.items():
                got = json.loads(
                    _run_child(
                        tree, ["--child", "--calls", str(args.calls), "--rounds", str(args.rounds)]
                    )
                )
                for name, (us, digest, size) in got.items():
                    best[label][name] = min(best[label].get(name, us), us)
                    digests[label][name] = digest
                    sizes[name] = size
        if digests["baseline"] != digests["this"]:
            sys.exit(f"the trees' extract() results differ: {digests}")
        print(f"{'message':24} {'octets':>7} {'baseline us':>12} {'this us':>9} {'ratio':>6}")
        for name in CORPUS:
            b, t = best["baseline"][name], best["this"][name]
            print(f"{name:24} {sizes[name]:7} {b:12.1f} {t:9.1f} {t / b:6.2f}")
        if args.instructions:
            print("instructions per extract() call (callgrind, 2N - N calls):")
            for name in CORPUS:
                if args.only not in name:
                    continue
                b = _instructions(trees["baseline"], name, 20)
                t = _instructions(trees["this"], name, 20)
                print(f"{name:24} {b:12,.0f} {t:12,.0f} {t / b:6.2f}")
        print("results identical in both trees (sha256 of every extract() row)")


if __name__ == "__main__":
    main()
