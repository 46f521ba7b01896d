"""Real Prometheus and Alertmanager processes for tests, scraping a small exporter served from the test process.

Prometheus (Debian package `prometheus`) scrapes the exporter every second, evaluates a rule file with an
alert that fires at once (``ExporterUp``: ``up{job="exporter"} == 1``, severity info, for 0s) and a recording
rule, and sends its alerts to Alertmanager (Debian package `prometheus-alertmanager`, clustering off).
The exporter exposes ``mcpfleet_test_series`` with SERIES_COUNT series, enough to exceed every output budget.
Its target carries the labels ``namespace``/``service`` of SERVICE_NAMESPACE/SERVICE_NAME, as a Prometheus
Operator ServiceMonitor would label it, so health_check finds its `up` series and the alert names the service.
`make test` installs both packages (hack/system-deps.sh) when missing.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcpfleet_cli.devcluster.cluster import free_port

SERIES_COUNT = 10_000
ALERT_NAME = "ExporterUp"
SERVICE_NAMESPACE = "shop"
SERVICE_NAME = "checkout"
MISSING = (
    "{binary} is not on PATH: run `make test` (it installs the Debian packages) or "
    "`apt-get install prometheus prometheus-alertmanager`"
)


def exposition(series: int) -> bytes:
    """The exporter's answer: a gauge with `series` series and a small counter."""
    lines = [
        "# HELP mcpfleet_test_series One series per shard, to exceed output budgets.",
        "# TYPE mcpfleet_test_series gauge",
        *(f'mcpfleet_test_series{{shard="{i:05d}"}} {i % 97}' for i in range(series)),
        "# HELP mcpfleet_test_requests_total Requests served, by code.",
        "# TYPE mcpfleet_test_requests_total counter",
        'mcpfleet_test_requests_total{code="200"} 1027',
        'mcpfleet_test_requests_total{code="500"} 3',
    ]
    return ("\n".join(lines) + "\n").encode()


class _ExporterHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a scrape a second would flood the test output."""


@contextlib.contextmanager
def running_exporter(series: int = SERIES_COUNT) -> Iterator[int]:
    """An HTTP exporter on a free loopback port, served from a thread; yields the port."""
    handler = type("Handler", (_ExporterHandler,), {"body": exposition(series)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-exporter", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(MISSING.format(binary=name))
    return found


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            if _ready(self.url):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


@dataclass
class PrometheusStack:
    directory: Path
    exporter_port: int
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def _write_configs(self) -> tuple[Path, Path]:
        rules = self.directory / "rules.yml"
        # JSON is YAML: no YAML writer needed.
        rules.write_text(
            json.dumps(
                {
                    "groups": [
                        {
                            "name": "test",
                            "interval": "1s",
                            "rules": [
                                {
                                    "alert": ALERT_NAME,
                                    "expr": 'up{job="exporter"} == 1',
                                    "for": "0s",
                                    "labels": {"severity": "info", "team": "platform"},
                                    "annotations": {"summary": "the test exporter is up"},
                                },
                                {"record": "job:up:sum", "expr": "sum by (job) (up)"},
                            ],
                        }
                    ]
                }
            )
        )
        prometheus = self.directory / "prometheus.yml"
        prometheus.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "alerting": {
                        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "exporter",
                            "static_configs": [
                                {
                                    "targets": [f"127.0.0.1:{self.exporter_port}"],
                                    "labels": {"namespace": SERVICE_NAMESPACE, "service": SERVICE_NAME},
                                }
                            ],
                        },
                        {
                            "job_name": "prometheus",
                            "static_configs": [{"targets": [f"127.0.0.1:{self.prometheus_port}"]}],
                        },
                    ],
                }
            )
        )
        alertmanager = self.directory / "alertmanager.yml"
        alertmanager.write_text(json.dumps({"route": {"receiver": "nowhere"}, "receivers": [{"name": "nowhere"}]}))
        return prometheus, alertmanager

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        prometheus_config, alertmanager_config = self._write_configs()
        alertmanager = Process(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={alertmanager_config}",
                f"--storage.path={self.directory / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",
            ],
            self.directory / "alertmanager.log",
            self.alertmanager_url,
        )
        prometheus = Process(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--web.enable-lifecycle",
            ],
            self.directory / "prometheus.log",
            self.prometheus_url,
        )
        for process in (alertmanager, prometheus):
            self.processes.append(process)
            process.start()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


@contextlib.contextmanager
def running_prometheus_stack(directory: Path, series: int = SERIES_COUNT) -> Iterator[PrometheusStack]:
    """Alertmanager, then Prometheus scraping the exporter and alerting to it; stopped on exit."""
    with running_exporter(series) as exporter_port:
        stack = PrometheusStack(directory, exporter_port)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
