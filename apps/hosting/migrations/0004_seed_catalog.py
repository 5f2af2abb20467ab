"""The verified catalog: the servers of the runtime image (apps/hosting/image), pinned to
the image by ``manage.py build_runtime_image``. Until it is built their image reference is
the unpinned ``mcpnest/runtime`` and the Docker runtime refuses to start them, saying so.

Credentials are declared here (the deploy form); servers that take one as an argument
read it with ``${NAME}`` (the bridge expands the server's own variables only).
"""

from django.db import migrations

RUNTIME = "mcpnest/runtime"


def _secret(key, label, help_text, required=True):
    return {"key": key, "label": label, "type": "password", "help": help_text, "required": required}


def _text(key, label, help_text, required=True):
    return {"key": key, "label": label, "type": "text", "help": help_text, "required": required}


CATALOG = [
    {
        "slug": "filesystem",
        "name": "Filesystem",
        "mcp_command": "mcp-server-filesystem /tmp",
        "expected_tools": ["read_text_file", "write_file", "list_directory", "search_files"],
    },
    {
        "slug": "memory",
        "name": "Memory (knowledge graph)",
        "mcp_command": "env MEMORY_FILE_PATH=/tmp/memory.jsonl mcp-server-memory",
        "expected_tools": ["create_entities", "create_relations", "read_graph", "search_nodes"],
    },
    {
        "slug": "everything",
        "name": "Everything (MCP reference server)",
        "mcp_command": "mcp-server-everything stdio",
        "expected_tools": ["echo", "get-sum"],
    },
    {
        "slug": "sequential-thinking",
        "name": "Sequential thinking",
        "mcp_command": "mcp-server-sequential-thinking",
        "expected_tools": ["sequentialthinking"],
    },
    {
        "slug": "sqlite",
        "name": "SQLite",
        "mcp_command": (
            "env PYTHONPATH=/opt/servers/sqlite python3 -c "
            "'import sys; from mcp_server_sqlite import main; sys.exit(main())' --db-path /tmp/sqlite.db"
        ),
        "expected_tools": ["read_query", "write_query", "create_table", "list_tables", "describe_table"],
    },
    {
        "slug": "postgres",
        "name": "PostgreSQL (read-only)",
        "mcp_command": "mcp-server-postgres ${POSTGRES_URL}",
        "required_env_vars": [
            _secret("POSTGRES_URL", "Database URL", "postgresql://user:password@host:5432/database (read-only queries)")
        ],
        "expected_tools": ["query"],
        "egress": "open",
    },
    {
        "slug": "github",
        "name": "GitHub",
        "mcp_command": "mcp-server-github",
        "required_env_vars": [
            _secret("GITHUB_PERSONAL_ACCESS_TOKEN", "Personal access token", "A fine-grained token with the repository scopes the tools need.")
        ],
        "egress": "open",
    },
    {
        "slug": "slack",
        "name": "Slack",
        "mcp_command": "mcp-server-slack",
        "required_env_vars": [
            _secret("SLACK_BOT_TOKEN", "Bot token", "xoxb-… from your Slack app's OAuth page."),
            _text("SLACK_TEAM_ID", "Team ID", "T… (the workspace's ID)."),
        ],
        "egress": "open",
    },
    {
        "slug": "notion",
        "name": "Notion",
        "mcp_command": "notion-mcp-server",
        "required_env_vars": [_secret("NOTION_TOKEN", "Integration token", "ntn_… from notion.so/profile/integrations.")],
        "egress": "open",
    },
    {
        "slug": "brave-search",
        "name": "Brave Search",
        "mcp_command": "mcp-server-brave-search",
        "required_env_vars": [_secret("BRAVE_API_KEY", "API key", "From api-dashboard.search.brave.com.")],
        "expected_tools": ["brave_web_search", "brave_local_search"],
        "egress": "open",
    },
    {
        "slug": "context7",
        "name": "Context7 (library docs)",
        "mcp_command": "context7-mcp",
        "required_env_vars": [
            _secret("CONTEXT7_API_KEY", "API key", "Optional: higher rate limits (context7.com/dashboard).", required=False)
        ],
        "egress": "open",
    },
    {
        "slug": "puppeteer",
        "name": "Puppeteer (browser automation)",
        "mcp_command": "mcp-server-puppeteer",
        "unavailable_reason": (
            "Needs a Chromium the runtime image does not ship (it would download one at build time, and the image "
            "is built offline). Use a remote browser server as an upstream instead."
        ),
    },
]


def seed(apps, schema_editor):
    AllowedImage = apps.get_model("hosting", "AllowedImage")
    for entry in CATALOG:
        values = {
            "image": RUNTIME,
            "required_env_vars": [],
            "expected_tools": [],
            "default_profile": "small",
            "verified": True,
            "egress": "none",
            "runtime_image": True,
            **entry,
        }
        AllowedImage.objects.get_or_create(slug=values.pop("slug"), defaults=values)
    # notes runs in the runtime image too (and on the host with the process runtime).
    AllowedImage.objects.filter(slug="notes", image="local/process").update(image=RUNTIME, runtime_image=True)


def unseed(apps, schema_editor):
    AllowedImage = apps.get_model("hosting", "AllowedImage")
    slugs = [entry["slug"] for entry in CATALOG]
    AllowedImage.objects.filter(slug__in=slugs, instances__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("hosting", "0003_instance_requests_runtime_image")]

    operations = [migrations.RunPython(seed, unseed)]
