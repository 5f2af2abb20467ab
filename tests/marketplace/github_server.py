"""A local GitHub REST API for tests: replays recorded responses (``data/github/*.json``,
whose README says where each shape comes from) as GitHub would answer them.

Each file is one response: ``{"path": "/repos/owner/repo[/commits|/readme]" or null, "status",
"headers", "body"}``; a file with a path answers ``GET`` of that path (any query, any case, as
GitHub's are case-insensitive), one without is answered only when a test asks for it
(``replay.answer(path, "secondary-rate-limit")``). Like GitHub, the replay answers
``If-None-Match`` with the response's ``ETag`` by ``304 Not Modified`` (which costs no rate
limit), an unknown path by GitHub's 404, and it can count a rate limit down
(``replay.limit(remaining, reset)``): each 200 spends one, and at 0 every call gets the
recorded "API rate limit exceeded" 403. Every request is kept (``replay.requests``).
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.local_http import LocalServer

GITHUB_DATA = Path(__file__).resolve().parent / "data" / "github"


def recorded(name: str) -> dict:
    return json.loads((GITHUB_DATA / f"{name}.json").read_text())


@dataclass(frozen=True)
class Request:
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    status: int  # what it was answered


class GitHubReplay(LocalServer):
    def __init__(self, directory: Path = GITHUB_DATA):
        self.responses: dict[str, dict] = {}
        for file in sorted(directory.glob("*.json")):
            response = json.loads(file.read_text())
            if response.get("path"):
                self.responses[response["path"].lower()] = response
        self.overrides: dict[str, dict] = {}
        self.requests: list[Request] = []
        self.remaining: int | None = None
        self.reset: int | None = None
        self._lock = threading.Lock()

    def answer(self, path: str, name: str, *, headers: dict[str, str] | None = None) -> None:
        """From now on, answer ``path`` with the recorded response ``name``."""
        response = copy.deepcopy(recorded(name))
        response["headers"].update(headers or {})
        self.overrides[path.lower()] = response

    def limit(self, remaining: int, *, reset: datetime) -> None:
        """Count a rate limit down from ``remaining``, resetting at ``reset``."""
        self.remaining, self.reset = remaining, int(reset.timestamp())

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def respond(self, method, url, headers, body):
        with self._lock:
            key = url.path.lower()
            if self.remaining == 0:
                response = recorded("rate-limit-exceeded")
            else:
                response = self.overrides.get(key) or self.responses.get(key) or recorded("not-found")
            status = response["status"]
            # The body is sent as it was decoded into the file, never compressed.
            out = {name: value for name, value in response["headers"].items() if name.lower() != "content-encoding"}
            etag = out.get("ETag")
            if status == 200 and etag and headers.get("if-none-match") == etag:
                status, data = 304, b""
            else:
                data = json.dumps(response["body"]).encode() if response.get("body") is not None else b""
            if self.remaining is not None:
                if status == 200:
                    self.remaining -= 1
                out["X-RateLimit-Remaining"] = str(self.remaining)
                out["X-RateLimit-Reset"] = str(self.reset)
            self.requests.append(Request(path=url.path, query=url.query, headers=headers, status=status))
            return status, out, data
