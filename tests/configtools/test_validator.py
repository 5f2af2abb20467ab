"""The validator on real configs: the docs' examples and what the marketplace generates for
real registry entries validate; each kind of mistake is reported where it is, with a fix."""

from __future__ import annotations

import json

import pytest

from apps.configtools import clients, validator
from apps.marketplace.configs import NoLaunch, install_configs
from tests.configtools.conftest import AIRTABLE, CLEAN, DIALER, client_of, load

pytestmark = pytest.mark.django_db


def problems(report, severity=None):
    return [(p.path, p.message) for p in report.problems if severity is None or p.severity == severity]


def errors(report):
    return problems(report, validator.ERROR)


@pytest.mark.parametrize("path", CLEAN, ids=[p.stem for p in CLEAN])
def test_clean_configs_have_no_errors_or_warnings_but_unknown_packages(path):
    report = validator.validate(path.read_text(), client=client_of(path))
    assert report.valid, errors(report)
    warnings = [m for _, m in problems(report, validator.WARNING) if "not in the marketplace index" not in m]
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "client", "reason"),
    [
        ("vscode-stdio", "vscode", "top-level `servers`"),
        ("windsurf-remote", "windsurf", "`serverUrl`"),
        ("claude-code-mcp", "claude-code", "declare `type`"),
        ("cursor-remote", "cursor", "`${env:…}`"),
        ("claude-desktop-stdio", "claude-desktop", "stdio entries only"),
    ],
)
def test_the_client_is_detected_with_a_reason(name, client, reason):
    report = validator.validate((CLEAN[0].parent / f"{name}.json").read_text())
    assert (report.client, report.detected) == (client, True)
    assert reason in report.reason


def test_the_client_can_be_chosen_and_is_then_checked_against():
    text = (CLEAN[0].parent / "cursor-remote.json").read_text()
    report = validator.validate(text, client="vscode")
    assert (report.client, report.detected, report.valid) == ("vscode", False, False)
    assert ("$.servers", "`servers` is required here.") in errors(report)
    with pytest.raises(ValueError, match="Unknown client"):
        validator.validate(text, client="emacs")


def test_a_syntax_error_says_its_line_and_column():
    text = '{\n  "mcpServers": {\n    "demo": {"command": "npx" "args": ["-y", "pkg@1.0.0"]}\n  }\n}\n'
    report = validator.validate(text)
    (problem,) = report.problems
    assert (problem.severity, problem.line, problem.column) == ("error", 3, 31)
    assert "line 3, column 31" in problem.message and problem.fix


def test_comments_and_trailing_commas_are_fine_for_vs_code_only():
    jsonc = (
        '{\n  // my servers\n  "servers": {\n'
        '    "demo": {"type": "stdio", "command": "npx", "args": ["-y", "pkg@1.0.0"],},\n  },\n}\n'
    )
    report = validator.validate(jsonc)
    assert report.client == "vscode" and report.valid
    (info,) = problems(report, validator.INFO)[:1]
    assert "VS Code reads mcp.json as JSONC" in info[1]

    desktop = '{\n  "mcpServers": {\n    "demo": {"command": "npx", "args": ["-y", "pkg@1.0.0"]}, // mine\n  }\n}\n'
    report = validator.validate(desktop, client="claude-desktop")
    assert not report.valid
    (problem,) = [p for p in report.problems if p.severity == "error"]
    assert (problem.line, problem.column) == (3, 60)  # the first of the two
    assert "a trailing comma" in problem.message and "Claude Desktop does not accept" in problem.message


def test_schema_errors_and_unknown_keys_have_json_paths():
    config = {
        "servers": {
            "demo": {"type": "websocket", "command": "npx", "args": "-y pkg@1.0.0", "enabled": True},
        }
    }
    report = validator.validate(json.dumps(config))
    found = {(p.severity, p.path) for p in report.problems}
    assert ("error", "$.servers.demo.type") in found
    assert ("error", "$.servers.demo.args") in found
    assert ("warning", "$.servers.demo.enabled") in found


def test_a_remote_in_claude_desktops_file_is_an_error_that_names_the_way_out():
    report = validator.validate(
        json.dumps({"mcpServers": {"api": {"url": "https://mcp.example.com/mcp"}}}), client="claude-desktop"
    )
    by_path = {p.path: p for p in report.problems if p.severity == "error"}
    assert by_path["$.mcpServers.api.url"].severity == "error"
    assert "mcp-remote" in by_path["$.mcpServers.api.url"].fix
    assert "No `command`" in by_path["$.mcpServers.api"].message


