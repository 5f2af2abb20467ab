"""The bridge's settings, read once from the environment (the container's)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(Exception):
    """The environment does not say how to run the bridge."""


@dataclass(frozen=True)
class Settings:
    command: tuple[str, ...]  # MCP_COMMAND, split as a shell would (no shell runs it)
    # All interfaces of the container: Docker publishes the port on the host's loopback only.
    host: str = "0.0.0.0"  # noqa: S104
    port: int = 8080
    required_env: tuple[str, ...] = ()  # MCP_REQUIRED_ENV: named when the child dies before its handshake
    handshake_timeout: float = 30.0
    max_message_bytes: int = 16 * 1024 * 1024  # one JSON-RPC message, either way

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        command = tuple(shlex.split(env.get("MCP_COMMAND", "")))
        if not command:
            raise SettingsError("MCP_COMMAND is empty: set it to the command that starts the stdio MCP server")
        try:
            return cls(
                command=command,
                host=env.get("BRIDGE_HOST", "").strip() or cls.host,
                port=int(env.get("BRIDGE_PORT", "").strip() or cls.port),
                required_env=tuple(n.strip() for n in env.get("MCP_REQUIRED_ENV", "").split(",") if n.strip()),
                handshake_timeout=float(env.get("BRIDGE_HANDSHAKE_TIMEOUT", "").strip() or cls.handshake_timeout),
            )
        except ValueError as exc:
            raise SettingsError(f"BRIDGE_PORT or BRIDGE_HANDSHAKE_TIMEOUT is not a number: {exc}") from None

    def empty_required(self, env: Mapping[str, str] | None = None) -> list[str]:
        """The required variables that are unset or blank."""
        env = os.environ if env is None else env
        return [name for name in self.required_env if not env.get(name, "").strip()]
