"""The operator under kopf.testing.KopfRunner against kmock's Kubernetes emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from mcpfleet_operator.builders.model import MCPSERVER
from mcpfleet_operator.handlers import OperatorState, build_registry
from mcpfleet_operator.kube import KubeClient, load_api_client
from mcpfleet_operator.settings import OperatorSettings
from tests.emulator import ApiServerEmulator, declare_resources

pytestmark = pytest.mark.integration
NAMESPACE = "team-a"


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    return {"cls": ApiServerEmulator}


@pytest.fixture
def emulator(kmock: ApiServerEmulator) -> ApiServerEmulator:
    declare_resources(kmock)
    return kmock


@pytest.fixture
def kubeconfig(emulator: ApiServerEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": str(emulator.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[KubeClient]:
    """The test's own client, the same code the operator uses."""
    client = KubeClient(await load_api_client(str(kubeconfig)), "test")
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def running_operator(kubeconfig: Path, **overrides: Any) -> AsyncIterator[OperatorState]:
    """One operator instance (kopf.testing.KopfRunner in a thread) for the duration of the block."""
    settings = OperatorSettings(metrics_port=0, liveness_port=0, kubeconfig=str(kubeconfig), **overrides)
    state = OperatorState(settings=settings, defaults=settings.build_defaults())
    runner = KopfRunner(["run", "--standalone", "--all-namespaces"], registry=build_registry(state), timeout=30)
    runner.__enter__()
    try:
        yield state
    finally:
        # The runner joins its thread on exit; do it off the loop that serves the emulator.
        await asyncio.to_thread(runner.__exit__, None, None, None)


@pytest.fixture
async def operator(kubeconfig: Path) -> AsyncIterator[OperatorState]:
    async with running_operator(kubeconfig) as state:
        yield state


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until ``check`` returns a truthy value without raising; re-raise the last failure on timeout."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            result = await check()
            if result:
                return result
            failure: BaseException = AssertionError(f"still {result!r}")
        except AssertionError as exc:
            failure = exc
        if asyncio.get_running_loop().time() > deadline:
            raise failure
        await asyncio.sleep(interval)


def mcpserver(name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "mcpfleet.io/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


async def create_mcpserver(api: KubeClient, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return await api.create(MCPSERVER, mcpserver(name, spec))
