"""The Dockerfile and .dockerignore, checked without a Docker engine.

A small Dockerfile parser (logical lines, comments, heredocs, stages, global ARG defaults) feeds one checker
whose rules are each proven able to fail on a Dockerfile broken in exactly that way.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest

from mcpfleet_gateway.config import ListenSettings
from mcpfleet_operator.builders.model import BuildDefaults
from mcpfleet_operator.settings import OperatorSettings
from mcpfleet_servers.base.settings import ServerSettings
from tests.unit.helpers import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
INSTALL_SCRIPT = "hack/image-install.sh"
OCI_LABELS = ("title", "description", "source", "licenses", "version")
# Secret-looking names that must never get a value baked into an image layer.
SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key|credentials?)")
HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_]\w*)\2")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PATCH_TAG = re.compile(r"^\d+\.\d+\.\d+(?:[-.][\w.-]+)?$")
WHOLE_CONTEXT = {".", "./", "*", "./*", "/"}
REMOTE = re.compile(r"(https?|git)://|git@")
APT_INSTALL = re.compile(r"\bapt(-get)?\s+(\S+\s+)*install\b")
DEV_INSTALL = re.compile(r"\[[^]]*\bdev\b[^]]*\]|pip\s+install\s+(\S+\s+)*(-e|--editable)\b")


# The parser.


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int
    heredocs: tuple[str, ...] = ()

    def flags(self) -> dict[str, str]:
        """The leading --name=value options (COPY --from, HEALTHCHECK --interval, ...)."""
        found: dict[str, str] = {}
        for token in self.arguments.split():
            if not token.startswith("--"):
                break
            name, _, value = token[2:].partition("=")
            found[name] = value
        return found

    def operands(self) -> list[str]:
        """The arguments after the options, shell-split (exec-form JSON arrays are parsed by the caller)."""
        tokens = shlex.split(self.arguments)
        while tokens and tokens[0].startswith("--"):
            tokens.pop(0)
        return tokens

    def pairs(self) -> dict[str, str]:
        """ENV, LABEL and ARG as key -> value (ARG without a default maps to "")."""
        tokens = shlex.split(self.arguments)
        if tokens and "=" not in tokens[0] and self.keyword == "ENV":
            return {tokens[0]: " ".join(tokens[1:])}  # the legacy `ENV KEY value` form
        return {key: value for key, _, value in (token.partition("=") for token in tokens)}


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        return {key: value for i in self.all("ENV") for key, value in i.pairs().items()}


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)


def _instructions(text: str) -> list[Instruction]:
    lines = text.splitlines()
    found: list[Instruction] = []
    index = 0
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        logical = stripped
        while logical.endswith("\\") and index < len(lines):
            logical = logical[:-1]
            # Docker drops comment and blank lines inside a continuation; the instruction goes on after them.
            while index < len(lines) and (not lines[index].strip() or lines[index].strip().startswith("#")):
                index += 1
            if index < len(lines):
                logical += " " + lines[index].strip()
                index += 1
        keyword, _, arguments = logical.partition(" ")
        bodies: list[str] = []
        for strip_tabs, _quote, word in HEREDOC.findall(arguments):
            body: list[str] = []
            while index < len(lines):
                line = lines[index].lstrip("\t") if strip_tabs else lines[index]
                index += 1
                if line == word:
                    break
                body.append(line)
            bodies.append("\n".join(body) + "\n")
        found.append(Instruction(keyword.upper(), arguments.strip(), start + 1, tuple(bodies)))
    return found


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value)


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(text):
        if instruction.keyword == "FROM":
            operands = instruction.operands()
            name = operands[2] if len(operands) == 3 and operands[1].upper() == "AS" else None
            base = _substitute(operands[0], global_args) if operands else ""
            stages.append(Stage(base, name, instruction.line))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword == "ARG":
            global_args.update(instruction.pairs())
    return Dockerfile(global_args, stages)


# The .dockerignore matcher (Docker's rules: last matching pattern wins, `!` re-includes, a pattern that
# matches a folder matches everything in it, `**` spans folders).


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            out, index = out + pattern[index : end + 1], end + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def ignored(dockerignore: str, path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context."""
    prefixes = [path.split("/")[: n + 1] for n in range(path.count("/") + 1)]
    result = False
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _pattern_regex(line.lstrip("!").strip("/"))
        if any(pattern.fullmatch("/".join(prefix)) for prefix in prefixes):
            result = not negate
    return result


