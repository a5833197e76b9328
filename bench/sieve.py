"""Cost of Sieve per delivered message: a 20-rule script (header/address/envelope/body tests,
:matches with variables, fileinto, imap4flags) evaluated on typical messages, in microseconds of
CPU per message. Baseline in the same run: parsing the message with carteiro.mime (which the
delivery does anyway), so the ratio says what filtering adds on top of reading the message.

    .venv/bin/python bench/sieve.py [--n 3000]
"""

from __future__ import annotations

import argparse
import time

from carteiro.mime.parse import parse
from carteiro.sieve.compiler import compile_script
from carteiro.sieve.interp import Context, Envelope, evaluate

SCRIPT = r"""require ["fileinto", "variables", "imap4flags", "envelope", "subaddress", "body",
                 "relational", "comparator-i;ascii-numeric", "mailbox", "copy"];
if header :contains "x-spam-flag" "yes" { fileinto "Junk"; stop; }
if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5" { fileinto "Junk"; stop; }
if address :domain :is "from" ["bank.example", "tax.example"] { addflag "\\Flagged"; }
if header :matches "list-id" "*<*.*>" { set :lower "list" "${2}"; fileinto :create "Lists/${list}"; stop; }
if envelope :detail "to" "shop" { fileinto "Shopping"; stop; }
if address :is "from" "boss@work.example" { addflag "\\Flagged"; fileinto :copy "Work"; }
if header :contains "subject" ["invoice", "receipt", "order confirmation"] { fileinto "Receipts"; stop; }
if header :matches "subject" "[*] *" { set "tag" "${1}"; }
if anyof (header :contains "to" "team@work.example", header :contains "cc" "team@work.example") { fileinto "Team"; stop; }
if header :is "precedence" ["bulk", "list"] { fileinto "Bulk"; stop; }
if exists "x-github-reason" { fileinto "GitHub"; stop; }
if address :localpart :is "from" ["noreply", "no-reply", "notifications"] { fileinto "Notifications"; stop; }
if header :contains "user-agent" "Mutt" { addflag "$mutt"; }
if size :over 5M { fileinto "Large"; stop; }
if header :matches "from" "*@*.gov" { addflag "$gov"; }
if not exists "date" { fileinto "Suspicious"; stop; }
if header :contains "subject" "newsletter" { fileinto "News"; stop; }
if body :text :contains ["unsubscribe", "view in browser"] { fileinto "News"; stop; }
if address :all :is ["to", "cc"] "family@home.example" { fileinto "Family"; stop; }
if header :contains "subject" "${tag}-urgent" { addflag "\\Flagged"; }
"""

MESSAGE = (
    b"Return-Path: <friend@example.org>\r\n"
    b"Received: from mx.example.org by mail.example.test; Mon, 7 Dec 2026 09:00:00 +0000\r\n"
    b"Date: Mon, 7 Dec 2026 10:00:00 +0100\r\n"
    b"From: A Friend <friend@example.org>\r\nTo: alice@example.test\r\n"
    b"Subject: [hello] plans for the weekend\r\nMessage-ID: <abc@example.org>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    + b"Shall we go hiking on Saturday? Let me know.\r\n"
    * 60
)  # ~3 KB, no rule matches: every one of the 20 tests runs, and the body test reads the body


def cpu() -> float:
    return time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    n = ap.parse_args().n
    script = compile_script(SCRIPT)
    env = Envelope("friend@example.org", "alice@example.test")
    ctx = Context(mailbox_exists=lambda b: True)

    t0 = cpu()
    for _ in range(n):
        compile_script(SCRIPT)
    compile_us = (cpu() - t0) / n * 1e6

    t0 = cpu()
    for _ in range(n):
        parse(MESSAGE)
    parse_us = (cpu() - t0) / n * 1e6

    t0 = cpu()
    for _ in range(n):
        result = evaluate(script, parse(MESSAGE), env, ctx)
    both_us = (cpu() - t0) / n * 1e6
    assert result.error is None and len(result.actions) == 1, result
    sieve_us = both_us - parse_us

    print(f"messages: {n}, {len(MESSAGE)} octets, 20 rules (none matches: all evaluated)")
    print(f"baseline, MIME parse only:      {parse_us:8.1f} us CPU/message")
    print(f"parse + Sieve evaluation:       {both_us:8.1f} us CPU/message")
    print(
        f"Sieve evaluation alone:         {sieve_us:8.1f} us CPU/message "
        f"({both_us / parse_us:.2f}x the parse alone)"
    )
    print(f"compiling the script (cached per script file, not per message): {compile_us:.0f} us")


if __name__ == "__main__":
    main()
