"""The composer over real registry entries (the 2025-12-18 snapshot): each client's config is
the marketplace's own config for each server, merged; placeholders can be renamed but a value
never gets in; a share link gives the same composition back, to anyone, signed in or not."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.configtools import composer, services
from apps.configtools.composer import CompositionError
from apps.configtools.models import Composition
from apps.marketplace.configs import CLIENTS, install_configs
from apps.marketplace.models import Server
from apps.marketplace.services import registry_index
from tests.marketplace.registry_server import OFFICIAL, SNAPSHOT, entries

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"  # GitHub's documented example token shape


def _first_package(server: dict) -> dict:
    return (server.get("packages") or [{}])[0]


def _npm_with_secret(server: dict) -> bool:
    package = _first_package(server)
    return (
        package.get("registryType") == "npm"
        and (package.get("transport") or {}).get("type") == "stdio"
        and any(v.get("isSecret") for v in package.get("environmentVariables", []))
    )


def _pypi_with_env(server: dict) -> bool:
    package = _first_package(server)
    return (
        package.get("registryType") == "pypi"
        and (package.get("transport") or {}).get("type") == "stdio"
        and bool(package.get("environmentVariables"))
    )


def _remote_with_secret_header(server: dict) -> bool:
    remotes = server.get("remotes") or []
    return (
        not server.get("packages")
        and bool(remotes)
        and remotes[0].get("type") == "streamable-http"
        and any(h.get("isSecret") for h in remotes[0].get("headers") or [])
    )


@pytest.fixture(scope="module")
def picked() -> dict[str, dict]:
    """Real latest entries of three kinds, plus others for the search."""
    items = [i for i in entries(SNAPSHOT) if i["_meta"][OFFICIAL]["isLatest"]]
    found = {}
    for kind, test in (("npm", _npm_with_secret), ("pypi", _pypi_with_env), ("remote", _remote_with_secret_header)):
        found[kind] = next(i for i in items if test(i["server"]))
    found["_others"] = [i for i in items if i not in found.values()][:40]
    return found


@pytest.fixture
def indexed(tmp_path, picked) -> dict[str, dict]:
    items = [picked["npm"], picked["pypi"], picked["remote"], *picked["_others"]]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps(items))
    assert registry_index(file=path).status == "done"
    return {kind: picked[kind]["server"] for kind in ("npm", "pypi", "remote")}


def _merged(documents: list[dict]) -> dict[str, dict]:
    """What the composer must give: each server's marketplace config, entries side by side."""
    out = {
        "claude-desktop": {"mcpServers": {}},
        "claude-code": {"mcpServers": {}},
        "cursor": {"mcpServers": {}},
        "windsurf": {"mcpServers": {}},
        "vscode": {"inputs": [], "servers": {}},
    }
    for document in documents:
        configs = install_configs(document)
        key = configs.launch.key
        out["claude-desktop"]["mcpServers"][key] = configs.claude_desktop["mcpServers"][key]
        out["claude-code"]["mcpServers"][key] = configs.claude_code_json["mcpServers"][key]
        out["cursor"]["mcpServers"][key] = configs.cursor["mcpServers"][key]
        out["windsurf"]["mcpServers"][key] = configs.windsurf["mcpServers"][key]
        out["vscode"]["servers"][key] = configs.vscode["servers"][key]
        seen = {i["id"] for i in out["vscode"]["inputs"]}
        out["vscode"]["inputs"] += [i for i in configs.vscode.get("inputs", []) if i["id"] not in seen]
    return out


def _choices(*servers: dict, variables: dict[str, dict[str, str]] | None = None) -> list[services.ServerChoice]:
    variables = variables or {}
    return [services.ServerChoice(name=s["name"], variables=variables.get(s["name"], {})) for s in servers]


