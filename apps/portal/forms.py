"""Portal forms: input shape and choices only. The rules live in the services."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.audit.events import ACTION_CHOICES
from apps.core.errors import RuleViolation
from apps.gateway.selectors import ServerTools
from apps.gateway.services import parse_header, parse_rule, server_url_check, url_without_credentials
from apps.hosting.models import AllowedImage, Profile
from apps.rbac.roles import ASSIGNABLE, Role
from apps.tokens.services import MAX_EXPIRY_DAYS
from apps.workspaces.models import Enforcement, Membership, Plan

WORKSPACE_HOLDER = "workspace"  # the "holder" choice that issues a workspace token


def assignable_roles(actor_role: str | None) -> list[tuple[str, str]]:
    """Role choices the actor may hand out, in the order roles are defined."""
    allowed = ASSIGNABLE.get(actor_role, frozenset())
    return [(value, label) for value, label in Role.choices if value in allowed]


class PortalForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")  # labels sit above their fields; no trailing colon
        super().__init__(*args, **kwargs)


class WorkspaceCreateForm(PortalForm):
    slug = forms.CharField(
        max_length=50,
        help_text="Lowercase letters, digits and hyphens; part of your gateway URL. It cannot be changed later.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    name = forms.CharField(max_length=100, required=False, help_text="Shown in the portal; defaults to the slug.")
    plan = forms.ChoiceField(choices=Plan.choices, initial=Plan.TEAM)


class WorkspaceSettingsForm(PortalForm):
    name = forms.CharField(max_length=100)
    plan = forms.ChoiceField(choices=Plan.choices)


class WorkspaceDeleteForm(PortalForm):
    confirm = forms.CharField(label="Type the workspace slug to confirm", max_length=50)

    def __init__(self, *args, slug: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.slug = slug
        self.fields["confirm"].widget.attrs.update(autocomplete="off", spellcheck="false")

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value != self.slug:
            raise forms.ValidationError(f"Type “{self.slug}” exactly to delete this workspace.")
        return value


class InvitationForm(PortalForm):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField()

    def __init__(self, *args, actor_role: str | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = assignable_roles(actor_role)
        self.fields["role"].initial = Role.MEMBER


class RoleForm(PortalForm):
    role = forms.ChoiceField(choices=Role.choices)


class TokenCreateForm(PortalForm):
    name = forms.CharField(max_length=100, required=False, help_text="What it is for, e.g. “Claude Desktop on laptop”.")
    holder = forms.ChoiceField(
        label="For",
        help_text="A member token acts as that member; a workspace token is for system use and has full access.",
    )
    expires_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        help_text="Leave empty for a token that does not expire.",
    )

    def __init__(self, *args, memberships: list[Membership] | None, actor_id: int, **kwargs):
        """``memberships`` lists whom the actor may issue for; None means only themselves."""
        super().__init__(*args, **kwargs)
        if memberships is None:
            del self.fields["holder"]
            return
        choices = [(str(m.user_id), f"{m.user.email} ({m.get_role_display()})") for m in memberships]
        choices.append((WORKSPACE_HOLDER, "Workspace token (no member)"))
        self.fields["holder"].choices = choices
        self.fields["holder"].initial = str(actor_id)


class DateRangeForm(PortalForm):
    """A "From"–"To" day range (inclusive, in UTC) for filtering audit rows."""

    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("“From” must be on or before “To”.")
        return data

    def filters(self) -> dict:
        """Queryset lookups for the valid filters."""
        data = self.cleaned_data if self.is_valid() else {}
        lookups: dict = {}
        if data.get("since"):
            lookups["created_at__gte"] = _start_of(data["since"])
        if data.get("until"):
            lookups["created_at__lt"] = _start_of(data["until"] + timedelta(days=1))
        return lookups


class AuditFilterForm(DateRangeForm):
    action = forms.ChoiceField(choices=[("", "Any action"), *ACTION_CHOICES], required=False)
    actor = forms.EmailField(label="Actor email", required=False)

    field_order = ["action", "actor", "since", "until"]

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        lookups = super().filters()
        if data.get("action"):
            lookups["action"] = data["action"]
        if data.get("actor"):
            lookups["actor_repr__iexact"] = data["actor"]
        return lookups


STATUS_RE = re.compile(r"^[1-5](?:xx|\d\d)$")


class ToolCallFilterForm(DateRangeForm):
    member = forms.CharField(label="Member email", max_length=254, required=False)
    server = forms.CharField(max_length=64, required=False)
    tool = forms.CharField(max_length=200, required=False)
    status = forms.CharField(
        max_length=3,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. 4xx or 403", "list": "status-classes"}),
    )
    shadow = forms.BooleanField(label="Shadow-blocked only", required=False)

    field_order = ["member", "server", "tool", "status", "since", "until", "shadow"]

    def clean_status(self) -> str:
        value = self.cleaned_data["status"].strip().lower()
        if value and not STATUS_RE.match(value):
            raise forms.ValidationError("A status class (2xx, 4xx, 5xx) or an exact code such as 403.")
        return value

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        lookups = super().filters()
        if data.get("member"):
            lookups["member_repr__iexact"] = data["member"].strip()
        if data.get("server"):
            lookups["server_slug"] = data["server"].strip()
        if data.get("tool"):
            lookups["tool_name"] = data["tool"].strip()
        if status := data.get("status"):
            if status.endswith("xx"):
                low = int(status[0]) * 100
                lookups.update(status__gte=low, status__lt=low + 100)
            else:
                lookups["status"] = int(status)
        if data.get("shadow"):
            lookups["shadow_blocked"] = True
        return lookups


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class ApiKeyForm(PortalForm):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “CI pipeline”.")


# --- Security: upstream servers, enforcement, allowlists ------------------------------


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders its value: what was typed is not sent back to the browser."""

    def format_value(self, value) -> None:
        return None


