"""The tool report (contract 2): a server running in a Pod writes its tool list's digest and names on that Pod.

The Pod is named by the downward API (POD_NAME, POD_NAMESPACE). The report is read first and written only
when it differs, so a restart serving the same tools writes nothing and the operator sees no change. The
server writes it when it starts serving and again whenever its tool list changes (FleetServer.refresh_tools).
The report is a trigger for the operator, never a reason to fail the server: an API error (no permission, no
such Pod, no API server) is logged with what to fix, and the server serves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.rest import ApiException

from mcpfleet_contracts.report import TOOLS_ANNOTATION, TOOLS_DIGEST_ANNOTATION, tools_annotation, tools_digest
from mcpfleet_servers.base.kube import api_client

logger = logging.getLogger(__name__)

REPORT_TIMEOUT_SECONDS = 10.0


class ReportOutcome(StrEnum):
    WRITTEN = "written"  # the Pod now carries the report
    CURRENT = "current"  # the Pod carried it already: nothing written
    FAILED = "failed"  # not written (logged with what to fix); worth another try on the next change or reload


def report_annotations(tools: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {TOOLS_DIGEST_ANNOTATION: tools_digest(tools), TOOLS_ANNOTATION: tools_annotation(tools)}


class PodReporter:
    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        # Made at the first report and kept: loading credentials costs more than the report itself. A failed
        # report drops it, so the next one loads them again (a rotated token, a fixed kubeconfig).
        self._client: k8s.ApiClient | None = None

    async def report(self, tools: Sequence[Mapping[str, Any]]) -> ReportOutcome:
        """Write the report when the Pod does not carry it already. Never raises."""
        wanted = report_annotations(tools)
        try:
            async with asyncio.timeout(REPORT_TIMEOUT_SECONDS):
                if self._client is None:
                    self._client = await api_client()
                return await self._write(k8s.CoreV1Api(self._client), wanted)
        except ApiException as exc:
            await self.close()
            hint = {
                403: "the server's ServiceAccount needs get and patch on its own pods",
                404: "POD_NAME/POD_NAMESPACE name no Pod (set them from the downward API)",
            }.get(exc.status, "the API server refused it")
            logger.warning("tool report not written on pod %s/%s: %s (%s)", self.namespace, self.name, hint, exc.reason)
        except (OSError, TimeoutError, k8s_config.ConfigException) as exc:
            await self.close()
            logger.warning("tool report not written on pod %s/%s: %s", self.namespace, self.name, exc)
        return ReportOutcome.FAILED

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _write(self, api: k8s.CoreV1Api, wanted: dict[str, str]) -> ReportOutcome:
        pod = await api.read_namespaced_pod(self.name, self.namespace)
        current = pod.metadata.annotations or {}
        if all(current.get(key) == value for key, value in wanted.items()):
            return ReportOutcome.CURRENT
        # The client sends a dict as a strategic merge patch: for annotations (a map) the same as a merge patch.
        await api.patch_namespaced_pod(self.name, self.namespace, {"metadata": {"annotations": wanted}})
        logger.info("tool report on pod %s/%s: %s", self.namespace, self.name, wanted[TOOLS_DIGEST_ANNOTATION])
        return ReportOutcome.WRITTEN
