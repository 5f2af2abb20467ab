"""Signed exports of the chain heads, and checking a chain against them.

The keyed chain (``apps.audit.chain``) stops someone holding only the database from
editing or forging rows, but not from cutting rows off the end of a chain and rolling
its head (``AuditChain.last_seq`` / ``last_hash``) back: the shorter chain still
verifies. So every ``MCPNEST_AUDIT_HEAD_EXPORT_MINUTES`` Celery beat (or ``manage.py
audit_heads``) writes one JSON line per chain:

    {"workspace": "acme", "workspace_id": 3, "chain": 7, "stream": "calls", "seq": 2001,
     "head_hash": "…", "at": "2026-…Z", "key_id": "…", "mac": "…"}

with ``mac`` = HMAC-SHA256 under the audit key over the other fields. Kept outside the
database (a log shipper, a write-once bucket), they are a lower bound the chain must
still reach: ``manage.py audit_verify SLUG --heads FILE`` checks that each exported head's
MAC verifies and that the chain still holds row ``seq`` with hash ``head_hash``, or a
valid retention checkpoint at or after ``seq`` (retention removed the row legitimately).
Otherwise rows were cut off (or rewritten) after that export. Rows written in the last
few minutes, after the newest export, are not covered; and whoever holds an audit key
can sign heads too.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from apps.audit import chain
from apps.audit.models import GENESIS_HASH, AuditChain, AuditCheckpoint

LOGGER = "mcpnest.audit.heads"
FIELDS = ("workspace", "workspace_id", "chain", "stream", "seq", "head_hash", "at", "key_id")
LOOKUP_CHUNK = 1000


def head_mac(values: dict[str, Any]) -> str:
    """Raises ``chain.UnknownAuditKey`` if ``values["key_id"]`` is not configured."""
    signed = {name: values.get(name) for name in FIELDS}
    return chain.keyring().mac(str(values.get("key_id")), f"{chain.HEAD_LABEL}\n{chain.canonical(signed)}")


def signed_heads(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every chain's head now, signed with the first audit key."""
    at = (now or timezone.now()).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    key_id = chain.keyring().signing_key_id
    lines = []
    for head in AuditChain.objects.select_related("workspace").order_by("pk"):
        values: dict[str, Any] = {
            "workspace": head.workspace.slug if head.workspace else None,
            "workspace_id": head.workspace_id,
            "chain": head.pk,
            "stream": head.stream,
            "seq": head.last_seq,
            "head_hash": head.last_hash,
            "at": at,
            "key_id": key_id,
        }
        values["mac"] = head_mac(values)
        lines.append(values)
    return lines


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, sort_keys=True, separators=(",", ":"))


@dataclass
class HeadReport:
    """What checking one workspace's (or the global) chains against the exported heads found."""

    checked: int = 0
    newest: dict[str, dict[str, Any]] = field(default_factory=dict)  # stream → newest exported head
    problems: list[str] = field(default_factory=list)


@dataclass
class ParsedHeads:
    by_workspace: dict[int | None, list[dict[str, Any]]]
    problems: list[str]  # lines that are not valid signed heads: the file itself was altered


def parse(lines: Iterable[str]) -> ParsedHeads:
    """Read exported head lines; a line that is not JSON or whose MAC fails is a problem.

    A line may carry a log prefix ("2026-… INFO mcpnest.audit.heads {…}"): lines taken
    from the log sink are read as they are.
    """
    by_workspace: dict[int | None, list[dict[str, Any]]] = {}
    problems = []
    for number, raw in enumerate(lines, 1):
        raw = raw.strip()
        if not raw:
            continue
        raw = raw[raw.find("{") :] if "{" in raw else raw
        try:
            values = json.loads(raw)
        except ValueError:
            problems.append(f"heads line {number} is not JSON")
            continue
        if not isinstance(values, dict) or any(name not in values for name in (*FIELDS, "mac")):
            problems.append(f"heads line {number} is not an exported chain head")
            continue
        try:
            expected = head_mac(values)
        except chain.UnknownAuditKey:
            problems.append(
                f"heads line {number} is signed with a key not in MCPNEST_AUDIT_KEYS (key id {values['key_id']})"
            )
            continue
        if not hmac.compare_digest(expected, str(values["mac"])):
            problems.append(f"heads line {number}: its MAC does not verify (the line was altered or forged)")
            continue
        if not isinstance(values["seq"], int) or values["stream"] not in AuditChain.Stream.values:
            problems.append(f"heads line {number} is not an exported chain head")
            continue
        values["line"] = number
        by_workspace.setdefault(values["workspace_id"], []).append(values)
    return ParsedHeads(by_workspace=by_workspace, problems=problems)


def check(workspace_id: int | None, exported: list[dict[str, Any]]) -> HeadReport:
    """Does every chain of the workspace still reach every head exported for it?"""
    report = HeadReport()
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for values in exported:
        by_stream.setdefault(values["stream"], []).append(values)
    for stream, lines in sorted(by_stream.items()):
        report.checked += len(lines)
        report.newest[stream] = max(lines, key=lambda v: (v["seq"], v["at"]))
        report.problems.extend(_check_chain(workspace_id, stream, lines))
    return report


def _check_chain(workspace_id: int | None, stream: str, lines: list[dict[str, Any]]) -> list[str]:
    label = f"{stream} chain"
    head = AuditChain.objects.filter(workspace_id=workspace_id, stream=stream).first()
    if head is None:
        newest = max(lines, key=lambda v: v["seq"])
        return [f"{label} is gone, but its head was exported at seq {newest['seq']} at {newest['at']}"]
    checkpoint = AuditCheckpoint.objects.filter(chain=head).order_by("-seq").first()
    if checkpoint is not None:
        checkpoint.chain = head
        if chain.checkpoint_problem(checkpoint):
            checkpoint = None  # audit_verify reports it; here it excuses nothing
    model = chain.model_for(stream)
    seqs = sorted({v["seq"] for v in lines if 0 < v["seq"] <= head.last_seq})
    stored: dict[int, str] = {}
    for start in range(0, len(seqs), LOOKUP_CHUNK):
        chunk = seqs[start : start + LOOKUP_CHUNK]
        stored.update(model.objects.filter(chain=head, seq__in=chunk).values_list("seq", "row_hash"))
    problems = []
    for values in sorted(lines, key=lambda v: (v["seq"], v["line"])):
        seq, expected, at = values["seq"], values["head_hash"], values["at"]
        where = f"exported at {at} (heads line {values['line']})"
        if seq > head.last_seq:
            problems.append(
                f"{label} was at seq {seq} {where} but now ends at seq {head.last_seq}: "
                "rows were cut off and the head rolled back (truncation)"
            )
        elif seq == 0:
            if expected != GENESIS_HASH:
                problems.append(f"{label} head at seq 0 {where} does not have the genesis hash")
        elif seq in stored:
            if stored[seq] != expected:
                problems.append(
                    f"{label} row {seq} no longer has the hash {where}: the chain was rewritten or rolled "
                    "back and appended to again"
                )
        elif checkpoint is not None and checkpoint.seq >= seq:
            if checkpoint.seq == seq and checkpoint.row_hash != expected:
                problems.append(f"{label} checkpoint at seq {seq} does not have the hash {where}")
        else:
            problems.append(
                f"{label} row {seq} {where} is missing, and no retention checkpoint covers it (rows deleted)"
            )
    return problems
