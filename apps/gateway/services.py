"""Writes for the gateway: upstream servers, allowlists and tool pins.

Each write bumps the workspace's epoch (on commit) so every gateway worker reloads its
snapshot within a second. Upstreams are contacted outside any transaction and outside
any request: approving a server or checking it records what was asked on the server and
queues a task on commit (``apps.gateway.tasks.server_check_run``), which contacts the
upstream and then records the outcome in a short transaction of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs
from apps.core.errors import RuleViolation

# tasks imports this module too: both bind the module object only and use it at call time,
# so either may be imported first.
from apps.gateway import selectors, tasks
from apps.gateway.models import CHECK_STALE_AFTER, AllowRule, ToolPin, UpstreamServer
from apps.gateway.snapshots import one_off_pool, upstream_config
from apps.rbac.access import Access, access_for
from apps.rbac.roles import Capability, roles_with
from apps.workspaces.models import Membership
from relay.catalog import fingerprint
from relay.config import Era
from relay.upstream import UpstreamError

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.workspaces.models import Workspace


def _actor(access: Access) -> User | None:
    return access.user if access.user.pk else None


config_changed = epochs.workspace_changed


def _audit(server: UpstreamServer, actor: User | None, action: Action, ip: str | None = None, **metadata) -> None:
    audit_event_record(
        workspace=server.workspace,
        actor=actor,
        action=action,
        target_type="server",
        target_id=server.pk,
        target_repr=server.slug,
        metadata=metadata,
        ip=ip,
    )


def _notify_approvers(workspace: Workspace, capability: Capability, *, subject: str, lines: list[str]) -> None:
    """E-mail the members who can decide (Owners and Admins), once the transaction commits.

    Call it where the item first appears, so each item is announced once. A mail server
    that fails is logged, never undoes the change (``robust``).
    """
    roles = [role.value for role in roles_with(capability)]
    recipients = list(
        Membership.objects.filter(workspace=workspace, role__in=roles, user__is_active=True)
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    if not recipients:
        return
    page = reverse("portal:security", args=[workspace.slug])
    body = "\n".join([*lines, "", f"Review it on the Security tab of “{workspace.name}”: {page}", ""])
    transaction.on_commit(
        lambda: send_mail(
            subject=f"[MCPNest] {workspace.name}: {subject}", message=body, from_email=None, recipient_list=recipients
        ),
        robust=True,
    )


def parse_header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in content or "\r" in content:
        raise RuleViolation(f"Headers are written 'Name: value' (got {value.split(':')[0]!r}…).")
    return name, content.strip()


# --- upstream servers --------------------------------------------------------------------

# Query parameters that carry a credential, by name (compared without case, "-", "_" or
# "."): these exact names, names containing one of the parts, or ending with a suffix.
SECRET_PARAMS = frozenset(
    {"key", "token", "secret", "password", "passwd", "pwd", "pass", "auth", "authorization", "sig", "jwt", "bearer"}
)
SECRET_PARAM_PARTS = ("token", "secret", "passw", "apikey", "signature", "credential", "privatekey", "accesskey")
SECRET_PARAM_SUFFIXES = ("key", "sig", "auth", "pwd")


def _secret_param(name: str) -> bool:
    word = re.sub(r"[^a-z0-9]", "", name.lower())
    if not word:
        return False
    return word in SECRET_PARAMS or word.endswith(SECRET_PARAM_SUFFIXES) or any(p in word for p in SECRET_PARAM_PARTS)


def _url_secrets(url: str) -> tuple[bool, list[str]]:
    """Whether ``url`` has a user name or password, and the names of its secret-looking parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False, []  # not a URL at all: the field's own validation says so
    names = [
        name
        for query in (parts.query, parts.fragment)
        for name, value in parse_qsl(query, keep_blank_values=True)
        if value and _secret_param(name)
    ]
    return "@" in parts.netloc, list(dict.fromkeys(names))


