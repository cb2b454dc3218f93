"""A runbook's fenced code blocks, split into shell commands.

Pure text work: nothing here runs, expands or evaluates anything. Quotes are followed so
that a multi-line ``psql -c "SELECT …"`` stays one command, ``\\`` at the end of a line joins
the next one, whole-line ``#`` comments are kept as the heading of the command that follows,
and a trailing ``# note`` is kept apart from the command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

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


_PARSER = MarkdownIt("commonmark")
# Only the blocks are wanted: the inline parse (emphasis, links…) is most of the work.
_PARSER.core.ruler.disable("inline")
_UNQUOTED = re.compile(r"['\"\\\\#\n]")
_IN_DOUBLE = re.compile(r'["\\\\\n]')
_IN_SINGLE = re.compile(r"['\n]")
_WORD_BREAK = " \t;|&("


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced code block of the document, also those nested in lists or quotes."""
    blocks: list[Block] = []
    for token in _PARSER.parse(markdown):
        if token.type != "fence":
            continue
        language = (token.info or "").strip().split(maxsplit=1)[0:1]
        line = token.map[0] + 1 if token.map else 0
        blocks.append(Block(language[0].lower() if language else "", token.content, line))
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
