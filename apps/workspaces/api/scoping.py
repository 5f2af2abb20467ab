"""The one way an API view finds its workspace: the slug in the URL, through the access gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.rbac.access import Access, workspace_for
from apps.rbac.roles import Capability

if TYPE_CHECKING:
    from rest_framework.request import Request


class WorkspaceScopedMixin:
    """Sets ``self.access`` for ``<slug>`` before any handler runs.

    Someone who is not a member gets 404 (missing and forbidden look alike, so slugs don't
    leak). A member whose role lacks the ``required_capabilities`` entry for the request's method gets
    403 with the reason. Writes need only to see the workspace here: their services check
    the capability themselves (and turn a refusal into 403 the same way).
    """

    # Capability needed per HTTP method, on top of seeing the workspace.
    required_capabilities: dict[str, Capability] = {}
    access: Access

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Authentication and IsAuthenticated run first, so anonymous callers get 401, never 404.
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.access = workspace_for(user=request.user, slug=kwargs["slug"], capability=Capability.VIEW_WORKSPACE)
        capability = self.required_capabilities.get(request.method or "")
        if capability is not None:
            self.access.require(capability)
