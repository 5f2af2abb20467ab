"""READMEs rendered for a server page: Markdown as GitHub shows it, and nothing a hostile
README could use to run script, restyle the page or send a visitor somewhere unsafe."""

from __future__ import annotations

import re

import pytest

from apps.marketplace.readme import MAX_BYTES, raw_base, render

BASE = "https://github.com/neo4j-contrib/mcp-neo4j/blob/main/"
RAW = "https://raw.githubusercontent.com/neo4j-contrib/mcp-neo4j/main/"


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def _srcs(html: str) -> list[str]:
    return re.findall(r'src="([^"]*)"', html)


def test_markdown_renders_with_tables_and_links_resolved_as_github_shows_them():
    html = render(
        "# Neo4j\n\n| Server | Does |\n|---|---|\n| cypher | queries |\n\n"
        "[Memory](servers/memory/README.md) · [Home](https://neo4j.com) · [Mail](mailto:team@neo4j.com) · "
        "[Up](../LICENSE) · [Here](#tools)\n\n![Logo](docs/logo.png) ~~old~~\n\n"
        '<p align="center"><img src="./img/banner.png" width="600" alt="banner"></p>\n',
        base_url=BASE,
    )
    assert "<h1>Neo4j</h1>" in html and "<td>cypher</td>" in html and "<s>old</s>" in html
    assert _hrefs(html) == [
        f"{BASE}servers/memory/README.md",
        "https://neo4j.com",
        "mailto:team@neo4j.com",
        "https://github.com/neo4j-contrib/mcp-neo4j/blob/LICENSE",
        "#tools",
    ]
    assert _srcs(html) == [f"{RAW}docs/logo.png", f"{RAW}img/banner.png"]
    assert html.count('rel="nofollow noopener noreferrer"') == 5
    assert '<p align="center"><img src=' in html and 'width="600"' in html


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
        '<img src=x onerror="alert(1)">',
        '<a href="#" onclick="alert(1)">x</a>',
        '<div onmouseover="alert(1)" style="position:fixed;inset:0">x</div>',
        '<svg onload="alert(1)"><script>alert(1)</script></svg>',
        '<iframe src="https://evil.example"></iframe>',
        '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/x.swf">',
        "<style>body{display:none}</style>",
        '<form action="https://evil.example"><input name="password"><button>Go</button></form>',
        '<meta http-equiv="refresh" content="0;url=https://evil.example">',
        '<base href="https://evil.example/">',
        "<scr<script>ipt>alert(1)</scr</script>ipt>",
        '<img src="x" <script>alert(1)</script>>',
        "<!--<img src=x onerror=alert(1)>-->",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    ],
)
def test_no_script_no_handler_no_style_survives(hostile):
    html = render(f"# Title\n\n{hostile}\n\ntext after", base_url=BASE)
    lowered = html.lower()
    for bad in ("<script", "onerror", "onclick", "onload", "onmouseover", "<iframe", "<object", "<embed", "<style"):
        assert bad not in lowered, html
    for bad in ("<form", "<input", "<meta", "<base", "<svg", "style=", "alert(1)</script"):
        assert bad not in lowered, html
    assert "text after" in html


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "jav&#x0A;ascript:alert(1)",
        "&#106;avascript:alert(1)",
        " javascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "file:///etc/passwd",
    ],
)
def test_links_and_images_only_go_to_http_https_or_mail(url):
    html = render(
        f'[a]({url}) ![b]({url})\n\n<a href="{url}">c</a> <img src="{url}"> <a href=\'{url}\'>d</a>', base_url=BASE
    )
    # (an entity-encoded control character makes the markdown link a harmless relative one,
    # "jav%0Aascript:…", resolved under the repository)
    for value in _hrefs(html) + _srcs(html):
        assert value.startswith(("https://", "http://", "mailto:", "#")), html


def test_images_never_use_mail_or_data_urls_and_links_get_rel_even_if_they_set_their_own():
    html = render(
        '<img src="mailto:x@example.com"><img src="data:image/png;base64,iVBORw0KGgo=">'
        '<a href="https://example.com" rel="opener" target="_blank">x</a>',
        base_url=BASE,
    )
    assert _srcs(html) == []
    assert '<a href="https://example.com" rel="nofollow noopener noreferrer">x</a>' in html


def test_nul_bytes_and_oversized_input_are_handled():
    html = render("A\x00B <scr\x00ipt>alert(1)</scr\x00ipt>", base_url=BASE)
    assert "\x00" not in html and "\ufffd" in html and "<script" not in html.lower()
    huge = "word " * (MAX_BYTES // 5 + 10_000)
    rendered = render(huge + "\n\nTHE-END", base_url=BASE)
    assert "THE-END" not in rendered and len(rendered) < MAX_BYTES + 100
    # A cut in the middle of a multi-byte character is not an error.
    assert render("é" * MAX_BYTES, base_url=BASE).startswith("<p>é")


def test_empty_and_non_github_bases():
    assert render("   \n", base_url=BASE) == ""
    assert raw_base(BASE) == RAW
    assert raw_base("https://gitlab.com/a/b/-/blob/main/") == "https://gitlab.com/a/b/-/blob/main/"
    html = render("[x](docs/a.md) ![y](img.png)", base_url="https://gitlab.com/a/b/-/blob/main/")
    assert _hrefs(html) == ["https://gitlab.com/a/b/-/blob/main/docs/a.md"]
    assert _srcs(html) == ["https://gitlab.com/a/b/-/blob/main/img.png"]
