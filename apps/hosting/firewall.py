"""The Docker host's egress rules for hosted instances (``manage.py hosting_firewall``).

Every workspace network without egress has a Linux bridge named ``mcpbr…``
(``runtimes.bridge_name``), so one set of rules covers them all:

* FORWARD (through Docker's ``DOCKER-USER`` chain): anything *routed* out of an ``mcpbr``
  bridge (to the internet, another workspace's bridge, the host's other networks) is
  rejected; frames *bridged* inside one bridge (instances of the same workspace) pass;
* INPUT: containers may not open connections to the host itself (its gateway address, or
  services bound to 0.0.0.0); replies to connections the host opened pass, so the
  gateway's calls to a published 127.0.0.1 port (host → docker-proxy → container) work;
* the same for IPv6.

Instances allowed out (``Instance.egress = open``) sit on their workspace's ``mcpeg…``
bridge, which these rules leave alone. Idempotent; run it after dockerd starts (its
tables are rebuilt when it restarts). Needs root and iptables.
"""

from __future__ import annotations

import shutil
import subprocess

BRIDGES = "mcpbr+"
REJECT = ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
REJECT6 = ["-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"]


class FirewallError(Exception):
    pass


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FirewallError(f"No {name} on PATH: apt-get install iptables.")
    return path


def _ok(tool: str, *args: str) -> bool:
    return subprocess.run([_tool(tool), "-w", *args], capture_output=True).returncode == 0  # noqa: S603


def _must(tool: str, *args: str) -> None:
    result = subprocess.run([_tool(tool), "-w", *args], capture_output=True, text=True)  # noqa: S603
    if result.returncode != 0:
        raise FirewallError(f"{tool} {' '.join(args)}: {result.stderr.strip()}")


def _chain(tool: str, name: str) -> None:
    """Create the chain, or empty it."""
    if not _ok(tool, "-N", name):
        _must(tool, "-F", name)


def _hook(tool: str, chain: str, *rule: str) -> None:
    if not _ok(tool, "-C", chain, *rule):
        _must(tool, "-I", chain, "1", *rule)


def add() -> None:
    _chain("iptables", "MCP-EGRESS")
    _must("iptables", "-A", "MCP-EGRESS", "-i", BRIDGES, "-m", "physdev", "--physdev-is-bridged", "-j", "RETURN")
    _must("iptables", "-A", "MCP-EGRESS", "-i", BRIDGES, *REJECT)
    # DOCKER-USER exists when dockerd manages iptables; FORWARD itself when it does not.
    _hook("iptables", "DOCKER-USER" if _ok("iptables", "-n", "-L", "DOCKER-USER") else "FORWARD", "-j", "MCP-EGRESS")

    _chain("iptables", "MCP-INPUT")
    _must("iptables", "-A", "MCP-INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN")
    _must("iptables", "-A", "MCP-INPUT", *REJECT)
    _hook("iptables", "INPUT", "-i", BRIDGES, "-j", "MCP-INPUT")

    _chain("ip6tables", "MCP-INPUT6")
    _must("ip6tables", "-A", "MCP-INPUT6", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN")
    _must("ip6tables", "-A", "MCP-INPUT6", *REJECT6)
    _hook("ip6tables", "INPUT", "-i", BRIDGES, "-j", "MCP-INPUT6")
    _hook("ip6tables", "FORWARD", "-i", BRIDGES, *REJECT6)


def remove() -> None:
    for tool, chain, rule in (
        ("iptables", "DOCKER-USER", ["-j", "MCP-EGRESS"]),
        ("iptables", "FORWARD", ["-j", "MCP-EGRESS"]),
        ("iptables", "INPUT", ["-i", BRIDGES, "-j", "MCP-INPUT"]),
        ("ip6tables", "INPUT", ["-i", BRIDGES, "-j", "MCP-INPUT6"]),
        ("ip6tables", "FORWARD", ["-i", BRIDGES, *REJECT6]),
    ):
        while _ok(tool, "-D", chain, *rule):
            pass
    for tool, chain in (("iptables", "MCP-EGRESS"), ("iptables", "MCP-INPUT"), ("ip6tables", "MCP-INPUT6")):
        if _ok(tool, "-F", chain):
            _ok(tool, "-X", chain)


def installed() -> bool:
    """Whether the rules are in place and hooked in."""
    forward = "DOCKER-USER" if _ok("iptables", "-n", "-L", "DOCKER-USER") else "FORWARD"
    return (
        _ok("iptables", "-C", forward, "-j", "MCP-EGRESS")
        and _ok("iptables", "-C", "MCP-EGRESS", "-i", BRIDGES, *REJECT)
        and _ok("iptables", "-C", "INPUT", "-i", BRIDGES, "-j", "MCP-INPUT")
        and _ok("iptables", "-C", "MCP-INPUT", *REJECT)
    )


def show() -> str:
    lines = []
    for tool in ("iptables", "ip6tables"):
        result = subprocess.run([_tool(tool), "-w", "-S"], capture_output=True, text=True)  # noqa: S603
        lines += [f"{tool} {line}" for line in result.stdout.splitlines() if "MCP" in line or "mcpbr" in line]
    return "\n".join(lines)
