"""The quality score: 0–100 and a grade A–F, every point explained.

Each factor is worth a bounded number of points and says why it got what it got; the score
is the share of the points available, so a factor we know nothing about yet (no GitHub data
for a server) costs points rather than being guessed. Penalties come last: a deprecated
server loses 20; an archived one loses 20 and is never graded above C.

Factors (points): a config a client can install (15), a described server (10), active in the
official registry (10), maintenance by last commit (20), documentation in its server.json
(10), stars, log-scaled and capped at 1,000 (15). Pure; the inputs are plain values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

GRADES = (("A", 85), ("B", 70), ("C", 55), ("D", 40), ("F", 0))
ARCHIVED_CEILING = 69  # the highest C
STARS_CAP = 1000


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


def _grade(points: int) -> str:
    return next(grade for grade, floor in GRADES if points >= floor)


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