def server_url_check(url: str) -> None:
    """Refuse an upstream URL that carries credentials (``user:pass@``, ``?api_key=…``).

    URLs are shown in the portal, the admin and the audit trail, and logged by proxies on
    the way; credentials belong in the server's headers, encrypted at rest. The message
    names what to remove, never the secret itself. Every way of adding or changing a
    server calls this (``server_add``, ``server_update``).
    """
    userinfo, names = _url_secrets(url or "")
    if not userinfo and not names:
        return
    remove = [f"{name[:40]}=…" for name in names]
    if userinfo:
        remove.insert(0, "the user name and password before “@”")
    header = "Authorization: Basic …" if userinfo and not names else "Authorization: Bearer …"
    raise ValidationError(
        {
            "url": (
                "Put credentials in the server's headers (encrypted at rest), not in its URL: "
                f"remove {' and '.join(remove)} and add a header such as {header} "
                "(or the one the server documents, e.g. X-API-Key: …)."
            )
        }
    )


def url_without_credentials(url: str) -> str:
    """``url`` with its user name, password and secret-looking parameters taken out (to show it back)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    netloc = parts.netloc.rpartition("@")[2]

    def keep(query: str) -> str:
        pairs = parse_qsl(query, keep_blank_values=True)
        if not any(value and _secret_param(name) for name, value in pairs):
            return query
        return urlencode([(name, "" if _secret_param(name) else value) for name, value in pairs])

    return parts._replace(netloc=netloc, query=keep(parts.query), fragment=keep(parts.fragment)).geturl()


def server_add(
    *,
    access: Access,
    slug: str,
    url: str,
    prefix: str = "",
    headers: dict[str, str] | None = None,
    position: int | None = None,
    timeout_seconds: int | None = None,
    max_concurrency: int | None = None,
    ip: str | None = None,
) -> UpstreamServer:
    """Add an upstream. Owners and Admins add it approved; a Member's waits.

    An Owner's or Admin's server is approved as ``server_approve`` does: a task pins its
    tools once this transaction commits.

    ``timeout_seconds`` and ``max_concurrency`` bound each call to it; None means the
    gateway's defaults (MCPNEST_GATEWAY_UPSTREAM_TIMEOUT, MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY).
    """
    can_manage = access.can(Capability.MANAGE_SERVERS)
    if not can_manage:
        access.require(Capability.REQUEST_SERVER)
    server_url_check(url)
    workspace = access.workspace
    if position is None:
        last = UpstreamServer.objects.filter(workspace=workspace).order_by("-position").first()
        position = (last.position + 10) if last else 10
    server = UpstreamServer(
        workspace=workspace,
        slug=(slug or "").strip(),
        url=(url or "").strip(),
        prefix=(prefix or "").strip(),
        position=position,
        timeout_seconds=timeout_seconds,
        max_concurrency=max_concurrency,
        requested_by=_actor(access),
    )
    server.set_headers(headers or {})
    server.full_clean(exclude=["workspace"], validate_unique=False)
    try:
        with transaction.atomic():
            server.save()
            action = Action.SERVER_ADDED if can_manage else Action.SERVER_REQUESTED
            _audit(
                server,
                _actor(access),
                action,
                ip,
                url=server.url,
                prefix=server.prefix,
                header_names=sorted((headers or {}).keys()),
                **{
                    name: value
                    for name, value in (("timeout_seconds", timeout_seconds), ("max_concurrency", max_concurrency))
                    if value is not None
                },
            )
            if not can_manage:
                _notify_approvers(
                    workspace,
                    Capability.MANAGE_SERVERS,
                    subject=f"server {server.slug} waits for your approval",
                    lines=[
                        f"{access.user.email} asked to add the MCP server “{server.slug}” ({server.url}).",
                        "Nothing contacts it until an Owner or Admin checks or approves it.",
                    ],
                )
            if can_manage:
                # Queued with the addition, so neither exists without the other.
                server_approve(access=access, server=server, ip=ip)
    except IntegrityError:
        raise ValidationError({"slug": f"{workspace.slug} already has a server called {server.slug!r}."}) from None
    if can_manage:
        server.refresh_from_db()  # with tasks run in-process, already approved
    return server


def server_update(
    *,
    access: Access,
    server: UpstreamServer,
    url: str,
    timeout_seconds: int | None,
    max_concurrency: int | None,
    ip: str | None = None,
) -> UpstreamServer:
    """Change where an upstream is and how the gateway calls it (its timeout and concurrency
    limit; None: the gateway's defaults). Returns the server as saved; no change, no event."""
    access.require(Capability.MANAGE_SERVERS)
    if server.workspace_id != access.workspace.pk:
        raise RuleViolation("That server belongs to another workspace.")
    server_url_check(url)
    with transaction.atomic():
        # The caller's instance may already hold the new values (an admin form): compare with the row.
        saved = UpstreamServer.objects.select_for_update().select_related("workspace").get(pk=server.pk)
        wanted = {"url": (url or "").strip(), "timeout_seconds": timeout_seconds, "max_concurrency": max_concurrency}
        changed = {name: [getattr(saved, name), new] for name, new in wanted.items() if getattr(saved, name) != new}
        if not changed:
            return saved
        if "url" in changed:  # what a URL was before these checks existed may hold a secret
            changed["url"][0] = url_without_credentials(changed["url"][0])
        for name, value in wanted.items():
            setattr(saved, name, value)
        saved.full_clean(exclude=["workspace"], validate_unique=False)
        saved.save(update_fields=list(changed))
        _audit(saved, _actor(access), Action.SERVER_UPDATED, ip, changed=changed)
        config_changed(saved.workspace_id)
    return saved


def _fetch_tools(server: UpstreamServer) -> list[dict[str, Any]]:
    """The upstream's current tools, asked on a loop of our own (even under ASGI).

    Also notes on ``server`` (unsaved) which transport the upstream turned out to speak.
    """

    async def fetch() -> list[dict[str, Any]]:
        async with one_off_pool() as pool:
            upstream = pool.get(upstream_config(server))
            await upstream.ensure_connected(10.0)
            server.transport = (
                UpstreamServer.Transport.SSE if upstream.era is Era.SSE else UpstreamServer.Transport.STREAMABLE_HTTP
            )
            if "tools" not in upstream.capabilities:
                return []
            return await upstream.list_all("tools/list", "tools", timeout=10.0)

    return async_to_sync(fetch, force_new_loop=True)()


def server_approve(*, access: Access, server: UpstreamServer, ip: str | None = None) -> UpstreamServer:
    """Approve a requested server; a task then pins the definition of every tool it offers.

    Pinning asks the upstream, so this only records the decision (``check_kind`` approve,
    queued) and queues ``apps.gateway.tasks.server_check_run`` on commit; the server is
    approved when it has run (``server_check_run``). If the upstream cannot be reached
    then, the server is approved without pins: each tool it later offers waits for
    approval like a changed one (never trusted on first use). Asking twice queues once.
    """
    return _check_ask(access=access, server=server, kind=UpstreamServer.CheckKind.APPROVE, ip=ip)


@transaction.atomic
def server_set_enabled(*, access: Access, server: UpstreamServer, enabled: bool, ip: str | None = None) -> None:
    access.require(Capability.MANAGE_SERVERS)
    if server.workspace_id != access.workspace.pk:
        raise RuleViolation("That server belongs to another workspace.")
    if server.enabled != enabled:
        server.enabled = enabled
        server.save(update_fields=["enabled"])
        _audit(
            server, _actor(access), Action.SERVER_UPDATED if enabled else Action.SERVER_DISABLED, ip, enabled=enabled
        )
        config_changed(server.workspace_id)


@transaction.atomic
def server_remove(*, access: Access, server: UpstreamServer, ip: str | None = None) -> None:
    access.require(Capability.MANAGE_SERVERS)
    if server.workspace_id != access.workspace.pk:
        raise RuleViolation("That server belongs to another workspace.")
    _audit(server, _actor(access), Action.SERVER_REMOVED, ip, url=server.url)
    config_changed(server.workspace_id)
    server.delete()


def _require_server(access: Access, server: UpstreamServer) -> None:
    access.require(Capability.MANAGE_SERVERS)
    if server.workspace_id != access.workspace.pk:
        raise RuleViolation("That server belongs to another workspace.")


def server_check_request(*, access: Access, server: UpstreamServer, ip: str | None = None) -> UpstreamServer:
    """Ask for a check of ``server`` (the portal's *Check now*): queued as a task on commit.

    The check contacts the upstream, so it never runs inside this transaction; until it
    has run, ``server.checking`` is true. Asking again meanwhile queues nothing more.
    """
    return _check_ask(access=access, server=server, kind=UpstreamServer.CheckKind.HEALTH, ip=ip)


_CHECK_FIELDS = [
    "check_kind",
    "check_state",
    "check_requested_at",
    "check_requested_by",
    "check_requested_ip",
    "check_started_at",
    "check_finished_at",
    "check_error",
]


def _check_ask(*, access: Access, server: UpstreamServer, kind: str, ip: str | None) -> UpstreamServer:
    """Record on ``server`` that ``access`` asks for a check (or its approval); queue the task on commit.

    One check at a time per server, so a double click or two Admins at once queue one
    task: asking while a check is under way changes nothing, except that an approval
    takes the place of a health check still queued (the queued task carries out whatever
    the server's row asks for when it starts). Returns the server as it stands after
    this transaction (with tasks run in-process, already checked).
    """
    _require_server(access, server)
    with transaction.atomic():
        locked = UpstreamServer.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=server.pk)
        if kind == UpstreamServer.CheckKind.APPROVE and locked.status != UpstreamServer.Status.REQUESTED:
            # Approving again would re-pin every tool as offered now, accepting pending and
            # rejected definitions unseen: changed tools are approved one by one.
            raise RuleViolation(f"Server {locked.slug!r} is already approved; approve changed tools one by one.")
        queue = True
        if locked.checking:
            if kind == UpstreamServer.CheckKind.HEALTH or locked.check_kind == UpstreamServer.CheckKind.APPROVE:
                return locked  # already asked for (an approval checks the server too)
            if locked.check_state == UpstreamServer.CheckState.RUNNING:
                raise RuleViolation(f"A check of {locked.slug!r} is under way; approve it once it has finished.")
            queue = False
        locked.check_kind, locked.check_state = kind, UpstreamServer.CheckState.QUEUED
        locked.check_requested_at = timezone.now()
        locked.check_requested_by, locked.check_requested_ip = _actor(access), ip
        locked.check_started_at = locked.check_finished_at = None
        locked.check_error = ""
        locked.save(update_fields=_CHECK_FIELDS)
        if queue:
            # robust: the request's decision is committed whatever happens to the task; a
            # check that fails says so on the server's row (and in the log).
            transaction.on_commit(lambda: tasks.server_check_run.delay(locked.pk), robust=True)
    locked.refresh_from_db()
    return locked


