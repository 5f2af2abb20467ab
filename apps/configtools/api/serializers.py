"""Request and response shapes of /api/v1/tools/validate/ and /api/v1/tools/scan/."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from apps.configtools import clients, scanner, validator


def _size_checked(value: Any) -> Any:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text.encode("utf-8")) > validator.MAX_BYTES:
        raise serializers.ValidationError(f"The config is larger than {validator.MAX_BYTES // 1024} KB.")
    return value


class ValidateRequestSerializer(serializers.Serializer):
    config = serializers.JSONField(
        help_text="The config file's text (JSON, or JSONC for VS Code), or the parsed object."
    )
    client = serializers.ChoiceField(
        choices=list(clients.CLIENTS.items()), required=False, allow_null=True, help_text="Detected when omitted."
    )
    check_endpoints = serializers.BooleanField(
        default=False, help_text="Send an MCP initialize to each remote URL (public addresses only)."
    )

    def validate_config(self, value: Any) -> str:
        _size_checked(value)
        # The validator reports positions in the text: an object is given back its text.
        return value if isinstance(value, str) else json.dumps(value, indent=2)


class ProblemSerializer(serializers.Serializer):
    severity = serializers.ChoiceField(choices=[validator.ERROR, validator.WARNING, validator.INFO])
    path = serializers.CharField(help_text="JSON path, e.g. $.mcpServers.github.env.GITHUB_TOKEN")
    message = serializers.CharField()
    fix = serializers.CharField(allow_blank=True)
    line = serializers.IntegerField(allow_null=True)
    column = serializers.IntegerField(allow_null=True)


class EndpointResultSerializer(serializers.Serializer):
    path = serializers.CharField()
    url = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField()
    server = serializers.CharField(allow_blank=True)
    protocol_version = serializers.CharField(allow_blank=True)


class ReportSerializer(serializers.Serializer):
    client = serializers.CharField(allow_null=True)
    detected = serializers.BooleanField(help_text="False when the request named the client.")
    reason = serializers.CharField(allow_blank=True, help_text="Why the config looks like that client's.")
    valid = serializers.BooleanField(help_text="No problem of severity error.")
    problems = ProblemSerializer(many=True)
    endpoints = EndpointResultSerializer(many=True)


class ScanRequestSerializer(serializers.Serializer):
    config = serializers.JSONField(help_text="The config (any client's format), as text or as the parsed object.")
    tools = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        max_length=1000,
        help_text="Tool metadata to check for poisoning: the `tools` of a tools/list result.",
    )

    def validate_config(self, value: Any) -> Any:
        _size_checked(value)
        try:
            return scanner.parse(value)
        except ValueError as exc:
            raise serializers.ValidationError(f"Not JSON: {exc}. The validator shows where.") from exc

    def validate_tools(self, value: list) -> list:
        _size_checked(value)
        return value


class FindingSerializer(serializers.Serializer):
    rule = serializers.ChoiceField(choices=sorted(scanner.RULES))
    severity = serializers.ChoiceField(choices=[scanner.HIGH, scanner.MEDIUM, scanner.LOW])
    path = serializers.CharField()
    title = serializers.CharField()
    why = serializers.CharField()
    fix = serializers.CharField()
    evidence = serializers.CharField(allow_blank=True, help_text="Masked: a secret shows its first 4 characters only.")


class ScanResponseSerializer(serializers.Serializer):
    findings = FindingSerializer(many=True)
