"""Audit rows and the query filters of the audit endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import serializers

from apps.audit import export
from apps.audit.events import Action
from apps.audit.models import AuditEvent, ToolCall

_CHAIN_FIELDS = ["id", "seq", "created_at", "prev_hash", "row_hash", "key_id"]


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor_repr", read_only=True, help_text="Email as written then; blank: system."
    )
    target = serializers.CharField(source="target_repr", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [*_CHAIN_FIELDS, "action", "actor", "target_type", "target_id", "target", "metadata", "ip"]
        read_only_fields = fields


class ToolCallSerializer(serializers.ModelSerializer):
    member = serializers.CharField(source="member_repr", read_only=True)
    server = serializers.CharField(source="server_slug", read_only=True)
    tool = serializers.CharField(source="tool_name", read_only=True)

    class Meta:
        model = ToolCall
        fields = [
            *_CHAIN_FIELDS,
            "member",
            "token_prefix",
            "server",
            "tool",
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
        ]
        read_only_fields = fields


@dataclass(frozen=True)
class Moment:
    at: datetime
    whole_day: bool  # given as a date: the bound covers that whole (UTC) day


class MomentField(serializers.CharField):
    """An ISO date (a whole UTC day) or date-time (UTC unless it has an offset)."""

    default_error_messages = {
        "invalid": "Use an ISO date or date-time, such as 2026-01-31 or 2026-01-31T09:30:00Z (got {input!r}).",
    }

    def to_internal_value(self, data: object) -> Moment:
        text = super().to_internal_value(data)
        try:
            day = parse_date(text)
            if day is not None:
                return Moment(datetime(day.year, day.month, day.day, tzinfo=UTC), whole_day=True)
            moment = parse_datetime(text)
        except ValueError:  # well-formed but impossible, e.g. 2026-02-30
            moment = None
        if moment is None:
            self.fail("invalid", input=text)
        return Moment(moment if moment.tzinfo else moment.replace(tzinfo=UTC), whole_day=False)


class AuditFilters(serializers.Serializer):
    since = MomentField(required=False, help_text="Rows at or after this ISO date or date-time.")
    until = MomentField(required=False, help_text="Rows at or before this date-time, or through the end of this date.")
    format = serializers.ChoiceField(
        choices=export.FORMATS,
        required=False,
        help_text="Download every matching row (in chain order, with hashes) as a file instead of a JSON page.",
        error_messages={"invalid_choice": "Export format {input!r} is unknown; use csv or jsonl."},
    )

    def validate(self, attrs: dict) -> dict:
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since.at > self.upper_bound(until):
            raise serializers.ValidationError({"until": "until must not be before since."})
        return attrs

    @staticmethod
    def upper_bound(until: Moment) -> datetime:
        return until.at + timedelta(days=1) if until.whole_day else until.at


class AuditEventFilters(AuditFilters):
    action = serializers.ChoiceField(
        choices=[action.value for action in Action],
        required=False,
        error_messages={
            "invalid_choice": "Unknown action {input!r}; use one of: " + ", ".join(a.value for a in Action) + "."
        },
    )
    actor = serializers.EmailField(required=False, help_text="Email of who acted.")


class ToolCallFilters(AuditFilters):
    member = serializers.EmailField(required=False, help_text="Email of the member the call was made as.")
    server = serializers.CharField(required=False, help_text="Upstream server slug.")
    tool = serializers.CharField(required=False, help_text="Tool name.")
    status = serializers.IntegerField(
        required=False,
        min_value=100,
        max_value=599,
        help_text="HTTP-style outcome, e.g. 200 or 403.",
        error_messages={"invalid": "Use an HTTP status code such as 200 or 403."},
    )
