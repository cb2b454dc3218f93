"""The one module that talks to Prometheus, through `prometheus-api-client`.

Every failure becomes one of two exceptions carrying a sentence for the page:
`MetricsUnavailable` (the server cannot be reached, is slow, refuses the credentials, or
answers with something that is not Prometheus) and `QueryError` (Prometheus rejected the
PromQL: the sentence is Prometheus's own, e.g. "1:9: parse error: unexpected ...").
Values are floats; NaN and ±Inf are kept as such, so callers decide what "no data" means.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

TIMEOUT_SECONDS = 5.0


class MetricsError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MetricsUnavailable(MetricsError):
    """Prometheus could not answer: nothing can be concluded about the metrics."""


class QueryError(MetricsError):
    """Prometheus rejected the query itself (syntax, unknown function, bad step...)."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float
    at: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)


class Prometheus:
    """A Prometheus HTTP API endpoint, with optional bearer token or basic auth."""

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        username: str = "",
        password: str = "",
        verify_tls: bool = True,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else None
        self._auth = (username, password) if username else None
        self._verify = verify_tls
        self._api = PrometheusConnect(
            url=self.url,
            headers=self._headers,
            auth=self._auth,
            disable_ssl=not verify_tls,
            # One attempt: a beat cycle or a page must learn at once that Prometheus is down.
            retry=Retry(total=0, raise_on_status=False),
            timeout=timeout,
        )

    def instant(self, promql: str, at: datetime | None = None) -> list[Sample]:
        """The instant vector (or scalar) `promql` evaluates to, now or at `at`."""
        params = {"time": f"{at.timestamp():.3f}"} if at is not None else None
        result = self._call(lambda: self._api.custom_query(promql, params=params))
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return [Sample({}, _number(result[1]), float(result[0]))]  # a scalar
        return [
            Sample(dict(item.get("metric", {})), _number(item["value"][1]), float(item["value"][0]))
            for item in result
        ]

    def range(self, promql: str, start: datetime, end: datetime, step_seconds: int) -> list[Series]:
        """The range query's matrix: one series per label set, points as (unix time, value)."""
        result = self._call(
            lambda: self._api.custom_query_range(promql, start, end, f"{int(step_seconds)}s")
        )
        return [
            Series(
                dict(item.get("metric", {})),
                [(float(at), _number(value)) for at, value in item.get("values", [])],
            )
            for item in result
        ]

    def check(self) -> str:
        """Prometheus's version and that the query API answers, as a sentence; raises if not."""
        self.instant("vector(1)")
        try:
            response = requests.get(
                f"{self.url}/api/v1/status/buildinfo",
                headers=self._headers,
                auth=self._auth,
                verify=self._verify,
                timeout=self.timeout,
            )
            version = response.json()["data"]["version"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return f"Prometheus at {self.url} answers queries."
        return f"Prometheus {version} at {self.url} answers queries."

    def _call(self, send: Any) -> Any:
        try:
            return send()
        except requests.Timeout:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer within {self.timeout:g} s."
            ) from None
        except requests.ConnectionError as exc:
            if "Read timed out" in str(exc):  # with retries off, requests words it so
                raise MetricsUnavailable(
                    f"Prometheus at {self.url} did not answer within {self.timeout:g} s."
                ) from None
            raise MetricsUnavailable(
                f"Cannot reach Prometheus at {self.url} ({_reason(exc)})."
            ) from None
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} failed: {exc}.") from None
        except PrometheusApiClientException as exc:
            raise _api_error(self.url, str(exc)) from None
        except (ValueError, KeyError, TypeError):
            raise MetricsUnavailable(
                f"{self.url} answered with something that is not the Prometheus API."
            ) from None


def _number(text: Any) -> float:
    try:
        return float(text)  # Prometheus writes "NaN", "+Inf", "-Inf" as float() reads them
    except (TypeError, ValueError):
        return math.nan


_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.S)


def _api_error(url: str, text: str) -> MetricsError:
    """Prometheus's own error sentence out of the client's "HTTP Status Code 400 (b'{...}')"."""
    found = _STATUS.match(text)
    status = int(found.group(1)) if found else 0
    body: dict[str, Any] = {}
    if found:
        try:
            raw = ast.literal_eval(found.group(2))
            body = json.loads(raw) if isinstance(raw, (bytes, str)) else {}
        except (ValueError, SyntaxError):
            body = {}
    error = str(body.get("error") or "").strip() if isinstance(body, dict) else ""
    if status in (400, 422) and error:
        return QueryError(error)
    if status in (401, 403):
        return MetricsUnavailable(f"Prometheus at {url} refused the credentials (HTTP {status}).")
    if status == 503 or (status == 422 and not error):
        return MetricsUnavailable(f"Prometheus at {url} is not ready (HTTP {status}).")
    detail = f": {error}" if error else ""
    return MetricsUnavailable(f"Prometheus at {url} answered HTTP {status or '?'}{detail}.")


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for reason in ("Connection refused", "Name or service not known", "No route to host"):
        if reason in text:
            return reason.lower()
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
        return "its TLS certificate is not trusted"
    return "connection failed"
