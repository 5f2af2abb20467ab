"""Gateway tokens in the API. The digest is never serialised; the raw token only in the create response."""

from __future__ import annotations

from rest_framework import serializers

from apps.tokens.models import GatewayToken
from apps.tokens.services import MAX_EXPIRY_DAYS


class TokenSerializer(serializers.ModelSerializer):
    member = serializers.EmailField(
        source="user.email",
        read_only=True,
        allow_null=True,
        help_text="The member it acts as; null for workspace tokens.",
    )
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    # A plain string, not an enum: drf-spectacular would name it StatusEnum like the invitations' status.
    status = serializers.CharField(read_only=True, help_text="active, expired or revoked.")

    class Meta:
        model = GatewayToken
        fields = [
            "id",
            "name",
            "kind",
            "prefix",
            "member",
            "status",
            "created_by",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class IssuedTokenSerializer(TokenSerializer):
    """A token just issued: the raw secret comes from the context, because it is stored nowhere."""

    token = serializers.SerializerMethodField(help_text="The secret. Shown this once; store it now.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, obj: GatewayToken) -> str:
        return self.context["raw"]


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    member_email = serializers.EmailField(
        required=False, help_text="Member tokens: whom it acts as (default: you). Others' need tokens.manage."
    )
    kind = serializers.ChoiceField(choices=GatewayToken.Kind.choices, default=GatewayToken.Kind.MEMBER)
    expires_days = serializers.IntegerField(
        required=False, allow_null=True, help_text=f"1–{MAX_EXPIRY_DAYS}; omit for a token that does not expire."
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["kind"] == GatewayToken.Kind.WORKSPACE and attrs.get("member_email"):
            raise serializers.ValidationError(
                {"member_email": "A workspace token acts as no member; leave member_email out."}
            )
        return attrs
