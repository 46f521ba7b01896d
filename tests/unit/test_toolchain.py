"""hack/tools/tools.py: versions in one file, modules derived from it, replace lines derived from upstream."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.helpers import REPO_ROOT, load_script

TOOLS_PY = REPO_ROOT / "hack" / "tools" / "tools.py"


@pytest.fixture(scope="module")
def tools() -> ModuleType:
    return load_script(TOOLS_PY, "mcpfleet_toolchain")


def test_every_module_pins_the_version_from_versions_env(tools: ModuleType) -> None:
    versions = tools.load_versions()
    for tool in tools.tools(versions):
        assert tools.check(tool, versions[tool.version_key]) is None


def test_the_kubernetes_module_replaces_every_staging_module_with_its_release(tools: ModuleType) -> None:
    versions = tools.load_versions()
    staging_release = "v0." + versions["KUBERNETES_VERSION"].removeprefix("v").split(".", 1)[1]
    gomod = (REPO_ROOT / "hack" / "tools" / "modules" / "kubernetes" / "go.mod").read_text()
    replaced = re.findall(r"^\s*(k8s\.io/[\w-]+) => (k8s\.io/[\w-]+) (v\S+)$", gomod, re.M)
    assert len(replaced) >= 30, "k8s.io/kubernetes has some 30 staging modules"
    for old, new, version in replaced:
        assert (new, version) == (old, staging_release)
    for name in ("api", "apimachinery", "client-go", "apiserver", "kubectl", "kube-aggregator"):
        assert f"k8s.io/{name} => k8s.io/{name} {staging_release}" in gomod


def test_local_replacements_follow_upstream_requirements(tools: ModuleType) -> None:
    versions = {"KUBERNETES_VERSION": "v1.37.1", "HELM_VERSION": "v4.3.1"}
    by_name = {t.name: t for t in tools.tools(versions | {"ETCD_VERSION": "v3.6.14", "CONSUL_VERSION": "v1.22.7"})}
    upstream = {
        "Require": [{"Path": "k8s.io/api", "Version": "v0.0.0"}, {"Path": "example.com/other", "Version": "v1.0.0"}],
        "Replace": [
            {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}},
            {"Old": {"Path": "example.com/forked"}, "New": {"Path": "example.com/fork", "Version": "v1.2.3"}},
        ],
    }
    assert tools.local_replacements(by_name["kubernetes"], "v1.37.1", upstream) == [("k8s.io/api", "v0.37.1")]
    consul = {
        "Require": [{"Path": "github.com/hashicorp/consul/api", "Version": "v1.33.7"}],
        "Replace": [{"Old": {"Path": "github.com/hashicorp/consul/api"}, "New": {"Path": "./api"}}],
    }
    assert tools.local_replacements(by_name["consul"], "v1.22.7", consul) == [
        ("github.com/hashicorp/consul/api", "v1.33.7")
    ]


def test_kubernetes_binaries_report_their_release(tools: ModuleType) -> None:
    flags = " ".join(tools.kubernetes_ldflags("v1.37.1"))
    assert "k8s.io/component-base/version.gitVersion=v1.37.1" in flags
    assert "k8s.io/component-base/version.gitMinor=37" in flags


def test_the_cache_key_changes_with_what_shapes_the_binary(tools: ModuleType) -> None:
    versions = tools.load_versions()
    helm = next(t for t in tools.tools(versions) if t.name == "helm")
    key = tools.build_key(helm, versions["HELM_VERSION"], "go1.26.8/linux/amd64")
    assert key == tools.build_key(helm, versions["HELM_VERSION"], "go1.26.8/linux/amd64")
    assert key != tools.build_key(helm, versions["HELM_VERSION"], "go1.27.0/linux/amd64")
    assert key != tools.build_key(helm, "v4.0.0", "go1.26.8/linux/amd64")


def test_a_malformed_versions_line_is_refused_with_its_line_number(
    tools: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "versions.env"
    bad.write_text("# comment\nKUBERNETES_VERSION=1.37\n")
    monkeypatch.setattr(tools, "VERSIONS_FILE", bad)
    with pytest.raises(SystemExit):
        tools.load_versions()
    assert "versions.env:2: expected KEY=vX.Y.Z" in capsys.readouterr().err
