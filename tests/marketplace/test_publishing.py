"""Publishing: alice submits a server.json (checked against the official 2025-12-11 schema
and the registry's offline rules, every problem at its JSON path), staff review it in the
admin, and an approved one is listed like an indexed server; each step audited. bob is
another publisher, who sees nothing of alice's submissions; root is staff."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import Forbidden, RuleViolation
from apps.marketplace import server_json
from apps.marketplace.models import Publisher, Server, ServerVersion, Submission
from apps.marketplace.services.publishing import (
    SubmissionNotPending,
    SubmissionRefused,
    submission_approve,
    submission_create,
    submission_reject,
)
from tests.factories import UserFactory
from tests.marketplace.registry_server import SNAPSHOT, entries

CURRENT = server_json.CURRENT_SCHEMA

# The registry's own examples (modelcontextprotocol/registry, docs/reference/server-json/
# examples/), verbatim.
VALID_EXAMPLES = {
    "minimal": """{
  "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
  "name": "io.github.user/weather",
  "description": "MCP server providing weather data and forecasts.",
  "version": "1.0.2"
}
""",
    "with-package": """{
  "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
  "name": "io.github.user/local-weather",
  "description": "Local MCP server distributed as an npm package.",
  "version": "1.0.0",
  "packages": [
    {
      "registryType": "npm",
      "identifier": "@modelcontextprotocol/server-weather",
      "version": "1.0.0",
      "transport": { "type": "stdio" },
      "runtimeHint": "npx",
      "packageArguments": [
        { "type": "positional", "valueHint": "config_path" },
        { "type": "named", "name": "--port", "value": "8080" }
      ],
      "environmentVariables": [
        { "name": "API_KEY", "isSecret": true, "isRequired": true }
      ]
    }
  ]
}
""",
    "with-remote": """{
  "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
  "name": "io.github.user/remote-weather",
  "description": "Remote MCP server reachable over streamable HTTP.",
  "version": "2.1.0",
  "title": "Remote Weather",
  "websiteUrl": "https://modelcontextprotocol.io/examples",
  "repository": {
    "url": "https://github.com/modelcontextprotocol/servers",
    "source": "github",
    "subfolder": "src/weather"
  },
  "icons": [
    {
      "src": "https://example.com/icon.png",
      "mimeType": "image/png",
      "sizes": ["48x48", "96x96"]
    }
  ],
  "remotes": [
    {
      "type": "streamable-http",
      "url": "https://{host}/mcp",
      "headers": [
        { "name": "Authorization", "isSecret": true, "isRequired": true }
      ],
      "variables": {
        "host": { "description": "API host", "default": "api.example.com" }
      }
    }
  ]
}
""",
}

# Each with the path the registry's validator reports it at. These examples have no
# "$schema", which the registry requires too: that is reported as well.
INVALID_EXAMPLES = {
    "bad-name-pattern": (
        """{
  "name": "no-namespace-separator",
  "description": "The name must contain exactly one slash separating namespace from name.",
  "version": "1.0.0"
}
""",
        "$.name",
    ),
    "missing-name": (
        """{
  "description": "Server without the required name field.",
  "version": "1.0.0"
}
""",
        "$.name",
    ),
    "description-too-long": (
        """{
  "name": "io.github.user/verbose",
  "description": "This description deliberately exceeds the one-hundred character maximum length enforced by the schema for sure.",
  "version": "1.0.0"
}
""",  # noqa: E501 - verbatim from the registry
        "$.description",
    ),
    "package-version-latest": (
        """{
  "name": "io.github.user/bad-version",
  "description": "Package pins the disallowed floating tag 'latest'.",
  "version": "1.0.0",
  "packages": [
    {
      "registryType": "npm",
      "identifier": "@modelcontextprotocol/server-weather",
      "version": "latest",
      "transport": { "type": "stdio" }
    }
  ]
}
""",
        "$.packages[0].version",
    ),
    "positional-argument-missing-value": (
        """{
  "name": "io.github.user/bad-argument",
  "description": "Positional argument provides neither valueHint nor value.",
  "version": "1.0.0",
  "packages": [
    {
      "registryType": "npm",
      "identifier": "@modelcontextprotocol/server-weather",
      "version": "1.0.0",
      "transport": { "type": "stdio" },
      "packageArguments": [
        { "type": "positional", "isRepeated": false }
      ]
    }
  ]
}
""",
        "$.packages[0].packageArguments[0]",
    ),
}


def doc(**changes) -> dict:
    """A valid server.json for alice's namespace, with ``changes`` (None removes a field)."""
    base = {
        "$schema": CURRENT,
        "name": "io.github.alice/weather",
        "description": "Weather forecasts for MCP clients.",
        "version": "1.0.0",
        "repository": {"url": "https://github.com/alice/weather", "source": "github"},
        "packages": [
            {
                "registryType": "npm",
                "identifier": "@alice/weather-mcp",
                "version": "1.0.0",
                "transport": {"type": "stdio"},
                "environmentVariables": [{"name": "WEATHER_API_KEY", "isSecret": True, "isRequired": True}],
            }
        ],
    }
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def problems_of(text: str | bytes) -> list[server_json.Problem]:
    with pytest.raises(server_json.Invalid) as caught:
        server_json.validate(text)
    return caught.value.problems


