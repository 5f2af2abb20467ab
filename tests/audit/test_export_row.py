"""Every way of exporting the audit trail writes the same one row, through ``audit_export_begin``:
the portal, the REST API, the admin and ``manage.py audit_export``."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.export import ExportKind, ExportVia
from apps.audit.models import AuditEvent
from apps.audit.services import audit_export_begin

SECRET = "mng_" + "0123456789abcdef" * 3


def the_export_row() -> AuditEvent:
    (event,) = AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED)
    return event


def shape(event: AuditEvent) -> tuple:
    """What must not differ between entry points: the target and the metadata keys."""
    return (event.workspace_id, event.target_type, event.target_id, event.target_repr, sorted(event.metadata))


def read(response) -> None:
    assert response.status_code == 200, response
    b"".join(response.streaming_content)


@pytest.fixture
def expected(cast):
    return (cast.acme.pk, "workspace", str(cast.acme.pk), "acme", ["filters", "format", "kind", "via"])


def test_the_portal_writes_the_row(cast, client, expected):
    client.force_login(cast.bob)
    read(client.get(reverse("portal:calls-export", args=["acme"]), {"format": "csv", "status": "2xx"}))
    event = the_export_row()
    assert shape(event) == expected
    assert (event.actor, event.ip) == (cast.bob, "127.0.0.1")
    assert event.metadata == {"kind": "tool-calls", "format": "csv", "filters": {"status": "2xx"}, "via": "portal"}


def test_the_api_writes_the_row(cast, client_for, expected):
    read(client_for(cast.bob).get("/api/v1/workspaces/acme/audit/tool-calls/?format=csv&status=200"))
    event = the_export_row()
    assert shape(event) == expected
    assert (event.actor, event.ip) == (cast.bob, "127.0.0.1")
    assert event.metadata == {"kind": "tool-calls", "format": "csv", "filters": {"status": "200"}, "via": "api"}


def test_the_admin_writes_the_row(cast, client, admin_user, expected):
    client.force_login(admin_user)
    url = reverse("admin:audit_toolcall_export", args=["csv"])
    read(client.get(url, {"workspace__id__exact": str(cast.acme.pk), "status": "2xx"}))
    event = the_export_row()
    assert shape(event) == expected
    assert (event.actor, event.ip) == (admin_user, "127.0.0.1")
    filters = {"workspace__id__exact": str(cast.acme.pk), "status": "2xx"}
    assert event.metadata == {"kind": "tool-calls", "format": "csv", "filters": filters, "via": "admin"}


def test_the_command_writes_the_row_with_no_actor(cast, expected):
    call_command("audit_export", "acme", "--kind", "calls", "--since", "2026-01-01", stdout=io.StringIO())
    event = the_export_row()
    assert shape(event) == expected
    assert (event.actor, event.actor_repr, event.ip) == (None, "", "")
    assert event.metadata == {"kind": "tool-calls", "format": "jsonl", "filters": {"since": "2026-01-01"}, "via": "cli"}


def test_an_admin_export_across_workspaces_has_no_workspace_target(db, client, admin_user):
    client.force_login(admin_user)
    read(client.get(reverse("admin:audit_auditevent_export", args=["jsonl"])))
    event = the_export_row()
    assert (event.workspace_id, event.target_type, event.target_id, event.target_repr) == (
        None,
        "",
        "",
        "all workspaces",
    )
    assert event.metadata == {"kind": "events", "format": "jsonl", "filters": {}, "via": "admin"}


def test_the_service_masks_raw_secrets_drops_unset_filters_and_refuses_unknown_formats(cast):
    event = audit_export_begin(
        workspace=cast.acme,
        actor=cast.alice,
        kind=ExportKind.EVENTS,
        fmt="jsonl",
        filters={"q": f"token {SECRET}", "ids": [SECRET, "7"], "until": None, "shadow": False, "actor": ""},
        via=ExportVia.PORTAL,
    )
    assert event.metadata["filters"] == {"q": "token ***", "ids": ["***", "7"]}
    with pytest.raises(ValueError, match="Format must be one of"):
        audit_export_begin(
            workspace=cast.acme, actor=cast.alice, kind=ExportKind.EVENTS, fmt="xlsx", filters={}, via=ExportVia.API
        )
    assert AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).count() == 1


def test_a_security_reviewer_with_view_permission_only_exports_too(cast, client, expected):
    # The admin export needs only the view permission (the "Security reviewers" group).
    reviewer = cast.carol
    reviewer.is_staff = True
    reviewer.save(update_fields=["is_staff"])
    reviewer.user_permissions.add(Permission.objects.get(codename="view_toolcall"))
    client.force_login(reviewer)
    read(client.get(reverse("admin:audit_toolcall_export", args=["jsonl"]), {"workspace__id__exact": cast.acme.pk}))
    assert shape(the_export_row()) == expected
