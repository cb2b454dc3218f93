"""Timing each SQL query of a request to the microsecond, through a database execute
wrapper (Django's own ``connection.queries`` rounds times to the millisecond)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper


@dataclass(frozen=True)
class TimedQuery:
    sql: str
    seconds: float

    def shortened(self, width: int = 150) -> str:
        """One line; a long query keeps its start and its end (WHERE, ORDER BY, LIMIT)."""
        sql = " ".join(self.sql.split())
        if len(sql) <= width:
            return sql
        head = width // 2 - 5
        return f"{sql[:head]} ... {sql[-(width - head - 5) :]}"


class QueryTimer:
    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.queries: list[TimedQuery] = []
        self._wrapper: Any = None

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append(TimedQuery(sql, time.perf_counter() - started))

    def __enter__(self) -> QueryTimer:
        self._wrapper = self.connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._wrapper.__exit__(exc_type, exc, traceback)
