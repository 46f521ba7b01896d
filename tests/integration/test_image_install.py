"""The image's install steps, run as the Dockerfile runs them, and its health check against real processes.

No Docker engine runs here, so the builder stage's one RUN (`hack/image-install.sh VENV SRC`) runs in a temporary
directory instead: once per test session (it builds the wheel and installs its dependencies, about a minute with
pip's cache warm). The health check the Dockerfile writes is taken from the Dockerfile itself and run against a
plain HTTP server and against the installed operator, gateway and server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.conftest import eventually
from tests.unit.test_dockerfile import DOCKERFILE, parse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 540.0


@dataclass(frozen=True)
class Install:
    venv: Path
    output: str

    @property
    def mcpfleet(self) -> Path:
        return self.venv / "bin" / "mcpfleet"


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on the path: only the installed venv may answer."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return env | extra


@pytest.fixture(scope="session")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    venv = tmp_path_factory.mktemp("image") / "opt" / "mcpfleet" / "venv"
    done = subprocess.run(
        [str(ROOT / "hack" / "image-install.sh"), str(venv), str(ROOT)],
        env=_clean_env(PYTHON=sys.executable),
        cwd=venv.parents[2],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"hack/image-install.sh failed:\n{done.stdout}\n{done.stderr}"
    return Install(venv, done.stdout)


def _run(install: Install, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(install.mcpfleet), *args],
        env=_clean_env(),
        cwd=install.venv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_install_script_checked_every_package(install: Install) -> None:
    where = _pyproject()["tool"]["setuptools"]["packages"]["find"]["where"]  # type: ignore[index]
    packages = [p for root in where for p in (ROOT / root).glob("mcpfleet_*") if p.is_dir()]
    assert len(packages) >= 5
    assert f"ok: {len(packages)} packages" in install.output, install.output


@pytest.mark.parametrize(
    ("args", "explains"),
    [
        ((), "MCP platform for Kubernetes"),
        (("operator",), "Run the MCPServer operator"),
        (("gateway",), "Run the gateway"),
        (("server",), "Run a built-in MCP server"),
        (("server", "k8s-ops"), "Run a built-in MCP server"),
        (("catalog",), "Usage:"),
        (("config", "validate"), "Check a gateway config"),
    ],
)
def test_each_subcommand_answers_help(install: Install, args: tuple[str, ...], explains: str) -> None:
    done = _run(install, *args, "--help")
    assert done.returncode == 0, done.stderr
    assert explains in done.stdout


def test_the_installed_copy_prints_the_committed_crd(install: Install) -> None:
    done = _run(install, "crd", "print")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "crds" / "mcpfleet.io_mcpservers.yaml").read_text()


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, requirement
        names.add(re.sub(r"[-_.]+", "-", match.group()).lower())
    return names


def test_the_venv_holds_the_runtime_dependencies_and_no_dev_tool(install: Install) -> None:
    listing = subprocess.run(
        [str(install.venv / "bin" / "python"), "-I", "-c", LIST_DISTRIBUTIONS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    installed = _requirement_names(listing.stdout.split())
    project = _pyproject()["project"]
    runtime = _requirement_names(project["dependencies"])  # type: ignore[index]
    dev = _requirement_names(project["optional-dependencies"]["dev"])  # type: ignore[index]
    assert {"mcpfleet"} | runtime <= installed
    assert installed & dev == set()


LIST_DISTRIBUTIONS = "import importlib.metadata as m; print(' '.join(d.metadata['Name'] for d in m.distributions()))"


# The health check.


@pytest.fixture(scope="module")
def healthcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script the Dockerfile writes to /usr/local/bin/mcpfleet-healthcheck, taken from the Dockerfile."""
    final = parse(DOCKERFILE.read_text()).final
    (body,) = next(c.heredocs for c in final.all("COPY") if c.heredocs)
    path = tmp_path_factory.mktemp("healthcheck") / "mcpfleet-healthcheck"
    path.write_text(body)
    return path


@pytest.fixture(scope="module")
def default_urls() -> str:
    return parse(DOCKERFILE.read_text()).final.env()["MCPFLEET_HEALTHCHECK_URL"]