def test_each_clients_config_is_the_marketplace_config_of_each_server_merged(indexed):
    documents = [indexed["npm"], indexed["pypi"], indexed["remote"]]
    composed = composer.compose(services.composed_servers(_choices(*documents)))

    assert list(composed) == list(CLIENTS)
    assert composed == _merged(documents)
    # Every variable and secret header is there as a placeholder, in each client's syntax.
    npm_secret = next(v["name"] for v in _first_package(indexed["npm"])["environmentVariables"] if v.get("isSecret"))
    key = install_configs(indexed["npm"]).launch.key
    assert composed["cursor"]["mcpServers"][key]["env"][npm_secret] == f"${{env:{npm_secret}}}"
    assert composed["claude-desktop"]["mcpServers"][key]["env"][npm_secret] == f"<{npm_secret}>"
    remote_key = install_configs(indexed["remote"]).launch.key
    assert composed["cursor"]["mcpServers"][remote_key]["url"] == indexed["remote"]["remotes"][0]["url"]
    assert composed["claude-desktop"]["mcpServers"][remote_key]["args"][1].startswith("mcp-remote")


def test_a_renamed_placeholder_is_respelled_in_every_client_and_the_variable_keeps_its_name(indexed):
    server = indexed["npm"]
    secret = next(v["name"] for v in _first_package(server)["environmentVariables"] if v.get("isSecret"))
    key = install_configs(server).launch.key
    # Written as people copy them from a config: the wrapping is taken off.
    composed = composer.compose(
        services.composed_servers(_choices(server, variables={server["name"]: {secret: "${env:WORK_KEY}"}}))
    )
    assert composed["cursor"]["mcpServers"][key]["env"][secret] == "${env:WORK_KEY}"
    assert composed["windsurf"]["mcpServers"][key]["env"][secret] == "${env:WORK_KEY}"
    assert composed["claude-code"]["mcpServers"][key]["env"][secret] == "${WORK_KEY}"
    assert composed["claude-desktop"]["mcpServers"][key]["env"][secret] == "<WORK_KEY>"
    assert composed["vscode"]["servers"][key]["env"][secret] == "${input:work-key}"
    prompt = next(i for i in composed["vscode"]["inputs"] if i["id"] == "work-key")
    assert prompt["password"] is True
    assert not any(i["id"] == secret.lower().replace("_", "-") for i in composed["vscode"]["inputs"])


@pytest.mark.parametrize(
    "value",
    [TOKEN, "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789", "xoxb-123456789012-abcdefghij", "hunter2", "my key"],
)
def test_a_value_that_is_not_a_placeholder_is_refused_and_not_repeated(indexed, value):
    server = indexed["npm"]
    secret = next(v["name"] for v in _first_package(server)["environmentVariables"] if v.get("isSecret"))
    with pytest.raises(CompositionError) as refused:
        services.composition_save(
            actor=None, servers=_choices(server, variables={server["name"]: {secret: value}}), title="x"
        )
    assert secret in str(refused.value) and value not in str(refused.value)
    assert not Composition.objects.exists()


def test_unknown_hidden_servers_and_undeclared_variables_are_refused(indexed):
    with pytest.raises(CompositionError, match=r"Not in the marketplace: io\.example/nothing"):
        services.composition_save(actor=None, servers=[services.ServerChoice("io.example/nothing", {})])
    Server.objects.filter(name=indexed["pypi"]["name"]).update(hidden=True)
    with pytest.raises(CompositionError, match="Not in the marketplace"):
        services.composition_save(actor=None, servers=_choices(indexed["pypi"]))
    with pytest.raises(CompositionError, match="declares no variable named NOT_A_VARIABLE"):
        services.composition_save(
            actor=None, servers=_choices(indexed["npm"], variables={indexed["npm"]["name"]: {"NOT_A_VARIABLE": "X"}})
        )
    assert not Composition.objects.exists()


def _configs_on(page: str) -> dict[str, dict]:
    found = re.findall(r'<textarea id="config-([a-z-]+)"[^>]*>(.*?)</textarea>', page, re.S)
    return {client: json.loads(html.unescape(text)) for client, text in found}


