"""Shared by the unit tests: where the repository's files are and how to read the samples."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = REPO_ROOT / "samples"
CRD_PATH = REPO_ROOT / "crds" / "mcpfleet.io_mcpservers.yaml"
SAMPLE_FILES = ("mcpserver", "monitoring", "cmdb", "custom-image", "external-endpoint")


def load_script(path: Path, name: str) -> ModuleType:
    """A script that is no package module (hack/...), imported from its file as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def load_sample(stem: str) -> dict[str, Any]:
    """The whole MCPServer manifest of samples/<stem>.yaml."""
    document = yaml.safe_load((SAMPLES_DIR / f"{stem}.yaml").read_text())
    assert isinstance(document, dict), f"samples/{stem}.yaml is not a mapping"
    return document
