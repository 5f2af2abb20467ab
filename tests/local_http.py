"""A local HTTP server for tests that stand in for an API we cannot reach (a registry,
GitHub, the Anthropic API): the subclass says what to answer, this serves it."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import SplitResult, urlsplit

# This server frames every body itself (Content-Length, never chunked), so a subclass's
# headers for either, say from a recorded response, would contradict what is sent.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


class LocalServer(ABC):
    """``with Subclass(...) as server:`` serves ``server.url`` (``http://127.0.0.1:<port>``,
    no trailing slash) until the block ends; every GET and POST is answered by ``respond``."""

    url: str

    @abstractmethod
    def respond(
        self, method: str, url: SplitResult, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: ``headers`` has lower-case names; return (status, headers, body)."""

    def __enter__(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, out, body = server.respond(method, urlsplit(self.path), headers, self.rfile.read(length))
                self.send_response(status)
                for name, value in out.items():
                    if name.lower() not in _FRAMING:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()
