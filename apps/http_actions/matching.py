"""Which custom HTTP action a runbook's ``curl -X METHOD URL`` command is, for its "Run in
portal" button. Only read: the command is split into words (never run), and it matches an
action when the method is the same and its URL path fits the action's path template. A
placeholder in the command (``{id}``, ``<id>``, ``$ID``) leaves that parameter to be asked;
a concrete value is kept when its type accepts it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from apps.http_actions.models import HttpAction
from apps.http_actions.url_templates import PLACEHOLDER, UnsafeValue
from apps.runbooks.shell_words import Unbalanced, split_words

_WITH_VALUE = {"-X", "--request", "-H", "--header", "-d", "--data", "-o", "--output", "-m"}
_WITH_VALUE |= {"--max-time", "-u", "--user"}


@dataclass
class Match:
    action: HttpAction
    params: dict[str, Any] = field(default_factory=dict)
    ask: list[str] = field(default_factory=list)


def curl_request(command: str) -> tuple[str, str] | None:
    """The method and URL of a plain ``curl`` command, or None."""
    try:
        words = split_words(command)
    except Unbalanced:
        return None
    if not words or words[0].value != "curl" or any(word.is_operator for word in words):
        return None
    method, urls, data, index = "", [], False, 1
    while index < len(words):
        text = words[index].value
        if text in _WITH_VALUE and index + 1 < len(words):
            value = words[index + 1].value
            method = value.upper() if text in ("-X", "--request") else method
            data = data or text in ("-d", "--data")
            index += 2
            continue
        if not text.startswith("-"):
            urls.append(text)
        index += 1
    if len(urls) != 1:
        return None
    return method or ("POST" if data else "GET"), urls[0]


def _path_pattern(path_template: str) -> re.Pattern[str]:
    pattern, position = "", 0
    for found in PLACEHOLDER.finditer(path_template):
        pattern += re.escape(path_template[position : found.start()])
        pattern += f"(?P<{found.group(1)}>[^/]+)"
        position = found.end()
    return re.compile(pattern + re.escape(path_template[position:]) + "/?")


_ASKED = re.compile(r"^(\{[^{}]*\}|<[^<>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\$\(.*\))$")


def match_action(action: HttpAction, method: str, url: str) -> Match | None:
    if action.method != method:
        return None
    path = urlsplit(url).path if "://" in url else url
    found = _path_pattern(action.path_template).fullmatch(path)
    if found is None:
        return None
    match = Match(action)
    specs = {spec.name: spec for spec in action.parameter_specs}
    for name, value in found.groupdict().items():
        if _ASKED.match(value) or name not in specs:
            match.ask.append(name)
            continue
        try:
            match.params[name] = specs[name].check(value)
        except UnsafeValue:
            match.ask.append(name)
    return match


def matching_actions(command: str, actions: Iterable[HttpAction]) -> list[Match]:
    """Every action the command is; those on the command's own host first."""
    request = curl_request(command)
    if request is None:
        return []
    method, url = request
    host = urlsplit(url).netloc if "://" in url else ""
    found = [m for action in actions if (m := match_action(action, method, url)) is not None]
    found.sort(key=lambda m: m.action.template.origin.split("://", 1)[-1] != host)
    return found