def _csrf(client: Client, url: str) -> str:
    page = client.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_anyone_composes_and_shares_a_link_that_gives_the_same_composition(indexed):
    anonymous = Client(enforce_csrf_checks=True)
    url = reverse("configtools:compose")
    npm, remote = indexed["npm"], indexed["remote"]
    secret = next(v["name"] for v in _first_package(npm)["environmentVariables"] if v.get("isSecret"))
    form = {
        "csrfmiddlewaretoken": _csrf(anonymous, url),
        "server": [npm["name"], remote["name"]],
        f"v:{npm['name']}:{secret}": "TEAM_KEY",
        "title": "Team  setup",
    }

    previewed = anonymous.post(url, {**form, "action": "update"})
    assert previewed.status_code == 200 and not Composition.objects.exists()
    shown = _configs_on(previewed.content.decode())
    expected = composer.compose(
        services.composed_servers(_choices(npm, remote, variables={npm["name"]: {secret: "TEAM_KEY"}}))
    )
    assert shown == expected

    shared = anonymous.post(url, {**form, "action": "share"})
    composition = Composition.objects.get()
    assert shared.status_code == 302 and shared["Location"] == reverse(
        "configtools:composition", args=[composition.share_id]
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]{8}", composition.share_id)
    assert composition.created_by is None and composition.title == "Team setup"
    assert composition.servers == [
        {"name": npm["name"], "variables": {secret: "TEAM_KEY"}},
        {"name": remote["name"], "variables": {}},
    ]

    # Someone else opens the link: the same configs, ready to copy, and the form to adjust them.
    opened = Client().get(shared["Location"])
    page = opened.content.decode()
    assert opened.status_code == 200 and "Team setup" in page
    assert _configs_on(page) == expected
    assert f'name="v:{npm["name"]}:{secret}" value="TEAM_KEY"' in page
    assert f"http://testserver{shared['Location']}" in page
    assert Client().get(reverse("configtools:composition", args=["nope1234"])).status_code == 404


def test_the_share_link_of_a_signed_in_user_remembers_who_made_it(indexed, cast):
    alice = Client()
    alice.force_login(cast.alice)
    shared = alice.post(reverse("configtools:compose"), {"server": [indexed["pypi"]["name"]], "action": "share"})
    assert shared.status_code == 302
    assert Composition.objects.get().created_by == cast.alice


def test_a_post_without_the_csrf_token_is_refused(indexed):
    refused = Client(enforce_csrf_checks=True).post(
        reverse("configtools:compose"), {"server": [indexed["npm"]["name"]], "action": "share"}
    )
    assert refused.status_code == 403 and not Composition.objects.exists()


def test_a_secret_typed_into_the_page_is_refused_and_not_echoed(indexed):
    npm = indexed["npm"]
    secret = next(v["name"] for v in _first_package(npm)["environmentVariables"] if v.get("isSecret"))
    refused = Client().post(
        reverse("configtools:compose"),
        {"server": [npm["name"]], f"v:{npm['name']}:{secret}": TOKEN, "action": "share"},
    )
    page = refused.content.decode()
    assert refused.status_code == 400 and "never the value itself" in page
    assert TOKEN not in page and not Composition.objects.exists()


def test_the_search_without_javascript_keeps_the_chosen_servers(indexed):
    url = reverse("configtools:compose")
    page = Client().get(url).content.decode()
    # The type-ahead asks the marketplace's REST search.
    assert f'data-compose-search="{reverse("api:marketplace-server-list")}"' in page
    word = indexed["remote"]["name"].rsplit("/", 1)[-1].split("-")[0]
    found = Client().post(url, {"server": [indexed["npm"]["name"]], "q": word, "action": "search"}).content.decode()
    assert f'<button type="submit" name="add" value="{indexed["remote"]["name"]}">Add</button>' in found
    assert f'name="server" value="{indexed["npm"]["name"]}"' in found
    added = Client().post(url, {"server": [indexed["npm"]["name"]], "add": indexed["remote"]["name"]}).content.decode()
    assert set(_configs_on(added)["cursor"]["mcpServers"]) == {
        install_configs(indexed["npm"]).launch.key,
        install_configs(indexed["remote"]).launch.key,
    }
    removed = (
        Client()
        .post(url, {"server": [indexed["npm"]["name"], indexed["remote"]["name"]], "remove": indexed["npm"]["name"]})
        .content.decode()
    )
    assert list(_configs_on(removed)["cursor"]["mcpServers"]) == [install_configs(indexed["remote"]).launch.key]


