"""A real Prometheus (Debian package `prometheus`) scraping given targets every second, and its query API.

tests/prometheus_stack.py runs a fixed stack around a synthetic exporter; this one scrapes whatever the
test runs (operator, gateway, servers), each target with the labels a ServiceMonitor would give it.
`make test` installs the package (hack/system-deps.sh) when missing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpfleet_cli.devcluster.cluster import free_port
from tests.prometheus_stack import MISSING, Process

SCRAPE_INTERVAL = "1s"
QUERY_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class ScrapeTarget:
    """One job with one target (``host:port``), and the labels its series get."""

    job: str
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


@dataclass(frozen=True)
class QueryAnswer:
    """What /api/v1/query or /api/v1/query_range answered: the HTTP status and the decoded body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body.get("status") == "success"

    @property
    def error(self) -> str:
        return f"HTTP {self.status}: {self.body.get('errorType', '')}: {self.body.get('error', self.body)}"

    @property
    def series(self) -> list[dict[str, Any]]:
        data = self.body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") in ("scalar", "string") and result is not None:
            return [{"metric": {}, "value": result}]
        return list(result or [])


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(MISSING.format(binary=name))
    return found


@dataclass
class ScrapingPrometheus:
    directory: Path
    targets: Sequence[ScrapeTarget]
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {
                    "job_name": target.job,
                    "metrics_path": target.metrics_path,
                    "static_configs": [{"targets": [target.address], "labels": dict(target.labels)}],
                }
                for target in self.targets
            ],
        }

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(json.dumps(self._config()))  # JSON is YAML: no YAML writer needed
        self.process = Process(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            self.directory / "prometheus.log",
            self.url,
        )
        self.process.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def _get(self, path: str, parameters: Mapping[str, str]) -> QueryAnswer:
        url = f"{self.url}{path}?{urllib.parse.urlencode(parameters)}"
        try:
            with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_SECONDS) as response:
                return QueryAnswer(response.status, json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = {"error": body.decode(errors="replace")}
            return QueryAnswer(exc.code, decoded)

    def query(self, expr: str, at: float | None = None) -> QueryAnswer:
        """An instant query (/api/v1/query), now or at the Unix time ``at``."""
        parameters = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self._get("/api/v1/query", parameters)

    def query_range(self, expr: str, start: float, end: float, step: float) -> QueryAnswer:
        """A range query (/api/v1/query_range), what a Grafana time series panel sends."""
        parameters = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._get("/api/v1/query_range", parameters)

    def scraped_since(self, moment: float, jobs: Collection[str] | None = None) -> bool:
        """Whether every target (of ``jobs``, default all) was scraped, and up, after the Unix time ``moment``."""
        answer = self.query("timestamp(up) and on (job, instance) (up == 1)")
        if not answer.ok:
            return False
        stamps = {item["metric"].get("job"): float(item["value"][1]) for item in answer.series}
        wanted = [target.job for target in self.targets] if jobs is None else jobs
        return all(stamps.get(job, 0.0) > moment for job in wanted)

    def wait_scraped_since(self, moment: float, jobs: Collection[str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scraped_since(moment, jobs):
                return
            time.sleep(0.5)
        down = self.query("up == 0").series
        raise AssertionError(
            f"Prometheus did not scrape every target (up) within {timeout:.0f} s; down: "
            f"{[item['metric'] for item in down]}; see {self.directory / 'prometheus.log'}"
        )


@contextlib.contextmanager
def running_prometheus(directory: Path, targets: Sequence[ScrapeTarget]) -> Iterator[ScrapingPrometheus]:
    """Prometheus scraping ``targets`` every second; stopped on exit."""
    prometheus = ScrapingPrometheus(directory, targets)
    try:
        prometheus.start()
        yield prometheus
    finally:
        prometheus.stop()
