"""Sending one custom HTTP action's request: no retries, no redirects followed (a 3xx is an
answer like any other), a total timeout, and a body read only up to what the log keeps."""

from __future__ import annotations

import time
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    SSLError,
    TimeoutError,
)

MAX_BODY_BYTES = 4000


class CallFailed(Exception):
    """No answer: the message says why, for people."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    body: str
    truncated: bool
    elapsed_ms: int


def send(method: str, url: str, headers: dict[str, str], timeout: float) -> Answer:
    started = time.monotonic()
    pool = urllib3.PoolManager(num_pools=1)
    try:
        response = pool.request(
            method,
            url,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout, total=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
        )
        try:
            raw = response.read(MAX_BODY_BYTES + 1)
        finally:
            response.release_conn()
    except (NewConnectionError, MaxRetryError) as exc:
        # Before TimeoutError: urllib3's NewConnectionError is one of its subclasses.
        raise CallFailed(f"Could not connect: {getattr(exc, 'reason', exc) or exc}") from None
    except TimeoutError:
        raise CallFailed(
            f"No answer within {timeout:g} s (the action's timeout): the service may or may "
            "not have done it; check before running it again."
        ) from None
    except SSLError as exc:
        raise CallFailed(f"TLS failed: {exc}") from None
    except (ProtocolError, HTTPError) as exc:
        raise CallFailed(f"The connection broke: {exc}") from None
    finally:
        pool.clear()
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return Answer(
        status=response.status,
        reason=response.reason or "",
        body=raw[:MAX_BODY_BYTES].decode("utf-8", errors="replace"),
        truncated=len(raw) > MAX_BODY_BYTES,
        elapsed_ms=elapsed_ms,
    )
