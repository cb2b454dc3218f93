"""A shell command line as words and operators, read the way a shell would split it but
never expanded: ``$(…)``, backquotes, ``$NAME``, ``<placeholder>`` and ``{id}`` are kept as
placeholders, to be asked for in a form or named by the portal, not evaluated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPERATORS = ("&&", "||", ">>", ";", "|", "&", ">", "<", "(", ")")
_OPERATOR_START = frozenset("&|>;<()")
_PLAIN_END = re.compile(r"[\s'\"\\$`&|>;<()]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9][A-Za-z0-9 _.:-]{0,60})>")
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]{0,60})\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Word:
    """One word after quote removal, with the placeholders it holds."""

    value: str = ""
    placeholders: list[str] = field(default_factory=list)
    is_operator: bool = False
    escaped: bool = False  # held a backslash escape: never a plain parameter

    @property
    def is_concrete(self) -> bool:
        return not self.placeholders and not self.is_operator


class Unbalanced(ValueError):
    """An open quote or ``$(`` that never closes."""


def _closing(text: str, start: int, opening: str, closing: str) -> int:
    """The index just past the bracket that closes the one at ``start`` (nesting counted)."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == opening:
            depth += 1
        elif text[index] == closing:
            depth -= 1
            if depth == 0:
                return index + 1
    raise Unbalanced(f"{opening} opened at {start} never closes")


def _expansion(text: str, index: int) -> tuple[str, int] | None:
    """A ``$…`` expansion starting at ``index``: its placeholder name and where it ends."""
    following = text[index + 1 : index + 2]
    if following == "(":
        end = _closing(text, index + 1, "(", ")")
        inner = text[index + 2 : end - 1].strip().split(maxsplit=1)
        return (inner[0] if inner else "command"), end
    if following == "{":
        end = _closing(text, index + 1, "{", "}")
        return text[index + 2 : end - 1] or "variable", end
    name = _VARIABLE.match(text, index + 1)
    if name:
        return name.group(), name.end()
    return None


def split_words(text: str) -> list[Word]:
    """Words and operators of one command. Raises Unbalanced for an unclosed quote."""
    words: list[Word] = []
    word: Word | None = None
    quote = ""
    index = 0
    length = len(text)

    def current() -> Word:
        nonlocal word
        if word is None:
            word = Word()
        return word

    def end_word() -> None:
        nonlocal word
        if word is not None:
            words.append(word)
            word = None

    while index < length:
        char = text[index]
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                current().value += char
            index += 1
            continue
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if quote and escaped not in ('"', "\\", "$", "`"):
                current().value += char
            current().value += escaped
            current().escaped = True
            index += 2
            continue
        if char == "$" and (found := _expansion(text, index)):
            name, index = found
            current().value += f"$({name})"
            current().placeholders.append(name)
            continue
        if char == "`":
            end = text.find("`", index + 1)
            if end < 0:
                raise Unbalanced("a backquote never closes")
            current().placeholders.append("command")
            current().value += text[index : end + 1]
            index = end + 1
            continue
        if quote == '"':
            if char == '"':
                quote = ""
            else:
                current().value += char
            index += 1
            continue
        if char in "'\"":
            quote = char
            current()  # "" is a word too
            index += 1
            continue
        if char == "\n":  # an unquoted newline ends a command, like ";"
            end_word()
            words.append(Word(";", is_operator=True))
            index += 1
            continue
        if char in " \t\r":
            end_word()
            index += 1
            continue
        if char == "<" and (match := _PLACEHOLDER.match(text, index)):
            current().value += match.group()
            current().placeholders.append(match.group(1))
            index = match.end()
            continue
        if char in _OPERATOR_START:
            operator = next(op for op in OPERATORS if text.startswith(op, index))
            end_word()
            words.append(Word(operator, is_operator=True))
            index += len(operator)
            continue
        # Plain characters up to the next one that matters, in one step.
        plain_end = _PLAIN_END.search(text, index + 1)
        end = plain_end.start() if plain_end else length
        current().value += text[index:end]
        index = end
    if quote:
        raise Unbalanced(f"a {quote} quote never closes")
    end_word()
    for item in words:
        if not item.is_operator:
            item.placeholders.extend(_BRACED.findall(item.value))
            whole = _PLACEHOLDER.fullmatch(item.value)
            if whole and whole.group(1) not in item.placeholders:
                item.placeholders.append(whole.group(1))
    return words
