"""A runbook's fenced code blocks, split into shell commands.

Pure text work: nothing here runs, expands or evaluates anything. Quotes are followed so
that a multi-line ``psql -c "SELECT …"`` stays one command, ``\\`` at the end of a line joins
the next one, whole-line ``#`` comments are kept as the heading of the command that follows,
and a trailing ``# note`` is kept apart from the command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Fences whose language says they are not shell: their lines are never commands.
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh", "shell-session", "terminal"}


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its text, and the line its fence opens on."""

    language: str
    text: str
    line: int  # 1-based line of the opening fence in the document

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES


@dataclass(frozen=True)
class Command:
    """One command as written (continuations joined), where it starts, and its notes."""

    text: str
    line: int  # 1-based line in the document
    note: str = ""  # the trailing "# …" of its last line
    comments: tuple[str, ...] = field(default=())  # the "# …" lines just above it


_UNQUOTED = re.compile(r"['\"\\\\#\n]")
_IN_DOUBLE = re.compile(r'["\\\\\n]')
_IN_SINGLE = re.compile(r"['\n]")
_WORD_BREAK = " \t;|&("


_QUOTE_MARKER = re.compile(r" {0,3}> ?")
_FENCE_OPEN = re.compile(r"(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def _quote_depth(line: str) -> tuple[int, str]:
    """How many ``>`` markers open the line, and the line without them."""
    depth = 0
    while True:
        found = _QUOTE_MARKER.match(line)
        if found is None:
            return depth, line
        depth += 1
        line = line[found.end() :]


_LIST_ITEM = re.compile(r" {0,3}(?:[-+*]|\d{1,9}[.)])(?: {1,4}(?=\S)| *$)")
LOOK_BACK = 200


def _item_offset(lines: list[str], index: int, indent: int, code: dict[int, int]) -> int:
    """When the line ``index``, indented by ``indent``, continues a list item (the nearest
    line above it that is less indented starts one), the column of the item's text; else 0."""
    lazy = False  # in a paragraph that may have begun in an item
    for number in range(index - 1, max(-1, index - 1 - LOOK_BACK), -1):
        line = lines[number]
        if number in code:
            if lazy or not code[number]:
                return 0  # a block at the margin, or one that ended the paragraph
            continue
        if not line.strip():
            if lazy:
                return 0
            continue
        if _indent(line) >= indent and not lazy:
            continue
        item = _LIST_ITEM.match(line)
        if item is None and (_QUOTE_MARKER.match(line) or _FENCE_OPEN.match(line)):
            return 0  # a quote or a fence: not a paragraph of the item
        if item is None:
            lazy = True  # a paragraph's line: its first line decides
            continue
        offset = item.end() if line[item.end() :].strip() else len(line.rstrip()) + 1
        return offset if indent >= offset else 0
    return 0


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced code block of the document, also those nested in lists or quotes.

    A line-based reader of CommonMark's fences (a markdown-it parse of a 1 MB runbook takes
    a second, most of it on blocks that are not code): an opening fence of three or more
    backticks or tildes at any indentation, its lines stripped of that indentation, closed by
    a fence of the same character at least as long, by the end of the quote it opened in,
    by a line back at the margin when it was indented (its list item ended), or by the end
    of the text. tests/runbooks/test_commands.py holds it to markdown-it's blocks."""
    blocks: list[Block] = []
    lines = markdown.expandtabs(4).split("\n")
    ends_line = bool(lines) and not lines[-1]
    if ends_line:
        lines.pop()  # the end of the last line, not a line
    number = 0
    total = len(lines)
    code: dict[int, int] = {}  # line index → the item offset of the block holding it
    while number < total:
        depth, line = _quote_depth(lines[number])
        opening = _FENCE_OPEN.match(line)
        number += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"]
        if fence[0] == "`" and "`" in info:
            continue  # an inline code span, not a fence
        indent = len(opening["indent"])
        start = number  # 1-based line of the opening fence
        item_offset = _item_offset(lines, number - 1, indent, code) if indent else 0
        content: list[str] = []
        closed = False
        while number < total:
            inner_depth, inner = _quote_depth(lines[number]) if depth else (0, lines[number])
            if inner_depth < depth:
                break  # the quote ended
            if item_offset and inner.strip() and _indent(inner) < item_offset:
                break  # back at the margin: the list item ended
            number += 1
            stripped = inner.strip()
            if (
                _indent(inner) < indent + 4
                and stripped.startswith(fence[0] * len(fence))
                and not stripped.strip(fence[0])
            ):
                closed = True
                break
            content.append(inner[min(indent, _indent(inner)) :])
        words = info.strip().split(maxsplit=1)[0:1]
        text = "".join(f"{line}\n" for line in content)
        if number >= total and not ends_line and content and not closed:
            text = text[:-1]  # unclosed at the end of a text without a final newline
        blocks.append(Block(words[0].lower() if words else "", text, start))
        code.update(dict.fromkeys(range(start - 1, number), item_offset))
    return blocks


def split_commands(text: str, first_line: int = 1) -> list[Command]:
    """Split a shell block into commands. Total: any text gives a list, never an error."""
    commands: list[Command] = []
    comments: list[str] = []
    current: list[str] = []
    note: list[str] = []
    start = first_line
    line = first_line
    quote = ""  # the open quote character, if any
    at_word_start = True
    i = 0
    length = len(text)

    def finish() -> None:
        nonlocal current, note
        command = "".join(current).strip()
        if command.startswith("$ "):  # a prompt copied with the command
            command = command[2:].lstrip()
        noted = "".join(note).strip().lstrip("#").strip()
        if command:
            commands.append(Command(command, start, noted, tuple(comments)))
            comments.clear()
        elif noted:
            comments.append(noted)
        current = []
        note = []

    # Jumps from one character that matters to the next: a 1 MB runbook is read in well under
    # a second.
    while i < length:
        if quote == "'":
            found = _IN_SINGLE.search(text, i)
            j = found.start() if found else length
            current.append(text[i : j + 1])
            if j < length:
                if text[j] == "'":
                    quote = ""
                else:
                    line += 1
            i = j + 1
            continue
        found = (_IN_DOUBLE if quote else _UNQUOTED).search(text, i)
        j = found.start() if found else length
        if j > i:
            current.append(text[i:j])
            at_word_start = not quote and text[j - 1] in _WORD_BREAK
        if j >= length:
            break
        char = text[j]
        i = j + 1
        if char == "\\":
            following = text[j + 1 : j + 2]
            if following == "\n":  # a continuation: the two lines are one command
                current.append(" ")
                line += 1
            else:
                current.append(char + following)
                at_word_start = False
            i = j + 2
        elif quote:
            if char == quote:
                quote = ""
            else:
                line += 1
            current.append(char)
        elif char in "'\"":
            quote = char
            at_word_start = False
            current.append(char)
        elif char == "#" and at_word_start:
            end = text.find("\n", j)
            end = length if end < 0 else end
            note.append(text[j:end])
            i = end
        elif char == "\n":
            finish()
            line += 1
            start = line
            at_word_start = True
        else:  # a "#" inside a word
            current.append(char)
            at_word_start = False
    finish()
    return commands


def document_commands(markdown: str) -> list[tuple[Block, list[Command]]]:
    """The shell blocks of a document with their commands (other languages left out)."""
    return [
        (block, split_commands(block.text, block.line + 1))
        for block in fenced_blocks(markdown)
        if block.is_shell
    ]
