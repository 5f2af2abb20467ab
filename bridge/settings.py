"""The bridge's settings, read once from the environment (the container's)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        required_env = tuple(n.strip() for n in env.get("MCP_REQUIRED_ENV", "").split(",") if n.strip())
        command = tuple(_expand(arg, required_env, env) for arg in shlex.split(env.get("MCP_COMMAND", "")))
        if not command:
            raise SettingsError("MCP_COMMAND is empty: set it to the command that starts the stdio MCP server")
        try:
            return cls(
                command=command,
                host=env.get("BRIDGE_HOST", "").strip() or cls.host,
                port=int(env.get("BRIDGE_PORT", "").strip() or cls.port),
                required_env=required_env,
                handshake_timeout=float(env.get("BRIDGE_HANDSHAKE_TIMEOUT", "").strip() or cls.handshake_timeout),
            )
        except ValueError as exc:
            raise SettingsError(f"BRIDGE_PORT or BRIDGE_HANDSHAKE_TIMEOUT is not a number: {exc}") from None

    def empty_required(self, env: Mapping[str, str] | None = None) -> list[str]:
        """The required variables that are unset or blank."""
        env = os.environ if env is None else env
        return [name for name in self.required_env if not env.get(name, "").strip()]


def _expand(arg: str, names: tuple[str, ...], env: Mapping[str, str]) -> str:
    """``${NAME}`` in an argument becomes NAME's value, for the server's own variables
    (MCP_REQUIRED_ENV) only: servers that take a credential as an argument (a database URL)
    get it without a shell, and no other variable of the container can be read this way."""
    return _REFERENCE.sub(lambda m: env.get(m.group(1), "") if m.group(1) in names else m.group(0), arg)
