"""A repository's README as HTML safe to put on a server page.

The Markdown is rendered by markdown-it-py (CommonMark, with tables and strikethrough) with raw
HTML allowed, because real READMEs lean on it (centred logos, ``<details>``, badges); then
*everything* goes through nh3 (the ammonia sanitiser), which is what makes it safe, not the
renderer:

* an allowlist of tags and attributes: no script, style, iframe, object, form or SVG, and no
  event handler or ``style`` attribute survives (script and style lose their content too);
* links may only be http, https or mailto, images only http or https (so no ``javascript:``
  and no ``data:``), every link gets ``rel="nofollow noopener noreferrer"``;
* a relative link is resolved against the repository's blob URL
  (``https://github.com/owner/repo/blob/HEAD/``) and a relative image against its raw
  counterpart (``https://raw.githubusercontent.com/owner/repo/HEAD/``), as GitHub shows them.

Input is capped (``MAX_BYTES``) before rendering, and NUL bytes become U+FFFD as CommonMark
asks. Django-free.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import nh3
from markdown_it import MarkdownIt

MAX_BYTES = 256 * 1024

TAGS = {
    *("h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "blockquote", "pre", "code", "kbd", "samp", "var"),
    *("a", "img", "em", "strong", "b", "i", "u", "s", "del", "ins", "strike", "mark", "small", "sub", "sup"),
    *("ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption"),
    *("details", "summary", "div", "span", "abbr", "picture", "figure", "figcaption", "tt", "center"),
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height", "align"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan"},
    "details": {"open"},
    **{tag: {"align"} for tag in ("p", "div", "h1", "h2", "h3", "h4", "h5", "h6")},
}
# Removed with their content, not just their tags (their text is code, not prose).
DROPPED_WITH_CONTENT = {"script", "style", "noscript", "template", "textarea", "title", "iframe", "object", "svg"}
LINK_SCHEMES = {"http", "https", "mailto"}
IMAGE_SCHEMES = {"http", "https"}
LINK_REL = "nofollow noopener noreferrer"
_GITHUB_BLOB = re.compile(r"^https://github\.com/([^/]+)/([^/]+)/blob/(.+)$")

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def raw_base(base_url: str) -> str:
    """``https://github.com/o/r/blob/HEAD/`` → ``https://raw.githubusercontent.com/o/r/HEAD/``;
    any other base is kept."""
    match = _GITHUB_BLOB.match(base_url)
    if not match:
        return base_url
    owner, repo, rest = match.groups()
    return f"https://raw.githubusercontent.com/{owner}/{repo}/{rest}"


def _resolver(base_url: str):
    images = raw_base(base_url)

    def resolve(tag: str, attribute: str, value: str) -> str | None:
        # nh3 has already removed absolute URLs of other schemes; only relative ones (and
        # safe absolute ones) reach here, and what we return is not checked again.
        if (tag, attribute) not in (("a", "href"), ("img", "src")):
            return value
        if tag == "a" and value.startswith("#"):
            return value  # an anchor on the same page
        absolute = urljoin(images if tag == "img" else base_url, value.strip())
        scheme = urlsplit(absolute).scheme.lower()
        return absolute if scheme in (IMAGE_SCHEMES if tag == "img" else LINK_SCHEMES) else None

    return resolve


def _capped(markdown: str) -> str:
    data = markdown.encode("utf-8", errors="replace")[:MAX_BYTES]
    return data.decode("utf-8", errors="ignore").replace("\x00", "\ufffd")


def render(markdown: str, *, base_url: str) -> str:
    """The README's Markdown as sanitised HTML; relative URLs resolved against ``base_url``
    (the blob URL of the README's folder, ending in a slash)."""
    if not markdown.strip():
        return ""
    html = _markdown.render(_capped(markdown))
    return nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=_resolver(base_url),
        url_schemes=LINK_SCHEMES,
        url_relative="pass_through",
        link_rel=LINK_REL,
        strip_comments=True,
    )