def test_missing_command_or_url_and_transports_that_do_not_match():
    config = {
        "mcpServers": {
            "empty": {"env": {"A": "b"}},
            "both": {"type": "http", "command": "npx", "url": "https://a.example.com/mcp"},
            "sse-at-mcp": {"type": "sse", "url": "https://b.example.com/mcp"},
            "http-at-sse": {"type": "http", "url": "https://c.example.com/sse"},
            "stdio-url": {"type": "stdio", "url": "https://d.example.com/mcp"},
            "untyped": {"url": "https://e.example.com/mcp"},
        }
    }
    report = validator.validate(json.dumps(config), client="claude-code")
    messages = {(p.severity, p.path): p.message for p in report.problems}
    assert "Neither `command`" in messages[("error", "$.mcpServers.empty")]
    assert "Both `command` and `url`" in messages[("error", "$.mcpServers.both")]
    assert "starts a command" in messages[("error", "$.mcpServers.both.type")]
    assert "ends in /mcp" in messages[("warning", "$.mcpServers.sse-at-mcp.type")]
    assert "ends in /sse" in messages[("warning", "$.mcpServers.http-at-sse.type")]
    assert "`type` is stdio" in messages[("error", "$.mcpServers.stdio-url.type")]
    assert "without `type`" in messages[("warning", "$.mcpServers.untyped")]


def test_placeholders_in_another_clients_syntax_and_undeclared_inputs():
    vscode = {
        "servers": {
            "a": {
                "type": "http",
                "url": "https://a.example.com/mcp",
                "headers": {"Authorization": "Bearer ${input:token}"},
            }
        }
    }
    report = validator.validate(json.dumps(vscode))
    assert (
        "$.servers.a.headers.Authorization",
        "`${input:token}` names an input that `inputs` does not declare.",
    ) in errors(report)

    cursor = {"mcpServers": {"a": {"command": "npx", "args": ["-y", "pkg@1.0.0"], "env": {"KEY": "${KEY}"}}}}
    report = validator.validate(json.dumps(cursor), client="cursor")
    (problem,) = [p for p in report.problems if p.path == "$.mcpServers.a.env.KEY"]
    assert problem.severity == "warning" and "Cursor does not replace `${KEY}`" in problem.message
    assert "`${env:KEY}`" in problem.fix


def test_a_value_that_looks_like_a_secret_is_a_warning_that_does_not_repeat_it():
    case = load(CLEAN[0].parent.parent / "rules" / "secret-stripe.json")["positive"]
    report = validator.validate(json.dumps(case), client="cursor")
    (problem,) = [p for p in report.problems if "looks like a secret" in p.message]
    assert problem.path == "$.mcpServers.stripe.args[3]"
    assert "sk_live_51" not in json.dumps(report.as_dict()) and "sk_l…" in problem.message


def test_too_large_a_config_is_refused():
    report = validator.validate(" " * (validator.MAX_BYTES + 1))
    assert not report.valid and "larger than 256 KB" in report.problems[0].message


def test_not_an_mcp_config():
    report = validator.validate('{"name": "my-app", "version": "1.0.0"}')
    assert report.client is None and not report.valid
    assert "Not an MCP client config" in report.problems[0].message


# --- against the marketplace index (real registry entries) --------------------------------


def _airtable(args, env=None):
    entry = {"command": "npx", "args": args}
    if env is not None:
        entry["env"] = env
    return json.dumps({"mcpServers": {"airtable": entry}})


def test_a_package_in_the_index_at_its_version_with_its_variables_is_fine(real_index):
    report = validator.validate(
        _airtable(["-y", "airtable-mcp-server@1.9.6"], {"AIRTABLE_API_KEY": "<AIRTABLE_API_KEY>"})
    )
    assert report.problems == []


