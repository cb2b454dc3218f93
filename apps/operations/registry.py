"""The one place where apps declare the kinds of operation they offer.

An app registers each kind once, at import time of its ``operations.py`` (loaded by the
operations app's ``ready``): the handler that does the work, the form that validates its
parameters, how to find its target, the permission it needs, its time limits, and whether it
is destructive or needs a second person's approval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings

from apps.operations.choices import Approval

if TYPE_CHECKING:
    from apps.operations.models import Operation
    from apps.operations.progress import Reporter


@dataclass(frozen=True)
class Target:
    """What an operation acts on, as the operation stores it."""

    type: str
    id: str
    label: str
    environment: str
    is_production: bool
    url: str = ""

    @property
    def key(self) -> str:
        return f"{self.type}:{self.id}"


class TargetNotFound(Exception):
    pass


class UnknownKind(Exception):
    pass


class ParamsForm(forms.Form):
    """The base of every kind's parameter form: it knows the target, so that it can check
    parameters against it (replica bounds, a service's allowed flags)."""

    def __init__(self, *args: Any, target: Target, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = target


class NoParameters(ParamsForm):
    """For kinds that take no parameters."""


@dataclass(frozen=True)
class OperationKind:
    name: str
    label: str
    description: str
    handler: Callable[[Operation, Reporter], None]
    resolve_target: Callable[[str], Target]
    form_class: type[ParamsForm] = NoParameters
    destructive: bool = False
    # An exclusive kind holds its target while active (one change at a time); read-only kinds
    # (fetching logs) do not, so they can run beside a rollout.
    exclusive: bool = True
    # Why a change may not start on the target now (a freeze, an incident), in words; empty
    # when it may. Checked when requested and again on the worker; an override is audited.
    # The origin (``"incident:12"``, see origins.py) is given, since a rule may let a change
    # through when it comes from the incident or window that closed the gate.
    gate: Callable[[Target, str], list[str]] | None = None
    approval: Approval = Approval.NEVER
    soft_time_limit: int = 300
    time_limit: int = 360
    icon: str = "play-circle"  # a Bootstrap icon name, for its button
    # Kinds with one obvious target (the portal itself) can be started from the home page;
    # the others start from the page of what they act on.
    default_target: str | None = None
    # What will happen, in one sentence, and the equivalent command of the runbooks.
    summary: Callable[[Target, dict[str, Any]], str] = field(default=lambda target, params: "")
    command: Callable[[Target, dict[str, Any]], str] = field(default=lambda target, params: "")

    @property
    def permission(self) -> str:
        if self.destructive:
            return "operations.run_destructive_operation"
        return "operations.run_operation"

    def blockers(self, target: Target, origin: str = "") -> list[str]:
        """Why the kind's gate is closed on the target now, for a change started from
        ``origin``; empty when it is open."""
        return self.gate(target, origin) if self.gate is not None else []

    def needs_approval(self, target: Target) -> bool:
        if self.name in settings.OPERATIONS_REQUIRE_APPROVAL:
            return True
        if self.approval == Approval.ALWAYS:
            return True
        return self.approval == Approval.PRODUCTION and target.is_production


_KINDS: dict[str, OperationKind] = {}


def register(kind: OperationKind) -> OperationKind:
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"Operation kind {kind.name!r} is registered twice.")
    if kind.soft_time_limit >= kind.time_limit:
        raise ValueError(f"{kind.name}: the soft time limit must be below the hard one.")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def get_kind(name: str) -> OperationKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(f"There is no operation called {name!r}.") from None


def all_kinds() -> list[OperationKind]:
    return sorted(_KINDS.values(), key=lambda kind: kind.name)
