"""The real gateway for tests: ``mcpnest.asgi`` served by uvicorn in a subprocess on
127.0.0.1, as the README runs it, using the running test's own database (so tests need
``django_db(transaction=True)``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]
# As the README runs the server (its "Running in production" says why each is there).
SERVER_OPTIONS = (
    "--backlog=1024",
    "--lifespan=on",
    "--no-proxy-headers",
    "--timeout-graceful-shutdown=5",
    "--no-access-log",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, *, log: Path | None = None, timeout: float = 30.0) -> None:
    """Wait until ``process`` listens on 127.0.0.1:``port``; raise, with the end of its
    ``log`` if it writes one, if it exits first or takes longer than ``timeout``."""

    def tail() -> str:
        return f":\n{log.read_text()[-3000:]}" if log is not None else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening{tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{process.args[0]} did not listen on 127.0.0.1:{port} within {timeout}s{tail()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # a graceful stop writes what the audit spool holds
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def serving(args: list[str], *, port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603 - ours
    try:
        wait_for_port(port, process, log=log)
        yield process
    finally:
        _stop(process)


def subprocess_database_url() -> str:
    """The running test's own database (not the configured one: test settings rename it)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(settings["NAME"])
        assert Path(name).is_absolute(), f"the gateway subprocess needs a file database, not {name!r}"
        return f"sqlite:///{name}"
    assert connection.vendor == "postgresql", connection.vendor
    credentials = quote(settings["USER"] or "", safe="")
    if settings["PASSWORD"]:
        credentials += ":" + quote(settings["PASSWORD"], safe="")
    host = settings["HOST"] or "127.0.0.1"
    port = settings["PORT"] or "5432"
    return f"postgres://{credentials}@{host}:{port}/{quote(settings['NAME'], safe='')}"


def server_command(port: int, *options: str) -> list[str]:
    """``uvicorn`` serving ``mcpnest.asgi`` on 127.0.0.1:``port`` with the README's options
    (``SERVER_OPTIONS``)."""
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    return [uvicorn, "mcpnest.asgi:application", "--host", "127.0.0.1", "--port", str(port), *SERVER_OPTIONS, *options]


@pytest.fixture
def gateway(tmp_path):
    """Start the real gateway (uvicorn) on the test database; returns its base URL.

    Call it after the test's setup: the gateway process caches workspace configuration
    from its first request, and without Redis it hears of no later change.
    """
    with ExitStack() as stack:

        def start() -> str:
            port = free_port()
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "mcpnest.settings.test",
                "DATABASE_URL": subprocess_database_url(),
            }
            stack.enter_context(serving(server_command(port), port=port, env=env, log=tmp_path / f"server-{port}.log"))
            return f"http://127.0.0.1:{port}"

        yield start
