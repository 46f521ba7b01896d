"""Shared by the unit tests: where the repository's files are and how to read the samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = REPO_ROOT / "samples"
CRD_PATH = REPO_ROOT / "crds" / "mcpfleet.io_mcpservers.yaml"
SAMPLE_FILES = ("mcpserver", "monitoring", "cmdb", "custom-image", "external-endpoint")


def load_sample(stem: str) -> dict[str, Any]:
    """The whole MCPServer manifest of samples/<stem>.yaml."""
    document = yaml.safe_load((SAMPLES_DIR / f"{stem}.yaml").read_text())
    assert isinstance(document, dict), f"samples/{stem}.yaml is not a mapping"
    return document
