"""Contract 2 while the tool list changes: the Pod's report follows every change, against the Kubernetes emulator.

The report is written by the refresh at start and by every refresh that changes the list; a refresh that
changes nothing reads and writes nothing; a report that failed is written by the next refresh.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s

from mcpfleet_contracts.report import TOOLS_ANNOTATION, TOOLS_DIGEST_ANNOTATION, parse_tools_annotation, tools_digest
from mcpfleet_servers.base.kube import api_client
from mcpfleet_servers.base.report import ReportOutcome
from mcpfleet_servers.base.run import running
from tests.emulator import ApiServerEmulator
from tests.integration.conftest import eventually
from tests.integration.servers.conftest import MakeServer
from tests.integration.servers.test_tool_refresh import GrowingModule

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


def _pod_requests(emulator: ApiServerEmulator, name: str, methods: tuple[str, ...]) -> int:
    return sum(1 for request in emulator.writes(methods) if str(request.url).endswith(f"/pods/{name}"))


async def test_the_pod_report_follows_the_tool_list(
    emulator: ApiServerEmulator, kubeconfig: Path, make_server: MakeServer, server_env: pytest.MonkeyPatch
) -> None:
    await _create_pod("demo-0")
    server_env.setenv("POD_NAME", "demo-0")
    server_env.setenv("POD_NAMESPACE", NAMESPACE)
    module = GrowingModule()
    server = make_server(module, port=0)
    async with running(server):
        first = await eventually(lambda: _digest_once_written("demo-0"))
        assert first == tools_digest(await server.listed_tools())
        assert _pod_requests(emulator, "demo-0", ("PATCH",)) == 1

        module.offer_echo = True
        grown = await server.refresh_tools()
        assert grown.report == ReportOutcome.WRITTEN
        annotations = await _annotations("demo-0")
        assert annotations[TOOLS_DIGEST_ANNOTATION] == grown.digest != first
        assert "echo" in parse_tools_annotation(annotations[TOOLS_ANNOTATION]).names
        assert _pod_requests(emulator, "demo-0", ("PATCH",)) == 2

        same = await server.refresh_tools()
        assert same.report is None
        assert _pod_requests(emulator, "demo-0", ("PATCH",)) == 2

        module.offer_echo = False
        shrunk = await server.refresh_tools()
        assert shrunk.report == ReportOutcome.WRITTEN
        annotations = await _annotations("demo-0")
        assert annotations[TOOLS_DIGEST_ANNOTATION] == shrunk.digest == first
        report = parse_tools_annotation(annotations[TOOLS_ANNOTATION])
        assert "echo" not in report.names
        assert report.count == len(server.tools)
        assert _pod_requests(emulator, "demo-0", ("PATCH",)) == 3


async def _digest_once_written(name: str) -> str | None:
    return (await _annotations(name)).get(TOOLS_DIGEST_ANNOTATION)


async def test_a_failed_report_is_written_by_the_next_refresh(
    emulator: ApiServerEmulator,
    kubeconfig: Path,
    make_server: MakeServer,
    server_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_env.setenv("POD_NAME", "late-0")
    server_env.setenv("POD_NAMESPACE", NAMESPACE)
    server = make_server(GrowingModule(), port=0)
    with caplog.at_level(logging.WARNING, logger="mcpfleet_servers.base.report"):
        async with running(server) as runner:

            async def refused() -> bool:
                return "POD_NAME/POD_NAMESPACE name no Pod" in caplog.text

            await eventually(refused)
            assert runner.server.state.started
            await _create_pod("late-0")
            retried = await server.refresh_tools()
            assert not retried.changed
            assert retried.report == ReportOutcome.WRITTEN
            assert (await _annotations("late-0"))[TOOLS_DIGEST_ANNOTATION] == retried.digest
            assert (await server.refresh_tools()).report is None
    assert _pod_requests(emulator, "late-0", ("PATCH",)) == 1
