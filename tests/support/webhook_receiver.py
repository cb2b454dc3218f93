"""A Slack-compatible incoming webhook on loopback, for the tests: it records the JSON body of
every POST and answers 200 "ok" as Slack does, or 500 as many times as it is told to first."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.loopback import Served


class WebhookReceiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self._failures_left = 0
        self._lock = threading.Lock()
        self._served: Served | None = None

    @property
    def url(self) -> str:
        assert self._served is not None, "start the receiver first"
        return f"{self._served.url}/services/T000/B000/secret"

    def fail_next(self, times: int) -> None:
        """Answer the next ``times`` requests with HTTP 500 (without recording them)."""
        with self._lock:
            self._failures_left = times

    def reset(self) -> None:
        with self._lock:
            self.bodies.clear()
            self.requests = 0
            self._failures_left = 0

    def texts(self) -> list[str]:
        with self._lock:
            return [str(body.get("text", "")) for body in self.bodies]

    def _handle(self, raw: bytes) -> int:
        with self._lock:
            self.requests += 1
            if self._failures_left > 0:
                self._failures_left -= 1
                return 500
            try:
                body = json.loads(raw)
            except ValueError:
                return 400
            self.bodies.append(body)
            return 200

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (the http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                status = receiver._handle(self.rfile.read(length))
                answer = b"ok" if status == 200 else b"error"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Port 0: a free port, chosen by the system.
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._served = Served(server, "webhook-receiver")
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None
