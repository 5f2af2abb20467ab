"""The /tools/ validator and scanner pages and their API, signed out: CSRF on the forms, the
size limit, uploads, the throttle, and the endpoints in the OpenAPI schema."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from apps.configtools import validator
from tests.configtools.conftest import CLEAN, RULE_CASES, load

pytestmark = pytest.mark.django_db

BROKEN = '{"mcpServers": {"demo": {"command": "npx" "args": ["-y", "pkg@1.0.0"]}}}'


THROTTLED = ["throttle_tools_127.0.0.1", "throttle_tools_203.0.113.9"]


@pytest.fixture(autouse=True)
def fresh_throttle():
    # Only our keys: the cache may be a Redis that other test runs share.
    cache.delete_many(THROTTLED)
    yield
    cache.delete_many(THROTTLED)


@pytest.mark.parametrize("name", ["index", "validate", "scan"])
def test_the_pages_work_signed_out(client, name):
    page = client.get(reverse(f"configtools:{name}"))
    assert page.status_code == 200
    html = page.content.decode()
    for tab in ("Validate", "Scan", "Compose", "Generate"):
        assert f">{tab}</a>" in html
    if name != "index":
        assert 'aria-current="page">' + name.capitalize() in html


def test_the_forms_need_their_csrf_token():
    browser = Client(enforce_csrf_checks=True)
    assert browser.post(reverse("configtools:validate"), {"config": BROKEN}).status_code == 403
    assert browser.post(reverse("configtools:scan"), {"config": BROKEN}).status_code == 403
    page = browser.get(reverse("configtools:validate"))
    token = page.cookies["csrftoken"].value
    assert (
        browser.post(reverse("configtools:validate"), {"config": BROKEN, "csrfmiddlewaretoken": token}).status_code
        == 200
    )


def test_validating_shows_each_problem_and_keeps_the_input(client):
    page = client.post(reverse("configtools:validate"), {"config": BROKEN, "client": ""})
    html = page.content.decode()
    assert "Errors found" in html and "line 1, column 43" in html
    assert "&quot;args&quot;: [&quot;-y&quot;" in html  # the text is back in the box, escaped
    fixed = BROKEN.replace('"npx" "args"', '"npx", "args"')
    html = client.post(reverse("configtools:validate"), {"config": fixed, "client": "claude-desktop"}).content.decode()
    assert "No errors" in html and "Claude Desktop (chosen)" in html


def test_an_uploaded_file_is_validated_and_shown_for_fixing(client):
    path = next(p for p in CLEAN if p.stem == "vscode-remote")
    upload = SimpleUploadedFile("mcp.json", path.read_bytes(), content_type="application/json")
    html = client.post(reverse("configtools:validate"), {"file": upload}).content.decode()
    assert "No errors" in html and "looks like VS Code: top-level `servers`" in html
    assert "${input:token}" in html


def test_too_large_an_input_is_refused_with_a_clear_error(client):
    huge = '{"mcpServers": {}, "padding": "' + "x" * validator.MAX_BYTES + '"}'
    html = client.post(reverse("configtools:validate"), {"config": huge}).content.decode()
    assert "The config is larger than 256 KB" in html and 'id="report"' not in html
    upload = SimpleUploadedFile("big.json", huge.encode())
    html = client.post(reverse("configtools:scan"), {"file": upload}).content.decode()
    assert "The file is larger than 256 KB" in html and 'id="findings"' not in html


def test_scanning_shows_findings_without_the_secret(client):
    config = json.dumps(load(RULE_CASES["secret-github"])["positive"], indent=2)
    html = client.post(reverse("configtools:scan"), {"config": config}).content.decode()
    assert "GitHub token in plain text" in html and "ghp_…" in html
    assert "R4nd0mLook1ng" not in html.split('id="findings"')[1]
    clean = next(p for p in CLEAN if p.stem == "cursor-remote").read_text()
    html = client.post(reverse("configtools:scan"), {"config": clean}).content.decode()
    assert "No findings" in html


def test_scanning_takes_tool_metadata_as_a_tools_list_result(client):
    tools = load(RULE_CASES["tool-ignore-previous"])["positive_tools"]
    config = json.dumps(load(RULE_CASES["tool-ignore-previous"])["config"])
    result = json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}})
    html = client.post(reverse("configtools:scan"), {"config": config, "tools": result}).content.decode()
    assert "Tool description tells the model to ignore its instructions" in html
    html = client.post(reverse("configtools:scan"), {"config": config, "tools": "{nope"}).content.decode()
    assert "Not JSON" in html


# --- the API ------------------------------------------------------------------------------


def test_the_api_validates_text_or_an_object_signed_out(client_for):
    api = client_for()
    reply = api.post("/api/v1/tools/validate/", {"config": BROKEN}, format="json")
    assert reply.status_code == 200
    body = reply.json()
    assert body["valid"] is False and body["problems"][0]["line"] == 1 and body["problems"][0]["column"] == 43
    config = load(next(p for p in CLEAN if p.stem == "windsurf-remote"))
    body = api.post("/api/v1/tools/validate/", {"config": config}, format="json").json()
    assert (body["client"], body["detected"], body["valid"]) == ("windsurf", True, True)
    assert api.post("/api/v1/tools/validate/", {"config": "{}", "client": "emacs"}, format="json").status_code == 400


def test_the_api_scans_and_refuses_what_is_not_json_or_too_large(client_for):
    api = client_for()
    case = load(RULE_CASES["docker-privileged"])
    body = api.post("/api/v1/tools/scan/", {"config": case["positive"]}, format="json").json()
    assert [f["rule"] for f in body["findings"]] == ["docker-privileged"]
    assert set(body["findings"][0]) == {"rule", "severity", "path", "title", "why", "fix", "evidence"}
    assert api.post("/api/v1/tools/scan/", {"config": "{nope"}, format="json").status_code == 400
    huge = {"config": "x" * (validator.MAX_BYTES + 1)}
    assert api.post("/api/v1/tools/scan/", huge, format="json").status_code == 400
    assert api.post("/api/v1/tools/validate/", huge, format="json").status_code == 400


def test_the_api_is_throttled_per_client_ip(client_for, settings):
    settings.MCPNEST_TOOLS_API_RATE = "2/min"
    api = client_for()
    for _ in range(2):
        assert api.post("/api/v1/tools/scan/", {"config": "{}"}, format="json").status_code == 200
    assert api.post("/api/v1/tools/validate/", {"config": "{}"}, format="json").status_code == 429
    other = client_for()
    assert (
        other.post("/api/v1/tools/scan/", {"config": "{}"}, format="json", REMOTE_ADDR="203.0.113.9").status_code == 200
    )


def test_the_endpoints_are_in_the_openapi_schema(client_for):
    schema = client_for().get("/api/v1/schema/", {"format": "json"}).json()
    for path in ("/api/v1/tools/validate/", "/api/v1/tools/scan/"):
        operation = schema["paths"][path]["post"]
        assert operation["tags"] == ["tools"]
        assert operation["security"] and {} in operation["security"]  # open to anonymous callers
    assert "ReportSerializer" in json.dumps(schema) or "Report" in schema["components"]["schemas"]


def test_the_pages_endpoint_check_shares_the_apis_limit(client, settings):
    settings.MCPNEST_TOOLS_API_RATE = "1/min"
    config = json.dumps({"mcpServers": {"internal": {"url": "http://10.0.0.1/mcp"}}})
    form = {"config": config, "client": "cursor", "check_endpoints": "on"}
    html = client.post(reverse("configtools:validate"), form).content.decode()
    assert "Refused: 10.0.0.1 resolves to 10.0.0.1, a private address" in html
    html = client.post(reverse("configtools:validate"), form).content.decode()
    assert "Endpoints not checked: too many checks" in html and "Refused:" not in html
    assert 'id="report"' in html  # the rest of the validation still ran
