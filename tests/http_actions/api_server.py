"""A service's admin API on loopback, for the tests: it records every request (method, raw
path as received, headers, body) and answers the status, body and delay it is told to."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.loopback import Served


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class AdminApi:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.body = b'{"ok": true}'
        self.delay = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._served: Served | None = None

    @property
    def origin(self) -> str:
        assert self._served is not None, "start the server first"
        return self._served.url

    def answer(self, status: int, body: bytes = b"", delay: float = 0.0) -> None:
        with self._lock:
            self.status, self.body, self.delay = status, body, delay

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.received.append(
                Received(handler.command, handler.path, dict(handler.headers.items()), body)
            )
            status, answer, delay = self.status, self.body, self.delay
        # Bounded: waits at most ``delay`` seconds, less when the server stops.
        self._stop.wait(delay)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    def start(self) -> AdminApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (the http.server API)
                api._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Port 0: a free port, chosen by the system.
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._served = Served(server, "admin-api")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._served is not None:
            self._served.stop()
            self._served = None