def server_check_run(*, server_id: int) -> UpstreamServer | None:
    """Carry out the check or approval queued on a server (the task ``server_check_run``).

    The upstream is contacted between two short transactions, never inside one. The first
    claims the queued check (a task delivered twice, or queued twice, finds nothing left
    to do) and makes sure whoever asked may still do so; the second records the outcome:
    an approval approves the server and pins the tools it listed, a health check records
    whether it answered and holds changed tools for approval. Both are audited with the
    person who asked. Returns the server, or None when there was nothing to do.
    """
    server = _check_claim(server_id)
    if server is None:
        return None
    try:
        answered, tools, error = _ask_upstream(server)
        if server.check_kind == UpstreamServer.CheckKind.APPROVE:
            return _approval_record(server, answered=answered, tools=tools, error=error)
        return _health_record(server, answered=answered, tools=tools, error=error, claimed=True)
    except Exception:
        # A bug, or the task's time limit: the row must not show the check under way.
        _check_fail(server.pk, started_at=server.check_started_at, error="The check stopped on an unexpected error.")
        raise


def _check_claim(server_id: int) -> UpstreamServer | None:
    """The server whose queued check this task now carries out (marked running), or None."""
    with transaction.atomic():
        server = (
            UpstreamServer.objects.select_for_update(of=("self",))
            .select_related("workspace", "check_requested_by")
            .filter(pk=server_id)
            .first()
        )
        if server is None or server.check_state != UpstreamServer.CheckState.QUEUED:
            return None  # removed meanwhile, or another delivery of the task has it
        now = timezone.now()
        refusal = _check_refusal(server)
        if refusal:
            server.check_state = UpstreamServer.CheckState.FAILED
            server.check_finished_at, server.check_error = now, refusal
            server.save(update_fields=["check_state", "check_finished_at", "check_error"])
            return None
        server.check_state, server.check_started_at = UpstreamServer.CheckState.RUNNING, now
        server.save(update_fields=["check_state", "check_started_at"])
    return server


