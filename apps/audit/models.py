"""The append-only, hash-chained audit trail.

Two record types, each in its own chain per workspace:

* ``AuditEvent`` — every governance action (who did what to what, from where);
* ``ToolCall`` — one row per gateway call: metadata only, never arguments or results.

Every row carries ``seq`` (its position in the chain), ``prev_hash`` (the previous row's
hash), ``key_id`` (which audit key signed it) and ``row_hash`` = HMAC-SHA256 under that key
over ``prev_hash`` and a canonical JSON serialisation of its fields (``apps.audit.chain``
says what the key protects against, and what it does not). ``AuditChain`` holds each
chain's head; writers lock it, so two writers can never fork a chain, and ``(chain, seq)``
is unique as a second line of defence.

The ORM refuses to update or delete audit rows. References to users and workspaces are
kept without database constraints and are never cascaded or nulled: history stays as it
was written, and the chain stays verifiable.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.audit.events import ACTION_CHOICES

GENESIS_HASH = "0" * 64


class AppendOnlyError(Exception):
    """Audit rows are never changed or deleted through the ORM."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only; they cannot be updated.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only; they cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only; they cannot be updated.")

    def update_or_create(self, *args, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only; they cannot be updated.")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only; they cannot be deleted.")


def _no_constraint_fk(to: str, **kwargs) -> models.ForeignKey:
    return models.ForeignKey(to, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", **kwargs)


class AuditChain(models.Model):
    """The head of one hash chain: (workspace or global) × (events or calls)."""

    class Stream(models.TextChoices):
        EVENTS = "events", "Audit events"
        CALLS = "calls", "Tool calls"

    workspace = _no_constraint_fk("workspaces.Workspace", null=True)
    stream = models.CharField(max_length=10, choices=Stream.choices)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "stream"], name="auditchain_unique_workspace"),
            models.UniqueConstraint(
                fields=["stream"], condition=models.Q(workspace__isnull=True), name="auditchain_unique_global"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_id or 'global'}/{self.stream} @ {self.last_seq}"


class AuditCheckpoint(AppendOnlyModel):
    """Left by retention: rows up to ``seq`` were deleted; row ``seq`` had ``row_hash``.

    Verification starts from the newest checkpoint, so the remaining chain still proves
    that nothing after it was altered. ``mac`` (HMAC-SHA256 under the audit key ``key_id``
    over ``signed_values()``) makes a checkpoint unforgeable by someone holding only the
    database: otherwise a fake one could excuse any deleted prefix of the chain.
    """

    chain = models.ForeignKey(AuditChain, on_delete=models.PROTECT, related_name="checkpoints")
    seq = models.BigIntegerField()
    row_hash = models.CharField(max_length=64)
    deleted_rows = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    key_id = models.CharField("key id", max_length=16, blank=True)
    mac = models.CharField("MAC", max_length=64, blank=True)

    class Meta:
        ordering = ["chain", "-seq"]
        get_latest_by = "seq"

    def __str__(self) -> str:
        return f"checkpoint {self.chain} @ {self.seq}"

    def signed_values(self) -> dict[str, Any]:
        """What ``mac`` covers (the chain row is loaded if it is not already)."""
        return {
            "chain": self.chain_id,
            "workspace": self.chain.workspace_id,
            "stream": self.chain.stream,
            "seq": self.seq,
            "row_hash": self.row_hash,
            "deleted_rows": self.deleted_rows,
            "created_at": self.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": self.key_id,
        }


class ChainedRecord(AppendOnlyModel):
    """Fields and hashing shared by both audit record types."""

    STREAM: ClassVar[str]
    # The fields covered by the row hash, in addition to chain, seq and prev_hash.
    HASHED_FIELDS: ClassVar[tuple[str, ...]]

    # No index of their own on chain, workspace or actor/member: each record type's composite
    # indexes start with them (the (chain, seq) constraint, (workspace, -created_at), ...), and
    # every index is one more write per row, on the gateway's busiest table above all.
    chain = models.ForeignKey(
        AuditChain, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    seq = models.BigIntegerField()
    prev_hash = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64)
    key_id = models.CharField("key id", max_length=16, blank=True, help_text="The audit key that signed this row.")
    workspace = _no_constraint_fk("workspaces.Workspace", null=True, blank=True, db_index=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    def hashed_values(self) -> dict[str, Any]:
        return self.hashed_values_of(self, chain_id=self.chain_id, seq=self.seq, key_id=self.key_id)

    @classmethod
    def hashed_values_of(cls, source: Any, *, chain_id: int, seq: int, key_id: str) -> dict[str, Any]:
        """What a row's MAC covers, read from ``source``: a record, or (the recorder's fast
        path, ``chain.append_tool_calls``) a dict of its column values by attribute name."""
        read = source.__getitem__ if isinstance(source, dict) else source.__getattribute__
        values: dict[str, Any] = {
            "chain": chain_id,
            "seq": seq,
            "key_id": key_id,
            "workspace": read("workspace_id"),
            "created_at": read("created_at").astimezone(UTC).isoformat(timespec="microseconds"),
        }
        for name in cls.HASHED_FIELDS:
            values[name] = read(name)
        return values


class AuditEvent(ChainedRecord):
    """A governance action: who (actor) did what (action) to what (target), from where."""

    STREAM = AuditChain.Stream.EVENTS
    HASHED_FIELDS = (
        "actor_id",
        "actor_repr",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "metadata",
        "ip",
    )

    actor = _no_constraint_fk(settings.AUTH_USER_MODEL, null=True, blank=True, db_index=False)
    actor_repr = models.CharField("actor", max_length=254, blank=True, help_text="Who it was, as written then.")
    action = models.CharField(max_length=40, choices=ACTION_CHOICES)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField("target", max_length=254, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip = models.CharField("IP address", max_length=45, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="auditevent_unique_seq")]
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="auditevent_ws_time"),
            models.Index(fields=["workspace", "action", "-created_at"], name="auditevent_ws_action_time"),
            models.Index(fields=["action", "-created_at"], name="auditevent_action_time"),
            models.Index(fields=["-created_at"], name="auditevent_time"),
            models.Index(fields=["actor", "-created_at"], name="auditevent_actor_time"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_repr or 'system'}"