# --- the validator ------------------------------------------------------------------------


def test_the_vendored_schema_is_the_official_2025_12_11_file_unchanged():
    raw = server_json.SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "d4c163f299ece68b7432f4e44c4108f2fdb663d99dc088c8344142e5b0a4b520"
    assert json.loads(raw)["$id"] == CURRENT


@pytest.mark.parametrize("name", sorted(VALID_EXAMPLES))
def test_the_registrys_valid_examples_pass(name):
    validated = server_json.validate(VALID_EXAMPLES[name])
    assert validated.document == json.loads(VALID_EXAMPLES[name])
    assert validated.name.startswith("io.github.user/")


@pytest.mark.parametrize("name", sorted(INVALID_EXAMPLES))
def test_each_invalid_example_is_reported_at_its_path(name):
    text, path = INVALID_EXAMPLES[name]
    paths = {problem.path for problem in problems_of(text)}
    assert paths == {path, "$.$schema"}


def test_every_2025_12_11_server_of_the_real_registry_snapshot_validates():
    current = [item["server"] for item in entries(SNAPSHOT) if item["server"].get("$schema") == CURRENT]
    assert len(current) > 40
    for document in current:
        assert server_json.validate(json.dumps(document)).name == document["name"]


def test_all_problems_at_once_each_precise():
    bad = doc(
        version="^1.2.0",
        websiteUrl="http://example.com",
        packages=[
            {"registryType": "npm", "identifier": "a b", "version": "latest", "transport": {"type": "http"}},
            {
                "registryType": "pypi",
                "identifier": "weather",
                "version": "1.x",
                "transport": {"type": "stdio"},
                "packageArguments": [{"type": "named", "name": "--port 8080"}, {"type": "named"}],
            },
        ],
        remotes=[{"type": "streamable-http"}],
    )
    found = {(p.path, p.message) for p in problems_of(json.dumps(bad))}
    assert found == {
        ("$.version", '"^1.2.0" is a version range; give one specific version'),
        ("$.websiteUrl", "websiteUrl must be an absolute https URL"),
        ("$.packages[0].identifier", "must not contain spaces"),
        ("$.packages[0].version", 'must be a specific version, not "latest"'),
        ("$.packages[0].transport.type", '"http" is not one of: sse, stdio, streamable-http'),
        ("$.packages[1].version", '"1.x" is a version range; give one specific version'),
        ("$.packages[1].packageArguments[0].name", '"--port 8080" is not a flag name'),
        ("$.packages[1].packageArguments[1].name", "is required"),
        ("$.remotes[0].url", "is required"),
    }


