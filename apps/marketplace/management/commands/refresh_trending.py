from django.core.management.base import BaseCommand

from apps.marketplace.services.curation import trending_refresh


class Command(BaseCommand):
    help = (
        "Recompute each server's installs this week and its trending value (installs of the last 28 days, "
        "halved for each week of age). A task runs it periodically; this is for a one-off refresh."
    )

    def handle(self, *args, **options):
        changed = trending_refresh()
        self.stdout.write(f"{changed} server{'s' if changed != 1 else ''} updated")
