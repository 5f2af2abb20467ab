"""Install the generator's TypeScript toolchain: ``npm ci`` of apps/configtools/scaffold (Node
22, tsc, @modelcontextprotocol/sdk, zod, all pinned by its lock file) into
``MCPNEST_GENERATOR_TOOLCHAIN`` (var/generator-toolchain by default). Nothing is fetched
while a request waits: without this, TypeScript scaffolds are reported as not checked."""

from __future__ import annotations

import shutil
import subprocess

from django.core.management.base import BaseCommand, CommandError

from apps.configtools.generator import check


class Command(BaseCommand):
    help = "Install the TypeScript toolchain the MCP generator checks scaffolds with (npm ci)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Reinstall even if the lock file is unchanged.")

    def handle(self, *args, force: bool = False, **options):
        npm = shutil.which("npm")
        if npm is None:
            raise CommandError("npm is not on PATH: install Node.js (any version; the toolchain brings Node 22).")
        target = check.toolchain_dir()
        target.mkdir(parents=True, exist_ok=True)
        lock = (check.SCAFFOLD_DIR / "package-lock.json").read_bytes()
        installed = target / "package-lock.json"
        if not force and check.toolchain() is not None and installed.exists() and installed.read_bytes() == lock:
            self.stdout.write(f"Up to date in {target}.")
            return
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(check.SCAFFOLD_DIR / name, target / name)
        done = subprocess.run(  # noqa: S603 - fixed command
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise CommandError(f"npm ci failed in {target}:\n{done.stderr[-3000:]}")
        if check.toolchain() is None:
            raise CommandError(f"npm ci finished but {target} has no node, tsc or SDK: {check.toolchain_missing()}")
        self.stdout.write(self.style.SUCCESS(f"Installed the generator's toolchain in {target}."))