class ServerForm(PortalForm):
    slug = forms.CharField(
        max_length=40,
        help_text="Lowercase letters, digits and hyphens. Allowlist rules name it: slug:tool.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="The server's Streamable HTTP (or legacy SSE) endpoint.",
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "https://"}),
    )
    prefix = forms.CharField(
        max_length=40,
        required=False,
        help_text="Optional: put before each of its tool names, e.g. “gh_”, to keep names apart.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    headers = forms.CharField(
        required=False,
        label="Headers sent to the server",
        help_text=(
            "One “Name: value” per line, e.g. an API key. Values are encrypted and never shown again, "
            "not even after an error on this form."
        ),
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            server_url_check(url)  # the service checks again; here the page is also kept clean
        except ValidationError as exc:
            # Like the headers, a credential typed here is never sent back: the form shows
            # the URL without it.
            self.data = self.data.copy()
            self.data[self.add_prefix("url")] = url_without_credentials(url)
            raise forms.ValidationError(exc.message_dict["url"]) from None
        return url

    def clean_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["headers"].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                name, value = parse_header(line)
            except RuleViolation:
                # Our own words: parse_header's message quotes the line, which may be a secret.
                raise forms.ValidationError(f"Line {number}: write each header as “Name: value”.") from None
            if name.lower() in (known.lower() for known in headers):
                raise forms.ValidationError(f"Line {number}: the header {name} is given twice.")
            headers[name] = value
        return headers


class PolicyForm(PortalForm):
    enforcement = forms.ChoiceField(label="Mode", choices=Enforcement.choices, widget=forms.RadioSelect)
    deny_by_default = forms.BooleanField(
        label="Deny by default",
        required=False,
        help_text="Members without any allowlist rule may call nothing (otherwise: everything).",
    )
    rate_limit_per_minute = forms.IntegerField(
        label="Rate limit (requests per minute)",
        min_value=1,
        help_text="Gateway requests per minute per client IP.",
    )


class _AnyRuleField(forms.MultipleChoiceField):
    """Checked ``server:tool`` values; the service checks their shape, whatever the page offered."""

    def valid_value(self, value: str) -> bool:
        return True


class AllowlistForm(PortalForm):
    rules = _AnyRuleField(required=False, widget=forms.CheckboxSelectMultiple)
    extra = forms.CharField(
        label="Other rules",
        required=False,
        help_text="One server:tool or server:* per line, e.g. for a tool not listed above.",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )

    def __init__(self, *args, servers: list[ServerTools] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.servers = servers or []

    @classmethod
    def initial_for(cls, rules: list[str], servers: list[ServerTools]) -> dict:
        """Split saved rules into the offered checkboxes and the free-text rest."""
        offered = {f"{server.slug}:{name}" for server in servers for name in ("*", *server.tools)}
        return {
            "rules": [rule for rule in rules if rule in offered],
            "extra": "\n".join(rule for rule in rules if rule not in offered),
        }

    def clean_extra(self) -> list[str]:
        rules = []
        for line in self.cleaned_data["extra"].splitlines():
            if line.strip():
                try:
                    parse_rule(line)
                except RuleViolation as exc:
                    raise forms.ValidationError(str(exc)) from None
                rules.append(line.strip())
        return rules

    def chosen(self) -> list[str]:
        return [*self.cleaned_data["rules"], *self.cleaned_data["extra"]]

    def groups(self) -> list[tuple[ServerTools, list[tuple[str, str, bool, bool]]]]:
        """Per server: (value, label, checked, withheld) for its "all tools" box and each tool."""
        checked = set(self["rules"].value() or [])
        groups = []
        for server in self.servers:
            boxes = [(f"{server.slug}:*", f"All tools of {server.slug}", f"{server.slug}:*" in checked, False)]
            boxes += [
                (f"{server.slug}:{name}", name, f"{server.slug}:{name}" in checked, name in server.withheld)
                for name in server.tools
            ]
            groups.append((server, boxes))
        return groups


# --- Hosted servers -------------------------------------------------------------------

ENV_FIELD = "env_"  # a credential's input is named after its variable: env_NOTES_API_KEY


class DeployForm(PortalForm):
    """Deploy (or, for a Member, request) one catalog image: a profile and one input per
    variable the image lists.

    Credentials are optional here on purpose: ``instance_deploy`` names what is missing and
    the page shows its message, so the rule lives in one place. The inputs of required ones
    carry ``required`` for the browser (and portal.js). Password inputs never render their
    value, so a refused POST does not send a credential back to the browser.
    """

    profile = forms.ChoiceField(choices=Profile.choices)

    def __init__(self, *args, image: AllowedImage, **kwargs):
        # One form per catalog card on the same page: the image's slug keeps their ids apart.
        kwargs.setdefault("prefix", image.slug)
        super().__init__(*args, **kwargs)
        self.image = image
        self.fields["profile"].initial = image.default_profile
        if image.egress == AllowedImage.Egress.OPEN:
            self.fields["egress"] = forms.BooleanField(
                label="Allow outbound network access",
                required=False,
                help_text=(
                    "It calls an outside service and needs this to work. Without it, an isolating runtime "
                    "lets it reach nothing beyond the workspace."
                ),
            )
        for var in image.required_env_vars:
            secret = var.get("type") == "password"
            attrs = {"autocomplete": "off", "spellcheck": "false"}
            if var.get("required", True):
                attrs["required"] = True
            field = forms.CharField(
                label=var.get("label") or var["key"],
                help_text=var.get("help") or "",
                required=False,
                strip=not secret,  # a credential goes to the server exactly as typed
                widget=forms.PasswordInput(attrs=attrs) if secret else forms.TextInput(attrs=attrs),
            )
            field.env_key = var["key"]
            name = f"{ENV_FIELD}{var['key']}"
            self.fields[name] = field
            # The page always describes the input (its variable, then any help), so say so.
            field.widget.attrs["aria-describedby"] = f"{self[name].auto_id}_helptext"

    def egress_choice(self) -> str:
        return AllowedImage.Egress.OPEN if self.cleaned_data.get("egress") else AllowedImage.Egress.NONE

    def credential_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(ENV_FIELD)]

    def env(self) -> dict[str, str]:
        """The credentials as typed, by variable (empty ones too: the service drops them)."""
        return {
            self.fields[name].env_key: value
            for name, value in self.cleaned_data.items()
            if name.startswith(ENV_FIELD) and value is not None
        }
