"""The scanner on the corpus: every rule fires on its positive case and nothing fires on its
negative one; the clean configs (the docs' examples, configs as people write them, and what
the marketplace generates for every real registry entry) give no false positive."""

from __future__ import annotations

import copy
import json

import pytest

from apps.configtools import scanner
from apps.marketplace.configs import NoLaunch, install_configs
from tests.configtools.conftest import CLEAN, RULE_CASES, load, seed_index

pytestmark = pytest.mark.django_db


def rules_of(findings) -> set[str]:
    return {finding.rule for finding in findings}


def test_every_rule_has_a_corpus_case_and_every_case_a_rule():
    assert set(RULE_CASES) == set(scanner.RULES)


@pytest.mark.parametrize("rule", sorted(scanner.RULES))
def test_the_rule_fires_on_its_positive_case_and_nothing_fires_on_its_negative(rule):
    case = load(RULE_CASES[rule])
    seed_index(case.get("index", []))
    if "positive_tools" in case:
        positive = scanner.scan(case["config"], tools=case["positive_tools"])
        negative = scanner.scan(case["config"], tools=case["negative_tools"])
    else:
        positive = scanner.scan(case["positive"])
        negative = scanner.scan(json.dumps(case["negative"]))  # as text, as pasted
    assert rule in rules_of(positive)
    assert negative == []
    finding = next(f for f in positive if f.rule == rule)
    assert finding.path.startswith("$.") and finding.why and finding.fix
    assert finding.severity == scanner.RULES[rule].severity


@pytest.mark.parametrize("path", CLEAN, ids=[p.stem for p in CLEAN])
def test_clean_configs_have_no_findings(path):
    assert scanner.scan(path.read_text()) == []


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_findings_point_at_the_value_and_never_repeat_the_secret():
    case = load(RULE_CASES["secret-github"])["positive"]
    (finding,) = [f for f in scanner.scan(case) if f.rule == "secret-github"]
    assert finding.path == "$.mcpServers.github.env.GITHUB_PERSONAL_ACCESS_TOKEN"
    assert finding.evidence == "ghp_…"
    for rule in [r for r in scanner.RULES if r.startswith("secret-")]:
        config = load(RULE_CASES[rule])["positive"]
        text = json.dumps([f.as_dict() for f in scanner.scan(config)])
        secrets = [hit[1] for value in _strings(config) if (hit := scanner.secret_in(value, named_secret=True))]
        assert secrets, rule
        for secret in secrets:
            assert secret not in text and secret[4:12] not in text, rule


@pytest.mark.parametrize(
    "value",
    [
        "${input:api-key}",
        "${env:GITHUB_TOKEN}",
        "${GITHUB_TOKEN}",
        "Bearer ${TOKEN}",
        "<YOUR_KEY>",
        "{api_key}",
        "sk-your-openai-api-key-here",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "%API_KEY%",
        "$API_KEY",
    ],
)
def test_placeholders_are_not_secrets(value):
    assert scanner.secret_in(value, named_secret=True) is None


def test_a_key_in_a_url_or_a_flag_is_found():
    config = {
        "mcpServers": {
            "a": {"url": "https://mcp.example.com/mcp?key=AIzaSyB3k9Xq2Lm7Pd4Rt8Vw1Zn6Hc0Jf5Gs2Ae"},
            "b": {"command": "uvx", "args": ["tool==1.0", "--api-key", "q8Zr2LxV9mTp4Kw7Ns3Yb6Hd"]},
        }
    }
    found = {(f.rule, f.path) for f in scanner.scan(config, index=False)}
    assert ("secret-google", "$.mcpServers.a.url") in found
    assert ("secret-high-entropy", "$.mcpServers.b.args[2]") in found


