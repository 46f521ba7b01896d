"""The dev platform's few calls into its control plane, through the toolchain's kubectl as admin."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcpfleet_cli.devcluster.cluster import kubectl, write_kubeconfig
from mcpfleet_contracts.catalog import CATALOG_KEY, Catalog

KUBECTL_TIMEOUT_SECONDS = 60
# ServiceAccount tokens outlive any sensible dev session; the API server caps nothing here.
TOKEN_DURATION = "720h"


class KubeStepFailed(RuntimeError):
    """A kubectl call failed; the message names the command and kubectl's own words."""


@dataclass(frozen=True)
class Admin:
    """kubectl against the control plane with the admin credential."""

    binaries: Mapping[str, Path]
    kubeconfig: Path
    server: str
    ca_cert: Path

    def run(self, *args: str, stdin: str | None = None) -> str:
        result = kubectl(self.binaries, self.kubeconfig, *args, stdin=stdin, timeout=KUBECTL_TIMEOUT_SECONDS)
        if result.returncode != 0:
            raise KubeStepFailed(f"kubectl {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def apply(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        self.run("apply", "-f", "-", stdin=yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=False))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The object as JSON; None when it does not exist."""
        result = kubectl(
            self.binaries,
            self.kubeconfig,
            "get",
            kind,
            name,
            "-n",
            namespace,
            "-o",
            "json",
            "--ignore-not-found",
            timeout=KUBECTL_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            raise KubeStepFailed(f"kubectl get {kind} {name} failed: {result.stderr.strip()[-2000:]}")
        found: dict[str, Any] | None = json.loads(result.stdout) if result.stdout.strip() else None
        return found

    def service_account_kubeconfig(self, account: str, namespace: str, path: Path) -> Path:
        """A kubeconfig holding only a fresh token of ``namespace/account``."""
        token = self.run("create", "token", account, "-n", namespace, f"--duration={TOKEN_DURATION}").strip()
        return write_kubeconfig(path, self.server, self.ca_cert, user=account, token=token, namespace=namespace)


def read_catalog(admin: Admin, name: str, namespace: str) -> Catalog | None:
    """The catalog the operator wrote; None while there is none (or it is not valid yet)."""
    configmap = admin.get("configmap", name, namespace)
    text = ((configmap or {}).get("data") or {}).get(CATALOG_KEY)
    if not text:
        return None
    try:
        return Catalog.model_validate_json(text)
    except ValidationError:
        return None
