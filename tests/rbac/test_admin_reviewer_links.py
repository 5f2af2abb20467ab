"""A security reviewer (staff in the "Security reviewers" group) follows no admin link into a 403.

The audit detail pages render their ``workspace`` and ``chain`` foreign keys as links to the
Workspace and Audit chain admin pages, which the group may not open. The fix belongs to
apps/audit/admin.py (see the marker's reason); until it lands this test is expected to fail.
"""

from __future__ import annotations

import re

from django.contrib.auth.models import Group
from django.urls import reverse

from apps.audit.services import tool_calls_record
from apps.workspaces.services import invitation_create
from tests.factories import UserFactory

ADMIN_LINK = re.compile(r'href="(/admin/[^"?#]*)"')


def test_a_security_reviewer_follows_no_link_into_a_403(cast, client):
    invitation_create(access=cast.access(cast.alice), email="erin@example.com")  # an audit event
    tool_calls_record(
        [{"workspace_id": cast.acme.pk, "member_id": cast.carol.pk, "member_repr": "carol", "method": "tools/call"}]
    )
    rita = UserFactory(email="rita@example.com", is_staff=True)
    rita.groups.add(Group.objects.get(name="Security reviewers"))
    client.force_login(rita)

    seen: set[str] = set()
    queue = [reverse("admin:index")]
    refused: list[tuple[str, str]] = []  # (page, link that answers 403)
    status: dict[str, int] = {}
    while queue and len(seen) < 60:
        page = queue.pop()
        if page in seen:
            continue
        seen.add(page)
        response = client.get(page)
        if response.status_code != 200 or "html" not in response["Content-Type"]:
            continue
        for link in set(ADMIN_LINK.findall(response.content.decode())):
            if "/logout/" in link or "/export/" in link or link == "/admin/":
                continue
            if link not in status:
                status[link] = client.get(link).status_code
            if status[link] == 403:
                refused.append((page, link))
            elif link not in seen:
                queue.append(link)
    assert refused == []
