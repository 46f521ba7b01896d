"""Kubernetes credentials for servers: the Pod's ServiceAccount in a cluster, else a kubeconfig, loaded off the loop."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import kube_config

from mcpfleet_servers.base.redact import redact_text
from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, Refused, ToolFailure


def kubeconfig_loader(path: str | None, context: str | None) -> Any:
    """kubernetes_asyncio's loader for a kubeconfig (KUBECONFIG or ~/.kube/config when ``path`` is None).

    KUBECONFIG is read now, not when kubernetes_asyncio was imported (its default location is fixed then).
    """
    location = path or os.environ.get("KUBECONFIG") or kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    merger = kube_config.KubeConfigMerger(os.path.expanduser(location))
    return kube_config.KubeConfigLoader(config_dict=merger.config, config_base_path=None, active_context=context)


async def api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """In a Pod (and no kubeconfig given) its ServiceAccount; elsewhere the kubeconfig, read in a thread."""
    configuration = k8s.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        loader = await asyncio.to_thread(kubeconfig_loader, kubeconfig, context)
        await loader.load_and_set(configuration)
    return k8s.ApiClient(configuration=configuration)


async def call_json(
    api: k8s.ApiClient,
    method: str,
    path: str,
    *,
    what: str,
    server: str,
    denied: Callable[[str], str],
    request_timeout: float,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """One Kubernetes API call as JSON, its failure classified for a tool's answer.

    ``what`` names the object in messages, ``server`` the API server (BackendUnavailable), and ``denied`` turns
    the API server's refusal into the advice of a 401/403 (which permission, and where to grant it).
    """
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        result = await api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=request_timeout,
        )
    except ApiException as exc:
        raise api_failure(int(exc.status or 0), exc.body, what=what, server=server, denied=denied) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise BackendUnavailable(server, redact_text(str(exc) or type(exc).__name__)) from None
    return result if isinstance(result, dict) else {}


def api_failure(status: int, body: Any, *, what: str, server: str, denied: Callable[[str], str]) -> ToolFailure:
    """The tool failure for an API server's error answer (its own message redacted)."""
    try:
        message = str(json.loads(body or "{}").get("message") or f"HTTP {status}")
    except (TypeError, ValueError, AttributeError):
        message = f"HTTP {status}"
    message = redact_text(message)
    if status == 404:
        return NotFound(f"{what} not found ({message})")
    if status in (401, 403):
        return Refused(denied(message))
    if status >= 500 or status in (0, 429):
        return BackendUnavailable(server, f"HTTP {status}: {message}")
    return ToolFailure(f"{what}: HTTP {status}: {message}")
