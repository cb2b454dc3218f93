"""A runbook's Markdown as a safe page: headings with anchors and a table of contents,
tables and checklists, raw HTML shown as text, links only to http(s) and mail, no images
from elsewhere, and each shell block as a list of commands with their portal buttons."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nh3
from django.template.loader import get_template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.anchors.index import slugify
from mdit_py_plugins.tasklists import tasklists_plugin

from apps.runbooks.binding import Binder, Binding
from apps.runbooks.commands import SHELL_LANGUAGES, Command, split_commands
from apps.runbooks.procedures import runnable_anchors
from apps.runbooks.recognition import recognize

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "input", "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
HEADINGS = {f"h{level}": {"id"} for level in range(1, 7)}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "code": {"class"},
    "input": {"type", "checked", "disabled", "class"},
    "li": {"class"},
    "ul": {"class"},
    "ol": {"start"},
    **HEADINGS,
}


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass
class CommandView:
    command: Command
    binding: Binding


@dataclass
class Rendered:
    """The page's HTML (safe), its table of contents, and every command with its binding."""

    html: SafeString
    toc: list[Heading] = field(default_factory=list)
    commands: list[CommandView] = field(default_factory=list)


def _anchor(text: str) -> str:
    return "s-" + slugify(text)


def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False})
    parser.enable("table").enable("strikethrough")
    parser.use(tasklists_plugin).use(anchors_plugin, min_level=1, max_level=4, slug_func=_anchor)

    def image(renderer: Any, tokens: list[Token], index: int, options: Any, env: Any) -> str:
        # Never fetched: an image elsewhere would tell its owner who reads the runbook.
        token = tokens[index]
        alt = "".join(child.content for child in token.children or [])
        return escape(f"[image: {alt or token.attrGet('src') or ''}]")

    parser.add_render_rule("image", image)
    return parser


_PARSER = _parser()


def _marker_tokens(marker: str) -> list[Token]:
    """A paragraph holding only ``marker``, replaced after sanitizing by the portal's markup:
    the text cannot forge the nonce in it."""
    text = Token("text", "", 0, content=marker)
    return [
        Token("paragraph_open", "p", 1),
        Token("inline", "", 0, content=marker, children=[text]),
        Token("paragraph_close", "p", -1),
    ]


def _language(token: Token) -> str:
    words = (token.info or "").strip().split(maxsplit=1)
    return words[0].lower() if words else ""


def parse(markdown: str) -> list[Token]:
    """The tokens of ``markdown`` as the page renders them (headings with their anchors)."""
    return _PARSER.parse(markdown)


def render_runbook(
    markdown: str, binder: Binder, start_link: Callable[[str], str] | None = None
) -> Rendered:
    """Render ``markdown``: sanitized HTML in which each shell block is replaced, after
    sanitizing, by the portal's own markup of its commands; with ``start_link`` (a section's
    anchor → the URL that starts a guided run of it), each heading with steps gets a
    "Start this procedure" button."""
    nonce = secrets.token_hex(8)
    blocks: dict[str, list[CommandView]] = {}
    starts: dict[str, str] = {}
    rendered = Rendered(mark_safe(""))
    tokens: list[Token] = []
    parsed = _PARSER.parse(markdown)
    runnable = runnable_anchors(parsed) if start_link else set()
    for index, token in enumerate(parsed):
        if token.type == "heading_close" and start_link is not None:
            anchor = str(parsed[index - 2].attrGet("id"))
            tokens.append(token)
            if anchor in runnable:
                marker = f"runbook-start-{nonce}-{index}"
                starts[marker] = start_link(anchor)
                tokens += _marker_tokens(marker)
            continue
        if token.type == "heading_open" and index + 1 < len(parsed):
            rendered.toc.append(
                Heading(int(token.tag[1]), parsed[index + 1].content, str(token.attrGet("id")))
            )
        if token.type != "fence" or _language(token) not in SHELL_LANGUAGES:
            tokens.append(token)
            continue
        line = token.map[0] + 2 if token.map else 1
        views = [
            CommandView(command, binder.bind(recognize(command.text)))
            for command in split_commands(token.content, line)
        ]
        marker = f"runbook-block-{nonce}-{index}"
        blocks[marker] = views
        rendered.commands.extend(views)
        # Replaced by the block's markup after sanitizing: the text cannot forge the nonce.
        tokens += _marker_tokens(marker)
    html = _PARSER.renderer.render(tokens, _PARSER.options, {})
    html = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    template = get_template("runbooks/_block.html")
    for marker, views in blocks.items():
        html = html.replace(f"<p>{marker}</p>", template.render({"commands": views}), 1)
    for marker, url in starts.items():
        button = format_html(
            '<p class="runbook-start"><a class="btn btn-sm btn-outline-success" href="{}">'
            '<i class="bi bi-list-check" aria-hidden="true"></i> Start this procedure</a></p>',
            url,
        )
        html = html.replace(f"<p>{marker}</p>", button, 1)
    rendered.html = mark_safe(html)  # sanitized above; the blocks are our own escaped markup
    return rendered