def test_a_syntax_error_says_its_line_and_column():
    text = '{\n  "name": "io.github.alice/weather",\n  "version": "1.0.0",,\n}'
    [problem] = problems_of(text)
    assert (problem.path, problem.line, problem.column) == ("$", 3, 22)
    assert "line 3, column 22" in problem.message


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ('{"name": "a\x00b"}', "$", "Invalid control character"),  # a raw NUL: not JSON
        (json.dumps(doc(description="nul \x00 inside")), "$.description", "NUL"),
        (json.dumps(doc(description="\ud800")), "$.description", "unpaired surrogate"),
        ('{"x": 1e999}', "$", "too large"),
        ('{"x": ' + "9" * 5000 + "}", "$", "a number has too many digits"),
        ('{"x": NaN}', "$", "NaN is not a JSON number"),
        ("[1, 2]", "$", "a JSON object, not an array"),
        ("   ", "$", "empty"),
        (b"\xff\xfe{}", "$", "not UTF-8"),
        ("{" + '"a": {' * 40 + "}" * 41, "$.a.a.a", "nested deeper"),
    ],
)
def test_documents_no_database_could_store_are_refused_clearly(text, path, words):
    problems = problems_of(text)
    assert any(p.path.startswith(path) and words in p.message for p in problems), problems


def test_a_document_over_the_size_limit_is_refused_before_parsing():
    text = json.dumps(doc(description="x" * 50, _meta={"pad": "y" * server_json.MAX_BYTES}))
    [problem] = problems_of(text)
    assert f"at most {server_json.MAX_BYTES}" in problem.message


def test_an_older_schema_is_named_with_the_one_to_use():
    problems = problems_of(
        json.dumps(doc(**{"$schema": "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"}))
    )
    [problem] = problems
    assert problem.path == "$.$schema"
    assert "2025-09-29" in problem.message and "2025-12-11" in problem.message
    assert CURRENT in problem.hint
    [missing] = problems_of(json.dumps(doc(**{"$schema": None})))
    assert missing.path == "$.$schema" and CURRENT in missing.hint


def test_meta_keeps_only_the_publisher_provided_key_like_the_registry():
    provided = {"tool": "ci"}
    validated = server_json.validate(
        json.dumps(doc(_meta={server_json.PUBLISHER_META: provided, "com.example/other": {"x": 1}}))
    )
    assert validated.document["_meta"] == {server_json.PUBLISHER_META: provided}
    [too_big] = problems_of(json.dumps(doc(_meta={server_json.PUBLISHER_META: {"x": "y" * 5000}})))
    assert too_big.path == '$._meta["io.modelcontextprotocol.registry/publisher-provided"]'


# --- the services -------------------------------------------------------------------------


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com")


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@example.com")


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


