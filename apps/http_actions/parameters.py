"""The typed parameters of a custom HTTP action, as an admin writes them (one a line:
``id integer`` or ``region string ^[a-z]{2}-[a-z]+$``) and as each value is checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from apps.http_actions.choices import ParameterType
from apps.http_actions.url_templates import UnsafeValue, safe_value

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
INTEGER = re.compile(r"^[0-9]{1,18}$")
DEFAULT_STRING_PATTERN = r"[A-Za-z0-9_.-]{1,100}"
MAX_VALUE_LENGTH = 200


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str = ParameterType.INTEGER
    pattern: str = ""

    @property
    def effective_pattern(self) -> str:
        return self.pattern or DEFAULT_STRING_PATTERN

    def describe(self) -> str:
        if self.type == ParameterType.INTEGER:
            return "a whole number (0 or more)"
        return f"text matching {self.effective_pattern}"

    def check(self, raw: object) -> int | str:
        """The value as the URL takes it, or UnsafeValue saying why it is refused."""
        text = str(raw) if raw is not None else ""
        if self.type == ParameterType.INTEGER:
            if not INTEGER.match(text):
                raise UnsafeValue(f"{self.name} must be {self.describe()}.")
            return int(text)
        if len(text) > MAX_VALUE_LENGTH:
            raise UnsafeValue(f"{self.name} is longer than {MAX_VALUE_LENGTH} characters.")
        safe_value(self.name, text)
        if not re.fullmatch(self.effective_pattern, text):
            raise UnsafeValue(f"{self.name} must be {self.describe()}.")
        return text

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "pattern": self.pattern}


def from_stored(rows: list[dict[str, Any]]) -> list[ParameterSpec]:
    return [
        ParameterSpec(str(row["name"]), str(row.get("type") or ""), str(row.get("pattern") or ""))
        for row in rows
    ]


def parse_lines(text: str) -> list[ParameterSpec]:
    """The specs written one a line, or ValueError naming the first bad line."""
    specs: list[ParameterSpec] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 2)
        name = parts[0].rstrip(":")
        kind = parts[1].lower() if len(parts) > 1 else ""
        pattern = parts[2].strip() if len(parts) > 2 else ""
        if not NAME.match(name):
            raise ValueError(f"Line {number}: {name!r} is not a parameter name.")
        if kind not in ParameterType.values:
            raise ValueError(f"Line {number}: the type of {name} is integer or string.")
        if pattern and kind == ParameterType.INTEGER:
            raise ValueError(f"Line {number}: an integer takes no pattern.")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                message = f"Line {number}: the pattern of {name} is invalid: {exc}."
                raise ValueError(message) from None
        if any(spec.name == name for spec in specs):
            raise ValueError(f"Line {number}: {name} is declared twice.")
        specs.append(ParameterSpec(name, kind, pattern))
    return specs


def as_lines(specs: list[ParameterSpec]) -> str:
    return "\n".join(" ".join(filter(None, [s.name, s.type, s.pattern])) for s in specs)
