#!/usr/bin/env bash
# The container image's install recipe, and the only one: the Dockerfile's builder stage runs it, and so does
# the integration tier (tests/integration/test_image_install.py, `make image-check`), so a module, a data file
# or a runtime dependency missing from the wheel fails CI without a Docker engine.
#
# Usage: hack/image-install.sh VENV_DIR [SOURCE_DIR]
#   VENV_DIR    where the virtualenv goes; it must not exist yet, and it must be the path the venv is used
#               from (its scripts carry absolute shebangs), e.g. /opt/mcpfleet/venv in the image.
#   SOURCE_DIR  the project checkout (default: this script's repository).
#   PYTHON      the interpreter the venv is made from (default: python3).
#
# What it does: builds the mcpfleet wheel (non-editable, no dev extras) from a clean copy of exactly the files
# pyproject.toml names, installs it into a fresh venv, then proves the installed copy is whole: every source
# module and package data file is in the venv, every module imports with the venv alone on sys.path, and every
# `mcpfleet` subcommand answers --help.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 VENV_DIR [SOURCE_DIR]" >&2
  exit 2
fi
venv=$1
src=$(cd "${2:-$(dirname "$0")/..}" && pwd)
python=${PYTHON:-python3}

if [ -e "$venv" ]; then
  echo "error: $venv exists; give a path that does not (the image's venv is always built fresh)" >&2
  exit 2
fi
if [ ! -f "$src/pyproject.toml" ]; then
  echo "error: $src has no pyproject.toml; give the project checkout as SOURCE_DIR" >&2
  exit 2
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

# What the wheel is built from, read from pyproject.toml: the package roots (packages.find.where) and the
# readme. Building from a copy keeps setuptools' build/ and *.egg-info out of the checkout, where a stale
# build/lib would otherwise put deleted modules back into the wheel, and leaves out whatever else lies there.
mapfile -t inputs < <("$python" - "$src/pyproject.toml" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)
print("pyproject.toml")
readme = project["project"].get("readme")
if isinstance(readme, str):
    print(readme)
for root in project["tool"]["setuptools"]["packages"]["find"]["where"]:
    print(root)
PY
)
mkdir -p "$staging/src"
for path in "${inputs[@]}"; do
  cp -R "$src/$path" "$staging/src/$path"
done
find "$staging/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

echo "image-install: building the mcpfleet wheel from ${inputs[*]}"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip wheel --quiet --progress-bar off --no-deps --wheel-dir "$staging/dist" "$staging/src"
wheels=("$staging"/dist/mcpfleet-*.whl)
echo "image-install: installing ${wheels[0]##*/} and its runtime dependencies into $venv"
# pip compiles the .pyc files here, at build time: the pods run with a read-only root filesystem and
# PYTHONDONTWRITEBYTECODE, so nothing compiles later and every start would otherwise parse from source.
"$venv/bin/python" -m pip install --quiet --progress-bar off "${wheels[0]}"

echo "image-install: checking the installed copy"
# -I: the venv alone is on sys.path (no PYTHONPATH, no current directory), so a module found only in the
# checkout cannot hide a hole in the wheel. Run from / for the same reason.
(cd / && "$venv/bin/python" -I - "$staging/src" "$venv/bin/mcpfleet" "${inputs[@]}" <<'PY'
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

source, console_script, inputs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
problems: list[str] = []

# Every package the checkout has, with every file of it but caches and hidden files, is installed.
packages = sorted(
    path for root in inputs if (source / root).is_dir() for path in (source / root).glob("mcpfleet_*") if path.is_dir()
)
if not packages:
    problems.append(f"no mcpfleet_* package under {', '.join(inputs)}")
for package in packages:
    try:
        installed = Path(importlib.import_module(package.name).__file__ or "").parent
    except ImportError as exc:
        problems.append(f"{package.name} is not installed: {exc}")
        continue
    if sys.prefix not in str(installed):
        problems.append(f"{package.name} was imported from {installed}, not from the venv {sys.prefix}")
    for file in package.rglob("*"):
        relative = file.relative_to(package)
        skipped = "__pycache__" in relative.parts or any(part.startswith(".") for part in relative.parts)
        if file.is_file() and not skipped and not (installed / relative).is_file():
            problems.append(f"{file.relative_to(source)} is missing from the wheel")

# Every module imports: the lazily imported subcommands (operator, gateway, servers) included, so a runtime
# dependency left out of [project.dependencies] shows here.
modules = 0
for package in packages:
    root = importlib.import_module(package.name)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package.name}."):
        try:
            importlib.import_module(info.name)
            modules += 1
        except Exception as exc:
            problems.append(f"import {info.name}: {type(exc).__name__}: {exc}")

# Every subcommand answers --help through the installed console script.
from typer.main import get_command

from mcpfleet_cli.main import app


def command_paths(command, path=()):
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*path, name))


commands = 0
for path in command_paths(get_command(app)):
    done = subprocess.run([console_script, *path, "--help"], capture_output=True, text=True, timeout=60)
    commands += 1
    if done.returncode != 0 or "Usage:" not in done.stdout:
        problems.append(f"mcpfleet {' '.join(path)} --help exited {done.returncode}: {done.stderr.strip()[-500:]}")

for problem in problems:
    print(f"image-install: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"image-install: ok: {len(packages)} packages, {modules} modules imported, {commands} commands answer --help")
PY
)
