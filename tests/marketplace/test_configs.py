"""Install configs for each client, from real registry entries (the 2025-12-18 snapshot)."""

from __future__ import annotations

import base64
import json
import shlex
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from apps.marketplace.configs import NoLaunch, entry_key, install_configs
from tests.marketplace.registry_server import SNAPSHOT, entries


@pytest.fixture(scope="module")
def servers() -> list[dict]:
    return [item["server"] for item in entries(SNAPSHOT)]


def _first(servers, predicate):
    return next(server for server in servers if predicate(server))


def _packages(server, kind):
    return [p for p in server.get("packages", []) if p.get("registryType") == kind]


def test_an_npm_server_with_a_secret_gets_placeholders_in_every_client(servers):
    server = _first(
        servers,
        lambda s: (
            s.get("packages")
            and s["packages"][0].get("registryType") == "npm"
            and s["packages"][0].get("version") not in (None, "latest")
            and any(v.get("isSecret") for v in s["packages"][0].get("environmentVariables", []))
            and not s["packages"][0].get("runtimeArguments")
            and not s["packages"][0].get("packageArguments")
        ),
    )
    package = server["packages"][0]
    secret = next(v["name"] for v in package["environmentVariables"] if v.get("isSecret"))
    configs = install_configs(server)
    key = entry_key(server["name"])
    ref = f"{package['identifier']}@{package['version']}"

    assert configs.cursor["mcpServers"][key]["args"] == ["-y", ref]
    assert configs.cursor["mcpServers"][key]["env"][secret] == f"${{env:{secret}}}"
    assert configs.windsurf["mcpServers"][key]["env"][secret] == f"${{env:{secret}}}"
    assert configs.claude_code_json["mcpServers"][key] == {
        "type": "stdio",
        "command": "npx",
        "args": ["-y", ref],
        "env": {v["name"]: f"${{{v['name']}}}" for v in package["environmentVariables"]},
    }
    assert configs.claude_desktop["mcpServers"][key]["env"][secret] == f"<{secret}>"
    vscode = configs.vscode
    assert vscode["servers"][key]["env"][secret] == f"${{input:{secret.lower().replace('_', '-')}}}"
    prompt = next(i for i in vscode["inputs"] if i["id"] == secret.lower().replace("_", "-"))
    assert prompt["password"] is True and prompt["type"] == "promptString"

    # The Claude Code command: the shell leaves the placeholder for Claude Code to read.
    words = shlex.split(configs.claude_code_command)
    assert words[:5] == ["claude", "mcp", "add", "--transport", "stdio"]
    assert f"{secret}=${{{secret}}}" in words and words[-3:] == ["npx", "-y", ref] and words[-4] == "--"

    # Cursor's deeplink carries the inner entry, base64 of its JSON.
    link = urlsplit(configs.cursor_deeplink)
    assert (link.scheme, link.netloc, link.path) == ("cursor", "anysphere.cursor-deeplink", "/mcp/install")
    query = parse_qs(link.query)
    assert query["name"] == [key]
    assert json.loads(base64.b64decode(query["config"][0])) == configs.cursor["mcpServers"][key]
    # VS Code's install URL: the whole query is one JSON object with its name and inputs.
    assert configs.vscode_install_url.startswith("vscode:mcp/install?")
    payload = json.loads(unquote(configs.vscode_install_url.split("?", 1)[1]))
    assert payload["name"] == key and payload["inputs"] == vscode["inputs"] and payload["command"] == "npx"


def test_pypi_oci_and_unpinned_packages(servers):
    pypi = _first(servers, lambda s: (s.get("packages") or [{}])[0].get("registryType") == "pypi")
    package = pypi["packages"][0]
    args = install_configs(pypi).claude_code_json["mcpServers"][entry_key(pypi["name"])]["args"]
    assert install_configs(pypi).launch.command == "uvx"
    assert (
        f"{package['identifier']}=={package['version']}" if package.get("version") else package["identifier"]
    ) in args

    oci = _first(
        servers,
        lambda s: (
            (s.get("packages") or [{}])[0].get("registryType") == "oci" and s["packages"][0].get("environmentVariables")
        ),
    )
    launch = install_configs(oci).launch
    names = [v["name"] for v in oci["packages"][0]["environmentVariables"]]
    assert launch.command == "docker" and launch.args[:3] == ("run", "-i", "--rm")
    assert all(("-e", name) in zip(launch.args, launch.args[1:], strict=False) for name in names)
    assert launch.args[len(names) * 2 + 3] == oci["packages"][0]["identifier"]

    latest = _first(servers, lambda s: (s.get("packages") or [{}])[0].get("version") == "latest")
    assert install_configs(latest).launch.args[-1] == latest["packages"][0]["identifier"]  # "@latest" not pinned


def test_a_remote_with_a_secret_header_is_never_prefilled(servers):
    server = _first(
        servers,
        lambda s: (
            not s.get("packages")
            and any(h.get("isSecret") for r in s.get("remotes", []) for h in r.get("headers", []))
            and s["remotes"][0].get("type") == "streamable-http"
        ),
    )
    remote = server["remotes"][0]
    header = next(h for h in remote["headers"] if h.get("isSecret"))
    configs = install_configs(server)
    key = entry_key(server["name"])
    cursor_headers = configs.cursor["mcpServers"][key]["headers"]
    assert configs.cursor["mcpServers"][key]["url"] == remote["url"]
    assert "${env:" in cursor_headers[header["name"]]
    assert configs.windsurf["mcpServers"][key]["serverUrl"] == remote["url"]
    assert configs.claude_code_json["mcpServers"][key]["type"] == "http"
    assert "${" in configs.claude_code_json["mcpServers"][key]["headers"][header["name"]]
    vscode = configs.vscode
    assert vscode["servers"][key]["type"] == "http" and "${input:" in vscode["servers"][key]["headers"][header["name"]]
    assert all(prompt["password"] for prompt in vscode["inputs"])
    # Claude Desktop reaches remotes through mcp-remote, with the header from its env.
    desktop = configs.claude_desktop["mcpServers"][key]
    assert desktop["command"] == "npx" and desktop["args"][:3] == ["-y", "mcp-remote@0.15.1", remote["url"]]
    assert all(" " not in arg for arg in desktop["args"])  # Windows clients split arguments at spaces
    words = shlex.split(configs.claude_code_command)
    assert words[:7] == ["claude", "mcp", "add", "--transport", "http", key, remote["url"]]


def test_every_entry_of_the_snapshot_gets_configs_or_says_why_not(servers):
    made, none = 0, []
    for server in servers:
        try:
            configs = install_configs(server)
        except NoLaunch as exc:
            none.append(str(exc))
            continue
        made += 1
        for value in (
            configs.claude_desktop,
            configs.claude_code_json,
            configs.cursor,
            configs.vscode,
            configs.windsurf,
        ):
            json.dumps(value)
        key = configs.launch.key
        assert key and all(c.isalnum() or c in "-_" for c in key)
    # Some entries offer only mcpb bundles or packages with an HTTP transport of their own.
    assert made > 0.9 * len(servers), (made, none[:5])
    assert all("no package a client can start and no remote URL" in reason for reason in none)


def test_nothing_to_start_is_a_clear_refusal():
    with pytest.raises(NoLaunch, match="acme/x: no package"):
        install_configs({"name": "acme/x", "packages": [{"registryType": "mcpb", "identifier": "https://x/y.mcpb"}]})
