"""`mcpfleet dev` (what `make run` runs) as a user meets it: started as a process, used through the gateway by a real
MCP client, checked by `mcpfleet doctor`, stopped with Ctrl-C (SIGINT), leaving no process behind.

It brings up its own control plane, so it needs only the toolchain (`make tools`), redis-server and prometheus.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml

from mcpfleet_cli.devcluster.cluster import write_kubeconfig
from mcpfleet_cli.devplatform.ready import ReadyInfo, read_ready
from tests.e2e.conftest import _tools_bin, eventually
from tests.integration.gateway.harness import mcp_client

pytestmark = pytest.mark.timeout(900)

MCPFLEET = str(Path(sys.executable).parent / "mcpfleet")
PREFIXES = ("k8s:", "monitoring:", "cmdb:")  # the built-in types' default prefixes (operator builders/defaults.py)
# The first start may have to build the toolchain; a warm start takes well under a minute.
READY_WITHIN_SECONDS = 600


@dataclass
class DevProcess:
    process: subprocess.Popen[bytes]
    log: Path
    ready_file: Path
    state: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> ReadyInfo:
        def written() -> ReadyInfo | None:
            assert self.process.poll() is None, f"mcpfleet dev exited early:\n{self.output()[-5000:]}"
            return read_ready(self.ready_file)

        info: ReadyInfo = eventually(written, within=READY_WITHIN_SECONDS, interval=1.0, what="the ready file")
        return info

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it, to `mcpfleet dev` alone (its children have sessions of their own)."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(120)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def start_dev(tmp_path: Path, *options: str) -> DevProcess:
    state, ready_file, log = tmp_path / "dev", tmp_path / "ready.json", tmp_path / "dev.log"
    environment = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    environment["MCPFLEET_TOOLS_BIN"] = str(_tools_bin())
    argv = [MCPFLEET, "dev", "--dir", str(state), "--ready-file", str(ready_file), "--port", "0", *options]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    return DevProcess(process, log, ready_file, state)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    started = start_dev(tmp_path)
    try:
        yield started
    finally:
        started.kill()


def command_lines(pids: dict[str, int]) -> dict[str, bytes]:
    """Each process's command line now, to recognise it later (and not a newcomer that reused its pid)."""
    found = {}
    for name, pid in pids.items():
        try:
            found[name] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            found[name] = b""
    return found


def still_running(before: dict[str, bytes], pids: dict[str, int]) -> list[str]:
    running = []
    for name, pid in pids.items():
        try:
            now = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if now and now == before[name]:
            running.append(f"{name} (pid {pid})")
    return running


async def through_the_gateway(info: ReadyInfo) -> tuple[list[str], dict[str, object]]:
    async with mcp_client(info.mcp_url, info.token) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("k8s:list_namespaces", {})
        assert not result.is_error, result
        assert isinstance(result.structured_content, dict)
        return names, result.structured_content


def run_doctor(*options: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    return subprocess.run(
        [MCPFLEET, "doctor", *options], capture_output=True, text=True, timeout=120, check=False, env=environment
    )


def test_make_run_serves_every_server_through_the_gateway_and_ctrl_c_stops_everything(
    dev: DevProcess, tmp_path: Path
) -> None:
    info = dev.ready()
    output = dev.output()
    for shown in (info.mcp_url, f"export MCPFLEET_TOKEN={info.token}", f"export KUBECONFIG={info.kubeconfig}"):
        assert shown in output
    assert output.count(info.token) == 1, "the token is printed once"
    assert '"Authorization": "Bearer ${MCPFLEET_TOKEN}"' in output
    assert "Ctrl-C stops everything" in output
    assert oct(dev.ready_file.stat().st_mode & 0o777) == "0o600", "the ready file holds the token"

    names, listed = anyio.run(through_the_gateway, info)
    for prefix in PREFIXES:
        assert any(name.startswith(prefix) for name in names), f"no {prefix} tool in {sorted(names)}"
    assert "mcpfleet-system" in {item["name"] for item in listed["items"]}  # type: ignore[attr-defined]

    doctor = run_doctor("--ready-file", str(dev.state / "ready.json"))
    verdicts = [line for line in doctor.stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = ("api-server", "crd", "operator", "gateway", "redis", "consul", "prometheus")
    assert [line.split(":")[0] for line in verdicts] == [f"PASS {check}" for check in checks], doctor.stdout

    # The same API server with credentials it does not know: a FAIL that says so, and what needs it skipped.
    admin = yaml.safe_load(Path(info.kubeconfig).read_text())
    server = admin["clusters"][0]["cluster"]["server"]
    ca = Path(info.kubeconfig).parent / "pki" / "ca.crt"
    stranger = write_kubeconfig(tmp_path / "stranger.kubeconfig", server, ca, user="stranger", token="not-a-token")
    doctor = run_doctor("--ready-file", str(dev.state / "ready.json"), "--kubeconfig", str(stranger))
    assert doctor.returncode == 1, doctor.stdout
    assert f"FAIL api-server: {server} refused the credentials of kubeconfig {stranger}" in doctor.stdout
    assert "SKIP crd: the API server does not answer" in doctor.stdout
    assert "PASS operator: running" in doctor.stdout, "the operator's metrics answer without the API server"

    logs = Path(info.logs)
    for component in ("operator", "gateway", "k8s-ops", "cmdb", "monitoring"):
        text = (logs / f"{component}.log").read_text(errors="replace")
        assert "is forbidden" not in text, f"{component} lacks a permission:\n{text[-3000:]}"
        assert "Traceback" not in text, f"{component} logged a traceback:\n{text[-3000:]}"

    pids = {**info.pids}
    expected = {"redis", "consul", "prometheus", "operator", "k8s-ops", "monitoring", "cmdb", "gateway"}
    expected |= {"control-plane/etcd", "control-plane/kube-apiserver", "control-plane/kube-controller-manager"}
    assert expected <= set(pids), pids
    assert info.pid == dev.process.pid
    before = command_lines(pids)
    assert dev.interrupt() == 0, dev.output()[-5000:]
    assert still_running(before, pids) == []
    assert not dev.ready_file.exists(), "the ready file outlived the platform"
    assert "stopped; logs are in" in dev.output()


def test_a_child_that_dies_stops_the_platform_with_its_log(tmp_path: Path) -> None:
    dev = start_dev(tmp_path, "--no-prometheus")
    try:
        info = dev.ready()
        pids = {**info.pids}
        before = command_lines(pids)
        os.kill(pids["redis"], signal.SIGKILL)
        assert dev.process.wait(120) == 1
    finally:
        dev.kill()
    output = dev.output()
    assert f"redis (pid {pids['redis']}) exited with code -9" in output, output[-3000:]
    assert "last lines of" in output
    assert "redis.log" in output
    assert still_running(before, pids) == []


def test_a_busy_gateway_port_is_refused_naming_the_option(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [MCPFLEET, "dev", "--dir", str(tmp_path / "dev"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port}" in result.stderr
    assert "--port" in result.stderr
    assert not (tmp_path / "dev").exists(), "nothing is started or written for an unusable option"
