"""What reaches clients outside their calls' answers: a 2025-era session's GET stream and a
2026-07-28 client's subscriptions/listen stream, and which of them hear which change.

In this process only: a 2025 client's GET stream and its calls should reach the same
gateway process (route by ``Mcp-Session-Id``); a listen stream hears every change of its
workspace's upstreams that this process watches (``engine.Engine._watch``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY

BACKLOG = 1000  # messages a stream holds for a client that reads slowly; beyond, they are dropped

Session = tuple[int, str]  # (workspace id, the session's random part)

# The list changes a listen stream may ask for, by its filter's name.
LIST_CHANGES = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}


def _offer(queue: asyncio.Queue, message: dict[str, Any]) -> None:
    if not queue.full():  # a client that does not read loses notifications, not our memory
        queue.put_nowait(message)


@dataclass(eq=False)
class Listener:
    """One 2026-07-28 client's subscriptions/listen stream: what it asked to hear."""

    workspace_id: int
    server_ids: frozenset[int]
    subscription_id: Any
    methods: frozenset[str]  # the list changes it asked for
    uris: frozenset[str]  # the resources whose updates it asked for
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=BACKLOG))

    def acknowledgement(self) -> dict[str, Any]:
        honored: dict[str, Any] = {key: True for method, key in LIST_CHANGES.items() if method in self.methods}
        if self.uris:
            honored["resourceSubscriptions"] = sorted(self.uris)
        return self.frame("notifications/subscriptions/acknowledged", {"notifications": honored})

    def frame(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        meta = {SUBSCRIPTION_ID_META_KEY: self.subscription_id}
        return {"jsonrpc": "2.0", "method": method, "params": {**params, "_meta": meta}}

    def send(self, method: str, params: dict[str, Any]) -> None:
        _offer(self.queue, self.frame(method, params))


class Streams:
    def __init__(self) -> None:
        self._sessions: dict[Session, set[asyncio.Queue]] = {}  # open GET streams
        self._subscribers: dict[tuple[int, str], set[Session]] = {}  # (server id, uri) -> sessions
        self._listeners: set[Listener] = set()

    # --- 2025 GET streams ----------------------------------------------------------------

    def open(self, session: Session) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=BACKLOG)
        self._sessions.setdefault(session, set()).add(queue)
        return queue

    def close(self, session: Session, queue: asyncio.Queue) -> None:
        queues = self._sessions.get(session, set())
        queues.discard(queue)
        if not queues:
            self._sessions.pop(session, None)

    def push(self, session: Session, message: dict[str, Any]) -> None:
        """Put a message on a session's GET streams; LookupError if it has none open."""
        queues = self._sessions.get(session)
        if not queues:
            raise LookupError("the session has no GET stream open")
        for queue in queues:
            _offer(queue, message)

    def subscribe(self, session: Session, server_id: int, uri: str) -> None:
        self._subscribers.setdefault((server_id, uri), set()).add(session)

    def unsubscribe(self, session: Session, server_id: int, uri: str) -> None:
        self._subscribers.get((server_id, uri), set()).discard(session)

    # --- 2026-07-28 listen streams ----------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def stop_listening(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    # --- changes -----------------------------------------------------------------------------

    def resource_updated(self, server_id: int, uri: str) -> None:
        message = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}
        for session in self._subscribers.get((server_id, uri), ()):
            for queue in self._sessions.get(session, ()):
                _offer(queue, message)
        for listener in self._listeners:
            if server_id in listener.server_ids and uri in listener.uris:
                listener.send("notifications/resources/updated", {"uri": uri})

    def list_changed(self, server_id: int, method: str, workspace_ids: list[int]) -> None:
        """An upstream's list changed: the GET streams of those workspaces' sessions hear it,
        and the listen streams that asked for that kind of change."""
        workspaces = set(workspace_ids)
        for (workspace_id, _), queues in self._sessions.items():
            if workspace_id in workspaces:
                for queue in queues:
                    _offer(queue, {"jsonrpc": "2.0", "method": method})
        for listener in self._listeners:
            if server_id in listener.server_ids and method in listener.methods:
                listener.send(method, {})
