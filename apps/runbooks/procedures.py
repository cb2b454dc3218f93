"""A runbook's sections as procedures: the numbered steps, checklist items and shell commands
under one heading, in order, ready to become a guided run.

A section runs from its heading to the next heading of the same or a higher level. Its steps:
each item of a numbered list, each checklist item (``- [ ]``), with the shell commands fenced
inside it; and each command of a shell block that stands outside any step (a runbook's
"Verification steps" block), named by the ``# comment`` above it. Pure text work."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it.token import Token

from apps.runbooks.commands import SHELL_LANGUAGES, split_commands

MAX_STEPS = 200
_NUMBERED = re.compile(r"^\d+[.)]\s*")
MAX_TEXT = 500


@dataclass
class StepSpec:
    kind: str  # "step" (numbered), "check" (checklist item) or "command" (a block's command)
    text: str
    details: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


@dataclass
class Procedure:
    anchor: str
    title: str
    level: int
    steps: list[StepSpec] = field(default_factory=list)


def _plain(token: Token) -> str:
    """An inline token's text without its markup (checkbox HTML left out)."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())[:MAX_TEXT]


def _language(token: Token) -> str:
    words = (token.info or "").strip().split(maxsplit=1)
    return words[0].lower() if words else ""


def _steps(tokens: list[Token]) -> list[StepSpec]:
    steps: list[StepSpec] = []
    lists: list[str] = []  # the open lists' tags, innermost last
    items: list[StepSpec | None] = []  # per open list item: the step it opened, or None
    for token in tokens:
        if token.type in ("ordered_list_open", "bullet_list_open"):
            lists.append(token.tag)
        elif token.type in ("ordered_list_close", "bullet_list_close"):
            if lists:
                lists.pop()
        elif token.type == "list_item_open":
            is_check = "task-list-item" in str(token.attrGet("class") or "")
            if is_check or (lists and lists[-1] == "ol"):
                step = StepSpec("check" if is_check else "step", "")
                steps.append(step)
                items.append(step)
            else:
                items.append(None)
        elif token.type == "list_item_close":
            if items:
                items.pop()
        elif token.type == "inline":
            current = next((item for item in reversed(items) if item is not None), None)
            text = _plain(token)
            if current is None or not text:
                continue
            if not current.text:
                current.text = text
            else:
                current.details.append(text)
        elif token.type == "fence" and _language(token) in SHELL_LANGUAGES:
            current = next((item for item in reversed(items) if item is not None), None)
            commands = split_commands(token.content)
            if current is not None:
                current.commands += [command.text for command in commands]
                continue
            for command in commands:
                label = _NUMBERED.sub("", command.comments[-1]) if command.comments else ""
                if len(label.split()) < 2:  # "# or", "# Example:": the command says more
                    label = command.text
                steps.append(StepSpec("command", label[:MAX_TEXT], [], [command.text]))
    for step in steps:
        step.text = step.text or (step.commands[0][:MAX_TEXT] if step.commands else "(no text)")
    return steps[:MAX_STEPS]


def _sections(tokens: list[Token]) -> list[tuple[int, int, int]]:
    """(heading index, level, end index) of every heading: a section ends at the next
    heading of the same or a higher level."""
    found: list[tuple[int, int, int]] = []
    open_: list[tuple[int, int, int]] = []  # (position in found, index, level)
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        level = int(token.tag[1])
        while open_ and open_[-1][2] >= level:
            position, start, start_level = open_.pop()
            found[position] = (start, start_level, index)
        open_.append((len(found), index, level))
        found.append((index, level, len(tokens)))
    return found


def procedures(tokens: list[Token], anchor: str | None = None) -> list[Procedure]:
    """Every heading of a parsed runbook (the rendering parser's tokens, with anchors), or the
    one of ``anchor``, and its steps; a heading with no step under it has an empty list."""
    found: list[Procedure] = []
    for index, level, end in _sections(tokens):
        heading_anchor = str(tokens[index].attrGet("id") or "")
        if anchor is not None and heading_anchor != anchor:
            continue
        title = tokens[index + 1].content if index + 1 < len(tokens) else ""
        found.append(Procedure(heading_anchor, title, level, _steps(tokens[index + 3 : end])))
    return found


def procedure(tokens: list[Token], anchor: str) -> Procedure | None:
    found = procedures(tokens, anchor)
    return found[0] if found else None


def runnable_anchors(tokens: list[Token]) -> set[str]:
    """The anchors of the headings (level 2 and below) whose section has a numbered step, a
    checklist item or a shell block: one pass, for the page's "Start this procedure" buttons."""
    marks = [0]
    for token in tokens:
        stepish = (
            (token.type == "ordered_list_open")
            or (token.type == "list_item_open" and "task-list-item" in str(token.attrGet("class")))
            or (
                token.type == "fence"
                and _language(token) in SHELL_LANGUAGES
                and bool(token.content.strip())
            )
        )
        marks.append(marks[-1] + stepish)
    found: set[str] = set()
    for index, level, end in _sections(tokens):
        if level > 1 and marks[end] > marks[index]:
            found.add(str(tokens[index].attrGet("id") or ""))
    return found
