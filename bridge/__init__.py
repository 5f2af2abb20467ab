"""bridge: serves one stdio MCP server over HTTP, inside its hosted container.

Contract (``python -m bridge``):

* reads ``MCP_COMMAND`` (split with ``shlex.split``; no shell), starts it as a child with
  the container's environment, and does the MCP handshake with it once (``initialize`` +
  ``notifications/initialized``);
* serves, on ``BRIDGE_HOST``:``BRIDGE_PORT`` (``0.0.0.0``:``8080``): ``/mcp``, the
  standard Streamable HTTP endpoint (2025 revisions), so the gateway treats a hosted
  instance as an ordinary upstream; ``POST /tools/list`` and ``POST /tools/call``; and
  ``GET /healthz``, 200 only after the handshake and while the child lives;
* multiplexes concurrent requests over the one stdio pipe (``bridge.mux``): ids and
  progress tokens rewritten, each response and notification routed to its caller, no
  global lock; requests from the child reach the calling client when that is unambiguous
  and the client declared the capability, else the child gets a JSON-RPC error at once;
* passes the child's stderr to its own, line by line;
* exits 2 when the child exits (or stops answering) before its handshake, naming the
  empty variables among ``MCP_REQUIRED_ENV`` (the likely cause) or quoting its last
  stderr lines; exits 3 within a second when the child dies later (the instance is then
  marked failed); exits 0 on SIGTERM or SIGINT, after stopping the child.

It imports no Django: only ``relay``'s protocol constants, the MCP types, and uvicorn.
The container runs it as a non-root user.
"""
