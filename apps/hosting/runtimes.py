"""Where hosted servers run: one interface, chosen by MCPNEST_HOSTING_RUNTIME.

A runtime starts ``python -m bridge`` for an instance (the bridge serves the instance's stdio
MCP server at ``/mcp`` and says when it is ready at ``/healthz``; see ``bridge/__init__.py``),
and answers for it by its runtime id afterwards. It never touches the database: the tasks
(``apps.hosting.services``) record what it reports.

``ProcessRuntime`` is the embedded default: the bridge as a subprocess on 127.0.0.1, in its
own process group, under rlimits. It is NOT isolated (same user, same file system, same
network as the platform), and runs only servers whose command exists on the host.
``DockerRuntime`` is the isolated one: a hardened container of the runtime image per instance
(``apps.hosting.images``). A Kubernetes runtime would implement the same methods: a Pod per
instance (the same security context), a Service for its port, a NetworkPolicy per workspace.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from apps.hosting.models import Instance


class RuntimeStartError(Exception):
    """The runtime could not start the instance."""


class Runtime(Protocol):
    def start(self, instance: Instance, env: dict[str, str]) -> tuple[str, int]:
        """Start the instance's bridge with ``env`` (its credentials); return (runtime id, host port)."""

    def stop(self, runtime_id: str) -> None:
        """Stop it (and everything it started); a runtime id already gone is not an error."""

    def alive(self, runtime_id: str) -> bool: ...

    def tail(self, runtime_id: str, lines: int = 50) -> LogChunk:
        """Its last output lines, unmasked (callers mask credentials), and where they end."""

    def follow(self, runtime_id: str, cursor: int) -> LogChunk:
        """The whole lines written since ``cursor`` (from ``tail`` or an earlier ``follow``)."""

    def settle(self, runtime_id: str, profile: str) -> None:
        """The instance is healthy: hold it to its profile from now on (it starts at full
        speed, so that its start-up is not slowed to a crawl by a quarter of a CPU)."""

    def listed(self) -> dict[str, int] | None:
        """Every instance this runtime runs, runtime id -> instance id; None if it cannot tell."""


@dataclass(frozen=True)
class LogChunk:
    lines: list[str]
    cursor: int  # opaque to callers: pass it to ``follow`` for what comes next


# Per profile: address space (bytes), CPU seconds, open files. CPU is cumulative: a server
# that uses more than this in its life is killed and the health sweep marks it failed.
LIMITS = {
    "small": (1 << 30, 6 * 3600, 256),
    "medium": (2 << 30, 12 * 3600, 512),
    "large": (4 << 30, 24 * 3600, 1024),
}
# What the bridge's environment keeps from the platform's: enough to run Python, nothing secret.
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(mcp_command: str) -> str:
    """``python …`` runs with this interpreter (the platform's virtualenv)."""
    parts = shlex.split(mcp_command)
    if parts and parts[0] in ("python", "python3"):
        parts[0] = sys.executable
    return shlex.join(parts)


