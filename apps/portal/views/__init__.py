"""The server-rendered portal, one module per domain. Views are thin: resolve access, call a
service, render.

Every workspace view gets its ``Access`` from ``apps.rbac.access.workspace_for`` (through
``base.workspace_view``), so a non-member sees 404 for every page and action, GET or POST, and
a member whose role does not reach a page sees 403 with the role it needs.
Services enforce the finer rules; their refusals are shown to the user, never swallowed.

Destructive actions (removing a member or a server, revoking a token or an API key, leaving)
ask first, one way for all: their URL answers GET with a confirmation page, and a POST
changes something only when it carries ``confirm=yes`` (``base.Confirmation``, ``base.confirmed``).
A new raw secret (gateway token, API key) is shown on the page after the redirect, once.

``apps/portal/urls.py`` imports the modules directly; this package re-exports nothing.
"""