def test_the_api_composes_and_gives_the_shared_composition_back(indexed, client_for, settings):
    settings.MCPNEST_TOOLS_API_RATE = "1000/min"  # the throttle's own test is the validator's
    npm, pypi = indexed["npm"], indexed["pypi"]
    pypi_var = _first_package(pypi)["environmentVariables"][0]["name"]
    anonymous = client_for()
    made = anonymous.post(
        "/api/v1/tools/compose/",
        {"servers": [{"name": npm["name"]}, {"name": pypi["name"], "variables": {pypi_var: "<ANALYTICS>"}}]},
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    expected = composer.compose(
        services.composed_servers(_choices(npm, pypi, variables={pypi["name"]: {pypi_var: "ANALYTICS"}}))
    )
    assert body["configs"] == expected
    assert body["servers"][1] == {"name": pypi["name"], "variables": {pypi_var: "ANALYTICS"}}
    assert body["share_url"].endswith(f"/tools/compose/{body['share_id']}/")

    again = anonymous.get(f"/api/v1/tools/compose/{body['share_id']}/")
    assert again.status_code == 200 and again.json()["configs"] == expected
    assert anonymous.get("/api/v1/tools/compose/nope1234/").status_code == 404

    refused = anonymous.post(
        "/api/v1/tools/compose/",
        {"servers": [{"name": pypi["name"], "variables": {pypi_var: TOKEN}}]},
        format="json",
    )
    assert refused.status_code == 400 and TOKEN not in refused.content.decode()
    assert "never the value itself" in refused.json()["error"]
    assert Composition.objects.count() == 1


def test_the_api_is_in_the_schema_under_tools(client_for):
    schema = client_for().get("/api/v1/schema/", {"format": "json"}).json()
    for path, method in (
        ("/api/v1/tools/compose/", "post"),
        ("/api/v1/tools/compose/{share_id}/", "get"),
        ("/api/v1/tools/generate/", "post"),
        ("/api/v1/tools/generations/", "get"),
    ):
        assert schema["paths"][path][method]["tags"] == ["tools"]


def test_placeholders_as_people_write_them():
    assert composer.placeholder("", variable="API_KEY") == "API_KEY"
    assert composer.placeholder(" ${env:WORK_KEY} ", variable="API_KEY") == "WORK_KEY"
    assert composer.placeholder("<WORK_KEY>", variable="API_KEY") == "WORK_KEY"
    assert composer.placeholder("{WORK_KEY}", variable="API_KEY") == "WORK_KEY"
    # The registry's own name is always fine, even in lower case (some headers' are).
    assert composer.placeholder("smithery_api_key", variable="smithery_api_key") == "smithery_api_key"
    for value in ("work_key", "${" + TOKEN + "}", "AKIAIOSFODNN7EXAMPLE", "A" * 65):
        with pytest.raises(CompositionError):
            composer.placeholder(value, variable="API_KEY")


def test_a_share_id_already_taken_is_drawn_again(indexed, monkeypatch):
    drawn = iter(["SameId01", "SameId01", "OtherId2"])
    monkeypatch.setattr(services.secrets, "token_urlsafe", lambda n: next(drawn))
    first = services.composition_save(actor=None, servers=_choices(indexed["pypi"]))
    second = services.composition_save(actor=None, servers=_choices(indexed["npm"]))
    assert (first.share_id, second.share_id) == ("SameId01", "OtherId2")
    assert Composition.objects.get(share_id="SameId01").servers[0]["name"] == indexed["pypi"]["name"]
