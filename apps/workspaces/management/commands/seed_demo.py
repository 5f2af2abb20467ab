"""Demo data for ``make run``: a workspace to click through, with people, tokens, a real
upstream MCP server (``manage.py demo_upstream``, started by ``make run``) and audit rows
that name that server's real tools.

Idempotent: every piece is looked up before it is made, so running it again adds nothing.
Everything goes through the services, so the audit trail of the demo is a real one.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import time
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import ToolCall
from apps.audit.services import tool_calls_record
from apps.core.errors import RuleViolation
from apps.gateway import demo_upstream
from apps.gateway.models import UpstreamServer
from apps.gateway.services import allowlist_set, server_add
from apps.hosting.models import AllowedImage, Instance
from apps.hosting.services import instance_deploy, instance_health_sweep
from apps.rbac.access import access_for
from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create, token_revoke
from apps.workspaces.management.cli import user_get_or_create
from apps.workspaces.models import Enforcement, Membership, Workspace
from apps.workspaces.services import GatewayPolicy, member_add, workspace_create, workspace_set_policy

DEMO_EMAIL = "demo@mcpnest.local"
DEMO_SLUG = "demo"
PEOPLE = [  # besides the demo user, who is the first Owner
    ("olivia@mcpnest.local", Role.OWNER),
    ("adam@mcpnest.local", Role.ADMIN),
    ("alma@mcpnest.local", Role.ADMIN),
    ("max@mcpnest.local", Role.MEMBER),
    ("mia@mcpnest.local", Role.MEMBER),
]
TOOLS = {demo_upstream.SLUG: list(demo_upstream.TOOLS)}
MIA_RULES = [f"{demo_upstream.SLUG}:echo", f"{demo_upstream.SLUG}:word_count"]  # shadow mode shows the rest
CLIENTS = [("claude-desktop", "0.9.3"), ("cursor", "1.2.0"), ("vscode-copilot", "1.101.0")]
TOOL_CALLS = 50


class Command(BaseCommand):
    help = f"Create (once) the demo workspace '{DEMO_SLUG}' and its Owner {DEMO_EMAIL} (staff, for /admin)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--wait", type=float, default=10.0, help="seconds to wait for the demo MCP server to answer (default 10)"
        )

    def handle(self, *args, wait: float, **options) -> None:
        self.credentials: list[str] = []
        reachable = _wait_for_demo_upstream(wait)
        with transaction.atomic():
            demo = self._demo_user()
            workspace = self._workspace(demo)
            self._members(workspace, demo)
        # Adding the server asks the upstream for its tools: outside the transaction above.
        self._server(workspace, demo, reachable)
        with transaction.atomic():
            self._tokens(workspace, demo)
            self._tool_calls(workspace)
        self._hosted(workspace, demo)
        self.stdout.write(f"Demo ready: sign in as {DEMO_EMAIL} and open workspace '{DEMO_SLUG}' (or /admin/).")
        # Last, after everything else (make run prints the migrations first): what to sign in with.
        for line in self.credentials:
            self.stdout.write(self.style.SUCCESS(line))

    def _server(self, workspace: Workspace, demo: User, reachable: bool) -> None:
        if UpstreamServer.objects.filter(workspace=workspace, slug=demo_upstream.SLUG).exists():
            return
        access = access_for(user=demo, workspace=workspace)
        server_add(access=access, slug=demo_upstream.SLUG, url=demo_upstream.url())
        mia = User.objects.get(email="mia@mcpnest.local")
        allowlist_set(access=access, member=mia, rules=MIA_RULES)
        if reachable:
            self.stdout.write(f"Added the demo MCP server '{demo_upstream.SLUG}' ({demo_upstream.url()}).")
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Added the demo MCP server '{demo_upstream.SLUG}', but nothing answers at {demo_upstream.url()}: "
                    "start it with `python manage.py demo_upstream` (make run does)."
                )
            )

    def _hosted(self, workspace: Workspace, demo: User) -> None:
        """A hosted server (the catalog's notes) running for the demo workspace, with the
        runtime the settings name (the process runtime by default: not isolated). One left
        running by an earlier ``make run`` is kept; one whose process is gone is replaced."""
        instance_health_sweep()
        if Instance.objects.filter(workspace=workspace, image__slug="notes").counting_against_plan().exists():
            return
        notes = AllowedImage.objects.filter(slug="notes").first()
        if notes is None:
            return
        try:
            instance = instance_deploy(access=access_for(user=demo, workspace=workspace), image=notes, env={})
        except (ValidationError, RuleViolation) as exc:
            self.stdout.write(self.style.WARNING(f"Could not deploy the hosted notes server: {exc}"))
            return
        if instance.status == Instance.Status.RUNNING:
            self.stdout.write(f"Deployed the hosted server 'notes' (its tools: {instance.tool_prefix}*).")
        else:
            self.stdout.write(self.style.WARNING(f"The hosted notes server did not start: {instance.error}"))

    def _demo_user(self) -> User:
        demo = User.objects.filter(email=DEMO_EMAIL).first()
        if demo is None:
            from_env = os.environ.get("MCPNEST_DEMO_PASSWORD")
            password = from_env or secrets.token_urlsafe(12)
            demo = User.objects.create_user(email=DEMO_EMAIL, password=password)
            if from_env:
                self.credentials.append(f"Sign in as {DEMO_EMAIL} with the password from MCPNEST_DEMO_PASSWORD.")
            else:
                # Shown this once only; a later run cannot print it again.
                self.credentials.append(f"Sign in as {DEMO_EMAIL} with password: {password}")
        if not (demo.is_staff and demo.is_superuser):
            demo.is_staff = demo.is_superuser = True
            demo.save(update_fields=["is_staff", "is_superuser"])
        # A verified address, so allauth does not ask the demo user to confirm it.
        if not EmailAddress.objects.filter(user=demo, email=DEMO_EMAIL).exists():
            EmailAddress.objects.create(user=demo, email=DEMO_EMAIL, verified=True, primary=True)
        return demo

    def _workspace(self, demo: User) -> Workspace:
        workspace = Workspace.objects.filter(slug=DEMO_SLUG).first()
        if workspace is not None:
            if workspace.is_deleted:
                raise CommandError(f"Workspace '{DEMO_SLUG}' was deleted; slugs are never reused.")
            return workspace
        workspace = workspace_create(actor=demo, slug=DEMO_SLUG, name="Demo")
        # Shadow mode shows would-be blocks without breaking anyone: a good first setting to look at.
        workspace_set_policy(
            access=access_for(user=demo, workspace=workspace), policy=GatewayPolicy(enforcement=Enforcement.SHADOW)
        )
        self.stdout.write(f"Created workspace '{DEMO_SLUG}'.")
        return workspace

    def _members(self, workspace: Workspace, demo: User) -> None:
        for email, role in PEOPLE:
            user, _ = user_get_or_create(email)
            if not Membership.objects.filter(workspace=workspace, user=user).exists():
                member_add(workspace=workspace, user=user, role=role, actor=demo)
                self.stdout.write(f"Added {email} as {role.label}.")

    def _tokens(self, workspace: Workspace, demo: User) -> None:
        tokens = GatewayToken.objects.filter(workspace=workspace)
        if not tokens.filter(user=demo, name="Demo laptop").exists():
            issued = token_create(access=access_for(user=demo, workspace=workspace), member=demo, name="Demo laptop")
            self.credentials.append(
                f"Your gateway token (shown once): {issued.raw}  "
                f"for http://127.0.0.1:8000/api/gw/{DEMO_SLUG} (the Connect page has client configs)"
            )
        mia = User.objects.get(email="mia@mcpnest.local")
        if not tokens.filter(user=mia, name="Cursor").exists():
            token_create(access=access_for(user=mia, workspace=workspace), member=mia, name="Cursor", expires_days=90)
        if not tokens.filter(kind=GatewayToken.Kind.WORKSPACE, name="Old CI").exists():
            # A revoked workspace token, so the token list and the audit trail show a revocation.
            owner = access_for(user=demo, workspace=workspace)
            issued = token_create(access=owner, member=None, name="Old CI", kind=GatewayToken.Kind.WORKSPACE)
            token_revoke(access=owner, token=issued.token)

    def _tool_calls(self, workspace: Workspace) -> None:
        if ToolCall.objects.filter(workspace=workspace).exists():
            return
        rng = random.Random(DEMO_SLUG)  # noqa: S311 - repeatable demo data, not security
        callers = [
            (token.user, token.prefix)
            for token in GatewayToken.objects.filter(workspace=workspace, kind=GatewayToken.Kind.MEMBER)
            .select_related("user")
            .order_by("pk")
        ]
        now = timezone.now()
        moments = sorted(now - timedelta(minutes=rng.randint(1, 7 * 24 * 60)) for _ in range(TOOL_CALLS))
        calls = []
        for i, moment in enumerate(moments):
            user, prefix = rng.choice(callers)
            server = rng.choice(sorted(TOOLS))
            client, version = rng.choice(CLIENTS)
            listing = i % 10 == 0
            tool = "" if listing else rng.choice(TOOLS[server])
            # Shadow mode: nothing is refused; a call outside mia's allowlist is marked.
            status = 200 if listing else rng.choices([200, 422, 502], weights=[88, 8, 4])[0]
            calls.append(
                {
                    "record_id": secrets.token_hex(16),
                    "workspace_id": workspace.pk,
                    "created_at": moment,
                    "member_id": user.pk,
                    "member_repr": user.email,
                    "token_prefix": prefix,
                    "server_slug": server,
                    "tool_name": tool,
                    "method": "tools/list" if listing else "tools/call",
                    "status": status,
                    "error_code": -32000 if status == 502 else None,
                    "latency_ms": rng.randint(2, 400),
                    "client_ip": f"10.0.0.{rng.randint(2, 60)}",
                    "client_name": client,
                    "client_version": version,
                    "session_id": f"demo-session-{rng.randint(1, 8)}",
                    "request_id": str(i + 1),
                    "shadow_blocked": (
                        not listing and user.email == "mia@mcpnest.local" and f"{server}:{tool}" not in MIA_RULES
                    ),
                }
            )
        tool_calls_record(calls)
        self.stdout.write(f"Recorded {len(calls)} demo tool calls.")


def _wait_for_demo_upstream(timeout: float) -> bool:
    """``make run`` starts the demo upstream just before this command: give it a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((demo_upstream.HOST, demo_upstream.PORT), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
