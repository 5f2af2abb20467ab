"""Personal API keys in the API. The digest is never serialised; the raw key only in the create response."""

from __future__ import annotations

from rest_framework import serializers

from apps.accounts.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "is_active", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class IssuedApiKeySerializer(ApiKeySerializer):
    """A key just created: the raw secret comes from the context, because it is stored nowhere."""

    key = serializers.SerializerMethodField(help_text="Use as `Authorization: Bearer <key>`. Shown this once.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, obj: ApiKey) -> str:
        return self.context["raw"]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