class ToolCall(ChainedRecord):
    """One gateway call. Metadata only: never the arguments or the result.

    ``status`` is HTTP-style: 2xx answered, 422 answered with a tool error (a result with
    ``isError: true``), other 4xx refused (auth, allowlist, pin, rate limit), 5xx failed,
    0 unknown (the recorded value was not a status; ``quarantine`` says what it was).

    ``record_id`` is the gateway's id for the call (32 lowercase hex): replaying the spool
    writes a call once. ``quarantine`` is blank for a row stored exactly as received;
    otherwise it tells a reviewer what was cleaned ("cleaned: …") or why the call could
    not be stored as a normal row ("quarantined: …", method "(quarantined)"), with the
    original values (see ``apps.audit.sanitize``).
    """

    QUARANTINED_METHOD = "(quarantined)"
    TOOL_ERROR_STATUS = 422

    STREAM = AuditChain.Stream.CALLS
    HASHED_FIELDS = (
        "member_id",
        "member_repr",
        "token_prefix",
        "server_slug",
        "tool_name",
        "method",
        "status",
        "error_code",
        "latency_ms",
        "client_ip",
        "client_name",
        "client_version",
        "session_id",
        "request_id",
        "shadow_blocked",
        "record_id",
        "quarantine",
    )

    member = _no_constraint_fk(settings.AUTH_USER_MODEL, null=True, blank=True, db_index=False)
    member_repr = models.CharField("member", max_length=254, blank=True)
    token_prefix = models.CharField(max_length=16, blank=True)
    oauth_client = models.CharField(
        "OAuth client", max_length=255, blank=True, help_text="The OAuth client id, when an OAuth token made the call."
    )
    server_slug = models.CharField("server", max_length=64, blank=True)
    tool_name = models.CharField("tool", max_length=200, blank=True)
    method = models.CharField("JSON-RPC method", max_length=64)
    status = models.PositiveSmallIntegerField(
        help_text="HTTP-style outcome: 2xx answered, 422 tool error, other 4xx refused, 5xx failed, 0 unknown."
    )
    error_code = models.IntegerField("JSON-RPC error", null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    client_ip = models.CharField("client IP", max_length=45, blank=True)
    client_name = models.CharField(max_length=100, blank=True)
    client_version = models.CharField(max_length=50, blank=True)
    session_id = models.CharField("MCP session", max_length=100, blank=True)
    request_id = models.CharField("JSON-RPC id", max_length=100, blank=True)
    shadow_blocked = models.BooleanField(
        default=False, help_text="Allowed in shadow mode, but enforcement would have blocked it."
    )
    # NULL when a row came without a valid id (sanitize: it loses replay protection only):
    # many NULLs, one row per id.
    # Unique by a constraint, not unique=True: on PostgreSQL that would add a second index
    # (varchar_pattern_ops, for LIKE) that no query uses.
    record_id = models.CharField("record id", max_length=32, null=True, blank=True)  # noqa: DJ001
    quarantine = models.TextField(
        blank=True,
        default="",
        help_text="Blank when stored as received; otherwise what was cleaned, or why quarantined.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="toolcall_unique_seq"),
            models.UniqueConstraint(fields=["record_id"], name="toolcall_unique_record"),
        ]
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="toolcall_ws_time"),
            models.Index(fields=["workspace", "server_slug", "tool_name", "-created_at"], name="toolcall_ws_tool"),
            models.Index(fields=["member", "-created_at"], name="toolcall_member_time"),
            models.Index(fields=["status", "-created_at"], name="toolcall_status_time"),
            models.Index(fields=["server_slug", "-created_at"], name="toolcall_server_time"),
            models.Index(fields=["tool_name", "-created_at"], name="toolcall_tool_time"),
            models.Index(fields=["-created_at"], name="toolcall_time"),
            # Incident response: everything one token or one client session did.
            models.Index(fields=["token_prefix", "-created_at"], name="toolcall_token_time"),
            models.Index(fields=["session_id"], name="toolcall_session"),
            models.Index(fields=["request_id"], name="toolcall_request"),
            # The few rows a reviewer must look at (admin filter "quarantined: yes").
            models.Index(fields=["-created_at"], condition=~models.Q(quarantine=""), name="toolcall_quarantined"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.server_slug}:{self.tool_name} → {self.status}"

    @classmethod
    def hashed_values_of(cls, source: Any, *, chain_id: int, seq: int, key_id: str) -> dict[str, Any]:
        values = super().hashed_values_of(source, chain_id=chain_id, seq=seq, key_id=key_id)
        # Added after rows were first chained: hashed only when set, so rows written
        # before it (and calls made with mng_ tokens) keep the hashes they were signed with.
        oauth_client = source["oauth_client"] if isinstance(source, dict) else source.oauth_client
        if oauth_client:
            values["oauth_client"] = oauth_client
        return values