def _check_refusal(server: UpstreamServer) -> str:
    """Why the check queued on ``server`` may no longer run (rights are checked when it starts too).

    No actor means the system: an operator at the shell (``manage.py addserver``), who acts
    with Owner rights.
    """
    actor = server.check_requested_by
    if actor is not None and not actor.is_active:
        return f"Dropped: {actor.email} has been deactivated."
    if actor is not None and not access_for(user=actor, workspace=server.workspace).can(Capability.MANAGE_SERVERS):
        return f"Dropped: {actor.email} may no longer manage this workspace's servers."
    if server.check_kind == UpstreamServer.CheckKind.APPROVE and server.status != UpstreamServer.Status.REQUESTED:
        return "Dropped: the server is already approved."
    return ""


def _check_locked(server: UpstreamServer, *, claimed: bool) -> UpstreamServer | None:
    """``server``'s row, locked for recording a check; None if removed, or (``claimed``) if the
    check this task claimed is no longer the server's running one (given up by the sweeper)."""
    row = (
        UpstreamServer.objects.select_for_update(of=("self",)).select_related("workspace").filter(pk=server.pk).first()
    )
    if row is None or not claimed:
        return row
    ours = row.check_state == UpstreamServer.CheckState.RUNNING and row.check_started_at == server.check_started_at
    return row if ours else None


