"""The marketplace over REST: what the pages show, as JSON."""

from __future__ import annotations

from rest_framework import serializers

from apps.marketplace.configs import CLIENTS
from apps.marketplace.models import Collection, CollectionItem, Publisher, Server, ServerVersion


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
    topics = serializers.ListField(child=serializers.CharField(), read_only=True)
    # Text with its values said, as the other APIs' statuses: an enum would collide with
    # other "status" enums in the schema's component names.
    status = serializers.CharField(read_only=True, help_text="active, deprecated or deleted (in the registry).")

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
            "license",
            "topics",
            "score",
            "grade",
            "installs_week",
            "trending",
            "published_at",
            "updated_at",
        ]
        read_only_fields = fields


class CatalogVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="active, deprecated or deleted (in the registry).")

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
    readme_html = serializers.SerializerMethodField(help_text="Its README from GitHub, rendered and sanitised.")
    collections = serializers.SerializerMethodField(help_text="Slugs of the published collections it is in.")

    class Meta(CatalogServerSerializer.Meta):
        fields = [
            *CatalogServerSerializer.Meta.fields,
            "score_reasons",
            "versions",
            "install",
            "server_json",
            "readme_html",
            "collections",
        ]
        read_only_fields = fields

    def get_versions(self, obj) -> list[dict]:
        return CatalogVersionSerializer(self.context["versions"], many=True).data

    def get_install(self, obj) -> dict | None:
        configs = self.context["configs"]
        return InstallConfigsSerializer(configs).data if configs else None

    def get_server_json(self, obj) -> dict:
        return self.context["document"]

    def get_readme_html(self, obj) -> str:
        return self.context.get("readme_html", "")

    def get_collections(self, obj) -> list[str]:
        return [collection.slug for collection in self.context.get("collections", ())]


class CollectionItemSerializer(serializers.ModelSerializer):
    server = CatalogServerSerializer(read_only=True)

    class Meta:
        model = CollectionItem
        fields = ["server", "note"]
        read_only_fields = fields


class CollectionSerializer(serializers.ModelSerializer):
    # Text with its values said, as the other APIs' kinds and statuses: a second "kind" enum
    # would collide with the tokens' in the schema's component names.
    kind = serializers.CharField(read_only=True, help_text="collection or starter-pack.")
    servers = serializers.SerializerMethodField(help_text="Names of its listed servers, in order.")

    class Meta:
        model = Collection
        fields = ["slug", "title", "description", "kind", "servers", "updated_at"]
        read_only_fields = fields

    def get_servers(self, obj) -> list[str]:
        return [item.server.name for item in obj.listed_items]


class CollectionDetailSerializer(serializers.ModelSerializer):
    # Text with its values said, as the other APIs' kinds and statuses: a second "kind" enum
    # would collide with the tokens' in the schema's component names.
    kind = serializers.CharField(read_only=True, help_text="collection or starter-pack.")
    items = CollectionItemSerializer(source="listed_items", many=True, read_only=True)

    class Meta:
        model = Collection
        fields = ["slug", "title", "description", "kind", "items", "updated_at"]
        read_only_fields = fields


class PublisherSerializer(serializers.ModelSerializer):
    verified = serializers.BooleanField(read_only=True)
    servers_listed = serializers.IntegerField(source="listed", read_only=True)

    class Meta:
        model = Publisher
        fields = ["namespace", "verified", "verification", "verified_at", "servers_listed"]
        read_only_fields = fields


class PublisherDetailSerializer(serializers.Serializer):
    """A ``selectors.PublisherPage``: the publisher, why it is verified, its listed servers."""

    namespace = serializers.CharField(source="publisher.namespace", read_only=True)
    verified = serializers.BooleanField(source="publisher.verified", read_only=True)
    verification = serializers.ChoiceField(
        source="publisher.verification", choices=Publisher.Verification.choices, read_only=True
    )
    verification_reason = serializers.CharField(read_only=True, help_text="Why the badge; empty when unverified.")
    verified_at = serializers.DateTimeField(source="publisher.verified_at", read_only=True, allow_null=True)
    servers = CatalogServerSerializer(many=True, read_only=True)


class InstallSerializer(serializers.Serializer):
    via = serializers.ChoiceField(choices=list(CLIENTS), help_text="The client whose config was copied.")


class InstallCountedSerializer(serializers.Serializer):
    counted = serializers.BooleanField(help_text="False when this visitor already counted today.")
