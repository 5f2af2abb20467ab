from django.core.management.base import BaseCommand, CommandError

from apps.hosting import firewall


class Command(BaseCommand):
    help = (
        "The Docker host's egress rules for hosted instances: add (idempotent; again after dockerd restarts), "
        "remove, show, or check (exit 1 unless they are in place)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["add", "remove", "show", "check"])

    def handle(self, *args, action: str, **options):
        try:
            if action == "add":
                firewall.add()
                self.stdout.write("Egress rules installed: workspace networks without egress reach nothing outside.")
            elif action == "remove":
                firewall.remove()
                self.stdout.write("Egress rules removed.")
            elif action == "show":
                self.stdout.write(firewall.show() or "(no MCPNest rules)")
            elif not firewall.installed():
                raise CommandError("The egress rules are not installed: run manage.py hosting_firewall add.")
            else:
                self.stdout.write("The egress rules are in place.")
        except firewall.FirewallError as exc:
            raise CommandError(str(exc)) from None
