"""The line-based fence reader of commands.py against markdown-it's own parse: the same
blocks (language, text, line) on the two real runbooks, on a 1 MB runbook and on the tricky
cases (lists, quotes, tildes, longer fences, unclosed fences, inline code spans)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from apps.runbooks.commands import Block, fenced_blocks

DATA = Path(__file__).parent / "data"
_PARSER = MarkdownIt("commonmark")
_PARSER.core.ruler.disable("inline")


def parsed_blocks(markdown: str) -> list[Block]:
    blocks = []
    for token in _PARSER.parse(markdown):
        if token.type == "fence":
            words = (token.info or "").strip().split(maxsplit=1)[0:1]
            line = token.map[0] + 1 if token.map else 0
            blocks.append(Block(words[0].lower() if words else "", token.content, line))
    return blocks


TRICKY = [
    "```bash\nkubectl get pods\n```\n",
    "1. Restart\n   ```bash\n   kubectl rollout restart deployment/x -n y\n   ```\n2. Then\n",
    "- item\n\n  ~~~sh\n  redis-cli ping\n  ~~~\n",
    "> ```\n> psql -c 'SELECT 1'\n> ```\n\nafter\n",
    "````\n```\nnot closed by three\n````\n",
    "```bash\nnever closed\nkubectl get pods\n",
    "Use ``` `x` ``` inline, then\n```\nreal\n```\n",
    "text\n```sh\ninterrupts a paragraph\n```\n",
    "1. One\n   ```bash\n   a\n\n   b\n   ```\n",
    "```\n  indented inside\n```\n",
    "  ```\n  two spaces\n    four\n  ```\n",
    "1. Step\n   ```bash\n   open in a list\n\nback at the margin\n",
    "```bash\n   ```\n",
]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.md")))
def test_it_reads_the_real_runbooks_as_markdown_it_does(name: str) -> None:
    source = (DATA / name).read_text()
    assert fenced_blocks(source) == parsed_blocks(source)


@pytest.mark.parametrize("source", TRICKY)
def test_it_reads_the_tricky_cases_as_markdown_it_does(source: str) -> None:
    assert fenced_blocks(source) == parsed_blocks(source)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "```",
                "```bash",
                "~~~",
                "````",
                "   ```",
                "  ```",
                "> ```",
                "> x",
                "1. step",
                "- item",
                "   x",
                "x",
                "",
            ]
        ),
        max_size=12,
    )
)
def test_random_fence_layouts_are_read_as_markdown_it_does(lines: list[str]) -> None:
    source = "\n".join(lines)
    assert fenced_blocks(source) == parsed_blocks(source)
