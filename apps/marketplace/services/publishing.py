"""Writes for publishing to MCPNest: a signed-in user submits a ``server.json``, staff
review it, and an approved one is listed exactly like a server indexed from the registry.

* ``submission_create`` validates the document (``apps.marketplace.server_json``: the
  official schema and the registry's offline rules) and refuses what MCPNest cannot accept
  from this user: a name the official registry lists (it is published there, and only its
  publisher may), a name another user's approved submission holds, a namespace whose
  publisher is verified (we cannot tell the submitter is that publisher), a version already
  listed, and a second pending submission of the same name and version.
* ``submission_approve`` (staff) writes the version through the indexer's writer, so the
  server, its facets and its score are what indexing would make of the same document; the
  server's source is ``SUBMITTED`` and its publisher stays unverified until staff verify it
  (``services.curation.publisher_verify``).
* ``submission_reject`` (staff) records why; the submitter sees the note.

Only a pending submission can be approved or rejected. Each write and its audit row
(global chain: ``workspace=None``; metadata only, never the document) share one transaction.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core.errors import Forbidden, RuleViolation
from apps.marketplace import server_json
from apps.marketplace.models import Publisher, Server, ServerVersion, Submission
from apps.marketplace.registry import Entry
from apps.marketplace.services.indexing import versions_write

REVIEW_NOTE_MAX = 2000


class SubmissionRefused(RuleViolation):
    """The document cannot be submitted; ``problems`` lists every reason, each at its
    JSON path, for the form to show."""

    def __init__(self, problems: list[server_json.Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems[:5]))


class SubmissionNotPending(RuleViolation):
    """Approve or reject a submission that was already reviewed."""


def _refusals(*, actor: User, name: str, version: str) -> list[server_json.Problem]:
    """Why ``actor`` may not submit ``name``@``version`` now; nothing if they may."""
    at_name = "$.name"
    server = Server.objects.filter(name=name).select_related("publisher").first()
    if server is not None and server.source != Server.Source.SUBMITTED:
        return [
            server_json.Problem(
                at_name,
                f"{name} is already listed from the {server.get_source_display()}",
                hint="Publish new versions of it to the official MCP registry; MCPNest indexes them from there.",
            )
        ]
    held = Submission.objects.filter(name=name, status=Submission.Status.APPROVED).exclude(submitted_by=actor)
    if held.exists():
        return [server_json.Problem(at_name, f"{name} was published on MCPNest by another user")]
    namespace = name.split("/", 1)[0]
    if Publisher.objects.filter(namespace=namespace).exclude(verification=Publisher.Verification.NONE).exists():
        return [
            server_json.Problem(
                at_name,
                f"the namespace {namespace} belongs to a verified publisher",
                hint="Publish under it through the official MCP registry, which checks who owns it.",
            )
        ]
    if server is not None and ServerVersion.objects.filter(server=server, version=version).exists():
        return [server_json.Problem("$.version", f"{name} {version} is already listed", hint="Give a new version.")]
    if Submission.objects.filter(name=name, version=version, status=Submission.Status.PENDING).exists():
        return [_waiting(name, version)]
    return []


def _waiting(name: str, version: str) -> server_json.Problem:
    return server_json.Problem("$.version", f"{name} {version} is already waiting for review")


def submission_create(*, actor: User, text: str | bytes) -> Submission:
    """Submit ``text`` (a server.json) for review. Raises ``SubmissionRefused`` with every
    problem found; nothing is stored then."""
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise Forbidden("Sign in to publish a server.")
    try:
        validated = server_json.validate(text)
    except server_json.Invalid as exc:
        raise SubmissionRefused(exc.problems) from None
    with transaction.atomic():
        refusals = _refusals(actor=actor, name=validated.name, version=validated.version)
        if refusals:
            raise SubmissionRefused(refusals)
        try:
            with transaction.atomic():
                submission = Submission.objects.create(
                    name=validated.name, version=validated.version, document=validated.document, submitted_by=actor
                )
        except IntegrityError:  # the same name and version submitted at the same moment
            raise SubmissionRefused([_waiting(validated.name, validated.version)]) from None
        _audit(submission, actor=actor, action=Action.SUBMISSION_CREATED)
    return submission


def _audit(submission: Submission, *, actor: User, action: Action, **extra) -> None:
    """A submission's event on the global chain: its name and version, never its document."""
    audit_event_record(
        workspace=None,
        actor=actor,
        action=action,
        target_type="submission",
        target_id=submission.pk,
        target_repr=str(submission),
        metadata={"name": submission.name, "version": submission.version, **extra},
    )


