"""Each catalog server's package as the MCP registry names it (apps/hosting/image/npm/package.json
and python-sqlite.txt are what the runtime image installs), so a marketplace server can be
matched to the catalog entry that runs it."""

from django.db import migrations, models

PACKAGES = {
    "filesystem": "npm:@modelcontextprotocol/server-filesystem",
    "memory": "npm:@modelcontextprotocol/server-memory",
    "everything": "npm:@modelcontextprotocol/server-everything",
    "sequential-thinking": "npm:@modelcontextprotocol/server-sequential-thinking",
    "sqlite": "pypi:mcp-server-sqlite",
    "postgres": "npm:@modelcontextprotocol/server-postgres",
    "github": "npm:@modelcontextprotocol/server-github",
    "slack": "npm:@modelcontextprotocol/server-slack",
    "notion": "npm:@notionhq/notion-mcp-server",
    "brave-search": "npm:@modelcontextprotocol/server-brave-search",
    "context7": "npm:@upstash/context7-mcp",
    "puppeteer": "npm:@modelcontextprotocol/server-puppeteer",
}


def seed(apps, schema_editor):
    AllowedImage = apps.get_model("hosting", "AllowedImage")
    for slug, package in PACKAGES.items():
        AllowedImage.objects.filter(slug=slug, registry_package="").update(registry_package=package)


class Migration(migrations.Migration):
    dependencies = [("hosting", "0004_seed_catalog")]

    operations = [
        migrations.AddField(
            model_name="allowedimage",
            name="registry_package",
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text='The package it runs, as the MCP registry names it: "npm:@scope/name", "pypi:name".',
                max_length=300,
            ),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