def _check_done(server: UpstreamServer, now: datetime) -> list[str]:
    server.check_state, server.check_finished_at, server.check_error = UpstreamServer.CheckState.DONE, now, ""
    return ["check_state", "check_finished_at", "check_error"]


def _check_fail(server_id: int, *, started_at: datetime | None, error: str) -> None:
    UpstreamServer.objects.filter(
        pk=server_id, check_state=UpstreamServer.CheckState.RUNNING, check_started_at=started_at
    ).update(check_state=UpstreamServer.CheckState.FAILED, check_finished_at=timezone.now(), check_error=error[:300])


def server_check_sweep() -> int:
    """Give up the checks queued or running for longer than ``CHECK_STALE_AFTER`` (beat).

    Their worker died or their message was lost: marked failed, they no longer show as
    under way, and the next one asked for is queued. Returns how many were given up.
    """
    return UpstreamServer.objects.filter(
        check_state__in=[UpstreamServer.CheckState.QUEUED, UpstreamServer.CheckState.RUNNING],
        check_requested_at__lte=timezone.now() - CHECK_STALE_AFTER,
    ).update(
        check_state=UpstreamServer.CheckState.FAILED,
        check_finished_at=timezone.now(),
        check_error=f"Not finished within {CHECK_STALE_AFTER.seconds // 60} minutes (no worker carried it out); "
        "ask again.",
    )


@dataclass(frozen=True)
class _Listing:
    tools: list[dict[str, Any]]
    waiting: int = 0  # tools withheld until an Owner or Admin approves their definition
    rejected: int = 0  # tools withheld with a definition that was rejected

    @property
    def detail(self) -> str:
        parts = [f"{len(self.tools)} tools"]
        if self.waiting:
            parts.append(f"{self.waiting} waiting for approval")
        if self.rejected:
            parts.append(f"{self.rejected} rejected")
        return ", ".join(parts)


def _observe(server: UpstreamServer, tools: list[dict[str, Any]]) -> _Listing:
    """Hold every listed tool whose definition differs from its pin, as the gateway does.

    The gateway's catalog calls ``pin_observe`` for each tool whose fingerprint is neither
    the approved nor the pending one; so does this, and ``pin_observe`` itself ignores a
    definition it already holds.
    """
    pins = {pin.tool_name: pin for pin in ToolPin.objects.filter(server=server)}
    waiting = rejected = 0
    for tool in tools:
        pin, current = pins.get(tool["name"]), fingerprint(tool)
        if pin is not None and current == pin.fingerprint:
            continue
        if pin is not None and current == pin.pending_fingerprint:
            if pin.rejected_at is None:
                waiting += 1
            else:
                rejected += 1
            continue
        pin_observe(server_id=server.pk, tool_name=tool["name"], definition=tool, fingerprint=current)
        waiting += 1
    return _Listing(tools, waiting, rejected)


def server_check(*, server: UpstreamServer) -> UpstreamServer:
    """A scheduled check (beat, ``apps.gateway.tasks.check_servers``): ask the upstream for its
    tools now and record what it said (``_health_record``).

    Contacts the upstream, so call it outside any transaction (the task
    ``apps.gateway.tasks.server_check`` does).
    """
    answered, tools, error = _ask_upstream(server)
    return _health_record(server, answered=answered, tools=tools, error=error, claimed=False) or server