def _healthy(healthcheck: Path, urls: str, **extra: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-I", str(healthcheck)],
        env=_clean_env(MCPFLEET_HEALTHCHECK_URL=urls, **extra),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def _on_port(urls: str, port: int) -> str:
    """The Dockerfile's default URLs moved from port 8080 to `port`, as a user sets them for another port."""
    moved = urls.replace("127.0.0.1:8080/", f"127.0.0.1:{port}/")
    assert moved != urls
    return moved


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def http_server(statuses: dict[str, int]) -> Iterator[int]:
    """A plain HTTP server on loopback answering each path with its status (404 for the rest)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("statuses", "healthy"),
    [
        ({"/health": 200}, True),
        ({"/healthz": 200}, True),  # the operator: /health is 404, kopf's /healthz answers
        ({"/health": 503, "/healthz": 503}, False),
        ({"/health": 500}, False),
        ({}, False),
    ],
    ids=["server or gateway", "operator", "unavailable", "error", "nothing there"],
)
def test_the_healthcheck_is_healthy_when_any_default_url_answers_2xx(
    healthcheck: Path, default_urls: str, statuses: dict[str, int], healthy: bool
) -> None:
    with http_server(statuses) as port:
        assert _healthy(healthcheck, _on_port(default_urls, port)) is healthy


def test_the_healthcheck_fails_when_nothing_listens(healthcheck: Path, default_urls: str) -> None:
    assert not _healthy(healthcheck, _on_port(default_urls, _free_port()))


def test_the_healthcheck_is_off_when_the_variable_is_empty(healthcheck: Path) -> None:
    assert _healthy(healthcheck, "")


def test_the_healthcheck_ignores_proxy_variables(healthcheck: Path, default_urls: str) -> None:
    # A proxy that does not exist: were it used, the probe of loopback would fail.
    dead_proxy = f"http://127.0.0.1:{_free_port()}"
    with http_server({"/health": 200}) as port:
        assert _healthy(healthcheck, _on_port(default_urls, port), http_proxy=dead_proxy, HTTP_PROXY=dead_proxy)


@asynccontextmanager
async def installed_process(install: Install, log: Path, *args: str, **env: str) -> AsyncIterator[None]:
    """`mcpfleet ARGS` from the installed venv, as the image's entrypoint runs it; stopped with SIGTERM."""
    out = await asyncio.to_thread(log.open, "wb")
    try:
        process = await asyncio.create_subprocess_exec(
            str(install.mcpfleet), *args, env=_clean_env(**env), cwd=install.venv, stdout=out, stderr=subprocess.STDOUT
        )
    finally:
        out.close()
    try:
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_the_healthcheck_passes_for_an_installed_server(
    install: Install, healthcheck: Path, default_urls: str, tmp_path: Path
) -> None:
    port = _free_port()
    urls = _on_port(default_urls, port)
    log = tmp_path / "server.log"
    kubeconfig = tmp_path / "no-kubeconfig"  # the cmdb server starts without its backend; /ready says so
    async with installed_process(install, log, "server", "cmdb", "--port", str(port), KUBECONFIG=str(kubeconfig)):
        await _wait_healthy(healthcheck, urls, log)
    assert not await asyncio.to_thread(_healthy, healthcheck, urls)


async def test_the_healthcheck_passes_for_an_installed_gateway(
    install: Install, healthcheck: Path, default_urls: str, tmp_path: Path
) -> None:
    port = _free_port()
    urls = _on_port(default_urls, port)
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"audit": {"enabled": False}}))
    log = tmp_path / "gateway.log"
    async with installed_process(install, log, "gateway", "--config", str(config), "--port", str(port)):
        await _wait_healthy(healthcheck, urls, log)
    assert not await asyncio.to_thread(_healthy, healthcheck, urls)


async def test_the_healthcheck_passes_for_an_installed_operator(
    install: Install, healthcheck: Path, default_urls: str, tmp_path: Path, kubeconfig: Path
) -> None:
    port = _free_port()
    urls = _on_port(default_urls, port)
    log = tmp_path / "operator.log"
    env = {
        "KUBECONFIG": str(kubeconfig),
        "MCPFLEET_OPERATOR_KUBECONFIG": str(kubeconfig),
        "MCPFLEET_OPERATOR_LIVENESS_PORT": str(port),
        "MCPFLEET_OPERATOR_METRICS_PORT": "0",
    }
    async with installed_process(install, log, "operator", **env):
        await _wait_healthy(healthcheck, urls, log)
    assert not await asyncio.to_thread(_healthy, healthcheck, urls)


async def _wait_healthy(healthcheck: Path, urls: str, log: Path) -> None:
    async def healthy() -> bool:
        return await asyncio.to_thread(_healthy, healthcheck, urls)

    try:
        await eventually(healthy, within=60, interval=0.5)
    except AssertionError as exc:
        output = await asyncio.to_thread(log.read_text)
        raise AssertionError(f"never healthy at {urls}; log:\n{output[-3000:]}") from exc