def test_tools_known_to_the_index_are_checked_too():
    poisoned = load(RULE_CASES["tool-ignore-previous"])["positive_tools"]
    document = {
        "name": "io.github.acme/notes",
        "version": "1.0.0",
        "packages": [{"registryType": "npm", "identifier": "notes-mcp", "version": "1.0.0"}],
    }
    seed_index([{"name": "io.github.acme/notes", "version": "1.0.0", "document": document, "tools": poisoned}])
    config = load(RULE_CASES["tool-ignore-previous"])["config"]
    (finding,) = scanner.scan(config)
    assert finding.rule == "tool-ignore-previous"
    assert finding.path == '$.mcpServers.notes["(index)"].tools[0].description'
    assert scanner.scan(config, index=False) == []


# --- real registry entries ----------------------------------------------------------------

# What a generated config may rightly be told off for: the registry entry itself is unpinned
# (no version, "latest", an untagged image; or runtime arguments that name the package
# again), or asks for the host network.
EXPECTED_ON_GENERATED = {"unpinned-package", "unpinned-image", "docker-host-namespace"}


def _spellings(configs):
    return {
        "claude-desktop": configs.claude_desktop,
        "claude-code": configs.claude_code_json,
        "cursor": configs.cursor,
        "vscode": configs.vscode,
        "windsurf": configs.windsurf,
    }


def _pinned(document: dict) -> bool:
    launch = install_configs(document).launch
    if launch.remote:
        return True
    package = next(p for p in document.get("packages", []) if isinstance(p, dict))
    if package.get("registryType") == "oci":
        return ":" in package["identifier"].rsplit("/", 1)[-1] and not package["identifier"].endswith(":latest")
    return package.get("version") not in (None, "", "latest")


def _pinned_reference(document: dict) -> str:
    package = next(p for p in document.get("packages", []) if isinstance(p, dict))
    spelling = {"npm": "{}@{}", "pypi": "{}=={}", "nuget": "{}@{}"}.get(package["registryType"])
    return spelling.format(package["identifier"], package.get("version")) if spelling else package["identifier"]


def test_generated_configs_of_every_real_entry_raise_no_false_positive(snapshot):
    checked = 0
    for item in snapshot:
        document = item["server"]
        try:
            configs = install_configs(document)
        except NoLaunch:
            continue
        runtime = json.dumps(document.get("packages", [{}])[0].get("runtimeArguments", []))
        for client, config in _spellings(configs).items():
            findings = scanner.scan(config, index=False)
            assert rules_of(findings) <= EXPECTED_ON_GENERATED, (document["name"], client, findings)
            for finding in findings:
                if finding.rule == "docker-host-namespace":
                    assert "host" in runtime
                else:
                    # Unpinned in the registry, or its runtime arguments put something else
                    # where the package goes (the package again at @latest, `run` again).
                    entry = next(iter(config[scanner.entries(config)[0].servers_key].values()))
                    flagged = entry["args"][int(finding.path.rsplit("[", 1)[1].rstrip("]"))]
                    assert not _pinned(document) or flagged != _pinned_reference(document), finding
            checked += 1
    assert checked > 4000


def test_server_findings_scan_a_server_json_without_the_database(snapshot, django_assert_num_queries):
    documents = {item["server"]["name"]: item["server"] for item in snapshot}
    airtable = documents["io.github.domdomegg/airtable-mcp-server"]
    with django_assert_num_queries(0):
        assert scanner.server_findings(airtable) == []
        unpinned = copy.deepcopy(airtable)
        unpinned["packages"][0]["version"] = "latest"
        assert rules_of(scanner.server_findings(unpinned)) == {"unpinned-package"}
        deprecated = copy.deepcopy(airtable)
        deprecated["_meta"] = {"io.modelcontextprotocol.registry/official": {"status": "deprecated"}}
        assert rules_of(scanner.server_findings(deprecated)) == {"deprecated-server"}
        poisoned = load(RULE_CASES["tool-credential-request"])["positive_tools"]
        assert rules_of(scanner.server_findings(airtable, tools=poisoned)) == {"tool-credential-request"}
        assert scanner.server_findings({"name": "io.example/nothing", "version": "1.0.0"}) == []
