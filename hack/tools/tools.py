#!/usr/bin/env python3
"""Build the e2e toolchain (kube-apiserver, kube-controller-manager, kubectl, etcd, helm, consul).

Every tool is built from its official Go module with the machine's Go through the Go module proxy.
Versions live in versions.env; each tool has a pinned module under modules/<tool>/ (go.mod with
the replace lines its upstream needs, and go.sum), generated from versions.env by `sync`.

Binaries land in a cache outside the repository, keyed by everything that shapes them (tool
version, go.mod, go.sum, Go version, platform, build flags), so a second build is a no-op.

    tools.py build [TOOL...]   build what is missing (default command)
    tools.py sync  [TOOL...]   regenerate modules/<tool>/ from versions.env
    tools.py check             fail when modules/ disagrees with versions.env
    tools.py bindir            print the directory holding all binaries (fails if one is missing)

Stdlib only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
MODULES_DIR = HERE / "modules"
# Bump when the way binaries are built changes, so cached builds are not reused.
RECIPE = "1"
PROGRESS_EVERY_SECONDS = 20.0


@dataclass(frozen=True)
class Tool:
    name: str
    module: str
    version_key: str
    binaries: dict[str, str]  # binary name -> package path
    ldflags: tuple[str, ...] = field(default_factory=tuple)

    def module_dir(self) -> Path:
        return MODULES_DIR / self.name


def kubernetes_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


def load_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for number, raw in enumerate(VERSIONS_FILE.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"v\d+\.\d+\.\d+", value.strip()):
            fail(f"{VERSIONS_FILE}:{number}: expected KEY=vX.Y.Z, got {raw!r}")
        versions[key.strip()] = value.strip()
    return versions


def tools(versions: dict[str, str]) -> list[Tool]:
    kubernetes = versions["KUBERNETES_VERSION"]
    helm = versions["HELM_VERSION"]
    return [
        Tool(
            name="kubernetes",
            module="k8s.io/kubernetes",
            version_key="KUBERNETES_VERSION",
            binaries={
                "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
                "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            },
            ldflags=kubernetes_ldflags(kubernetes),
        ),
        Tool(
            name="etcd",
            # The etcd binary is the server module's main package (the repository root only holds tests).
            module="go.etcd.io/etcd/server/v3",
            version_key="ETCD_VERSION",
            binaries={"etcd": "go.etcd.io/etcd/server/v3"},
        ),
        Tool(
            name="helm",
            module="helm.sh/helm/v4",
            version_key="HELM_VERSION",
            binaries={"helm": "helm.sh/helm/v4/cmd/helm"},
            ldflags=(
                f"-X helm.sh/helm/v4/internal/version.version={helm}",
                "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
            ),
        ),
        Tool(
            name="consul",
            module="github.com/hashicorp/consul",
            version_key="CONSUL_VERSION",
            binaries={"consul": "github.com/hashicorp/consul"},
        ),
    ]


# --- output -------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"tools: {message}", flush=True)


def fail(message: str) -> None:
    print(f"tools: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def elapsed(start: float) -> str:
    seconds = int(time.monotonic() - start)
    return f"{seconds // 60}m{seconds % 60:02d}s"


# --- go -----------------------------------------------------------------------------------------


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # A tool build must not pick up the caller's module settings or an automatic toolchain switch.
    env.update(
        {"GOFLAGS": "-mod=readonly -buildvcs=false", "GOTOOLCHAIN": "local", "GOWORK": "off", "CGO_ENABLED": "0"}
    )
    return env


def go(args: list[str], cwd: Path, what: str, *, env: dict[str, str] | None = None) -> str:
    if shutil.which("go") is None:
        fail("`go` is not on PATH; the toolchain is built with the machine's Go (1.26 or newer)")
    result = subprocess.run(["go", *args], cwd=cwd, env=env or go_env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-30:])
        fail(f"{what} failed (go {' '.join(args[:2])} exited {result.returncode}):\n{tail}")
    return result.stdout


def go_version() -> str:
    return go(["env", "GOVERSION", "GOOS", "GOARCH"], HERE, "reading `go env`").strip().replace("\n", "/")


# --- sync: versions.env -> modules/<tool>/go.mod ----------------------------------------------------


def upstream_gomod(tool: Tool, version: str, workdir: Path) -> dict[str, object]:
    """The upstream go.mod, as `go mod edit -json` sees it."""
    out = go(["mod", "download", "-json", f"{tool.module}@{version}"], workdir, f"downloading {tool.module}@{version}")
    gomod = json.loads(out)["GoMod"]
    parsed: dict[str, object] = json.loads(go(["mod", "edit", "-json", gomod], workdir, f"reading {gomod}"))
    return parsed


def submodule_key(tool: Tool, module: str) -> str:
    """versions.env key that overrides the release a tool's submodule is replaced with."""
    sub = module.removeprefix(tool.module).strip("/")
    return f"{tool.name.upper()}_SUBMODULE_{re.sub(r'[^A-Za-z0-9]', '_', sub).upper()}"


