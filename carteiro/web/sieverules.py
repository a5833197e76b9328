"""The Settings form's filters as a Sieve script (RFC 5228): a vacation reply (RFC 5230) and
"mail whose From/To/Subject contains X goes to folder Y" rules. The script stays readable; its
third line holds the form's data as JSON, so the form can read it back, and a script that no
longer matches what that data generates was edited by hand and is not overwritten silently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

SCRIPT_NAME = "webmail"
MARK = "# carteiro-webmail-form: "
FIELDS = {"from": "From", "to": "To or Cc", "subject": "Subject"}
MAX_RULES = 50
MAX_TEXT = 10_000


class RulesError(ValueError):
    """A form value that cannot become a script (shown to the user)."""


@dataclass
class Rule:
    field: str  # from / to / subject
    contains: str
    folder: str


@dataclass
class Vacation:
    enabled: bool = False
    subject: str = ""
    text: str = ""
    days: int = 7


@dataclass
class Rules:
    vacation: Vacation = field(default_factory=Vacation)
    rules: list[Rule] = field(default_factory=list)


def quote(s: str) -> str:
    """A Sieve quoted string (RFC 5228 2.4.2): only \\ and " are escaped; line breaks are CRLF."""
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate(r: Rules) -> None:
    if len(r.rules) > MAX_RULES:
        raise RulesError(f"At most {MAX_RULES} rules.")
    for rule in r.rules:
        if rule.field not in FIELDS:
            raise RulesError(f"Unknown field {rule.field[:20]!r}.")
        if not rule.contains.strip() or not rule.folder.strip():
            raise RulesError("Each rule needs a text to look for and a folder.")
        if any(ord(c) < 32 for c in rule.contains + rule.folder):
            raise RulesError("Rules cannot contain control characters.")
    v = r.vacation
    if v.enabled and not v.text.strip():
        raise RulesError("The vacation reply needs a text.")
    if not 1 <= v.days <= 90:
        raise RulesError("Reply to the same sender at most once in 1 to 90 days.")
    if len(v.text) > MAX_TEXT or len(v.subject) > 200:
        raise RulesError("The vacation text is too long.")
    if any(ord(c) < 32 for c in v.subject):
        raise RulesError("The subject cannot contain control characters.")


def generate(r: Rules) -> str:
    validate(r)
    data = json.dumps(asdict(r), ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    out = [
        "# Written by the webmail's Settings page (Filters). Edit it there: once this",
        "# script is edited by hand, the form will not overwrite it without asking.",
        MARK + data,
    ]
    needs = []
    if r.rules:
        needs.append('"fileinto"')
    if r.vacation.enabled:
        needs.append('"vacation"')
    if needs:
        out.append(f"require [{', '.join(needs)}];")
    if r.vacation.enabled:
        v = r.vacation
        # First, so a message moved by a rule below still gets the reply (RFC 5230 4.7).
        out += ["", "# Vacation reply"]
        subject = f":subject {quote(v.subject)} " if v.subject.strip() else ""
        out.append(f"vacation :days {v.days} {subject}{quote(v.text)};")
    for rule in r.rules:
        test = (
            f'address :contains "from" {quote(rule.contains)}'
            if rule.field == "from"
            else f'address :contains ["to", "cc"] {quote(rule.contains)}'
            if rule.field == "to"
            else f'header :contains "subject" {quote(rule.contains)}'
        )
        out += [
            "",
            f"# {FIELDS[rule.field]} contains {rule.contains!r}: into {rule.folder!r}",
            f"if {test} {{",
            f"    fileinto {quote(rule.folder)};",
            "    stop;",
            "}",
        ]
    return "\r\n".join(out) + "\r\n"


def parse(script: str) -> Rules | None:
    """The form's data if `script` is exactly what the form wrote, else None (edited by hand)."""
    for line in script.splitlines()[:5]:
        if line.startswith(MARK):
            try:
                data = json.loads(line[len(MARK) :])
                r = Rules(
                    Vacation(**data["vacation"]),
                    [Rule(**x) for x in data["rules"]],
                )
                if generate(r) == script.replace("\r\n", "\n").replace("\n", "\r\n"):
                    return r
            except (ValueError, TypeError, KeyError):
                return None
            return None
    return None


__all__ = ["FIELDS", "SCRIPT_NAME", "Rule", "Rules", "RulesError", "Vacation", "generate", "parse"]