def _require_staff(actor: User) -> None:
    if actor is None or not (actor.is_authenticated and actor.is_active and actor.is_staff):
        raise Forbidden("Only staff review submissions.")


def _pending(submission: Submission) -> Submission:
    """The submission, locked, if it still waits for review (two reviewers may race)."""
    locked = Submission.objects.select_for_update().get(pk=submission.pk)
    if locked.status != Submission.Status.PENDING:
        raise SubmissionNotPending(f"{locked.name} {locked.version} was already {locked.get_status_display().lower()}.")
    return locked


def submission_approve(*, submission: Submission, actor: User) -> Server:
    """List the submitted version (staff only); the listed server."""
    _require_staff(actor)
    now = timezone.now()
    with transaction.atomic():
        submission = _pending(submission)
        # The registry may have brought the name in since it was submitted.
        server = Server.objects.filter(name=submission.name).first()
        if server is not None and server.source != Server.Source.SUBMITTED:
            raise SubmissionNotPending(
                f"{submission.name} is listed from the {server.get_source_display()} now; reject this submission."
            )
        if server is not None and ServerVersion.objects.filter(server=server, version=submission.version).exists():
            raise SubmissionNotPending(f"{submission.name} {submission.version} is already listed; reject this one.")
        namespace = submission.name.split("/", 1)[0]
        # Created here first, unverified and SUBMITTED: the indexer's writer keeps existing
        # rows as they are (it would make a new publisher NAMESPACE-verified, which only the
        # registry's proof earns).
        publisher, _ = Publisher.objects.get_or_create(namespace=namespace)
        server, _ = Server.objects.get_or_create(
            name=submission.name, defaults={"publisher": publisher, "source": Server.Source.SUBMITTED}
        )
        # The version approved last is the server's latest, as a new release would be.
        ServerVersion.objects.filter(server=server, is_latest=True).update(is_latest=False)
        versions_write(
            [
                Entry(
                    name=submission.name,
                    version=submission.version,
                    server=submission.document,
                    status=Server.Status.ACTIVE,
                    published_at=now,
                    updated_at=now,
                    is_latest=True,
                )
            ],
            namespace_proven=False,
        )
        submission.status = Submission.Status.APPROVED
        submission.reviewed_by, submission.reviewed_at, submission.server = actor, now, server
        submission.save(update_fields=["status", "reviewed_by", "reviewed_at", "server"])
        _audit(submission, actor=actor, action=Action.SUBMISSION_APPROVED, server=server.pk)
    server.refresh_from_db()
    return server


def submission_reject(*, submission: Submission, actor: User, note: str) -> Submission:
    """Refuse a pending submission (staff only); ``note`` tells the submitter why."""
    _require_staff(actor)
    note = (note or "").strip()
    if not note:
        raise RuleViolation("Say why it is rejected: the submitter sees the note.")
    note = note[:REVIEW_NOTE_MAX]
    with transaction.atomic():
        submission = _pending(submission)
        submission.status = Submission.Status.REJECTED
        submission.reviewed_by, submission.reviewed_at, submission.review_note = actor, timezone.now(), note
        submission.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        _audit(submission, actor=actor, action=Action.SUBMISSION_REJECTED, note=note[:500])
    return submission
