"""Seed the catalog with a server that runs offline with ProcessRuntime (no image needed)."""

from django.db import migrations

NOTES = {
    "slug": "notes",
    "name": "Notes (in-memory, offline)",
    "image": "local/process",
    "mcp_command": "python -m apps.hosting.servers.notes",
    "required_env_vars": [],
    "default_profile": "small",
    "expected_tools": ["add_note", "list_notes", "search_notes"],
    "verified": True,
    "egress": "none",
}


def seed(apps, schema_editor):
    AllowedImage = apps.get_model("hosting", "AllowedImage")
    AllowedImage.objects.get_or_create(slug=NOTES["slug"], defaults=NOTES)


def unseed(apps, schema_editor):
    apps.get_model("hosting", "AllowedImage").objects.filter(slug=NOTES["slug"], instances__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("hosting", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