def local_replacements(
    tool: Tool, version: str, gomod: dict[str, object], overrides: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """Upstream replaces its own submodules with directories, which a dependent module cannot see.

    Each becomes a replace to a published release: for Kubernetes' staging modules (required as
    v0.0.0) the v0.X.Y release matching v1.X.Y, for the others the version upstream requires,
    unless versions.env names another (upstream's requirement can lag behind the directory it
    actually built with; see CONSUL_SUBMODULE_API there).
    """
    overrides = overrides or {}
    required = {r["Path"]: r["Version"] for r in gomod.get("Require") or []}  # type: ignore[attr-defined]
    pairs = []
    for replace in gomod.get("Replace") or []:  # type: ignore[attr-defined]
        old, new = replace["Old"]["Path"], replace["New"]
        if not new["Path"].startswith(("./", "../")):
            continue
        if tool.name == "kubernetes" and old.startswith("k8s.io/"):
            pairs.append((old, "v0." + version.lstrip("v").split(".", 1)[1]))
        elif old not in required:
            continue  # a guard against an unwanted dependency (etcd's FORBIDDEN_DEPENDENCY), not a submodule
        elif required[old] == "v0.0.0" and submodule_key(tool, old) not in overrides:
            fail(f"{tool.module}@{version} requires {old} as v0.0.0 and no release rule is known for it")
        else:
            pairs.append((old, overrides.get(submodule_key(tool, old), required[old])))
    return sorted(pairs)


def sync(tool: Tool, version: str, versions: dict[str, str]) -> None:
    start = time.monotonic()
    say(f"{tool.name} {version}: reading upstream go.mod")
    target = tool.module_dir()
    with tempfile.TemporaryDirectory(prefix=f"mcpfleet-sync-{tool.name}-") as tmp:
        work = Path(tmp)
        (work / "go.mod").write_text("module scratch\n")
        env = go_env()
        env["GOFLAGS"] = "-mod=mod -buildvcs=false"
        upstream = upstream_gomod(tool, version, work)
        go_directive = str(upstream.get("Go") or "1.22")
        lines = [
            "// Generated by hack/tools/tools.py sync from hack/tools/versions.env. Do not edit.",
            f"module mcpfleet.dev/hack/tools/{tool.name}",
            "",
            f"go {go_directive}",
            "",
            *(f"tool {pkg}" for pkg in sorted(set(tool.binaries.values()))),
            "",
            f"require {tool.module} {version}",
        ]
        replacements = local_replacements(tool, version, upstream, versions)
        if replacements:
            lines += ["", "replace (", *(f"\t{old} => {old} {new}" for old, new in replacements), ")"]
        (work / "go.mod").write_text("\n".join(lines) + "\n")
        say(f"{tool.name} {version}: resolving the module graph ({len(replacements)} replace lines)")
        go(["mod", "tidy"], work, f"resolving {tool.name} {version}", env=env)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("go.mod", "go.sum"):
            shutil.copyfile(work / name, target / name)
    say(f"{tool.name} {version}: wrote {target.relative_to(HERE.parent.parent)} in {elapsed(start)}")


def check(tool: Tool, version: str) -> str | None:
    gomod = tool.module_dir() / "go.mod"
    if not gomod.exists() or not (tool.module_dir() / "go.sum").exists():
        return f"{tool.module_dir()} is missing; run `make tools-sync`"
    pinned = re.search(
        rf"^\s*(require\s+)?{re.escape(tool.module)} {re.escape(version)}(\s*//.*)?$", gomod.read_text(), re.M
    )
    if pinned is None:
        return f"{gomod} does not pin {tool.module} {version} from versions.env; run `make tools-sync`"
    return None


# --- build --------------------------------------------------------------------------------------


def cache_root() -> Path:
    base = os.environ.get("MCPFLEET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mcpfleet"
    )
    return Path(base) / "tools"


def build_key(tool: Tool, version: str, goversion: str) -> str:
    digest = hashlib.sha256()
    for part in (
        RECIPE,
        tool.name,
        version,
        goversion,
        json.dumps(tool.binaries, sort_keys=True),
        " ".join(tool.ldflags),
        (tool.module_dir() / "go.mod").read_text(),
        (tool.module_dir() / "go.sum").read_text(),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def tool_dir(tool: Tool, version: str, goversion: str) -> Path:
    return cache_root() / f"{tool.name}-{version}-{build_key(tool, version, goversion)}"


def is_built(directory: Path, tool: Tool) -> bool:
    return (directory / ".complete").exists() and all((directory / "bin" / b).is_file() for b in tool.binaries)


def run_with_progress(
    cmd: list[str], cwd: Path, label: str, log: Path, counts: Callable[[str], bool], noun: str
) -> int:
    """Run a quiet go command, saying every few seconds how far it got (a cold build takes minutes)."""
    start = time.monotonic()
    done = 0
    with log.open("w") as sink:
        process = subprocess.Popen(cmd, cwd=cwd, env=go_env(), stdout=sink, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        stderr = process.stderr

        def pump() -> None:
            nonlocal done
            for line in stderr:
                sink.write(line)
                done += counts(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(PROGRESS_EVERY_SECONDS)
            if reader.is_alive():
                say(f"{label}: {done} {noun} so far ({elapsed(start)})")
        process.wait()
    return process.returncode


def build(tool: Tool, version: str, goversion: str) -> Path:
    problem = check(tool, version)
    if problem:
        fail(problem)
    directory = tool_dir(tool, version, goversion)
    if is_built(directory, tool):
        say(f"{tool.name} {version}: cached in {directory}")
        return directory
    start = time.monotonic()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        say(f"{tool.name} {version}: downloading modules")
        run = run_with_progress(
            ["go", "mod", "download", "-x"],
            tool.module_dir(),
            f"{tool.name} download",
            staging / "download.log",
            counts=lambda line: line.startswith("# get ") and line.rstrip().endswith(".zip: 200 OK"),
            noun="module archives fetched",
        )
        if run != 0:
            fail(f"{tool.name} {version}: module download failed; log tail:\n{tail(staging / 'download.log')}")
        say(f"{tool.name} {version}: modules ready ({elapsed(start)}); compiling {', '.join(tool.binaries)}")
        (staging / "bin").mkdir()
        ldflags = " ".join(("-s", "-w", *tool.ldflags))
        cmd = ["go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(staging / "bin") + "/"]
        cmd += list(dict.fromkeys(tool.binaries.values()))
        # `go build -v` names each package as it compiles it.
        run = run_with_progress(
            cmd,
            tool.module_dir(),
            f"{tool.name} compile",
            staging / "build.log",
            counts=lambda line: not line.startswith(("#", " ")),
            noun="packages compiled",
        )
        if run != 0:
            kept = directory.parent / f"{tool.name}-{version}-failed.log"
            shutil.copyfile(staging / "build.log", kept)
            fail(f"{tool.name} {version}: build failed (full log: {kept}):\n{build_errors(staging / 'build.log')}")
        produced = staging / "bin"
        for binary, package in tool.binaries.items():
            default_name = package.rstrip("/").split("/")[-1]
            if re.fullmatch(r"v\d+", default_name):  # module root packages are named after the module
                default_name = package.split("/")[-2]
            if binary != default_name and (produced / default_name).exists():
                (produced / default_name).rename(produced / binary)
            if not (produced / binary).is_file():
                fail(f"{tool.name} {version}: `go build` produced no {binary} (have: {sorted(os.listdir(produced))})")
        (staging / ".complete").write_text(json.dumps({"version": version, "go": goversion}) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    say(f"{tool.name} {version}: built in {elapsed(start)} -> {directory}/bin")
    return directory


def build_errors(log: Path, lines: int = 30) -> str:
    """The compiler's complaints (`# package` headers and file:line messages), not the package list."""
    text = log.read_text(errors="replace").splitlines()
    errors = [line for line in text if line.startswith(("# ", "go: ")) or re.search(r"\.go:\d+(:\d+)?: ", line)]
    return "\n".join(errors[:lines]) if errors else tail(log, lines)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def bindir(selected: list[Tool], versions: dict[str, str], goversion: str) -> Path:
    """One directory of symlinks to every tool's binaries, named by the combined key."""
    dirs = []
    for tool in selected:
        problem = check(tool, versions[tool.version_key])
        if problem:
            fail(problem)
        directory = tool_dir(tool, versions[tool.version_key], goversion)
        if not is_built(directory, tool):
            fail(f"{tool.name} {versions[tool.version_key]} is not built (expected in {directory}); run `make tools`")
        dirs.append((tool, directory))
    combined = cache_root() / ("bin-" + hashlib.sha256("".join(str(d) for _, d in dirs).encode()).hexdigest()[:12])
    if not combined.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".bin-", dir=cache_root()))
        for tool, directory in dirs:
            for binary in tool.binaries:
                (staging / binary).symlink_to(directory / "bin" / binary)
        try:
            staging.rename(combined)
        except OSError:  # another process made it first
            shutil.rmtree(staging)
    return combined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="build", choices=["build", "sync", "check", "bindir"])
    parser.add_argument("tools", nargs="*", help="limit to these tools (default: all)")
    args = parser.parse_args(argv)
    versions = load_versions()
    every = tools(versions)
    unknown = set(args.tools) - {t.name for t in every}
    if unknown:
        fail(f"unknown tool(s) {sorted(unknown)}; known: {[t.name for t in every]}")
    selected = [t for t in every if not args.tools or t.name in args.tools]
    missing = [t.version_key for t in selected if t.version_key not in versions]
    if missing:
        fail(f"{VERSIONS_FILE} does not set {missing}")

    if args.command == "check":
        problems = [p for t in selected if (p := check(t, versions[t.version_key]))]
        for problem in problems:
            print(f"tools: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if args.command == "sync":
        for tool in selected:
            sync(tool, versions[tool.version_key], versions)
        return 0
    goversion = go_version()
    if args.command == "bindir":
        print(bindir(selected, versions, goversion))
        return 0
    start = time.monotonic()
    for tool in selected:
        build(tool, versions[tool.version_key], goversion)
    say(f"all tools ready in {elapsed(start)}; binaries: {bindir(selected, versions, goversion)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
