"""Where an operation was started from, when that matters: an incident (its timeline shows
the operation, and the deploy gate lets its own mitigations through), a maintenance window.

An origin is stored on the operation as ``"<type>:<id>"``. The app that owns the type
registers how to describe one; an origin nobody can describe is refused when requested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    key: str  # "incident:12"
    label: str  # "Incident #12: checkout down"
    url: str
    # The origin this one is part of: a step of a runbook run started from an incident is
    # within that incident, so that what the incident allows, its steps may do too.
    within: str = ""


Describe = Callable[[str], "Origin | None"]  # from the id part; None when there is none

_TYPES: dict[str, Describe] = {}
MAX_DEPTH = 5  # origins within origins: a guard against a cycle, far above any real chain


def register_origin(type_name: str, describe: Describe) -> None:
    _TYPES[type_name] = describe


def describe(key: str) -> Origin | None:
    """The origin stored as ``key``, or None when it is malformed or names nothing."""
    type_name, _, object_id = key.partition(":")
    describer = _TYPES.get(type_name)
    if describer is None or not object_id.isdigit():
        return None
    return describer(object_id)


def origin_id(key: str, type_name: str) -> int | None:
    """The id in ``key`` when it is an origin of ``type_name``."""
    prefix, _, object_id = key.partition(":")
    return int(object_id) if prefix == type_name and object_id.isdigit() else None


def within_id(key: str, type_name: str) -> int | None:
    """The id of the ``type_name`` origin that ``key`` is, or is (transitively) part of."""
    seen: list[str] = []
    while key and key not in seen and len(seen) < MAX_DEPTH:
        found = origin_id(key, type_name)
        if found is not None:
            return found
        seen.append(key)
        origin = describe(key)
        key = origin.within if origin is not None else ""
    return None
