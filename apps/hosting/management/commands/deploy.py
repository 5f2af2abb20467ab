"""Deploy a hosted MCP server from the catalog into a workspace (it joins the workspace's gateway)."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.hosting.models import AllowedImage, Instance, Profile
from apps.hosting.services import instance_deploy
from apps.workspaces.management.cli import one_line, operator_access, workspace_active


def parse_env(value: str) -> tuple[str, str]:
    key, sep, rest = value.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--env takes KEY=VALUE (got one without “=”: {key.strip()[:40]!r}).")
    return key.strip(), rest


class Command(BaseCommand):
    help = (
        "Deploy a hosted server: deploy SLUG IMAGE [--profile small|medium|large] [--env KEY=VALUE]... "
        "[--egress none|open] [--wait]"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="workspace slug")
        parser.add_argument("image", help="the catalog image's slug")
        parser.add_argument("--profile", choices=Profile.values, default=None)
        parser.add_argument(
            "--env", action="append", default=[], metavar="KEY=VALUE", help="a credential; stored encrypted"
        )
        parser.add_argument(
            "--egress",
            choices=AllowedImage.Egress.values,
            default=AllowedImage.Egress.NONE,
            help="open: the container may reach the network beyond its workspace (default: none)",
        )
        parser.add_argument("--wait", action="store_true", help="wait until it is running or failed")
        parser.add_argument("--timeout", type=float, default=120.0, help="how long --wait waits, in seconds")

    def handle(
        self, *args, slug: str, image: str, profile, env: list[str], egress: str, wait: bool, timeout: float, **options
    ):
        workspace = workspace_active(slug)
        allowed = AllowedImage.objects.filter(slug=image).first()
        if allowed is None:
            raise CommandError(f"No image {image!r} in the catalog.")
        try:
            instance = instance_deploy(
                access=operator_access(workspace),
                image=allowed,
                profile=profile,
                env=dict(parse_env(value) for value in env),
                egress=egress,
            )
        except (ValidationError, RuleViolation) as exc:
            raise CommandError(one_line(exc)) from None
        deadline = time.monotonic() + timeout
        while wait and instance.status in (Instance.Status.PENDING, Instance.Status.STARTING):
            if time.monotonic() > deadline:
                raise CommandError(f"Instance {instance.pk} is still {instance.status} after {timeout:g} s.")
            time.sleep(0.5)
            instance.refresh_from_db()
        self.stdout.write(str(instance.pk))
        if wait and instance.status == Instance.Status.FAILED:
            raise CommandError(f"Instance {instance.pk} failed: {instance.error}")
