"""Rendering a runbook: sections with anchors and a table of contents, tables and checklists,
and nothing active from the document itself."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from apps.runbooks.binding import Binder
from apps.runbooks.rendering import render_runbook

HOSTILE = """# Runbook

<script>alert("raw")</script>
<img src="https://tracker.example/pixel.gif" onerror="alert(1)">
<a href="https://example.org" onclick="alert(2)">raw link</a>
<iframe src="https://evil.example"></iframe>

[click me](javascript:alert(3)) and [data](data:text/html;base64,PHNjcmlwdD4=)
and [fine](https://example.org/ok) and ![pixel](https://tracker.example/p.png)

<div style="background:url(https://evil.example/x)">styled</div>

```bash
kubectl rollout undo deployment/api -n shop   # </code><script>alert(4)</script>
```
"""


@pytest.fixture
def binder(db: None) -> Binder:
    return Binder()


class _Elements(HTMLParser):
    """The elements and attributes a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


def test_it_renders_script_raw_html_javascript_links_and_remote_images_inert(
    binder: Binder,
) -> None:
    html = render_runbook(HOSTILE, binder).html
    elements = _elements(html)
    tags = {tag for tag, _ in elements}
    assert not tags & {"script", "img", "iframe", "style", "object", "embed", "form"}
    for tag, attrs in elements:
        assert not [name for name in attrs if name.startswith("on") or name == "style"], tag
        for name in ("href", "src"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("https://", "http://", "/", "?", "#")), value
    links = [attrs["href"] for tag, attrs in elements if tag == "a"]
    assert "https://example.org/ok" in links
    assert not [link for link in links if link and "example.org" in link and "ok" not in link]
    # Raw HTML stays readable as text, the image as its alt text.
    assert '&lt;script&gt;alert("raw")&lt;/script&gt;' in html
    assert "[image: pixel]" in html
    # The command's note is escaped inside the portal's own markup.
    assert "&lt;/code&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in html


def test_it_gives_sections_anchors_and_a_table_of_contents(binder: Binder) -> None:
    rendered = render_runbook("# Ops\n\n## 5.2 Database Connection Errors\n\n### Steps\n", binder)
    assert [(h.level, h.text, h.anchor) for h in rendered.toc] == [
        (1, "Ops", "s-ops"),
        (2, "5.2 Database Connection Errors", "s-52-database-connection-errors"),
        (3, "Steps", "s-steps"),
    ]
    assert '<h2 id="s-52-database-connection-errors">' in rendered.html


def test_it_renders_tables_and_checklists(binder: Binder) -> None:
    html = render_runbook(
        "| Metric | Critical |\n|---|---|\n| Error rate | > 5% |\n\n"
        "- [x] notified\n- [ ] verified\n",
        binder,
    ).html
    assert "<td>Error rate</td>" in html and "<td>&gt; 5%</td>" in html
    assert html.count('type="checkbox"') == 2
    assert 'checked="checked"' in html and 'disabled="disabled"' in html


def test_a_document_cannot_forge_the_command_block_markers(binder: Binder) -> None:
    rendered = render_runbook(
        "runbook-block-0000000000000000-1\n\n```\nredis-cli ping\n```\n", binder
    )
    assert "<p>runbook-block-0000000000000000-1</p>" in rendered.html
    assert rendered.html.count('class="runbook-block') == 1
    assert len(rendered.commands) == 1
