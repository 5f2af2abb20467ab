"""relay: MCPNest's MCP gateway runtime, without Django.

It speaks MCP to clients' requests and to upstream servers in both protocol eras (the
2025 revisions with sessions, and the stateless 2026-07-28), aggregates and namespaces
upstream tools, applies the workspace's policy, limits each tenant, and puts every call on
record. The Django project (``apps.gateway``) hosts it behind ``/api/gw/<slug>``; the
hosted-server bridge (``bridge/``) reuses its protocol code.

Modules, bottom up:

* ``config``: settings, snapshots (tokens, workspaces, servers) and ``Hooks``, the
  interface through which the host gives the relay what it needs: load a token, load a
  workspace, read what changed, record calls, note token use, observe a pin, mark a
  server unhealthy (see ``config.Hooks`` for each one's contract);
* ``protocol``: JSON-RPC codes and the client capabilities relayed (what the bridge imports);
* ``http1``: a lean HTTP/1.1 transport under httpx2 for upstream calls;
* ``limits``: per-workspace and per-upstream concurrency slots;
* ``upstream``: the MCP client side (``UpstreamPool``, ``Upstream``);
* ``catalog``: building a workspace's aggregated, namespaced, pin-checked catalog;
* ``snapshots``, ``shared``, ``spool``, ``sessions``: caches with invalidation, rate
  limits on Redis or memory, the audit spool, sealed session ids;
* ``engine``: the MCP methods; ``gateway``: the one object that owns all of the above.

Nothing here imports Django (``tests/relay/test_layering.py`` checks).
"""
