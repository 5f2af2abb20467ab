from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.marketplace.services import SourceError, awesome_merge


class Command(BaseCommand):
    help = (
        "Merge the awesome-mcp-servers list (its enhansome JSON, .json or .json.gz) into the index: stars, last "
        "commit, archived and categories for the servers whose repository it lists, and the servers only it knows."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, required=True)

    def handle(self, *args, file: Path, **options):
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        try:
            merged = awesome_merge(path=file)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{merged.entries} repositories: {merged.matched} registry servers enriched, {merged.added} servers added"
        )
