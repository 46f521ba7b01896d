"""Contract 2 from the server side: a server in a Pod writes its tool report on that Pod, once per change,
against the Kubernetes emulator; a missing Pod is logged and the server serves on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from mcpfleet_contracts.report import TOOLS_ANNOTATION, TOOLS_DIGEST_ANNOTATION, parse_tools_annotation, tools_digest
from mcpfleet_servers.base.kube import api_client
from mcpfleet_servers.base.run import running
from tests.emulator import ApiServerEmulator
from tests.integration.servers.conftest import MakeServer

pytestmark = pytest.mark.integration
NAMESPACE = "team-a"


async def _create_pod(name: str) -> None:
    async with await api_client() as client:
        pod = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, namespace=NAMESPACE),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="server", image="mcpfleet:dev")]),
        )
        await k8s.CoreV1Api(client).create_namespaced_pod(NAMESPACE, pod)


async def _annotations(name: str) -> dict[str, str]:
    async with await api_client() as client:
        pod = await k8s.CoreV1Api(client).read_namespaced_pod(name, NAMESPACE)
        return dict(pod.metadata.annotations or {})


def _pod_patches(emulator: ApiServerEmulator) -> int:
    return sum(1 for request in emulator.writes(("PATCH",)) if "/pods/" in str(request.url))


async def test_the_server_reports_its_tools_on_its_pod_once(
    emulator: ApiServerEmulator, kubeconfig: Path, make_server: MakeServer, server_env: pytest.MonkeyPatch
) -> None:
    await _create_pod("demo-0")
    server_env.setenv("POD_NAME", "demo-0")
    server_env.setenv("POD_NAMESPACE", NAMESPACE)
    server = make_server(port=0)
    async with running(server):
        for _ in range(100):
            annotations = await _annotations("demo-0")
            if TOOLS_DIGEST_ANNOTATION in annotations:
                break
            await asyncio.sleep(0.05)
        tools: list[dict[str, Any]] = [
            tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in await server.mcp.list_tools()
        ]
    assert annotations[TOOLS_DIGEST_ANNOTATION] == tools_digest(tools)
    report = parse_tools_annotation(annotations[TOOLS_ANNOTATION])
    assert report.count == len(tools)
    assert report.names == tuple(sorted(tool["name"] for tool in tools))
    assert _pod_patches(emulator) == 1

    # The same tools after a restart: the report is already there, nothing is written.
    async with running(make_server(port=0)) as runner:
        await asyncio.sleep(0.5)
        assert runner.server.state.started
    assert _pod_patches(emulator) == 1


async def test_a_pod_that_does_not_exist_is_logged_and_the_server_serves_on(
    emulator: ApiServerEmulator,
    kubeconfig: Path,
    make_server: MakeServer,
    server_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_env.setenv("POD_NAME", "ghost")
    server_env.setenv("POD_NAMESPACE", NAMESPACE)
    with caplog.at_level(logging.WARNING, logger="mcpfleet_servers.base.report"):
        async with running(make_server(port=0)) as runner:
            for _ in range(100):
                if "tool report not written" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert runner.server.state.started
    assert "POD_NAME/POD_NAMESPACE name no Pod" in caplog.text
    assert _pod_patches(emulator) == 0
