"""A small client for GitHub's REST API (v3): what the marketplace knows of a repository.

Three calls per repository, each conditional on the ETag of its last answer (a ``304 Not
Modified`` costs nothing of the rate limit, so a daily refresh of an unchanged catalogue is
nearly free):

* ``GET /repos/{owner}/{repo}``: stars, archived, licence (SPDX id), topics, ``pushed_at``;
* ``GET /repos/{owner}/{repo}/commits?per_page=1``: the last commit's committer date;
* ``GET /repos/{owner}/{repo}/readme``: the README (base64 in the JSON form), with the URL it
  is published at, to resolve its relative links.

Rate limits are honoured rather than hammered: a ``403``/``429`` with ``Retry-After`` (a
secondary limit) or with ``X-RateLimit-Remaining: 0`` (the primary one) raises
``RateLimited`` with the time to try again, and once a response says the quota is spent the
client refuses further calls until ``X-RateLimit-Reset`` without sending them. A repository
GitHub does not know raises ``NotFound``; anything else unexpected ``GitHubError`` with a
short reason, and a token GitHub refuses ``Unauthorized``. The token (``Authorization:
Bearer``) is never put in a message. Django-free.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
# When GitHub says "rate limited" without saying until when (a secondary limit may come
# with no header at all), wait this long: its documentation asks for at least a minute.
BLIND_WAIT = timedelta(minutes=1)
# A README longer than this is cut (the renderer caps its input at the same size); GitHub's own limit for
# the contents API is 1 MB.
MAX_README_BYTES = 256 * 1024


class GitHubError(Exception):
    """GitHub answered something we cannot use; the message is short and holds no secret.
    ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class NotFound(GitHubError):
    """No such repository (deleted, renamed away without a redirect, or private)."""


class Unauthorized(GitHubError):
    """GitHub refused the token (401): a configuration problem, the same for every repository."""


class RateLimited(GitHubError):
    """GitHub asked us to stop until ``until``."""

    def __init__(self, message: str, *, until: datetime, status: int | None = None):
        super().__init__(message, status=status)
        self.until = until


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class License(_Shape):
    spdx_id: str | None = None


class RepositoryInfo(_Shape):
    full_name: str
    html_url: str
    stargazers_count: int = 0
    archived: bool = False
    disabled: bool = False
    license: License | None = None
    topics: list[str] = []
    pushed_at: datetime | None = None
    default_branch: str = ""

    @property
    def spdx_id(self) -> str:
        # GitHub says NOASSERTION for a licence file it could not identify: we keep it, the
        # score says what it means.
        return (self.license.spdx_id or "") if self.license else ""


class _Signature(_Shape):
    date: datetime | None = None


class _CommitDetail(_Shape):
    author: _Signature | None = None
    committer: _Signature | None = None


class CommitItem(_Shape):
    sha: str
    commit: _CommitDetail

    @property
    def date(self) -> datetime | None:
        # The committer date is when it landed on the branch (a rebase or a merge queue
        # re-commits), which is what "maintained" means; the author date is a fallback.
        for who in (self.commit.committer, self.commit.author):
            if who and who.date:
                return who.date
        return None


class Readme(_Shape):
    path: str = "README.md"
    html_url: str | None = None
    content: str = ""
    encoding: str = "base64"

    def text(self) -> str:
        if self.encoding != "base64":
            raise GitHubError(f"README in an unexpected encoding {self.encoding[:20]!r}")
        try:
            data = base64.b64decode(self.content, validate=False)
        except (binascii.Error, ValueError):
            raise GitHubError("README content is not base64") from None
        return data[:MAX_README_BYTES].decode("utf-8", errors="replace")

    @property
    def base_url(self) -> str:
        """The blob URL of the README's folder, to resolve its relative links against."""
        if self.html_url and "/blob/" in self.html_url:
            return self.html_url.rsplit("/", 1)[0] + "/"
        return ""


@dataclass(frozen=True)
class Answer:
    """One conditional GET: ``body`` None when GitHub said 304 (unchanged since ``etag``)."""

    body: Any
    etag: str

    @property
    def changed(self) -> bool:
        return self.body is not None


@dataclass(frozen=True)
class Fetched:
    """What one repository's three calls found. ``info`` is None when it was not modified;
    ``last_commit_at`` and ``readme`` mean something only when their ``*_changed`` is true
    (None and "" then say there is no commit, no README)."""

    info: RepositoryInfo | None
    info_etag: str
    commits_changed: bool
    last_commit_at: datetime | None
    commits_etag: str
    readme_changed: bool
    readme: str  # Markdown, "" when the repository has none
    readme_base_url: str
    readme_etag: str


def _when(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC) if value else None
    except (TypeError, ValueError, OverflowError):
        return None


