"""notes: a small stdio MCP server kept in memory, the hosted-server catalog's offline example.

``python -m apps.hosting.servers.notes [--require NAME]...`` speaks MCP over stdin/stdout
(the official SDK). With ``--require NAME`` it exits at once, before any handshake, when the
environment variable NAME is empty: how a real server behaves without its credentials.

Imports no Django: it runs as the child of ``python -m bridge``.
"""

from __future__ import annotations

import argparse
import os
import sys

from mcp.server import MCPServer

server = MCPServer("notes", instructions="Keep short notes for this session and search them.")
_notes: list[str] = []


@server.tool()
def add_note(text: str) -> str:
    """Add a note; returns its number."""
    _notes.append(text)
    return f"note {len(_notes)} saved"


@server.tool()
def list_notes() -> list[str]:
    """Every note, oldest first."""
    return list(_notes)


@server.tool()
def search_notes(query: str) -> list[str]:
    """The notes that contain ``query`` (case-insensitive)."""
    return [note for note in _notes if query.lower() in note.lower()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notes")
    parser.add_argument("--require", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    missing = [name for name in args.require if not os.environ.get(name, "").strip()]
    if missing:
        print(f"notes: {', '.join(missing)} is not set", file=sys.stderr)
        return 1
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