# The checker.


@dataclass(frozen=True)
class Problem:
    rule: str
    message: str


def _check_bases(dockerfile: Dockerfile) -> list[Problem]:
    problems: list[Problem] = []
    names = {s.name for s in dockerfile.stages if s.name}
    for stage in dockerfile.stages:
        if stage.base in names or stage.base == "scratch":
            continue
        reference, _, digest = stage.base.partition("@")
        if digest:
            if not DIGEST.search("@" + digest):
                problems.append(Problem("pinned-base", f"line {stage.line}: {stage.base}: malformed digest"))
            continue
        _, colon, tag = reference.rpartition(":")
        if not colon or "/" in tag or tag == "latest" or not PATCH_TAG.match(tag):
            problems.append(
                Problem(
                    "pinned-base",
                    f"line {stage.line}: base {stage.base!r} is not pinned: use an exact patch tag "
                    "(python:3.11.14-slim-bookworm) or a digest (@sha256:...)",
                )
            )
    return problems


def _check_same_base(dockerfile: Dockerfile) -> list[Problem]:
    final = dockerfile.final
    problems: list[Problem] = []
    for copy in final.all("COPY"):
        source = dockerfile.stage(copy.flags().get("from", ""))
        if source is not None and source.base != final.base:
            problems.append(
                Problem(
                    "same-base",
                    f"line {copy.line}: copies from {source.name} built on {source.base}, but the runtime is "
                    f"{final.base}: a venv only runs on the interpreter it was made with",
                )
            )
    return problems


def _check_user(final: Stage) -> list[Problem]:
    user = final.last("USER")
    if user is None:
        return [Problem("user", "the final stage has no USER: it would run as root")]
    uid, _, gid = user.arguments.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return [Problem("user", f"line {user.line}: USER {user.arguments}: give a numeric uid:gid (runAsNonRoot)")]
    if int(uid) == 0:
        return [Problem("user", f"line {user.line}: USER {user.arguments} is root")]
    return []


def _check_entrypoint(final: Stage) -> list[Problem]:
    entrypoint = final.last("ENTRYPOINT")
    if entrypoint is None:
        return [Problem("entrypoint", 'no ENTRYPOINT: want ENTRYPOINT ["mcpfleet"]')]
    try:
        value: Any = json.loads(entrypoint.arguments)
    except json.JSONDecodeError:
        value = None
    if value != ["mcpfleet"]:
        return [Problem("entrypoint", f'line {entrypoint.line}: want ENTRYPOINT ["mcpfleet"] (exec form)')]
    return []


def _check_healthcheck(final: Stage) -> list[Problem]:
    healthcheck = final.last("HEALTHCHECK")
    if healthcheck is None or "CMD" not in healthcheck.operands():
        return [Problem("healthcheck", "the final stage has no HEALTHCHECK CMD")]
    return []


def _check_labels(final: Stage) -> list[Problem]:
    labels = {key: value for i in final.all("LABEL") for key, value in i.pairs().items()}
    problems = [
        Problem("labels", f"missing label org.opencontainers.image.{name}")
        for name in OCI_LABELS
        if not labels.get(f"org.opencontainers.image.{name}")
    ]
    version = labels.get("org.opencontainers.image.version", "")
    build_args = {key for i in final.all("ARG") for key in i.pairs()}
    if version and not any(arg in _build_arg_names(version) for arg in build_args):
        problems.append(Problem("labels", f"version label {version!r} is not a build arg of the final stage"))
    return problems