def _message(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message") or "")[:200] if isinstance(body, dict) else ""


class GitHubClient:
    """``GitHubClient(base_url, token=...)``; one per batch (it tracks the rate limit).
    ``client`` and ``now`` are for tests that bring their own transport or clock."""

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        *,
        token: str = "",
        timeout: float = 20.0,
        client: httpx2.Client | None = None,
        now: Callable[[], datetime] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "MCPNest (+https://github.com/mcpnest)",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._token = token
        self._client = client or httpx2.Client(timeout=timeout, follow_redirects=True)
        self._now = now or (lambda: datetime.now(UTC))
        self.requests = 0
        self.remaining: int | None = None
        self.reset_at: datetime | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _safe(self, text: str) -> str:
        # Nothing we build includes the token; this is for what a server or a transport
        # error might echo back.
        return text.replace(self._token, "[token]") if self._token else text

    def get(self, path: str, *, etag: str = "", params: dict[str, Any] | None = None) -> Answer:
        """A conditional GET of ``path``; raises ``NotFound``, ``RateLimited`` or ``GitHubError``."""
        if self.remaining == 0 and self.reset_at and self.reset_at > self._now():
            raise RateLimited("rate limit spent", until=self.reset_at)
        headers = {**self._headers, **({"If-None-Match": etag} if etag else {})}
        try:
            response = self._client.get(f"{self.base_url}{path}", params=params, headers=headers)
        except httpx2.HTTPError as exc:
            raise GitHubError(self._safe(f"GET {path}: {type(exc).__name__}")) from None
        self.requests += 1
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.isdigit():
            self.remaining = int(remaining)
            self.reset_at = _when(response.headers.get("X-RateLimit-Reset")) or self.reset_at
        status = response.status_code
        if status == 304:
            return Answer(body=None, etag=etag)
        if status in (403, 429):
            self._raise_if_limited(response, path)
        if status == 404:
            raise NotFound(f"GET {path}: 404 Not Found", status=404)
        if status == 401:
            raise Unauthorized(self._safe(f"GET {path}: 401 {_message(response) or 'Unauthorized'}"), status=401)
        if status != 200:
            reason = _message(response) or response.reason_phrase
            raise GitHubError(self._safe(f"GET {path}: HTTP {status} {reason}".strip()), status=status)
        try:
            body = response.json()
        except ValueError:
            raise GitHubError(f"GET {path}: not JSON") from None
        return Answer(body=body, etag=response.headers.get("ETag", "")[:200])

    def _raise_if_limited(self, response: httpx2.Response, path: str) -> None:
        now = self._now()
        retry_after = response.headers.get("Retry-After", "")
        message = _message(response)
        if retry_after.isdigit():
            raise RateLimited(
                f"GET {path}: HTTP {response.status_code}, retry after {retry_after}s",
                until=now + timedelta(seconds=int(retry_after)),
                status=response.status_code,
            )
        if self.remaining == 0:
            until = self.reset_at if self.reset_at and self.reset_at > now else now + BLIND_WAIT
            raise RateLimited(
                f"GET {path}: HTTP {response.status_code}, rate limit spent", until=until, status=response.status_code
            )
        if response.status_code == 429 or "rate limit" in message.lower():
            raise RateLimited(
                f"GET {path}: HTTP {response.status_code}, rate limited",
                until=now + BLIND_WAIT,
                status=response.status_code,
            )
        # Any other 403 (a repository blocked for legal reasons, a token without access).
        raise GitHubError(self._safe(f"GET {path}: HTTP {response.status_code} {message}".strip()), status=403)

    def fetch(self, key: str, *, etag: str = "", commits_etag: str = "", readme_etag: str = "") -> Fetched:
        """The repository ``owner/repo``: its metadata, last commit and README, each only if
        it changed since the given ETag."""
        base = f"/repos/{key}"
        answer = self.get(base, etag=etag)
        info = self._parse(RepositoryInfo, answer.body, base) if answer.changed else None
        commits_changed, last_commit_at, commits_etag_new = True, None, ""
        try:
            commits = self.get(f"{base}/commits", etag=commits_etag, params={"per_page": 1})
        except GitHubError as exc:
            # An empty repository answers 409 "Git Repository is empty.": no commit, no error.
            if exc.status != 409 or isinstance(exc, RateLimited):
                raise
        else:
            commits_changed, commits_etag_new = commits.changed, commits.etag
            if commits.changed:
                items = commits.body if isinstance(commits.body, list) else []
                last_commit_at = self._parse(CommitItem, items[0], f"{base}/commits").date if items else None
        readme_changed, readme_text, readme_base, readme_etag_new = True, "", "", ""
        try:
            readme = self.get(f"{base}/readme", etag=readme_etag)
        except NotFound:
            pass  # no README: the repository exists (we just asked), it only lacks one
        else:
            readme_changed, readme_etag_new = readme.changed, readme.etag
            if readme.changed:
                parsed = self._parse(Readme, readme.body, f"{base}/readme")
                readme_text, readme_base = parsed.text(), parsed.base_url
        return Fetched(
            info=info,
            info_etag=answer.etag,
            commits_changed=commits_changed,
            last_commit_at=last_commit_at,
            commits_etag=commits_etag_new,
            readme_changed=readme_changed,
            readme=readme_text,
            readme_base_url=readme_base,
            readme_etag=readme_etag_new,
        )

    @staticmethod
    def _parse(shape: type[_Shape], body: Any, path: str):
        try:
            return shape.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise GitHubError(f"GET {path}: unexpected response ({where}: {first['msg']})") from None
