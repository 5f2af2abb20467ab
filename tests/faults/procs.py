"""Real processes for the fault tests: uvicorn gateways, ``redis-server`` and a throwaway
PostgreSQL cluster.

Every process is started in a process group of its own and registered here, so that a
fixture's teardown, the per-test watchdog (see conftest.py) or interpreter exit kills it
and whatever it spawned. Everything listens on 127.0.0.1 only. Each process writes a log
file; the logs of the processes a test started are attached to its report when it fails.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.gateway.server import (
    server_command,
    subprocess_database_url,  # noqa: F401 - re-exported for the fault tests
)

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SETTINGS = "mcpnest.settings.test"

# --- registry: what to kill when things go wrong ----------------------------------------

_registry: set = set()
_registry_lock = threading.Lock()
# (name, log path) of every process started during the current test (reset by conftest).
started_logs: list[tuple[str, Path]] = []


def _register(obj) -> None:
    with _registry_lock:
        _registry.add(obj)


def _unregister(obj) -> None:
    with _registry_lock:
        _registry.discard(obj)


def kill_everything() -> None:
    """Kill every process this module started and has not stopped (watchdog, exit)."""
    with _registry_lock:
        objects = list(_registry)
    for obj in objects:
        with contextlib.suppress(Exception):
            obj.emergency_kill()


atexit.register(kill_everything)


# --- small helpers --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path | None, chars: int = 4000) -> str:
    if path is None or not path.exists():
        return "(no log)"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - chars))
        return handle.read().decode("utf-8", "replace")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it if pytest dies (even by SIGKILL), so no test
    run leaves a gateway or a Redis behind (Linux; elsewhere the registry has to do)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def base_env(**overrides: str | None) -> dict[str, str]:
    """The environment for a product subprocess: this one, without the machine's database
    and Redis (each caller says which it wants), with the test settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def manage(
    *args: str, database_url: str, redis_url: str | None = None, timeout: float = 90, extra_env=None
) -> subprocess.CompletedProcess:
    """``python manage.py ARGS`` against ``database_url`` (and Redis only if given)."""
    env = base_env(DATABASE_URL=database_url, REDIS_URL=redis_url, **(extra_env or {}))
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [PYTHON, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- the gateway: uvicorn ----------------------------------------------------------------


class GatewayProcess:
    """One real ``uvicorn mcpnest.asgi:application`` on 127.0.0.1.

    ``restart()`` comes back on the same port with the same environment (so the same
    ``MCPNEST_SPOOL_DIR``); ``kill9()`` is a crash, ``terminate()`` a graceful stop.
    """

    def __init__(
        self,
        *,
        name: str,
        database_url: str,
        log_dir: Path,
        spool_dir: Path,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spool_dir = spool_dir
        self.log = log_dir / f"{name}.log"
        defaults = {
            # Every test talks from 127.0.0.1: keep the per-IP pre-auth limit out of the way
            # unless a test sets it on purpose.
            "MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT": "1000000",
        }
        self.env = base_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            MCPNEST_SPOOL_DIR=str(spool_dir),
            **{**defaults, **(env or {})},
        )
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"<gateway {self.name} {self.url} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, *, wait: bool = True) -> GatewayProcess:
        assert not self.alive(), f"{self} is already running"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        args = server_command(self.port)
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts} of {self.name} on port {self.port} =====\n".encode())
            out.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - our own server
                args,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # processes are started from the main thread only
            )
        _register(self)
        started_logs.append((f"gateway {self.name}", self.log))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 45.0) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise RuntimeError(f"{self} exited with {code} before listening:\n{tail(self.log)}")
            if port_open(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self} did not listen within {timeout}s:\n{tail(self.log)}")

    def kill9(self) -> None:
        """A crash: SIGKILL to the whole process group, no chance to drain anything."""
        if self.popen is not None:
            _kill_group(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        _unregister(self)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """A graceful stop (SIGTERM: uvicorn drains); SIGKILL if it takes longer than ``timeout``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            _kill_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        _kill_group(self.popen.pid, signal.SIGKILL)  # anything it left behind in its group
        _unregister(self)
        return self.popen.returncode

    def restart(self, *, wait: bool = True) -> GatewayProcess:
        if self.alive():
            self.terminate()
        return self.start(wait=wait)

    def stop(self) -> None:
        """Teardown: graceful if it can, killed if not."""
        self.terminate(timeout=15.0)

    def emergency_kill(self) -> None:
        if self.popen is not None:
            _kill_group(self.popen.pid, signal.SIGKILL)

    def rss(self) -> int:
        """Resident set size in bytes (VmRSS of /proc/<pid>/status)."""
        assert self.alive(), f"{self} is not running:\n{tail(self.log)}"
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def log_tail(self, chars: int = 4000) -> str:
        return tail(self.log, chars)


# --- redis-server -------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a free port with its own ``--dir``.

    No automatic snapshots (``--save ""``): ``snapshot()`` takes one with SAVE, and
    ``start()`` comes back from it (``dump.rdb`` in the same dir, same port) unless told
    ``from_snapshot=False``. ``stop()`` is a crash (SIGKILL) or ``SHUTDOWN NOSAVE``.
    """

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = self.dir / "redis.log"
        self.dump = self.dir / "dump.rdb"
        self.popen: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self, *, from_snapshot: bool = True, timeout: float = 15.0) -> RedisServer:
        assert not self.alive(), "redis-server is already running"
        if not from_snapshot:
            self.dump.unlink(missing_ok=True)
        args = [
            self.binary() or "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--dbfilename", "dump.rdb",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - redis-server from PATH
                args,
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # processes are started from the main thread only
            )
        _register(self)
        started_logs.append(("redis-server", self.log))

        def answers() -> bool:
            if not self.alive():
                raise RuntimeError(f"redis-server exited with {self.popen.returncode}:\n{tail(self.log)}")
            try:
                return bool(self.client().ping())
            except Exception:
                return False

        if not wait_until(answers, timeout=timeout):
            raise RuntimeError(f"redis-server did not answer PING within {timeout}s:\n{tail(self.log)}")
        return self

    def snapshot(self) -> Path:
        """SAVE: write dump.rdb now (a later ``start()`` comes back from it)."""
        assert self.client().save()
        return self.dump

    def stop(self, *, how: str = "kill") -> None:
        if not self.alive():
            return
        if how == "shutdown":
            with contextlib.suppress(Exception):
                self.client().shutdown(nosave=True)
        else:
            _kill_group(self.popen.pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        _unregister(self)

    def emergency_kill(self) -> None:
        if self.popen is not None:
            _kill_group(self.popen.pid, signal.SIGKILL)


# --- a throwaway PostgreSQL cluster ----------------------------------------------------------


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin with initdb, else initdb's dir on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def postgres_unavailable() -> str | None:
    """Why a throwaway cluster cannot be made here, or None."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        return "needs PostgreSQL's initdb (/usr/lib/postgresql/<ver>/bin or PATH)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "initdb refuses to run as root and there is no 'postgres' system user"
        if shutil.which("runuser") is None:
            return "running as root needs runuser to start PostgreSQL as the postgres user"
    return None


class PgCluster:
    """``initdb`` in a temp dir owned by the postgres user; ``postgres`` on a free port,
    127.0.0.1 only, its socket in the same dir, fsync off; ``pg_ctl stop -m immediate``."""

    def __init__(self, *, port: int | None = None) -> None:
        reason = postgres_unavailable()
        assert reason is None, reason
        self.bin = postgres_bin()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mcpnest-faults-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.log = self.root / "postgres.log"
        self.log.touch()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sock, self.log):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.initialised = False
        self.popen: subprocess.Popen | None = None
        _register(self)
        started_logs.append(("postgres", self.log))

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(  # noqa: S603 - PostgreSQL's own tools
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail(self.log)}"
            )
        return result

    def url(self, dbname: str = "mcpnest") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> PgCluster:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                  "--no-sync")  # fmt: skip
        self.initialised = True
        return self

    def start(self, timeout: float = 60.0) -> PgCluster:
        """``postgres`` as a direct child (as the postgres user when we are root), so it dies
        with pytest even when pytest is SIGKILLed; stopped with ``pg_ctl stop``."""
        assert not self.running(), "PostgreSQL is already running"
        # fsync off is safe here (the OS survives an immediate stop); synchronous_commit must
        # stay on, or an immediate stop loses the last commits — the gateway's, not ours.
        args = [
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - PostgreSQL itself
                args,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # processes are started from the main thread only
                **as_postgres,
            )

        def ready() -> bool:
            import psycopg

            if self.popen.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.popen.returncode}:\n{tail(self.log)}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                return False

        if not wait_until(ready, timeout=timeout, interval=0.1):
            raise RuntimeError(f"PostgreSQL did not accept connections within {timeout}s:\n{tail(self.log)}")
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``: every backend killed, no checkpoint (a crash, as far
        as clients can tell)."""
        if not self.running():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop", timeout=90)
        finally:
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.emergency_kill()
                self.popen.wait(timeout=10)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def create_database(self, name: str = "mcpnest") -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def emergency_kill(self) -> None:
        if self.popen is not None:
            _kill_group(self.popen.pid, signal.SIGKILL)  # its backends exit when they see it gone

    def destroy(self) -> None:
        try:
            if self.initialised:
                with contextlib.suppress(Exception):
                    self.stop()
                if self.running():
                    self.emergency_kill()
        finally:
            _unregister(self)
            shutil.rmtree(self.root, ignore_errors=True)
