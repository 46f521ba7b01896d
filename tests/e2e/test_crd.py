"""The CRD on a real API server: it applies, explains itself, admits every sample and prints its columns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcpfleet_contracts.mcpserver import MCPServerSpec
from tests.e2e.conftest import SAMPLES_DIR, Cluster, table

SAMPLES = sorted(SAMPLES_DIR.glob("*.yaml"))


def test_the_crd_is_established_with_its_printer_columns_and_short_name(cluster: Cluster) -> None:
    crd = cluster.get("crd", "mcpservers.mcpfleet.io")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["shortNames"] == ["mcps"]
    # Applying the same file again changes nothing: the generated CRD is what the server stores.
    assert "unchanged" in cluster.ok("apply", "-f", str(SAMPLES_DIR.parent / "crds"))


def test_kubectl_explain_lists_every_field_and_shows_each_description(cluster: Cluster) -> None:
    recursive = cluster.ok("explain", "mcpserver.spec", "--recursive")
    assert "The desired state of an MCP server." in recursive
    listed = {line.split()[0] for line in recursive.splitlines() if line.startswith("  ") and line.strip()}
    for name, field in MCPServerSpec.model_fields.items():
        alias = field.alias or name
        assert alias in listed, f"spec.{alias} missing from `kubectl explain mcpserver.spec --recursive`"
        assert field.description, f"spec.{alias} has no description in the model"
        explained = " ".join(cluster.ok("explain", f"mcpserver.spec.{alias}").split())
        # The API server re-wraps descriptions; compare word by word.
        assert " ".join(field.description.split()[:8]) in explained, explained


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_is_accepted(cluster: Cluster, namespace: str, sample: Path) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(sample))
    assert result.returncode == 0, result.stderr
    stored = cluster.get("mcps", "-n", namespace, yaml.safe_load(sample.read_text())["metadata"]["name"])
    assert stored["spec"]["type"] == yaml.safe_load(sample.read_text())["spec"]["type"]


def test_kubectl_get_mcps_shows_the_printer_columns(cluster: Cluster, namespace: str) -> None:
    cluster.ok("apply", "-n", namespace, "-f", str(SAMPLES_DIR / "mcpserver.yaml"))
    rows = table(cluster.ok("get", "mcps", "-n", namespace))
    assert list(rows["k8s-ops"]) == ["NAME", "TYPE", "READY", "TOOLS", "ENDPOINT", "AGE"]
    assert rows["k8s-ops"]["TYPE"] == "k8s-ops"
    wide = table(cluster.ok("get", "mcps", "-n", namespace, "-o", "wide"))
    assert list(wide["k8s-ops"]) == ["NAME", "TYPE", "READY", "TOOLS", "ENDPOINT", "AGE", "PHASE", "PREFIX"]
    assert wide["k8s-ops"]["PREFIX"] == "k8s"
    # The category groups mcpfleet's kinds for `kubectl get mcpfleet`.
    assert "k8s-ops" in cluster.ok("get", "mcpfleet", "-n", namespace)
