"""An HTTP server the tests (and the demo's emulator) run on loopback, served from a daemon
thread: started, its URL, stopped and joined, the same way everywhere."""

from __future__ import annotations

import threading
from http.server import HTTPServer


class Served:
    def __init__(self, server: HTTPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]!s}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
