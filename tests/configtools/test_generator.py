"""The MCP generator: every scaffold compiled, started over stdio and listed with the SDK's
client before it is shown.

The template generator's outputs go through the real check (TypeScript needs the toolchain
``manage.py generator_setup`` installs; CI installs it, elsewhere those tests skip and say
why). The model path runs against a local server that answers like the Messages API."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.configtools import services
from apps.configtools.generator import check as checker
from apps.configtools.generator.scaffold import Scaffold
from apps.configtools.generator.template import template_scaffold, tool_specs
from apps.configtools.models import Generation
from tests.local_http import LocalServer

DESCRIPTIONS = {
    "A server that lists GitHub issues, creates issues and searches pull requests": [
        "list_issues",
        "create_issue",
        "search_pull_requests",
    ],
    "List and search my Notion pages, then summarize a page": ["list_pages", "search_pages", "summarize_page"],
    "Send Slack messages to a channel and fetch the channel history": ["send_message", "get_channel_history"],
    "Convert currencies with an exchange rate API and look up today's rates": [
        "convert_currencies",
        "search_today_rates",
    ],
}


def _needs_toolchain() -> None:
    if checker.toolchain() is None:
        reason = checker.toolchain_missing()
        print(f"SKIP: {reason}")
        pytest.skip(reason)


# --- the template generator, through the real check ----------------------------------------


@pytest.mark.parametrize("prompt", list(DESCRIPTIONS))
def test_the_template_finds_a_tool_per_verb_and_noun(prompt):
    assert [spec.name for spec in tool_specs(prompt)] == DESCRIPTIONS[prompt]


@pytest.mark.parametrize("language", ["python", "typescript"])
@pytest.mark.parametrize("prompt", list(DESCRIPTIONS))
def test_each_template_scaffold_compiles_starts_and_lists_its_tools(prompt, language):
    if language == "typescript":
        _needs_toolchain()
    scaffold = template_scaffold(prompt=prompt, language=language)
    result = checker.check(scaffold)
    assert result.ok, result.message
    assert [tool["name"] for tool in result.tools] == DESCRIPTIONS[prompt]
    for tool in result.tools:
        assert tool["inputSchema"]["type"] == "object"
    # Asking for a tool it does not have is an error, not a success.
    assert "Unknown tool: mcpnest_check_no_such_tool" in result.message
    if "GitHub" in prompt:
        assert scaffold.env == ["GITHUB_API_KEY"]
        reads = "process.env.GITHUB_API_KEY" if language == "typescript" else 'os.environ.get("GITHUB_API_KEY", "")'
        assert reads in scaffold.code
        cursor = scaffold.install["configs"]["cursor"]["mcpServers"][scaffold.name]
        assert cursor["env"] == {"GITHUB_API_KEY": "${env:GITHUB_API_KEY}"}


def test_a_typescript_type_error_is_reported_with_the_compilers_message():
    _needs_toolchain()
    scaffold = template_scaffold(prompt="List GitHub issues", language="typescript")
    broken = scaffold.model_copy(update={"code": scaffold.code.replace("const tools: Tool[]", "const tools: number[]")})
    result = checker.check(broken)
    assert not result.ok and not result.tools
    assert result.message.startswith("tsc failed:") and "src/index.ts(" in result.message and "TS2322" in result.message


def test_a_python_syntax_error_is_reported_with_the_compilers_message():
    scaffold = template_scaffold(prompt="List GitHub issues", language="python")
    result = checker.check(scaffold.model_copy(update={"code": scaffold.code + "\ndef broken(:\n"}))
    assert not result.ok and result.message.startswith("py_compile failed:") and "SyntaxError" in result.message


def _python_scaffold(code: str) -> Scaffold:
    return Scaffold(name="probe-mcp", description="", language="python", code=code)


def test_the_scaffold_runs_with_none_of_our_environment(monkeypatch):
    monkeypatch.setenv("MCPNEST_PROBE_SECRET", "do-not-leak")
    result = checker.check(_python_scaffold("import os, sys\nsys.exit('env: ' + ' '.join(sorted(os.environ)))\n"))
    assert not result.ok and "env: " in result.message
    names = result.message.split("env: ", 1)[1].split()
    assert "MCPNEST_PROBE_SECRET" not in names and "DATABASE_URL" not in names and "ANTHROPIC_API_KEY" not in names
    assert "do-not-leak" not in result.message


def test_what_a_scaffold_prints_is_shown_with_credentials_masked_and_it_sees_no_other_process():
    token = "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a"
    code = (
        "import os, sys\n"
        f"sys.exit('found {token} among ' + str(len([p for p in os.listdir('/proc') if p.isdigit()])))\n"
    )
    result = checker.check(_python_scaffold(code))
    assert not result.ok and token not in result.message and "ghp_…" in result.message
    if checker._network_namespace():
        # The lister, the server and unshare's own init: nothing of the host's.
        assert int(result.message.rsplit("among ", 1)[1].split()[0]) <= 5


def test_a_scaffold_that_hangs_is_killed_at_the_timeout(monkeypatch):
    monkeypatch.setattr(checker, "RUN_SECONDS", 12)
    started = time.monotonic()
    result = checker.check(_python_scaffold("import time\ntime.sleep(60)\n"))
    assert not result.ok and "No answer to initialize and tools/list within 6 seconds" in result.message
    assert time.monotonic() - started < 12.5


# --- the model path, against a local Messages API ------------------------------------------


class MessagesAPI(LocalServer):
    """``POST /v1/messages`` answered from a queue of (status, body), as the API answers:
    a message whose content holds a ``tool_use`` block. Requests are kept to be read."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict]] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []

    def respond(self, method, url, headers, body):
        if method != "POST":
            return 405, {}, b""
        self.requests.append(json.loads(body))
        self.headers.append(headers)
        status, answer = self.answers.pop(0) if url.path == "/v1/messages" else (404, {})
        out = {"Content-Type": "application/json", "request-id": f"req_{len(self.requests):024d}"}
        return status, out, json.dumps(answer).encode()

    def answer_with(self, scaffold: dict) -> None:
        n = len(self.answers) + 1
        self.answers.append(
            (
                200,
                {
                    "id": f"msg_01{n:022d}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-5-5",
                    "content": [
                        {"type": "tool_use", "id": f"toolu_01{n:022d}", "name": "submit_scaffold", "input": scaffold}
                    ],
                    "stop_reason": "tool_use",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 1200, "output_tokens": 900},
                },
            )
        )

    def fail_with(self, status: int) -> None:
        self.answers.append(
            (status, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
        )


@pytest.fixture
def messages_api(settings):
    with MessagesAPI() as api:
        settings.ANTHROPIC_API_KEY = "sk-ant-test-key-for-the-local-server"
        settings.ANTHROPIC_BASE_URL = api.url
        settings.MCPNEST_GENERATOR_MODEL = "claude-sonnet-5-5"
        yield api


def _answer(language: str, prompt: str, *, broken: bool = False) -> dict:
    good = template_scaffold(prompt=prompt, language=language)
    code = good.code
    if broken:
        code = (
            code.replace("const tools: Tool[]", "const tools: number[]")
            if language == "typescript"
            else code + "\ndef broken(:\n"
        )
    return {"name": good.name, "description": "Issues from GitHub.", "code": code, "env": good.env}


PROMPT = "A server that lists GitHub issues, creates issues and searches pull requests"


def test_the_model_answer_that_fails_is_repaired_once_with_the_compilers_message(cast, messages_api):
    messages_api.answer_with(_answer("python", PROMPT, broken=True))
    messages_api.answer_with(_answer("python", PROMPT))
    generation = services.generation_run(actor=cast.alice, prompt=PROMPT, language="python")

    assert generation.engine == "model" and generation.status == Generation.Status.CHECKED
    assert [tool["name"] for tool in generation.tools] == DESCRIPTIONS[PROMPT]
    first, repair = messages_api.requests
    assert first["model"] == "claude-sonnet-5-5" and first["tool_choice"] == {"type": "tool", "name": "submit_scaffold"}
    assert PROMPT in first["messages"][0]["content"]
    assert messages_api.headers[0]["authorization"] == "Bearer sk-ant-test-key-for-the-local-server"
    # The repair goes on the same conversation: our tool_use answered by a tool_result with the error.
    assert repair["messages"][1]["role"] == "assistant" and repair["messages"][1]["content"][0]["type"] == "tool_use"
    result = repair["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert result["tool_use_id"] == repair["messages"][1]["content"][0]["id"]
    assert "py_compile failed" in result["content"] and "SyntaxError" in result["content"]


def test_a_second_broken_answer_is_reported_failed_and_not_shown_as_working(cast, messages_api):
    messages_api.answer_with(_answer("python", PROMPT, broken=True))
    messages_api.answer_with(_answer("python", PROMPT, broken=True))
    generation = services.generation_run(actor=cast.alice, prompt=PROMPT, language="python")

    assert len(messages_api.requests) == 2  # one repair, not more
    assert generation.status == Generation.Status.FAILED and generation.tools == []
    assert "py_compile failed" in generation.check_output
    alice = Client()
    alice.force_login(cast.alice)
    page = alice.get(reverse("configtools:generation", args=[generation.pk])).content.decode()
    assert "Failed its check" in page and "SyntaxError" in page
    assert "Checked: it compiled" not in page and 'id="generated-code"' not in page


def test_a_typescript_model_answer_is_repaired_with_tscs_message(cast, messages_api):
    _needs_toolchain()
    messages_api.answer_with(_answer("typescript", PROMPT, broken=True))
    messages_api.answer_with(_answer("typescript", PROMPT))
    generation = services.generation_run(actor=cast.alice, prompt=PROMPT, language="typescript")
    assert generation.status == Generation.Status.CHECKED, generation.check_output
    assert "TS2322" in messages_api.requests[1]["messages"][2]["content"][0]["content"]


def test_an_answer_of_the_wrong_shape_gets_the_repair_round(cast, messages_api):
    messages_api.answer_with({"name": "x", "description": "no code"})
    messages_api.answer_with(_answer("python", PROMPT))
    generation = services.generation_run(actor=cast.alice, prompt=PROMPT, language="python")
    assert generation.status == Generation.Status.CHECKED
    assert "expected shape" in messages_api.requests[1]["messages"][2]["content"][0]["content"]


def test_without_the_toolchain_typescript_is_refused_before_the_model_is_asked(cast, messages_api, monkeypatch):
    monkeypatch.setattr(checker, "toolchain", lambda: None)
    generation = services.generation_run(actor=cast.alice, prompt=PROMPT, language="typescript")
    assert generation.status == Generation.Status.FAILED and not generation.code
    assert "cannot be checked" in generation.check_output and messages_api.requests == []


def test_an_api_failure_is_reported_without_the_key(cast, messages_api):
    messages_api.fail_with(500)
    messages_api.fail_with(500)  # the SDK retries once
    generation = services.generation_run(actor=cast.alice, prompt=PROMPT, language="python")
    assert generation.status == Generation.Status.FAILED
    assert "HTTP 500" in generation.check_output and "sk-ant" not in generation.check_output


# --- pages and API: sign-in, own history only, rate limit ----------------------------------


@pytest.mark.django_db
def test_the_generator_needs_sign_in(client_for):
    page = Client().get(reverse("configtools:generate"))
    assert page.status_code == 302 and "/accounts/login/" in page["Location"]
    assert Client().post(reverse("configtools:generate"), {"prompt": "x", "language": "python"}).status_code == 302
    assert client_for().post("/api/v1/tools/generate/", {"prompt": "x"}, format="json").status_code in (401, 403)
    assert client_for().get("/api/v1/tools/generations/").status_code in (401, 403)
    assert not Generation.objects.exists()


def test_a_user_generates_on_the_page_and_only_they_see_it(cast):
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(cast.alice)
    assert forged.post(reverse("configtools:generate"), {"prompt": PROMPT, "language": "python"}).status_code == 403
    assert not Generation.objects.exists()

    alice = Client()
    alice.force_login(cast.alice)
    done = alice.post(reverse("configtools:generate"), {"prompt": PROMPT, "language": "python"})
    generation = Generation.objects.get()
    assert done.status_code == 302 and done["Location"] == reverse("configtools:generation", args=[generation.pk])
    assert generation.user == cast.alice and generation.engine == "template"
    page = alice.get(done["Location"]).content.decode()
    assert "Checked: it compiled, started over stdio and listed 3 tools" in page
    for name in DESCRIPTIONS[PROMPT]:
        assert f"<code>{name}</code>" in page
    assert "from mcp.server import MCPServer" in page and "${env:GITHUB_API_KEY}" in page
    assert f'href="{done["Location"]}"' in alice.get(reverse("configtools:generate")).content.decode()

    dave = Client()
    dave.force_login(cast.dave)
    assert dave.get(done["Location"]).status_code == 404
    assert f'href="{done["Location"]}"' not in dave.get(reverse("configtools:generate")).content.decode()


def test_the_api_generates_and_lists_only_ones_own(cast, client_for):
    made = client_for(cast.alice).post(
        "/api/v1/tools/generate/", {"prompt": "Send Slack messages to a channel", "language": "python"}, format="json"
    )
    assert made.status_code == 201, made.content
    assert made.json()["checked"] is True and made.json()["tools"][0]["name"] == "send_message"
    assert made.json()["install"]["configs"]["vscode"]["servers"]["slack-message-mcp"]["command"] == "uv"
    own = client_for(cast.alice).get("/api/v1/tools/generations/").json()["results"]
    assert [g["id"] for g in own] == [made.json()["id"]]
    assert client_for(cast.dave).get("/api/v1/tools/generations/").json()["results"] == []
    too_long = client_for(cast.alice).post("/api/v1/tools/generate/", {"prompt": "x" * 501}, format="json")
    assert too_long.status_code == 400 and Generation.objects.count() == 1


def test_the_per_user_limit(cast, settings, client_for):
    settings.MCPNEST_GENERATOR_PER_HOUR = 2
    Generation.objects.create(user=cast.alice, prompt="old", language="python", engine="template", status="checked")
    Generation.objects.filter(user=cast.alice).update(created_at=timezone.now() - timedelta(hours=2))
    for _ in range(2):
        Generation.objects.create(user=cast.alice, prompt="p", language="python", engine="template", status="checked")

    alice = Client()
    alice.force_login(cast.alice)
    refused = alice.post(reverse("configtools:generate"), {"prompt": PROMPT, "language": "python"})
    assert refused.status_code == 429 and "the limit is 2" in refused.content.decode()
    assert client_for(cast.alice).post("/api/v1/tools/generate/", {"prompt": PROMPT}, format="json").status_code == 429
    assert Generation.objects.filter(user=cast.alice).count() == 3
    # Another user's quota is their own.
    assert (
        client_for(cast.bob)
        .post("/api/v1/tools/generate/", {"prompt": "List GitHub issues", "language": "python"}, format="json")
        .status_code
        == 201
    )