def _ask_upstream(server: UpstreamServer) -> tuple[bool, list[dict[str, Any]], str]:
    """Whether the upstream answered, the tools it listed (well-formed ones) and, if not, why.

    Contacts the upstream (seconds, at worst): never call it inside a transaction.
    """
    try:
        tools = [tool for tool in _fetch_tools(server) if isinstance(tool, dict) and isinstance(tool.get("name"), str)]
    except UpstreamError as exc:
        return False, [], str(exc)
    return True, tools, ""


def _approval_record(
    server: UpstreamServer, *, answered: bool, tools: list[dict[str, Any]], error: str
) -> UpstreamServer | None:
    """Approve ``server`` (claimed by this task) and pin ``tools``, as its upstream listed them just now."""
    actor, now = server.check_requested_by, timezone.now()
    detail = f"{len(tools)} tools" if answered else error
    with transaction.atomic():
        locked = _check_locked(server, claimed=True)
        if locked is None:
            return None
        if answered:
            locked.transport = server.transport  # as the upstream turned out to speak
        locked.status = UpstreamServer.Status.APPROVED
        locked.approved_by, locked.approved_at = actor, now
        locked.health_checked_at, locked.health_ok, locked.health_detail = now, answered, detail[:300]
        locked.offered_tools = None  # from here on the pins say what it offers
        _check_done(locked, now)
        locked.save()
        for tool in tools:
            ToolPin.objects.update_or_create(
                server=locked,
                tool_name=tool["name"],
                defaults={
                    "fingerprint": fingerprint(tool),
                    "definition": tool,
                    "pending_fingerprint": "",
                    "pending_definition": None,
                    "pending_since": None,
                    "approved_by": actor,
                    "approved_at": now,
                },
            )
        ip = server.check_requested_ip
        _audit(locked, actor, Action.SERVER_APPROVED, ip, tools_pinned=len(tools), reachable=answered)
        config_changed(locked.workspace_id)
    return locked


def _health_record(
    server: UpstreamServer, *, answered: bool, tools: list[dict[str, Any]], error: str, claimed: bool
) -> UpstreamServer | None:
    """Record what the upstream said when checked, in one short transaction.

    An approved server's changed and new tools are held for approval exactly as when the
    gateway lists them (``pin_observe``); a requested server's listing is kept on it
    (``offered_tools``) for whoever decides on the request. The health fields always
    change. A check someone asked for (``claimed`` by this task) is marked done and audited
    with them; a scheduled one is audited only when it found the server healthier or
    sicker than before. None if there was nothing to record on (removed meanwhile).
    """
    now = timezone.now()
    with transaction.atomic():
        locked = _check_locked(server, claimed=claimed)
        if locked is None:
            return None
        was_ok = locked.health_ok
        fields = ["health_checked_at", "health_ok", "health_detail"]
        if not answered:
            detail = error
        elif locked.status == UpstreamServer.Status.REQUESTED:
            detail = _Listing(tools).detail
            locked.offered_tools = tools
            fields.append("offered_tools")
        else:
            detail = _observe(locked, tools).detail
        if answered:
            locked.transport = server.transport  # as the upstream turned out to speak
            fields.append("transport")
        locked.health_checked_at, locked.health_ok, locked.health_detail = now, answered, detail[:300]
        if claimed:
            fields += _check_done(locked, now)
        locked.save(update_fields=fields)
        if claimed or answered != was_ok:
            actor, ip = (server.check_requested_by, server.check_requested_ip) if claimed else (None, None)
            _audit(locked, actor, Action.HEALTH_CHECKED, ip, ok=answered, detail=detail[:300])
    return locked


def server_mark_unhealthy(*, workspace_id: int, server_slug: str, detail: str) -> None:
    """Called by the gateway when an upstream fails a listing (once per failure streak)."""
    server = (
        UpstreamServer.objects.select_related("workspace").filter(workspace_id=workspace_id, slug=server_slug).first()
    )
    if server is None:
        return
    with transaction.atomic():
        UpstreamServer.objects.filter(pk=server.pk).update(
            health_checked_at=timezone.now(), health_ok=False, health_detail=detail[:300]
        )
        _audit(server, None, Action.HEALTH_CHECKED, ok=False, detail=detail[:300])


# --- allowlists ---------------------------------------------------------------------------


