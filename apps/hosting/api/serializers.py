"""The catalog, hosted instances, their logs and the plan's usage in the API.

Input validation only: the rules live in services. An instance's credentials are
write-only: the API takes them when it is deployed or requested and only ever returns
their names (``env_names``).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.hosting.models import AllowedImage, Instance, Profile

LOG_LINES_MAX = 200


class EnvVarSerializer(serializers.Serializer):
    """One credential an image takes (an entry of ``AllowedImage.required_env_vars``)."""

    key = serializers.CharField(read_only=True, help_text="The environment variable, e.g. NOTES_API_KEY.")
    label = serializers.CharField(read_only=True, default="")
    # A plain string, not an enum: drf-spectacular would name it TypeEnum, a name too generic to own.
    type = serializers.CharField(read_only=True, default="text", help_text="text or password (a secret).")
    help = serializers.CharField(read_only=True, default="")
    required = serializers.BooleanField(read_only=True, default=True)


class ImageSerializer(serializers.ModelSerializer):
    required_env_vars = EnvVarSerializer(
        many=True, read_only=True, help_text="The credentials to give in `env` when deploying it."
    )
    expected_tools = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The tools it is known to offer."
    )
    # Plain strings, not enums: the instance's profile below is the one ProfileEnum.
    default_profile = serializers.CharField(read_only=True, help_text="small, medium or large.")
    egress = serializers.CharField(read_only=True, help_text="none (no network) or open.")

    class Meta:
        model = AllowedImage
        fields = [
            "slug",
            "name",
            "image",
            "verified",
            "default_profile",
            "egress",
            "required_env_vars",
            "expected_tools",
        ]
        read_only_fields = fields


class InstanceSerializer(serializers.ModelSerializer):
    image = serializers.CharField(source="image.slug", read_only=True, help_text="The catalog image's slug.")
    # A plain string, not an enum: drf-spectacular would name it StatusEnum like the tokens' status.
    status = serializers.CharField(
        read_only=True,
        help_text="requested (a Member's, waiting for approval) or rejected; pending → starting → running or "
        "failed (`error` says why); stopping → stopped.",
    )
    error = serializers.CharField(read_only=True, help_text="Why it failed, with its last output (credentials masked).")
    server_slug = serializers.CharField(
        read_only=True, help_text="Its upstream server in the workspace's gateway; allowlist rules name it."
    )
    egress = serializers.CharField(
        read_only=True, help_text="none (its workspace's network only) or open (allowed out by an Owner or Admin)."
    )
    tool_prefix = serializers.CharField(
        read_only=True, help_text="Its tools' prefix in the gateway's tools/list, e.g. memory-7_read_graph."
    )
    env_names = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Names of the credentials it was given. Their values are encrypted and never returned.",
    )
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    approved_by = serializers.EmailField(source="approved_by.email", read_only=True, allow_null=True)
    console_url = serializers.SerializerMethodField(
        help_text="The live deploy console: a WebSocket path for a signed-in browser session (status, then log "
        "lines as they come, credentials masked)."
    )

    class Meta:
        model = Instance
        fields = [
            "id",
            "image",
            "profile",
            "egress",
            "tool_prefix",
            "status",
            "healthy",
            "error",
            "server_slug",
            "env_names",
            "created_by",
            "approved_by",
            "created_at",
            "started_at",
            "stopped_at",
            "console_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_console_url(self, obj: Instance) -> str:
        return f"/ws/w/{obj.workspace.slug}/instances/{obj.pk}/console/"


class InstanceCreateSerializer(serializers.Serializer):
    image = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=AllowedImage.objects.all(),
        help_text="The slug of a catalog image (GET hosting/catalog/).",
        error_messages={"does_not_exist": "The catalog has no image “{value}”: GET hosting/catalog/ lists them."},
    )
    profile = serializers.ChoiceField(
        choices=Profile.choices, required=False, allow_null=True, help_text="Omit for the image's default profile."
    )
    egress = serializers.ChoiceField(
        choices=["none", "open"],
        required=False,
        default="none",
        help_text="open lets the container reach the network beyond its workspace (an Owner's or Admin's choice; "
        "a Member may ask for it, and approval grants it). Audited.",
    )
    env = serializers.DictField(
        # Values kept as given (spaces too): a secret is not ours to trim.
        child=serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=8192),
        required=False,
        default=dict,
        write_only=True,
        help_text='The credentials the image lists in `required_env_vars`, e.g. {"NOTES_API_KEY": "…"}. '
        "Encrypted at rest and never returned; responses list their names only.",
    )


class LogsQuerySerializer(serializers.Serializer):
    lines = serializers.IntegerField(
        min_value=1, max_value=LOG_LINES_MAX, required=False, default=50, help_text="How many of the last lines."
    )


class LogsSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The last output lines, credentials masked."
    )
    cursor = serializers.IntegerField(read_only=True, help_text="Where these lines end in the log (opaque).")


class UsageSerializer(serializers.Serializer):
    used = serializers.IntegerField(read_only=True, help_text="Instances pending, starting or running.")
    limit = serializers.IntegerField(read_only=True, help_text="How many the workspace's plan runs at once.")