def test_a_package_not_in_the_index_or_not_at_that_version(real_index):
    report = validator.validate(_airtable(["-y", "airtable-mcp-servr@1.9.6"], {"AIRTABLE_API_KEY": "x"}))
    assert problems(report) == [
        ("$.mcpServers.airtable.args[1]", "The npm package `airtable-mcp-servr` is not in the marketplace index.")
    ]
    report = validator.validate(_airtable(["-y", "airtable-mcp-server@1.8.0"], {"AIRTABLE_API_KEY": "x"}))
    ((path, message),) = problems(report)
    assert path == "$.mcpServers.airtable.args[1]"
    assert (
        message
        == "`airtable-mcp-server` is not in the index at version 1.8.0 (known: 1.9.6, 1.9.5, 1.9.4, 1.7.3, 1.7.2)."
    )
    assert "1.9.6" in report.problems[0].fix


def test_a_variable_the_server_needs_but_the_config_lacks(real_index):
    report = validator.validate(_airtable(["-y", "airtable-mcp-server@1.9.6"]))
    ((path, message),) = problems(report)
    assert path == "$.mcpServers.airtable.env"
    assert message.startswith(f"{AIRTABLE} needs `AIRTABLE_API_KEY`")
    assert "placeholder" in report.problems[0].fix


def test_a_remote_is_found_by_its_url(real_index):
    known = json.dumps({"mcpServers": {"dialer": {"url": "https://getdialer.app/mcp"}}})
    assert validator.validate(known, client="cursor").problems == []
    unknown = json.dumps({"mcpServers": {"other": {"url": "https://mcp.example.com/mcp"}}})
    assert problems(validator.validate(unknown, client="cursor")) == [
        ("$.mcpServers.other.url", "This remote is not in the marketplace index.")
    ]
    assert DIALER


# --- the round trip: whatever the marketplace writes, the validator accepts ----------------

SPELLINGS = {
    "claude-desktop": lambda c: c.claude_desktop,
    "claude-code": lambda c: c.claude_code_json,
    "cursor": lambda c: c.cursor,
    "vscode": lambda c: c.vscode,
    "windsurf": lambda c: c.windsurf,
}


def _undeclared_inputs(report) -> bool:
    return any("names an input that `inputs` does not declare" in p.message for p in report.problems)


def test_every_config_the_marketplace_generates_for_real_entries_validates(snapshot):
    checked, undeclared = 0, set()
    latest = [
        item["server"] for item in snapshot if item["_meta"]["io.modelcontextprotocol.registry/official"]["isLatest"]
    ]
    for document in latest:
        try:
            configs = install_configs(document)
        except NoLaunch:
            continue
        for client, spell in SPELLINGS.items():
            report = validator.validate(json.dumps(spell(configs), indent=2), client=client)
            if client == "vscode" and _undeclared_inputs(report):
                undeclared.add(document["name"])
                continue
            assert report.valid, (document["name"], client, errors(report))
            checked += 1
    assert checked > 4000
    # apps.marketplace.configs.vscode turns a positional argument's valueHint into
    # ${input:hint} without declaring that input (reported to the marketplace's owner).
    assert len(undeclared) < 20, sorted(undeclared)


def test_vs_code_configs_declare_every_input_they_use(snapshot):
    for item in snapshot:
        try:
            configs = install_configs(item["server"])
        except NoLaunch:
            continue
        report = validator.validate(json.dumps(configs.vscode), client="vscode")
        assert not _undeclared_inputs(report), item["server"]["name"]


def test_detection_tells_the_spellings_apart_where_they_differ(snapshot):
    document = next(
        item["server"]
        for item in snapshot
        if item["server"].get("remotes")
        and not item["server"].get("packages")
        and not item["server"]["remotes"][0].get("headers")
    )
    configs = install_configs(document)
    assert clients.detect(configs.vscode).client == "vscode"
    assert clients.detect(configs.windsurf).client == "windsurf"
    assert clients.detect(configs.claude_code_json).client == "claude-code"
    assert clients.detect(configs.cursor).client == "cursor"
    assert clients.detect(configs.claude_desktop).client == "claude-desktop"


def test_through_the_mcp_remote_bridge_the_remote_is_looked_up_not_the_bridge(real_index):
    def bridged(url):
        return json.dumps({"mcpServers": {"dialer": {"command": "npx", "args": ["-y", "mcp-remote@0.1.29", url]}}})

    assert validator.validate(bridged("https://getdialer.app/mcp"), client="claude-desktop").problems == []
    assert problems(validator.validate(bridged("https://mcp.example.com/mcp"), client="claude-desktop")) == [
        ("$.mcpServers.dialer.args[2]", "This remote is not in the marketplace index.")
    ]
