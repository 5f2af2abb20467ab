"""The quality score: 0–100 and a grade A–F, every point explained.

Each factor is worth a bounded number of points and says why it got what it got; the score
is the share of the points available, so a factor we know nothing about yet (no GitHub data
for a server) costs points rather than being guessed. Penalties come last: a deprecated
server loses 20; an archived one loses 20 and is never graded above C.

Factors (points, 110 in all, the score being their share): a config a client can install (15), a described server (10),
active in the official registry (10), maintenance by last commit (20), documentation in its
server.json: its variables described (10), documentation depth in its README: a README at all,
one that covers the tools, and one that covers the credentials and configuration (10), stars,
log-scaled and capped at 1,000 (15), an OSI-approved licence (5), installs this week,
log-scaled and capped at 100 (5), and the config scanner's findings on its generated config
and tools (10: ``apps.configtools.scanner``; a high finding takes them all, a medium one
half). Pure; the inputs are plain values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

GRADES = (("A", 85), ("B", 70), ("C", 55), ("D", 40), ("F", 0))
ARCHIVED_CEILING = 69  # the highest C
STARS_CAP = 1000
INSTALLS_CAP = 100  # a week's installs that earn every point
# The OSI-approved licences GitHub identifies (its spdx_id: GPL-3.0, not GPL-3.0-only).
OSI_LICENSES = frozenset(
    {
        *("0BSD", "AFL-3.0", "AGPL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-2.0", "Artistic-2.0"),
        *("BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear", "BSL-1.0", "CDDL-1.0", "ECL-2.0", "EPL-1.0"),
        *("EPL-2.0", "EUPL-1.1", "EUPL-1.2", "GPL-2.0", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0"),
        *("GPL-3.0-only", "GPL-3.0-or-later", "ISC", "LGPL-2.1", "LGPL-2.1-only", "LGPL-2.1-or-later"),
        *("LGPL-3.0", "LGPL-3.0-only", "LGPL-3.0-or-later", "LPPL-1.3c", "MIT", "MIT-0", "MPL-2.0", "MS-PL"),
        *("MS-RL", "MulanPSL-2.0", "NCSA", "OFL-1.1", "OSL-3.0", "PostgreSQL", "UPL-1.0", "Unlicense", "Zlib"),
    }
)
# A Markdown heading (or an HTML one, as some READMEs write them) naming the tools.
_TOOLS_HEADING = re.compile(r"^(?:#{1,6}[ \t]+|<h[1-6][^>]*>).*\btools?\b", re.IGNORECASE | re.MULTILINE)
_CONFIG_HEADING = re.compile(
    r"^(?:#{1,6}[ \t]+|<h[1-6][^>]*>).*\b(?:configur\w*|environment|env(?:ironment)? var\w*|credentials?|"
    r"auth\w*|api[ -]?keys?|tokens?|setup|settings)\b",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Reason:
    factor: str
    points: int
    max: int
    why: str

    def as_dict(self) -> dict:
        return {"factor": self.factor, "points": self.points, "max": self.max, "why": self.why}


@dataclass(frozen=True)
class Score:
    points: int  # 0–100
    grade: str
    reasons: list[Reason]


@dataclass(frozen=True)
class Facts:
    installable: bool
    description: str
    title: str
    in_registry: bool  # listed in the official registry (not only in the awesome list)
    deprecated: bool
    archived: bool
    stars: int | None
    last_commit_at: datetime | None
    variables: int  # declared environment variables and header variables
    variables_described: int
    variable_names: tuple[str, ...] = ()  # those variables' names, to look for in the README
    license: str = ""  # SPDX id, as GitHub gives it ("NOASSERTION": a licence it could not name)
    readme: str = ""  # Markdown
    tool_names: tuple[str, ...] = ()  # where known (a live tools/list, a catalogue pin)
    installs_week: int = 0
    # The config scanner's findings, (rule id, severity "high" | "medium" | "low"), its
    # registry status left out (deprecation has its own penalty).
    findings: tuple[tuple[str, str], ...] = ()


def _grade(points: int) -> str:
    return next(grade for grade, floor in GRADES if points >= floor)


def _readme(facts: Facts) -> Reason:
    """Documentation depth: a README (2), that covers the tools (4) and how to configure
    the server and its credentials (4); the reason says exactly what was found."""
    text = facts.readme
    if not text.strip():
        return Reason("README", 0, 10, "No README.")
    points, found, missing = 2, [], []
    named = [name for name in facts.tool_names if name and re.search(rf"\b{re.escape(name)}\b", text)]
    if _TOOLS_HEADING.search(text):
        points += 4
        found.append("a Tools section")
    elif facts.tool_names and len(named) * 2 >= len(facts.tool_names):
        points += 4
        found.append(f"{len(named)} of its {len(facts.tool_names)} tools named")
    elif named or re.search(r"\btools?\b", text, re.IGNORECASE):
        points += 2
        found.append(f"{len(named)} of its {len(facts.tool_names)} tools named" if named else "tools mentioned")
    else:
        missing.append("no word on its tools")
    variables = [name for name in facts.variable_names if name]
    # As a word: API_KEY is not mentioned by OPENAI_API_KEY.
    mentioned = [name for name in variables if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)]
    if variables and len(mentioned) == len(variables):
        points += 4
        found.append(
            f"all {len(variables)} of its variables ({_names(variables)})"
            if len(variables) > 1
            else f"its variable {variables[0]}"
        )
    elif mentioned:
        points += 2
        found.append(f"{len(mentioned)} of its {len(variables)} variables ({_names(mentioned)})")
    elif _CONFIG_HEADING.search(text):
        points += 4 if not variables else 2
        found.append("a configuration section")
    elif not variables:
        points += 4
        found.append("nothing to configure")
    else:
        missing.append(
            f"none of its {len(variables)} variables ({_names(variables)})"
            if len(variables) > 1
            else f"not its variable {variables[0]}"
        )
    words = len(text.split())
    why = f"A README of {words:,} words" + (f" with {', '.join(found)}" if found else "")
    why += f"; {', '.join(missing)}." if missing else "."
    return Reason("README", points, 10, why)


def _names(names: list[str], shown: int = 3) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _license(spdx_id: str) -> Reason:
    if spdx_id in OSI_LICENSES:
        return Reason("Licence", 5, 5, f"{spdx_id}, an OSI-approved licence.")
    if spdx_id == "NOASSERTION":
        return Reason("Licence", 0, 5, "A licence file GitHub could not identify.")
    if spdx_id:
        return Reason("Licence", 0, 5, f"{spdx_id[:100]} is not an OSI-approved licence.")
    return Reason("Licence", 0, 5, "No licence found.")


def _installs(count: int) -> Reason:
    points = round(5 * math.log10(1 + min(count, INSTALLS_CAP)) / math.log10(1 + INSTALLS_CAP))
    return Reason("Installs", points, 5, f"{count:,} install{'' if count == 1 else 's'} this week.")


def _scan(findings: tuple[tuple[str, str], ...], *, installable: bool) -> Reason:
    if not installable:
        return Reason("Config scan", 0, 10, "No config to scan.")
    if not findings:
        return Reason("Config scan", 10, 10, "The security scanner finds nothing in its config or tools.")
    severities = {severity for _, severity in findings}
    points = 0 if "high" in severities else 5 if "medium" in severities else 8
    rules = ", ".join(sorted({rule for rule, _ in findings})[:4])
    return Reason(
        "Config scan", points, 10, f"{len(findings)} scanner finding{'s' if len(findings) > 1 else ''}: {rules}."
    )


def score(facts: Facts, *, now: datetime) -> Score:
    reasons: list[Reason] = []

    reasons.append(
        Reason("Install config", 15, 15, "A client can install it from its packages or endpoint.")
        if facts.installable
        else Reason("Install config", 0, 15, "No package a client can start and no hosted endpoint.")
    )

    length = len(facts.description.strip())
    if length >= 40 and facts.description.strip().lower() != facts.title.strip().lower():
        reasons.append(Reason("Description", 10, 10, f"Described in {length} characters."))
    elif length:
        reasons.append(Reason("Description", 4, 10, f"A short description ({length} characters)."))
    else:
        reasons.append(Reason("Description", 0, 10, "No description."))

    reasons.append(
        Reason("Official registry", 10, 10, "Published in the official MCP registry.")
        if facts.in_registry and not facts.deprecated
        else Reason("Official registry", 0, 10, "Not an active entry of the official MCP registry.")
    )

    if facts.last_commit_at is None:
        reasons.append(Reason("Maintenance", 0, 20, "Last commit unknown."))
    else:
        age = now - facts.last_commit_at
        days = max(0, age.days)
        if age <= timedelta(days=90):
            reasons.append(Reason("Maintenance", 20, 20, f"Last commit {days} days ago."))
        elif age <= timedelta(days=365):
            reasons.append(Reason("Maintenance", 10, 20, f"Last commit {days} days ago (over 3 months)."))
        else:
            reasons.append(Reason("Maintenance", 0, 20, f"Last commit {days} days ago (over a year)."))

    if facts.variables:
        described = facts.variables_described
        points = round(10 * described / facts.variables)
        reasons.append(Reason("Documentation", points, 10, f"{described} of {facts.variables} variables described."))
    else:
        reasons.append(Reason("Documentation", 10 if facts.title.strip() else 6, 10, "Needs no configuration."))

    if facts.stars is None:
        reasons.append(Reason("Stars", 0, 15, "Stars unknown."))
    else:
        stars = min(facts.stars, STARS_CAP)
        points = round(15 * math.log10(1 + stars) / math.log10(1 + STARS_CAP))
        reasons.append(Reason("Stars", points, 15, f"{facts.stars:,} stars on GitHub."))

    reasons.append(_readme(facts))
    reasons.append(_license(facts.license))
    reasons.append(_installs(facts.installs_week))
    reasons.append(_scan(facts.findings, installable=facts.installable))

    available = sum(reason.max for reason in reasons)
    points = round(100 * sum(reason.points for reason in reasons) / available)
    if facts.deprecated:
        reasons.append(Reason("Deprecated", -20, 0, "Deprecated in the registry."))
        points -= 20
    if facts.archived:
        reasons.append(Reason("Archived", -20, 0, "Its repository is archived: never graded above C."))
        points = min(points - 20, ARCHIVED_CEILING)
    points = max(0, min(100, points))
    return Score(points=points, grade=_grade(points), reasons=reasons)
