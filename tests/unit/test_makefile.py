"""The Makefile: every target defined once, every documented target present."""

from __future__ import annotations

import re
from collections import Counter

from tests.unit.helpers import REPO_ROOT

TARGET = re.compile(r"^([A-Za-z][\w-]*):(?!=)", re.M)


def test_no_target_is_defined_twice() -> None:
    # make only warns about a redefined target and silently runs the last recipe.
    counts = Counter(TARGET.findall((REPO_ROOT / "Makefile").read_text()))
    assert [name for name, n in counts.items() if n > 1] == []


def test_the_targets_the_docs_and_ci_use_exist() -> None:
    targets = set(TARGET.findall((REPO_ROOT / "Makefile").read_text()))
    assert {"install", "lint", "typecheck", "test", "e2e", "tools", "tools-sync", "crds", "check-crds"} <= targets
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    for used in re.findall(r"^make (\S+)", ci, re.M):
        assert used in targets, f".ci/run runs make {used}"