def events(action: Action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


def test_a_submission_is_stored_pending_and_audited_without_its_document(alice):
    submission = submission_create(actor=alice, text=json.dumps(doc()))
    assert (submission.name, submission.version, submission.status) == ("io.github.alice/weather", "1.0.0", "pending")
    assert submission.submitted_by == alice and submission.document == doc()
    [event] = events(Action.SUBMISSION_CREATED)
    assert event.workspace_id is None and event.actor == alice
    assert (event.target_type, event.target_id) == ("submission", str(submission.pk))
    assert event.metadata == {"name": "io.github.alice/weather", "version": "1.0.0"}
    assert not Server.objects.filter(name=submission.name).exists()  # not listed before review


def test_an_invalid_document_or_an_anonymous_user_stores_nothing(alice):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(SubmissionRefused) as caught:
        submission_create(actor=alice, text=json.dumps(doc(version="latest")))
    assert [p.path for p in caught.value.problems] == ["$.version"]
    with pytest.raises(Forbidden):
        submission_create(actor=AnonymousUser(), text=json.dumps(doc()))
    assert not Submission.objects.exists() and not AuditEvent.objects.exists()


def test_duplicates_and_names_that_belong_to_others_are_refused(alice, bob, root):
    submission_create(actor=alice, text=json.dumps(doc()))
    with pytest.raises(SubmissionRefused, match="already waiting for review"):
        submission_create(actor=alice, text=json.dumps(doc()))
    second = submission_create(actor=alice, text=json.dumps(doc(version="1.1.0")))
    submission_approve(submission=second, actor=root)
    with pytest.raises(SubmissionRefused, match="published on MCPNest by another user"):
        submission_create(actor=bob, text=json.dumps(doc(version="2.0.0")))
    with pytest.raises(SubmissionRefused, match=r"1\.1\.0 is already listed"):
        submission_create(actor=alice, text=json.dumps(doc(version="1.1.0")))

    official = Publisher.objects.create(namespace="io.github.modelcontextprotocol")
    Server.objects.create(name="io.github.modelcontextprotocol/everything", publisher=official)
    with pytest.raises(SubmissionRefused, match="already listed from the Official MCP registry"):
        submission_create(actor=bob, text=json.dumps(doc(name="io.github.modelcontextprotocol/everything")))
    Publisher.objects.create(namespace="com.example", verification=Publisher.Verification.NAMESPACE)
    with pytest.raises(SubmissionRefused, match="belongs to a verified publisher"):
        submission_create(actor=bob, text=json.dumps(doc(name="com.example/new")))
    assert Submission.objects.count() == 2


def test_approval_lists_it_like_an_indexed_server_unverified_and_scored(client, alice, root):
    submission = submission_create(actor=alice, text=json.dumps(doc()))
    with pytest.raises(Forbidden):
        submission_approve(submission=submission, actor=alice)

    server = submission_approve(submission=submission, actor=root)
    submission.refresh_from_db()
    assert submission.status == "approved" and submission.reviewed_by == root and submission.server == server
    assert server.source == Server.Source.SUBMITTED and not server.publisher.verified
    assert server.publisher.namespace == "io.github.alice"
    assert (server.version, server.description, server.transports, server.package_types) == (
        "1.0.0",
        "Weather forecasts for MCP clients.",
        ["stdio"],
        ["npm"],
    )
    assert server.repository_key == "alice/weather"
    assert server.grade and server.score > 0 and server.score_reasons
    assert Server.objects.listed().filter(pk=server.pk).exists()
    [event] = events(Action.SUBMISSION_APPROVED)
    assert event.actor == root and event.workspace_id is None and event.metadata["server"] == server.pk

    page = client.get(reverse("marketplace:detail", args=[server.name]))
    assert page.status_code == 200 and "WEATHER_API_KEY" in page.content.decode()
    listed = client.get("/v0.1/servers", {"search": "io.github.alice/weather"}).json()["servers"]
    assert [item["server"] for item in listed] == [doc()]
    latest = client.get(f"/v0.1/servers/{quote(server.name, safe='')}/versions/latest").json()
    assert latest["server"]["version"] == "1.0.0"

    # A later version, approved, becomes the latest.
    newer = submission_create(actor=alice, text=json.dumps(doc(version="1.1.0", description="Forecasts, v1.1.")))
    server = submission_approve(submission=newer, actor=root)
    assert (server.version, server.description) == ("1.1.0", "Forecasts, v1.1.")
    assert list(ServerVersion.objects.filter(server=server, is_latest=True).values_list("version", flat=True)) == [
        "1.1.0"
    ]


def test_only_a_pending_submission_is_approved_or_rejected(alice, root):
    first = submission_create(actor=alice, text=json.dumps(doc()))
    submission_approve(submission=first, actor=root)
    with pytest.raises(SubmissionNotPending):
        submission_approve(submission=first, actor=root)
    with pytest.raises(SubmissionNotPending):
        submission_reject(submission=first, actor=root, note="too late")

    second = submission_create(actor=alice, text=json.dumps(doc(version="2.0.0")))
    with pytest.raises(RuleViolation, match="Say why"):
        submission_reject(submission=second, actor=root, note="  ")
    with pytest.raises(Forbidden):
        submission_reject(submission=second, actor=alice, note="self-service")
    rejected = submission_reject(submission=second, actor=root, note="The npm package does not exist.")
    assert (rejected.status, rejected.review_note, rejected.reviewed_by) == (
        "rejected",
        "The npm package does not exist.",
        root,
    )
    with pytest.raises(SubmissionNotPending):
        submission_approve(submission=second, actor=root)
    [event] = events(Action.SUBMISSION_REJECTED)
    assert event.actor == root and event.metadata["note"] == "The npm package does not exist."
    assert ServerVersion.objects.filter(version="2.0.0").count() == 0
    assert len(events(Action.SUBMISSION_APPROVED)) == 1


def test_a_name_the_registry_brought_in_meanwhile_is_not_approved(alice, root):
    submission = submission_create(actor=alice, text=json.dumps(doc()))
    publisher = Publisher.objects.create(namespace="io.github.alice", verification=Publisher.Verification.NAMESPACE)
    Server.objects.create(name="io.github.alice/weather", publisher=publisher)
    with pytest.raises(SubmissionNotPending, match="reject this submission"):
        submission_approve(submission=submission, actor=root)
    submission.refresh_from_db()
    assert submission.status == "pending" and not events(Action.SUBMISSION_APPROVED)


# --- the pages ----------------------------------------------------------------------------

PUBLISH = "/servers/publish/"
SUBMISSIONS = "/servers/publish/submissions/"


def test_the_urls_are_not_taken_for_server_names():
    assert reverse("marketplace:publish") == PUBLISH
    assert reverse("marketplace:submissions") == SUBMISSIONS


def test_publishing_needs_a_signed_in_user(client, db):
    for url in (PUBLISH, SUBMISSIONS):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.post(PUBLISH, {"text": json.dumps(doc())}).status_code == 302
    assert not Submission.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(PUBLISH, {"text": json.dumps(doc())}).status_code == 403
    assert not Submission.objects.exists()


def test_errors_are_shown_with_their_paths_and_the_text_is_kept(client, alice):
    client.force_login(alice)
    text = json.dumps(doc(version="latest", description="x" * 120), indent=2)
    response = client.post(PUBLISH, {"text": text})
    body = response.content.decode()
    assert response.status_code == 400
    assert "2 problems to fix" in body
    assert '<code class="path">$.version</code> must be a specific version, not &quot;latest&quot;' in body
    assert '<code class="path">$.description</code> is 120 characters long; at most 100 are allowed' in body
    assert '"x' + "x" * 119 + '"' in body.replace("&quot;", '"')  # the textarea still holds it
    assert not Submission.objects.exists()

    empty = client.post(PUBLISH, {"text": ""})
    assert empty.status_code == 400 and "Paste your server.json or upload the file." in empty.content.decode()


def test_a_submission_pasted_or_uploaded_lands_in_ones_own_list_only(client, alice, bob, root):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    assert client.get(PUBLISH).status_code == 200
    response = client.post(PUBLISH, {"text": json.dumps(doc())})
    assert response.status_code == 302 and response["Location"] == SUBMISSIONS
    upload = SimpleUploadedFile("server.json", json.dumps(doc(version="1.0.1")).encode(), "application/json")
    assert client.post(PUBLISH, {"text": "", "file": upload})["Location"] == SUBMISSIONS
    rejected = Submission.objects.get(version="1.0.1")
    submission_reject(submission=rejected, actor=root, note="Please pin the package & retry.")

    mine = client.get(SUBMISSIONS).content.decode()
    assert mine.count("io.github.alice/weather") == 2
    assert "Waiting for review" in mine and "Rejected" in mine
    assert "Please pin the package &amp; retry." in mine

    client.force_login(bob)
    theirs = client.get(SUBMISSIONS)
    assert theirs.status_code == 200
    assert "io.github.alice/weather" not in theirs.content.decode()
    assert "You have not submitted a server yet." in theirs.content.decode()


def test_an_uploaded_invalid_file_is_shown_back_in_the_textarea(client, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    upload = SimpleUploadedFile("server.json", b'{"name": "io.github.alice/x",\n "version": 1}', "application/json")
    body = client.post(PUBLISH, {"file": upload}).content.decode()
    assert "$.version</code> must be a string, not a number" in body
    assert "$.description</code> is required" in body
    assert "io.github.alice/x" in body


# --- the admin review queue ---------------------------------------------------------------

CHANGELIST = "/admin/marketplace/submission/"


def _act(client, action, *submissions, query=""):
    return client.post(
        CHANGELIST + query,
        {"action": action, "_selected_action": [s.pk for s in submissions], "index": 0},
        follow=True,
    )


def test_staff_review_in_the_admin(client, alice, bob, root):
    listed = submission_create(actor=alice, text=json.dumps(doc()))
    refused = submission_create(actor=bob, text=json.dumps(doc(name="io.github.bob/tool")))
    client.force_login(root)

    queue = client.get(CHANGELIST).content.decode()
    assert "io.github.alice/weather" in queue and "io.github.bob/tool" in queue
    page = client.get(f"{CHANGELIST}{listed.pk}/change/").content.decode()
    assert "WEATHER_API_KEY" in page and "&quot;registryType&quot;: &quot;npm&quot;" in page  # pretty-printed

    assert "Listed: io.github.alice/weather 1.0.0." in _act(client, "approve", listed).content.decode()
    assert Server.objects.listed().filter(name="io.github.alice/weather", source="submitted").exists()
    # The default view is the queue: what is decided leaves it.
    queue = client.get(CHANGELIST).content.decode()
    assert "io.github.alice/weather" not in queue and "io.github.bob/tool" in queue
    assert "io.github.alice/weather" in client.get(CHANGELIST, {"status": "all"}).content.decode()

    # Reject without a note: refused, with the reason; then with the note written on the page.
    assert "Say why it is rejected" in _act(client, "reject", refused).content.decode()
    change = f"{CHANGELIST}{refused.pk}/change/"
    saved = client.post(change, {"review_note": "No such package on npm."})
    assert saved.status_code == 302
    refused.refresh_from_db()
    assert refused.status == "pending" and refused.review_note == "No such package on npm."
    assert "Rejected: io.github.bob/tool 1.0.0." in _act(client, "reject", refused).content.decode()
    refused.refresh_from_db()
    assert refused.status == "rejected" and refused.reviewed_by == root

    # Decided: read-only, and a second decision is refused with a message.
    decided = client.post(change, {"review_note": "rewritten"})
    refused.refresh_from_db()
    assert decided.status_code == 302 and refused.review_note == "No such package on npm."
    assert 'name="review_note"' not in client.get(change).content.decode()
    # Out of the queue, the action does not reach it; with every status shown, it is refused.
    outside = _act(client, "approve", listed).content.decode()
    assert "Listed:" not in outside and len(events(Action.SUBMISSION_APPROVED)) == 1
    assert "was already approved" in _act(client, "approve", listed, query="?status=all").content.decode()
    assert [e.actor for e in events(Action.SUBMISSION_APPROVED) + events(Action.SUBMISSION_REJECTED)] == [root, root]


def test_no_add_no_delete_and_no_queue_for_non_staff(client, alice, root):
    submission = submission_create(actor=alice, text=json.dumps(doc()))
    client.force_login(root)
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{submission.pk}/delete/").status_code == 403
    client.force_login(alice)
    assert client.get(CHANGELIST).status_code == 302  # to the admin's sign-in
    assert _act(client, "approve", submission).redirect_chain[0][0].startswith("/admin/login/")
    submission.refresh_from_db()
    assert submission.status == "pending"


def test_an_upload_over_the_size_limit_is_refused_unread(client, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    big = SimpleUploadedFile("server.json", b" " * (server_json.MAX_BYTES + 1), "application/json")
    response = client.post(PUBLISH, {"file": big})
    assert response.status_code == 400
    assert f"at most {server_json.MAX_BYTES} are accepted" in response.content.decode()
    assert not Submission.objects.exists()
