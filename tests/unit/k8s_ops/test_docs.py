"""docs/k8s-ops.md lists exactly the tools the server registers, with their risk."""

from __future__ import annotations

import re

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.unit.helpers import REPO_ROOT


def test_the_tools_table_matches_the_registered_tools() -> None:
    doc = (REPO_ROOT / "docs" / "k8s-ops.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| (SAFE|MEDIUM|HIGH) \|", doc, re.M))
    registered = {
        t.name: t.traits.risk.value for t in K8sOpsServer(K8sOpsSettings(exec_enabled=True), Budget()).toolset()
    }
    assert documented == registered