def _build_arg_names(value: str) -> set[str]:
    return {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", value)}


def _check_instructions(dockerfile: Dockerfile) -> list[Problem]:
    problems: list[Problem] = []
    for stage in dockerfile.stages:
        for i in stage.instructions:
            if i.keyword == "ADD" and any(REMOTE.match(s) for s in i.operands()[:-1]):
                problems.append(Problem("add-url", f"line {i.line}: ADD of a URL; download in a checked RUN step"))
            if (
                i.keyword == "RUN"
                and APT_INSTALL.search(i.arguments)
                and "rm -rf /var/lib/apt/lists" not in i.arguments
            ):
                problems.append(Problem("apt-lists", f"line {i.line}: apt install without rm -rf /var/lib/apt/lists/*"))
            if i.keyword == "RUN" and DEV_INSTALL.search(i.arguments):
                problems.append(Problem("dev-install", f"line {i.line}: dev extras or an editable install"))
            if i.keyword in {"ENV", "ARG"}:
                problems.extend(
                    Problem("secrets", f"line {i.line}: {key} has a value baked into the image")
                    for key, value in i.pairs().items()
                    if SECRET_NAME.search(key) and value
                )
    return problems


def _check_runtime_copies(final: Stage) -> list[Problem]:
    return [
        Problem("context-copy", f"line {copy.line}: the runtime stage copies the build context; copy the venv")
        for copy in final.all("COPY") + final.all("ADD")
        if "from" not in copy.flags() and WHOLE_CONTEXT & set(copy.operands()[:-1])
    ]


def _check_env(final: Stage) -> list[Problem]:
    env = final.env()
    return [
        Problem("env", f"the final stage does not set {name}=1")
        for name in ("PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR")
        if env.get(name) != "1"
    ]


def _check_install_script(dockerfile: Dockerfile) -> list[Problem]:
    for copy in dockerfile.final.all("COPY"):
        stage = dockerfile.stage(copy.flags().get("from", ""))
        if stage is not None and any(i.arguments.split()[:1] == [INSTALL_SCRIPT] for i in stage.all("RUN")):
            return []
    return [Problem("install-script", f"no stage the runtime copies from runs {INSTALL_SCRIPT} (the one CI runs)")]


def _context_paths(dockerfile: Dockerfile) -> set[str]:
    """The paths COPY/ADD take from the build context (heredocs and other stages excluded)."""
    paths: set[str] = set()
    for stage in dockerfile.stages:
        for i in stage.all("COPY") + stage.all("ADD"):
            if "from" not in i.flags():
                paths |= {s.rstrip("/") for s in i.operands()[:-1] if not s.startswith("<<") and not REMOTE.match(s)}
    return paths


def _check_dockerignore(dockerfile: Dockerfile, dockerignore: str | None) -> list[Problem]:
    if dockerignore is None:
        return [Problem("dockerignore", "no .dockerignore: the whole checkout (.git, .venv) becomes the context")]
    problems = [
        Problem("dockerignore", f".dockerignore lets {path} into the build context")
        for path in (".git", ".git/config", ".venv", ".venv/bin/python")
        if not ignored(dockerignore, path)
    ]
    problems += [
        Problem("dockerignore", f".dockerignore leaves out {path}, which the Dockerfile copies")
        for path in sorted(_context_paths(dockerfile))
        if path not in WHOLE_CONTEXT and ignored(dockerignore, path)
    ]
    return problems


def check(dockerfile_text: str, dockerignore: str | None) -> list[Problem]:
    """Every rule's problems; [] when the Dockerfile and .dockerignore are fit to ship."""
    dockerfile = parse(dockerfile_text)
    if not dockerfile.stages:
        return [Problem("stages", "no FROM")]
    final = dockerfile.final
    return [
        *_check_bases(dockerfile),
        *_check_same_base(dockerfile),
        *_check_user(final),
        *_check_entrypoint(final),
        *_check_healthcheck(final),
        *_check_labels(final),
        *_check_instructions(dockerfile),
        *_check_runtime_copies(final),
        *_check_env(final),
        *_check_install_script(dockerfile),
        *_check_dockerignore(dockerfile, dockerignore),
    ]


# The repository's files.


@pytest.fixture(scope="module")
def dockerfile_text() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def dockerignore_text() -> str:
    return DOCKERIGNORE.read_text()


def _pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_the_dockerfile_and_dockerignore_pass_every_rule(dockerfile_text: str, dockerignore_text: str) -> None:
    assert check(dockerfile_text, dockerignore_text) == []


def test_the_final_stage_is_what_the_chart_and_the_operator_expect(dockerfile_text: str) -> None:
    dockerfile = parse(dockerfile_text)
    final = dockerfile.final
    assert len(dockerfile.stages) >= 2, "multi-stage: the runtime must not carry the build's tools"
    cmd = final.last("CMD")
    assert cmd is not None
    assert json.loads(cmd.arguments) == ["--help"]
    user = final.last("USER")
    assert user is not None
    # The operator runs the built-in servers' pods as this uid; the image's own files must match it.
    assert user.arguments == f"{BuildDefaults().run_as_user}:{BuildDefaults().run_as_user}"


def test_the_version_build_arg_defaults_to_the_package_version(dockerfile_text: str) -> None:
    args = {key: value for i in parse(dockerfile_text).final.all("ARG") for key, value in i.pairs().items()}
    assert args["VERSION"] == _pyproject()["project"]["version"]


def test_the_builder_copies_everything_the_wheel_is_built_from(dockerfile_text: str) -> None:
    project = _pyproject()
    needed = {"pyproject.toml", project["project"]["readme"], INSTALL_SCRIPT}
    needed |= set(project["tool"]["setuptools"]["packages"]["find"]["where"])
    assert needed <= _context_paths(parse(dockerfile_text))


def test_the_healthcheck_default_reaches_every_long_running_subcommand(dockerfile_text: str) -> None:
    urls = set(parse(dockerfile_text).final.env()["MCPFLEET_HEALTHCHECK_URL"].split())
    operator_port = OperatorSettings.model_fields["liveness_port"].default
    gateway_port = ListenSettings.model_fields["port"].default
    server_port = ServerSettings.model_fields["port"].default
    assert f"http://127.0.0.1:{operator_port}/healthz" in urls
    assert f"http://127.0.0.1:{gateway_port}/health" in urls
    assert f"http://127.0.0.1:{server_port}/health" in urls


def test_the_healthcheck_runs_the_script_the_dockerfile_writes(dockerfile_text: str) -> None:
    final = parse(dockerfile_text).final
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = json.loads(healthcheck.arguments.split("CMD", 1)[1])
    written = [c for c in final.all("COPY") if c.heredocs and c.operands()[-1].endswith(f"/{command[0]}")]
    assert len(written) == 1, f"no COPY heredoc writes {command[0]}"
    assert written[0].flags().get("chmod") == "0755"
    assert written[0].heredocs[0].startswith("#!/usr/local/bin/python3 -I\n")


def test_the_install_script_is_executable() -> None:
    assert (REPO_ROOT / INSTALL_SCRIPT).stat().st_mode & 0o111


# The checker itself: every rule fails on a Dockerfile broken in exactly that way.

RUNTIME_ENV_START = "ENV PATH=/opt/mcpfleet/venv/bin:$PATH \\\n"
RUNTIME_ENV_PIP = RUNTIME_ENV_START + "    PYTHONDONTWRITEBYTECODE=1 \\\n    PYTHONUNBUFFERED=1 \\\n    "
HEALTHCHECK_LINE = (
    'HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["mcpfleet-healthcheck"]\n'
)
APT_INSTALL_STEP = "RUN apt-get update && apt-get install -y --no-install-recommends tini"

BROKEN: list[tuple[str, str, str, str]] = [
    # (what, replace this, with this, the rule that must fire)
    ("root user", "USER 10001:10001", "USER root", "user"),
    ("uid 0", "USER 10001:10001", "USER 0:0", "user"),
    ("named user", "USER 10001:10001", "USER mcpfleet", "user"),
    ("no user", "USER 10001:10001\n", "", "user"),
    ("latest", "ARG PYTHON_BASE=python:3.11.14-slim-bookworm", "ARG PYTHON_BASE=python:latest", "pinned-base"),
    ("no tag", "ARG PYTHON_BASE=python:3.11.14-slim-bookworm", "ARG PYTHON_BASE=python", "pinned-base"),
    ("minor tag", "ARG PYTHON_BASE=python:3.11.14-slim-bookworm", "ARG PYTHON_BASE=python:3.11-slim", "pinned-base"),
    ("bad digest", "ARG PYTHON_BASE_DIGEST=", "ARG PYTHON_BASE_DIGEST=@sha256:abc", "pinned-base"),
    (
        "bases differ",
        "FROM ${PYTHON_BASE}${PYTHON_BASE_DIGEST} AS runtime",
        "FROM python:3.12.1-slim AS runtime",
        "same-base",
    ),
    ("shell entrypoint", 'ENTRYPOINT ["mcpfleet"]', "ENTRYPOINT mcpfleet", "entrypoint"),
    ("other entrypoint", 'ENTRYPOINT ["mcpfleet"]', 'ENTRYPOINT ["python"]', "entrypoint"),
    ("no entrypoint", 'ENTRYPOINT ["mcpfleet"]\n', "", "entrypoint"),
    ("healthcheck off", HEALTHCHECK_LINE, "HEALTHCHECK NONE", "healthcheck"),
    ("no healthcheck", HEALTHCHECK_LINE, "", "healthcheck"),
    ("no licenses label", 'org.opencontainers.image.licenses="Apache-2.0" \\\n', "", "labels"),
    (
        "fixed version",
        'org.opencontainers.image.version="${VERSION}"',
        'org.opencontainers.image.version="0.1"',
        "labels",
    ),
    ("add url", "WORKDIR /tmp", "WORKDIR /tmp\nADD https://example.org/tool.tar.gz /opt/", "add-url"),
    ("apt lists", "COPY --from=builder", APT_INSTALL_STEP + "\nCOPY --from=builder", "apt-lists"),
    ("dev extras", "RUN hack/image-install.sh", "RUN pip install '.[dev]' && hack/image-install.sh", "dev-install"),
    ("editable", "RUN hack/image-install.sh", "RUN pip install -e . && hack/image-install.sh", "dev-install"),
    ("secret env", "PYTHONUNBUFFERED=1 \\\n", "PYTHONUNBUFFERED=1 MCPFLEET_GATEWAY_TOKEN=s3cr3t \\\n", "secrets"),
    ("secret arg", "ARG REVISION=unknown", "ARG REVISION=unknown\nARG REDIS_PASSWORD=hunter2", "secrets"),
    ("whole context", "COPY --from=builder", "COPY . /app\nCOPY --from=builder", "context-copy"),
    ("no bytecode env", RUNTIME_ENV_START + "    PYTHONDONTWRITEBYTECODE=1 \\\n", RUNTIME_ENV_START, "env"),
    ("pip cache", RUNTIME_ENV_PIP + "PIP_NO_CACHE_DIR=1", RUNTIME_ENV_PIP + "PIP_NO_CACHE_DIR=0", "env"),
    (
        "own install steps",
        "RUN hack/image-install.sh /opt/mcpfleet/venv /src",
        "RUN pip install /src",
        "install-script",
    ),
]


@pytest.mark.parametrize(("old", "new", "rule"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_each_rule_fails_on_a_dockerfile_broken_that_way(
    dockerfile_text: str, dockerignore_text: str, old: str, new: str, rule: str
) -> None:
    assert old in dockerfile_text, f"the Dockerfile changed: update this case ({old!r} is gone)"
    problems = check(dockerfile_text.replace(old, new, 1), dockerignore_text)
    assert rule in {p.rule for p in problems}, problems


def test_a_digest_pins_even_a_floating_tag(dockerfile_text: str, dockerignore_text: str) -> None:
    pinned = dockerfile_text.replace(
        "ARG PYTHON_BASE=python:3.11.14-slim-bookworm", "ARG PYTHON_BASE=python:3.11-slim-bookworm", 1
    ).replace("ARG PYTHON_BASE_DIGEST=", "ARG PYTHON_BASE_DIGEST=@sha256:" + "0" * 64, 1)
    assert check(pinned, dockerignore_text) == []


def test_apt_is_fine_when_its_lists_are_removed_in_the_same_step(dockerfile_text: str, dockerignore_text: str) -> None:
    step = APT_INSTALL_STEP + " \\\n    && rm -rf /var/lib/apt/lists/*\nCOPY --from=builder"
    assert check(dockerfile_text.replace("COPY --from=builder", step, 1), dockerignore_text) == []


@pytest.mark.parametrize(
    ("dockerignore", "left_in"),
    [
        (None, "no .dockerignore"),
        ("**/__pycache__\n.venv\n", ".git into"),
        (".git\n", ".venv into"),
        ("*\n!.git\n", ".git into"),
        ("*\n!pyproject.toml\n!README.md\n!operator/\n!servers/\n!cli/\n!hack/image-install.sh\n", "contracts"),
        (".git\n.venv\nhack/\n", "hack/image-install.sh"),
    ],
    ids=["missing", "git", "venv", "git re-included", "a package root left out", "the install script left out"],
)
def test_the_dockerignore_rule_fails(dockerfile_text: str, dockerignore: str | None, left_in: str) -> None:
    problems = [p for p in check(dockerfile_text, dockerignore) if p.rule == "dockerignore"]
    assert any(left_in in p.message for p in problems), problems


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        (".git/HEAD", True),
        (".venv", True),
        ("tests/unit/test_crd.py", True),
        ("benchmarks/results/x.json", True),
        ("charts/mcpfleet/Chart.yaml", True),
        ("docs/image.md", True),
        (".env", True),
        ("kubeconfig", True),
        ("servers/mcpfleet_servers/__pycache__/x.cpython-311.pyc", True),
        ("operator/mcpfleet_operator/.mypy_cache/x", True),
        ("pyproject.toml", False),
        ("servers/mcpfleet_gateway/server.py", False),
        ("contracts/mcpfleet_contracts/py.typed", False),
        ("hack/image-install.sh", False),
        ("hack/tools/tools.py", True),
    ],
)
def test_the_dockerignore_keeps_the_context_to_what_the_build_needs(
    dockerignore_text: str, path: str, left_out: bool
) -> None:
    assert ignored(dockerignore_text, path) is left_out


def test_the_parser_joins_continuations_skips_comments_and_keeps_heredocs_verbatim() -> None:
    text = (
        "# syntax=docker/dockerfile:1.7\n"
        "ARG BASE=python:3.11.14-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN echo one \\\n"
        "    # a comment inside a continuation\n"
        "    && echo two\n"
        "FROM $BASE\n"
        "COPY --chmod=0755 <<'EOF' /usr/local/bin/x\n"
        "#!/bin/sh\n"
        "# kept: heredoc bodies are not comments\n"
        "EOF\n"
        'LABEL a="one two" b=3\n'
    )
    dockerfile = parse(text)
    assert [(s.base, s.name) for s in dockerfile.stages] == [
        ("python:3.11.14-slim", "build"),
        ("python:3.11.14-slim", None),
    ]
    assert dockerfile.stages[0].instructions[0].arguments == "echo one  && echo two"
    copy = dockerfile.final.instructions[0]
    assert copy.flags() == {"chmod": "0755"}
    assert copy.heredocs == ("#!/bin/sh\n# kept: heredoc bodies are not comments\n",)
    assert dockerfile.final.instructions[1].pairs() == {"a": "one two", "b": "3"}