def parse_rule(text: str) -> tuple[str, str]:
    server_slug, sep, tool = text.strip().partition(":")
    if not sep or not server_slug or not tool:
        raise RuleViolation(f"Rules are written server:tool or server:* (got {text!r}).")
    return server_slug, tool


class AllowlistRules(list[str]):
    """The rules saved (canonical ``server:tool`` strings), with ``warnings`` for the caller."""

    def __init__(self, rules: list[str], warnings: list[str]):
        super().__init__(rules)
        self.warnings = warnings


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def allowlist_canonical(*, workspace: Workspace, rules: list[str]) -> AllowlistRules:
    """Check ``rules`` against the workspace's servers and their known tools, in the form stored.

    Each rule must name a server of the workspace, and a tool it offers according to its
    pins (every tool the gateway has seen has one) or ``*``. The tool may be written as
    the upstream names it or as clients see it (the server's prefix, or ``<server>__`` when
    names collide); it is stored as ``server:<upstream name>``, the pair the gateway's
    rule check compares. A server with no known tool (never reached) takes any name, as
    written, with a warning.
    """
    servers = list(selectors.servers_in_order(workspace=workspace))
    by_slug = {server.slug: server for server in servers}
    known = selectors.known_tools(servers)
    pairs: set[tuple[str, str]] = set()
    warnings: list[str] = []
    for rule in rules:
        server_slug, tool = parse_rule(rule)
        server = by_slug.get(server_slug)
        if server is None:
            names = _names(list(by_slug)) if by_slug else "none yet"
            raise RuleViolation(f"Rule {rule.strip()!r} names no server of {workspace.slug} (its servers: {names}).")
        tools = known[server_slug]
        if tool != "*" and not tools:
            warnings.append(
                f"Server {server_slug} has no known tools yet (it has not been reached): "
                f"rule {server_slug}:{tool} is saved as written, unchecked."
            )
        elif tool != "*" and tool not in tools:
            upstream_name = next(
                (
                    tool[len(visible) :]
                    for visible in (server.prefix, f"{server_slug}__")
                    if visible and tool.startswith(visible) and tool[len(visible) :] in tools
                ),
                None,
            )
            if upstream_name is None:
                raise RuleViolation(
                    f"Rule {rule.strip()!r}: server {server_slug} offers no tool {tool!r} "
                    f"(its tools: {_names(sorted(tools))})."
                )
            tool = upstream_name
        pairs.add((server_slug, tool))
    return AllowlistRules([f"{s}:{t}" for s, t in sorted(pairs)], warnings)


@transaction.atomic
def allowlist_set(*, access: Access, member: User, rules: list[str], ip: str | None = None) -> AllowlistRules:
    """Replace ``member``'s allowlist with ``rules`` (``server:tool`` or ``server:*``).

    The rules are checked and stored as ``allowlist_canonical`` says; the result lists the
    rules saved and carries its ``warnings`` (rules that could not be checked).
    """
    access.require(Capability.MANAGE_ALLOWLISTS)
    workspace: Workspace = access.workspace
    if not workspace.memberships.filter(user=member).exists():
        raise RuleViolation(f"{member.email} is not a member of {workspace.slug}.")
    after = allowlist_canonical(workspace=workspace, rules=rules)
    before = sorted(
        f"{s}:{t}"
        for s, t in AllowRule.objects.filter(workspace=workspace, user=member).values_list("server_slug", "tool")
    )
    AllowRule.objects.filter(workspace=workspace, user=member).delete()
    AllowRule.objects.bulk_create(
        [
            AllowRule(workspace=workspace, user=member, server_slug=s, tool=t)
            for s, t in (rule.split(":", 1) for rule in after)
        ]
    )
    audit_event_record(
        workspace=workspace,
        actor=_actor(access),
        action=Action.ALLOWLIST_CHANGED,
        target_type="member",
        target_id=member.pk,
        target_repr=member.email,
        metadata={"before": before, "after": list(after)},
        ip=ip,
    )
    config_changed(workspace.pk)
    return after


# --- tool pins ------------------------------------------------------------------------------


