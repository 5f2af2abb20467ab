"""``python -m bridge``: see ``bridge``'s docstring for the contract."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import uvicorn

from bridge.app import BridgeApp
from bridge.mux import Child, ChildGone
from bridge.settings import Settings, SettingsError

EXIT_HANDSHAKE = 2  # the child never became usable (missing credentials, a bad command)
EXIT_CHILD_DIED = 3  # the child died after its handshake
SHUTDOWN_GRACE = 0.5  # seconds open connections get once the child is gone


class _Server(uvicorn.Server):
    # The bridge handles SIGTERM/SIGINT itself (to stop the child first); uvicorn's own
    # handling would re-raise the signal after serving and kill the process before that.
    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _say(message: str) -> None:
    print(f"bridge: {message}", file=sys.stderr, flush=True)


async def _why_not_started(child: Child, settings: Settings, reason: str) -> str:
    """The exit message when the child never finished its handshake: the likely cause."""
    code = None
    if child.process is not None:
        with contextlib.suppress(TimeoutError):
            code = await asyncio.wait_for(child.wait(), 1.0)
    message = f"the MCP server {reason}" + ("" if code is None else f" (exit code {code})")
    empty = settings.empty_required()
    if empty:
        return f"{message}; required variables that are empty: {', '.join(empty)}"
    if settings.required_env:
        message += f"; the required variables ({', '.join(settings.required_env)}) are all set"
    tail = list(child.stderr_tail)[-5:]
    return message + ("; its last stderr lines:\n  " + "\n  ".join(tail) if tail else "; it wrote nothing to stderr")


async def serve(settings: Settings) -> int:
    child = Child(settings.command, max_message_bytes=settings.max_message_bytes)
    config = uvicorn.Config(
        BridgeApp(child, max_message_bytes=settings.max_message_bytes),
        host=settings.host,
        port=settings.port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    serving = asyncio.create_task(server.serve())
    try:
        try:
            await child.start()
        except OSError as exc:
            _say(f"cannot start MCP_COMMAND {settings.command[0]!r}: {exc}")
            return EXIT_HANDSHAKE
        try:
            result = await asyncio.wait_for(child.handshake(), settings.handshake_timeout)
        except ChildGone:
            _say(await _why_not_started(child, settings, "exited before its handshake"))
            return EXIT_HANDSHAKE
        except TimeoutError:
            reason = f"did not answer initialize within {settings.handshake_timeout:g} s"
            _say(await _why_not_started(child, settings, reason))
            return EXIT_HANDSHAKE
        info = result.get("serverInfo") if isinstance(result.get("serverInfo"), dict) else {}
        _say(f"ready: {info.get('name', '?')} {info.get('version', '')} on {settings.host}:{settings.port}")
        exited = asyncio.create_task(child.wait())
        await asyncio.wait({serving, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            _say(f"the MCP server exited (exit code {exited.result()}) after its handshake; stopping")
            return EXIT_CHILD_DIED
        exited.cancel()
        return 0
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, SHUTDOWN_GRACE + 0.3)
        await child.stop()


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _say(str(exc))
        return EXIT_HANDSHAKE
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
