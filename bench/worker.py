"""A real Celery worker process for the dispatch benchmark, on the bench database and the
Redis broker, in its own session so that stopping it stops its pool children too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

HOSTNAME = "bench@localhost"


class WorkerFailed(RuntimeError):
    pass


class BenchWorker:
    def __init__(self, hostname: str = HOSTNAME, concurrency: int = 2) -> None:
        self.hostname = hostname
        self.concurrency = concurrency
        self.log_path = Path(settings.VAR_DIR) / "bench" / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> BenchWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "OPERATIONS_HEARTBEAT_SECONDS": "1",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "opsportal",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    str(self.concurrency),
                    "--pool",
                    "prefork",
                    "--hostname",
                    self.hostname,
                    "--without-gossip",
                    "--without-mingle",
                    "--purge",
                ],  # fmt: skip
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise WorkerFailed(f"worker not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        """Celery logs " ready." at INFO only; at WARNING the worker answering a control
        ping tells the same: it answers once its event loop, and so its task consumer, runs."""
        from opsportal.celery import app

        assert self.process is not None
        if self.process.poll() is not None:
            raise WorkerFailed(f"worker exited early:\n{self.log_tail()}")
        if b" ready." in self.log_path.read_bytes():
            return True
        return bool(app.control.ping(destination=[self.hostname], timeout=0.5))

    def stop(self) -> None:
        """SIGTERM (warm shutdown) to the worker's process group, SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return "(no worker log)"
