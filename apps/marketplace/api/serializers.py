"""The marketplace over REST: what the pages show, as JSON."""

from __future__ import annotations

from rest_framework import serializers

from apps.marketplace.models import Server, ServerVersion


class ScoreReasonSerializer(serializers.Serializer):
    factor = serializers.CharField()
    points = serializers.IntegerField(help_text="Negative for a penalty.")
    max = serializers.IntegerField(help_text="0 for a penalty.")
    why = serializers.CharField()


class CatalogServerSerializer(serializers.ModelSerializer):
    publisher = serializers.CharField(source="publisher.namespace", read_only=True)
    publisher_verified = serializers.BooleanField(source="publisher.verified", read_only=True)
    transports = serializers.ListField(child=serializers.CharField(), read_only=True)
    package_types = serializers.ListField(child=serializers.CharField(), read_only=True)
    categories = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Server
        fields = [
            "name",
            "title",
            "description",
            "version",
            "publisher",
            "publisher_verified",
            "source",
            "status",
            "repository_url",
            "website_url",
            "transports",
            "package_types",
            "remote",
            "stars",
            "last_commit_at",
            "archived",
            "categories",
            "score",
            "grade",
            "published_at",
            "updated_at",
        ]
        read_only_fields = fields


class CatalogVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServerVersion
        fields = ["version", "status", "is_latest", "published_at", "updated_at"]
        read_only_fields = fields


class InstallConfigsSerializer(serializers.Serializer):
    claude_desktop = serializers.JSONField()
    claude_code_command = serializers.CharField()
    claude_code_json = serializers.JSONField()
    cursor = serializers.JSONField()
    cursor_deeplink = serializers.CharField()
    vscode = serializers.JSONField()
    vscode_install_url = serializers.CharField()
    windsurf = serializers.JSONField()


class CatalogServerDetailSerializer(CatalogServerSerializer):
    score_reasons = ScoreReasonSerializer(many=True, read_only=True)
    versions = serializers.SerializerMethodField()
    install = serializers.SerializerMethodField(help_text="Every client's config; null when it has nothing to install.")
    server_json = serializers.SerializerMethodField(help_text="Its latest server.json, as published.")

    class Meta(CatalogServerSerializer.Meta):
        fields = [*CatalogServerSerializer.Meta.fields, "score_reasons", "versions", "install", "server_json"]
        read_only_fields = fields

    def get_versions(self, obj) -> list[dict]:
        return CatalogVersionSerializer(self.context["versions"], many=True).data

    def get_install(self, obj) -> dict | None:
        configs = self.context["configs"]
        return InstallConfigsSerializer(configs).data if configs else None

    def get_server_json(self, obj) -> dict:
        return self.context["document"]
