"""A real Prometheus server for the tests, holding exactly the series a test wrote.

The series are written as OpenMetrics text, turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`, and served by the distribution's
`prometheus` binary on a free loopback port, with no scrape targets: what the queries see is
what the test wrote, at the times it wrote it.

    data = OpenMetrics()
    data.counter("http_requests", {"job": "shop-api", "code": "500"}, [(t0, 0), (t0 + 15, 3)])
    server = PrometheusServer.start(tmp_path, data)
    ...  # server.url
    server.stop()
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

PROMETHEUS = "prometheus"
LabelSet = tuple[tuple[str, str], ...]
PROMTOOL = "promtool"


def _require_binaries() -> None:
    """`make test` installs the prometheus package (scripts/services.sh): without it the
    metrics tests fail saying so, rather than skip and pass for nothing."""
    for binary in (PROMETHEUS, PROMTOOL):
        if shutil.which(binary) is None:
            raise RuntimeError(f"`{binary}` is not installed (scripts/services.sh installs it)")


@dataclass
class OpenMetrics:
    """Metric families as OpenMetrics text: name → (type, {label set → [(unix time, value)]})."""

    families: dict[str, tuple[str, dict[LabelSet, list[tuple[float, float]]]]] = field(
        default_factory=dict
    )

    def counter(
        self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]
    ) -> None:
        """A counter family `name` (its samples are written as `name_total`)."""
        self._add(name, "counter", labels, points)

    def gauge(
        self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]
    ) -> None:
        self._add(name, "gauge", labels, points)

    def histogram(
        self,
        name: str,
        labels: Mapping[str, str],
        buckets: Mapping[float, Iterable[tuple[float, float]]],
    ) -> None:
        """Cumulative `_bucket` series per upper bound (use math.inf for "+Inf")."""
        kind, series = self.families.setdefault(name, ("histogram", {}))
        assert kind == "histogram", f"{name} is already a {kind}"
        for bound, points in buckets.items():
            le = "+Inf" if math.isinf(bound) else repr(float(bound))
            key = tuple(sorted({**labels, "le": le}.items()))
            series.setdefault(key, []).extend(points)

    def _add(
        self, name: str, kind: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]
    ) -> None:
        found, series = self.families.setdefault(name, (kind, {}))
        assert found == kind, f"{name} is already a {found}"
        series.setdefault(tuple(sorted(labels.items())), []).extend(points)

    def text(self) -> str:
        suffix = {"counter": "_total", "gauge": "", "histogram": "_bucket"}
        lines: list[str] = []
        for name, (kind, series) in self.families.items():
            lines.append(f"# TYPE {name} {kind}")
            for labels, points in series.items():
                rendered = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
                for at, value in sorted(points):
                    lines.append(f"{name}{suffix[kind]}{{{rendered}}} {_value(value)} {at:.3f}")
        lines.append("# EOF")
        return "\n".join(lines) + "\n"


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    @classmethod
    def start(
        cls, directory: Path, data: OpenMetrics, *, web_config: str | None = None
    ) -> PrometheusServer:
        """Load `data` and start Prometheus on it; `web_config` is the text of a
        --web.config.file (basic auth users, TLS) when a test needs one."""
        _require_binaries()
        directory.mkdir(parents=True, exist_ok=True)
        storage = directory / "tsdb"
        source = directory / "series.om"
        source.write_text(data.text())
        subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(storage)],
            check=True,
            capture_output=True,
        )
        config = directory / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\n")
        port = _free_port()
        command = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        if web_config is not None:
            (directory / "web.yml").write_text(web_config)
            command.append(f"--web.config.file={directory / 'web.yml'}")
        log = (directory / "prometheus.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        server = cls(f"http://127.0.0.1:{port}", process, directory)
        server._wait_ready()
        return server

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "prometheus.log").read_text(errors="replace")
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{log}")
            try:
                # 401: a web config asks for credentials, so the server is up.
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code in (200, 401):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not become ready at {self.url} within {timeout} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
