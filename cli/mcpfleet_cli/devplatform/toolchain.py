"""The control plane's binaries: given (--bin-dir, $MCPFLEET_TOOLS_BIN) or built once by hack/tools/tools.py.

The first build compiles Kubernetes and etcd from source with Go (about 7 minutes on two cores); later runs
find them in ~/.cache/mcpfleet and take a fraction of a second. Consul is used when it was built already
(`make consul`, which `make test` runs) or is on PATH: the platform runs without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcpfleet_cli.devcluster.cluster import ClusterError, find_binaries

# From cli/mcpfleet_cli/devplatform/ to the repository root of a checkout (`pip install -e .`).
TOOLS_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "tools" / "tools.py"
CONTROL_PLANE_TOOLS = ("kubernetes", "etcd")
FIRST_BUILD_MINUTES = 7


class ToolchainError(RuntimeError):
    """The binaries cannot be found or built; the message says what to do."""


@dataclass(frozen=True)
class Toolchain:
    binaries: dict[str, Path]  # etcd, kube-apiserver, kube-controller-manager, kubectl
    consul: Path | None


def _tools_script(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOLS_SCRIPT), *argv], capture_output=True, text=True, check=False, timeout=120
    )


def _cached_bindir(tools: tuple[str, ...]) -> Path | None:
    """The directory of already built binaries, None when one of them is not built yet."""
    result = _tools_script(["bindir", *tools])
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def _build(echo: Callable[[str], None]) -> None:
    """Build the control plane tools, the build's own progress lines passed through as they come."""
    echo(
        "building kube-apiserver, kube-controller-manager, kubectl and etcd from source with Go: "
        f"about {FIRST_BUILD_MINUTES} minutes the first time (cached in ~/.cache/mcpfleet afterwards)"
    )
    with subprocess.Popen(
        [sys.executable, "-u", str(TOOLS_SCRIPT), "build", *CONTROL_PLANE_TOOLS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as build:
        assert build.stdout is not None
        for line in build.stdout:
            echo(f"  {line.rstrip()}")
    if build.returncode != 0:
        raise ToolchainError(f"the toolchain build failed (exit {build.returncode}); its errors are above")


def _consul(directory: Path | None) -> Path | None:
    if directory is not None and (directory / "consul").is_file():
        return directory / "consul"
    if TOOLS_SCRIPT.is_file() and (built := _cached_bindir(("consul",))) is not None:
        return built / "consul"
    found = shutil.which("consul")
    return Path(found) if found else None


def _given_directory(bin_dir: Path | None) -> Path | None:
    if bin_dir is not None:
        return bin_dir
    from_env = os.environ.get("MCPFLEET_TOOLS_BIN")
    return Path(from_env) if from_env else None


def find_or_build(bin_dir: Path | None, echo: Callable[[str], None]) -> Toolchain:
    """The binaries from ``bin_dir`` or $MCPFLEET_TOOLS_BIN, else from the tool cache, building what is missing."""
    directory = _given_directory(bin_dir)
    if directory is None:
        if not TOOLS_SCRIPT.is_file():
            raise ToolchainError(
                "no control plane binaries: pass --bin-dir DIR (etcd, kube-apiserver, kube-controller-manager, "
                "kubectl) or set MCPFLEET_TOOLS_BIN; from a clone of the repository `make run` builds them"
            )
        directory = _cached_bindir(CONTROL_PLANE_TOOLS)
        if directory is None:
            _build(echo)
            directory = _cached_bindir(CONTROL_PLANE_TOOLS)
        if directory is None:
            raise ToolchainError(f"the build finished but `{TOOLS_SCRIPT} bindir` finds no binaries")
    try:
        binaries = find_binaries(directory)
    except ClusterError as exc:
        raise ToolchainError(str(exc)) from None
    return Toolchain(binaries, _consul(directory))