def pin_observe(*, server_id: int, tool_name: str, definition: dict[str, Any], fingerprint: str) -> None:
    """A tool definition differs from its pin (or the tool has none): hold it for approval.

    Called by the gateway and by server checks. A definition already held, or already
    rejected, changes nothing; a new one replaces a rejected one and waits again. Owners
    and Admins get one e-mail per definition held.
    """
    try:
        with transaction.atomic():
            # The server's row first: concurrent observers of one server (gateway processes,
            # a check) queue here, before any of them locks a pin or the audit chain; on
            # PostgreSQL they deadlocked otherwise.
            server = (
                UpstreamServer.objects.select_for_update(of=("self",))
                .select_related("workspace")
                .filter(pk=server_id)
                .first()
            )
            if server is None:
                return
            pin = ToolPin.objects.select_for_update().filter(server=server, tool_name=tool_name).first()
            if pin is not None and fingerprint in (pin.fingerprint, pin.pending_fingerprint):
                return
            if pin is None:
                pin = ToolPin(server=server, tool_name=tool_name, fingerprint="", definition={})
            pin.pending_fingerprint = fingerprint
            pin.pending_definition = definition
            pin.pending_since = timezone.now()
            pin.rejected_at, pin.rejected_by = None, None
            pin.save()
            new = not pin.fingerprint
            _audit(server, None, Action.TOOL_DEFINITION_CHANGED, tool=tool_name, new=new, fingerprint=fingerprint)
            config_changed(server.workspace_id)
            _notify_approvers(
                server.workspace,
                Capability.MANAGE_ALLOWLISTS,
                subject=f"{'new tool' if new else 'changed tool'} {server.slug}:{tool_name} waits for your approval",
                lines=[
                    f"The MCP server “{server.slug}” offers "
                    + (f"a new tool “{tool_name}”." if new else f"a changed definition of its tool “{tool_name}”."),
                    "The gateway withholds it from everyone until an Owner or Admin approves it.",
                ],
            )
    except IntegrityError:
        return  # another process recorded this tool first (the gateway, or a check)


def _pin_for_decision(access: Access, pin: ToolPin, verb: str) -> ToolPin:
    """The pin locked for approving or rejecting its pending definition."""
    access.require(Capability.MANAGE_ALLOWLISTS)
    pin = ToolPin.objects.select_for_update().select_related("server__workspace").get(pk=pin.pk)
    if pin.server.workspace_id != access.workspace.pk:
        raise RuleViolation("That tool belongs to another workspace.")
    if pin.state == ToolPin.State.REJECTED:
        raise RuleViolation(
            f"The pending definition of {pin.server.slug}:{pin.tool_name} was rejected; it waits for "
            "approval again only when the upstream changes it."
        )
    if not pin.has_pending_change:
        raise RuleViolation(f"That tool has no pending change to {verb}.")
    return pin


@transaction.atomic
def pin_approve(*, access: Access, pin: ToolPin, ip: str | None = None) -> ToolPin:
    """Accept the pending definition of a tool; the gateway offers it again."""
    pin = _pin_for_decision(access, pin, "approve")
    previous = pin.fingerprint
    pin.fingerprint, pin.definition = pin.pending_fingerprint, pin.pending_definition
    pin.pending_fingerprint, pin.pending_definition, pin.pending_since = "", None, None
    pin.approved_by, pin.approved_at = _actor(access), timezone.now()
    pin.save()
    _audit(
        pin.server,
        _actor(access),
        Action.TOOL_REAPPROVED,
        ip,
        tool=pin.tool_name,
        previous=previous,
        fingerprint=pin.fingerprint,
    )
    config_changed(pin.server.workspace_id)
    return pin


@transaction.atomic
def pin_reject(*, access: Access, pin: ToolPin, ip: str | None = None) -> ToolPin:
    """Refuse the pending definition of a tool: it stays withheld.

    The approved definition (if any) is left as it is, and the refused one is kept, marked
    rejected, so that the gateway does not hold it for approval again; a later, different
    definition from the upstream waits for approval as usual.
    """
    pin = _pin_for_decision(access, pin, "reject")
    pin.rejected_at, pin.rejected_by = timezone.now(), _actor(access)
    pin.save(update_fields=["rejected_at", "rejected_by"])
    _audit(
        pin.server,
        _actor(access),
        Action.TOOL_PIN_REJECTED,
        ip,
        tool=pin.tool_name,
        new=not pin.fingerprint,
        approved=pin.fingerprint,
        fingerprint=pin.pending_fingerprint,
    )
    config_changed(pin.server.workspace_id)
    return pin
