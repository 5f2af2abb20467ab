from django.core.management.base import BaseCommand, CommandError

from apps.marketplace.services.github import github_enrich


class Command(BaseCommand):
    help = (
        "Enrich servers from GitHub (stars, last commit, archived, licence, topics, README): the repositories due "
        "for a refresh, or those given with --repo. Uses MCPNEST_GITHUB_API_URL and the token in "
        "MCPNEST_GITHUB_TOKEN (GITHUB_TOKEN); stops at GitHub's rate limit and postpones the rest."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=500, help="at most this many repositories (default 500)")
        parser.add_argument(
            "--repo",
            action="append",
            dest="repos",
            metavar="OWNER/REPO",
            help="this repository, due or not; repeatable",
        )

    def handle(self, *args, limit=500, repos=None, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            run = github_enrich(keys=repos, limit=limit)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{run.due} repositories due: {run.changed} changed, {run.unchanged} unchanged, {run.missing} missing, "
            f"{run.failed} failed; {run.servers} servers updated; {run.requests} requests to GitHub"
        )
        if run.error:
            raise CommandError(run.error)
        if run.rate_limited_until:
            self.stderr.write(
                f"GitHub's rate limit was reached: {run.postponed} repositories postponed to "
                f"{run.rate_limited_until:%Y-%m-%d %H:%M:%S} UTC"
            )
