"""The ToolCall admin shows tool errors (422) apart, and lists and explains quarantined rows.

Cast addition: ``root``, a platform operator (superuser).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditCheckpoint, ToolCall
from apps.audit.services import retention_apply, tool_calls_record
from tests.factories import UserFactory

OTHER_KEY = "another-audit-key-" + "4" * 40


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


def _url(view="changelist", *args, model=ToolCall):
    return reverse(f"admin:audit_{model._meta.model_name}_{view}", args=args)


def _call(cast, tool, status, **extra):
    return {
        "workspace_id": cast.acme.pk,
        "member_id": cast.carol.pk,
        "member_repr": cast.carol.email,
        "method": "tools/call",
        "server_slug": "fix",
        "tool_name": tool,
        "status": status,
        **extra,
    }


@pytest.fixture
def outcomes(cast):
    tool_calls_record(
        [
            _call(cast, "ok", 200),
            _call(cast, "failing-tool", 422),  # the tool answered isError: true
            _call(cast, "denied", 403),
            _call(cast, "limited", 429),
            _call(cast, "down", 502),
            _call(cast, "echo\u0000", 200, error_code=2**40),  # cleaned
            _call(cast, "odd", 200, created_at="not a date"),  # quarantined
        ]
    )


def _listed(response) -> list[str]:
    return sorted(call.tool_name or call.method for call in response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "2xx"}, ["echo", "ok"]),
        ({"status": "tool_error"}, ["failing-tool"]),
        ({"status": "4xx"}, ["denied", "limited"]),  # refusals, not tool errors
        ({"status": "5xx"}, ["down"]),
        ({"status": "unknown"}, ["(quarantined)"]),
        ({"quarantined": "yes"}, ["(quarantined)", "echo"]),
        ({"quarantined": "no"}, ["denied", "down", "failing-tool", "limited", "ok"]),
    ],
)
def test_status_and_quarantine_filters(client, root, outcomes, filters, expected):
    client.force_login(root)
    response = client.get(_url(), filters)
    assert response.status_code == 200
    assert _listed(response) == expected


def test_the_list_names_tool_errors_and_flags_quarantined_rows(client, root, outcomes):
    client.force_login(root)
    html = client.get(_url()).content.decode()
    assert "422 tool error" in html and "403 refused" in html and "200 succeeded" in html
    assert "Tool error (422)" in html and "quarantined" in html.lower()


def test_the_detail_page_shows_the_quarantine_note(client, root, outcomes):
    client.force_login(root)
    cleaned = ToolCall.objects.get(tool_name="echo")
    html = client.get(_url("change", cleaned.pk)).content.decode()
    assert "cleaned: tool_name: removed 1 control character(s)" in html
    assert "1099511627776" in html and "<strong>OK</strong>" in html
    plain = ToolCall.objects.get(tool_name="ok")
    assert "stored exactly as received" in client.get(_url("change", plain.pk)).content.decode()


def test_the_detail_page_names_an_unknown_key(client, root, cast):
    with override_settings(MCPNEST_AUDIT_KEYS=[OTHER_KEY]):
        tool_calls_record([_call(cast, "ok", 200)])
    client.force_login(root)
    html = client.get(_url("change", ToolCall.objects.get().pk)).content.decode()
    assert "signed with a key not in MCPNEST_AUDIT_KEYS" in html


def test_the_checkpoint_list_shows_whether_each_signature_verifies(client, root, cast):
    tool_calls_record([_call(cast, "old", 200, created_at=timezone.now() - timedelta(days=400))])
    retention_apply(workspace=cast.acme)
    client.force_login(root)
    assert "OK (key " in client.get(_url(model=AuditCheckpoint)).content.decode()
    table = connection.ops.quote_name(AuditCheckpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET deleted_rows = 99")
    assert "forged retention checkpoint" in client.get(_url(model=AuditCheckpoint)).content.decode()
