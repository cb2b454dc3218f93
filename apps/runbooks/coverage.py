"""How much of a runbook the portal can run: a to-do list of targets to register."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.runbooks.binding import Binder, Binding
from apps.runbooks.commands import Command, document_commands
from apps.runbooks.recognition import recognize


@dataclass
class Coverage:
    bound: list[tuple[Command, Binding]] = field(default_factory=list)
    unbound: list[tuple[Command, Binding]] = field(default_factory=list)
    unrecognized: list[tuple[Command, Binding]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.bound) + len(self.unbound) + len(self.unrecognized)

    @property
    def to_register(self) -> list[tuple[str, int]]:
        """Each distinct thing to register, with how many commands wait for it."""
        counts: dict[str, int] = {}
        for _, binding in self.unbound:
            counts[binding.missing] = counts.get(binding.missing, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def coverage_of(source: str, binder: Binder) -> Coverage:
    coverage = Coverage()
    for _, commands in document_commands(source):
        for command in commands:
            binding = binder.bind(recognize(command.text))
            if not binding.recognition.recognized:
                coverage.unrecognized.append((command, binding))
            elif binding.is_bound:
                coverage.bound.append((command, binding))
            else:
                coverage.unbound.append((command, binding))
    return coverage
