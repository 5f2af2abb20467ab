"""Where hosted servers run: one interface, chosen by MCPNEST_HOSTING_RUNTIME.

A runtime starts ``python -m bridge`` for an instance (the bridge serves the instance's stdio
MCP server at ``/mcp`` and says when it is ready at ``/healthz``; see ``bridge/__init__.py``),
and answers for it by its runtime id afterwards. It never touches the database: the tasks
(``apps.hosting.services``) record what it reports.

``ProcessRuntime`` is the embedded default: the bridge as a subprocess on 127.0.0.1, in its
own process group, under rlimits. It is NOT isolated (same user, same file system, same
network as the platform); ``DockerRuntime`` is the isolated one and comes next. A Kubernetes
runtime would implement the same four methods (a Pod per instance, a Service for its port).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import deque
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

    def logs(self, runtime_id: str, lines: int = 50) -> list[str]:
        """Its last output lines, unmasked (callers mask credentials)."""


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
        if child is not None:
            child.wait(timeout=grace)

    def logs(self, runtime_id: str, lines: int = 50) -> list[str]:
        try:
            with open(self._log_path(runtime_id), errors="replace") as log:
                return [line.rstrip("\n") for line in deque(log, maxlen=lines)]
        except (OSError, ValueError):
            return []


_process_runtime: ProcessRuntime | None = None


def runtime_for_settings() -> Runtime:
    """The runtime MCPNEST_HOSTING_RUNTIME names (one per process: it tracks its children)."""
    global _process_runtime
    name = settings.MCPNEST_HOSTING_RUNTIME
    if name == "process":
        if _process_runtime is None:
            _process_runtime = ProcessRuntime()
        return _process_runtime
    if name == "docker":
        raise ImproperlyConfigured(
            "MCPNEST_HOSTING_RUNTIME=docker is not available yet: use process (the embedded default)."
        )
    raise ImproperlyConfigured(f"MCPNEST_HOSTING_RUNTIME must be process or docker (got {name!r}).")