class ProcessRuntime:
    """The bridge as a local subprocess; the runtime id is its pid (also its process group)."""

    def __init__(self, log_dir: Path | None = None):
        self.log_dir = log_dir or Path(settings.VAR_DIR) / "hosting"
        # Our children, so they are reaped (no zombies) and never reported alive once dead.
        self._children: dict[int, subprocess.Popen] = {}
        self._instances: dict[int, int] = {}  # pid -> instance id

    def _log_path(self, runtime_id: str) -> Path:
        return self.log_dir / f"process-{int(runtime_id)}.log"

    def start(self, instance: Instance, env: dict[str, str]) -> tuple[str, int]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        address_space, cpu_seconds, open_files = LIMITS.get(instance.profile, LIMITS["small"])

        def limit() -> None:  # in the child, before exec
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        child_env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        child_env.update(env)  # credentials: only in the child's environment
        child_env.update(
            MCP_COMMAND=_command(instance.image.mcp_command),
            BRIDGE_HOST="127.0.0.1",
            BRIDGE_PORT=str(port),
            MCP_REQUIRED_ENV=",".join(instance.image.env_keys),
            PYTHONUNBUFFERED="1",
        )
        pending = self.log_dir / f"instance-{instance.pk}-{time.monotonic_ns()}.log"
        with open(pending, "ab") as log:
            try:
                process = subprocess.Popen(  # a fixed command; no shell
                    [sys.executable, "-m", "bridge"],
                    cwd=settings.BASE_DIR,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=limit,
                    close_fds=True,
                )
            except OSError as exc:
                raise RuntimeStartError(f"could not start the bridge: {exc}") from None
        pending.rename(self._log_path(str(process.pid)))
        self._children[process.pid] = process
        self._instances[process.pid] = instance.pk
        return str(process.pid), port

    def alive(self, runtime_id: str) -> bool:
        pid = int(runtime_id)
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a zombie (another process's dead child) is not alive
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True

    def stop(self, runtime_id: str, grace: float = 5.0) -> None:
        pid = int(runtime_id)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive(runtime_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # what is left of the group (the bridge's child too)
            os.killpg(pid, signal.SIGKILL)
        child = self._children.pop(pid, None)
        self._instances.pop(pid, None)
        if child is not None:
            child.wait(timeout=grace)

    def settle(self, runtime_id: str, profile: str) -> None:
        """Nothing to do: the rlimits hold from the start (they bound totals, not speed)."""

    def listed(self) -> dict[str, int] | None:
        """Only this process's own children: bridges started by another worker process are
        invisible here, so a reconcile must not take their absence as an orphaned row."""
        return None

    # The runtime id is the log's name and the cursor a byte offset in it.
    TAIL_BYTES = 64 * 1024

    def tail(self, runtime_id: str, lines: int = 50) -> LogChunk:
        try:
            with open(self._log_path(runtime_id), "rb") as log:
                end = log.seek(0, os.SEEK_END)
                start = max(0, end - self.TAIL_BYTES)
                log.seek(start)
                data = log.read(end - start)
        except (OSError, ValueError):
            return LogChunk([], 0)
        whole, _, _ = data.rpartition(b"\n")
        if start:  # the first line is cut: drop it
            whole = whole.partition(b"\n")[2]
        cursor = start + len(data) - len(data.rpartition(b"\n")[2])
        return LogChunk(_decoded(whole)[-lines:] if lines else [], cursor)

    def follow(self, runtime_id: str, cursor: int) -> LogChunk:
        try:
            with open(self._log_path(runtime_id), "rb") as log:
                log.seek(cursor)
                data = log.read(self.TAIL_BYTES)
        except (OSError, ValueError):
            return LogChunk([], cursor)
        whole, newline, _ = data.rpartition(b"\n")
        return LogChunk(_decoded(whole), cursor + len(whole) + len(newline))


def _decoded(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines() if data else []


# Per profile: CPUs and memory of a container (the small / medium / large).
PROFILES = {"small": (0.25, "256m"), "medium": (0.5, "512m"), "large": (1.0, "1g")}
CPU_PERIOD = 100_000  # microseconds; the quota is CPUs x this
# An image reference the Docker runtime runs: a local image id, or a name pinned by digest.
# The catalog (the allowlist) is the gate; this is defence in depth against an edited row.
PINNED_IMAGE = re.compile(r"^(sha256:[0-9a-f]{64}|[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64})$")
INSTANCE_LABEL = "mcpnest.instance"
WORKSPACE_LABEL = "mcpnest.workspace"


def bridge_name(workspace_id: int, egress: str) -> str:
    """The Linux bridge of a workspace's network (15 characters at most). ``mcpbr`` bridges
    have no egress: the operator's firewall rules (``manage.py hosting_firewall``) match
    ``mcpbr+``; instances allowed out sit on the workspace's ``mcpeg`` bridge instead."""
    return f"{'mcpeg' if egress == 'open' else 'mcpbr'}{workspace_id:010x}"


class DockerRuntime:
    """One hardened container of the runtime image per instance; the runtime id is the
    container id. Every container: all capabilities dropped, no-new-privileges, read-only
    root, ``/tmp`` a small noexec tmpfs, user nobody, a pids limit, the profile's CPU and
    memory, ``init``, no host mounts, labels naming its instance and workspace, the bridge's
    port published on 127.0.0.1 only, on its workspace's own network. Images are never
    pulled: a missing one is an error that says to build it."""

    def __init__(self, client=None):
        # Imported here: 75 ms every process would pay at start-up (the gateway's too) for
        # a runtime most of them never use.
        import docker

        self._docker = docker
        try:
            self.client = client or docker.from_env(timeout=30)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise ImproperlyConfigured(
                f"MCPNEST_HOSTING_RUNTIME=docker, but no Docker engine answers ({exc}). Start dockerd or set "
                "DOCKER_HOST, or use the process runtime."
            ) from None

    def _network(self, workspace_id: int, egress: str):
        name = f"mcpnest-ws{workspace_id}-{'open' if egress == 'open' else 'none'}"
        found = self.client.networks.list(names=[name])
        if found:
            return found[0]
        try:
            return self.client.networks.create(
                name,
                driver="bridge",
                labels={WORKSPACE_LABEL: str(workspace_id)},
                options={"com.docker.network.bridge.name": bridge_name(workspace_id, egress)},
            )
        except self._docker.errors.APIError:  # a concurrent deploy made it first
            found = self.client.networks.list(names=[name])
            if found:
                return found[0]
            raise

    def start(self, instance: Instance, env: dict[str, str]) -> tuple[str, int]:
        reference = instance.image.image
        if not PINNED_IMAGE.match(reference):
            raise RuntimeStartError(
                f"The catalog's image for {instance.image.slug} is {reference!r}, not pinned by id or digest: "
                "run manage.py build_runtime_image (or pin it in admin)."
            )
        try:
            self.client.images.get(reference)
        except self._docker.errors.ImageNotFound:
            raise RuntimeStartError(
                f"Image {reference} is not on this Docker host (images are never pulled): "
                "run manage.py build_runtime_image."
            ) from None
        _, memory = PROFILES.get(instance.profile, PROFILES["small"])
        egress = getattr(instance, "egress", "none")
        try:
            network = self._network(instance.workspace_id, egress)
            container = self.client.containers.run(
                reference,
                detach=True,
                name=f"mcpnest-i{instance.pk}-{os.urandom(3).hex()}",
                environment={
                    **env,  # credentials: only here, in the container's environment
                    "MCP_COMMAND": instance.image.mcp_command,
                    "MCP_REQUIRED_ENV": ",".join(instance.image.env_keys),
                },
                labels={INSTANCE_LABEL: str(instance.pk), WORKSPACE_LABEL: str(instance.workspace_id)},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},  # noqa: S108 - the container's own /tmp
                user="65534:65534",
                pids_limit=128,
                cpu_period=CPU_PERIOD,
                cpu_quota=CPU_PERIOD,  # one full CPU until healthy (settle)
                mem_limit=memory,
                memswap_limit=memory,
                init=True,
                ports={"8080/tcp": ("127.0.0.1", None)},
                network=network.name,
            )
            container.reload()
            port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        except (self._docker.errors.DockerException, KeyError, IndexError, TypeError) as exc:
            raise RuntimeStartError(f"Docker could not start the container: {exc}") from None
        return container.id, port

    def _container(self, runtime_id: str):
        try:
            return self.client.containers.get(runtime_id)
        except self._docker.errors.NotFound:
            return None

    def alive(self, runtime_id: str) -> bool:
        container = self._container(runtime_id)
        return container is not None and container.status == "running"

    def stop(self, runtime_id: str) -> None:
        container = self._container(runtime_id)
        if container is None:
            return
        networks = list(container.attrs.get("NetworkSettings", {}).get("Networks", {}))
        try:
            container.remove(force=True)
        except self._docker.errors.NotFound:
            return
        for name in networks:  # the workspace's network goes with its last container
            for network in self.client.networks.list(names=[name]):
                network.reload()
                if WORKSPACE_LABEL in (network.attrs.get("Labels") or {}) and not network.attrs.get("Containers"):
                    with contextlib.suppress(self._docker.errors.APIError):  # a deploy just joined it
                        network.remove()

    def _log(self, runtime_id: str) -> bytes:
        container = self._container(runtime_id)
        if container is None:
            return b""
        try:
            return container.logs(stdout=True, stderr=True)
        except self._docker.errors.APIError:
            return b""

    # The cursor is a byte offset in the container's whole log (start-up logs are small).
    def tail(self, runtime_id: str, lines: int = 50) -> LogChunk:
        data = self._log(runtime_id)
        whole, newline, _ = data.rpartition(b"\n")
        return LogChunk(_decoded(whole)[-lines:] if lines else [], len(whole) + len(newline))

    def follow(self, runtime_id: str, cursor: int) -> LogChunk:
        data = self._log(runtime_id)[cursor:]
        whole, newline, _ = data.rpartition(b"\n")
        return LogChunk(_decoded(whole), cursor + len(whole) + len(newline))

    def settle(self, runtime_id: str, profile: str) -> None:
        cpus, _ = PROFILES.get(profile, PROFILES["small"])
        container = self._container(runtime_id)
        if container is not None:
            container.update(cpu_period=CPU_PERIOD, cpu_quota=int(cpus * CPU_PERIOD))

    def listed(self) -> dict[str, int]:
        containers = self.client.containers.list(all=True, filters={"label": INSTANCE_LABEL})
        return {c.id: int(c.labels[INSTANCE_LABEL]) for c in containers if c.labels.get(INSTANCE_LABEL, "").isdigit()}


_process_runtime: ProcessRuntime | None = None
_docker_runtime: DockerRuntime | None = None


def runtime_for_settings() -> Runtime:
    """The runtime MCPNEST_HOSTING_RUNTIME names (one per process: it tracks its children)."""
    global _process_runtime, _docker_runtime
    name = settings.MCPNEST_HOSTING_RUNTIME
    if name == "process":
        if _process_runtime is None:
            _process_runtime = ProcessRuntime()
        return _process_runtime
    if name == "docker":
        if _docker_runtime is None:
            _docker_runtime = DockerRuntime()
        return _docker_runtime
    raise ImproperlyConfigured(f"MCPNEST_HOSTING_RUNTIME must be process or docker (got {name!r}).")
