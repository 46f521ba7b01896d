"""Kubernetes credentials for servers: the Pod's ServiceAccount in a cluster, else a kubeconfig, loaded off the loop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config import kube_config


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
