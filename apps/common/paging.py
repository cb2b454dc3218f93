"""Keyset (cursor) paging for long, newest-first lists: page 500 costs what page 1 costs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_query: str  # the query string of the next (older) page, or "" at the end


def keyset_page(
    request: HttpRequest, rows: QuerySet[Any], key: str, before: int | None, size: int = PAGE_SIZE
) -> Page:
    """``rows`` ordered by ``key`` descending; ``before`` is the cursor from the URL."""
    if before:
        rows = rows.filter(**{f"{key}__lt": before})
    fetched = list(rows[: size + 1])
    query = request.GET.copy()
    query.pop("before", None)
    if len(fetched) > size:
        query["before"] = str(getattr(fetched[size - 1], key))
        return Page(fetched[:size], query.urlencode())
    return Page(fetched, "")
