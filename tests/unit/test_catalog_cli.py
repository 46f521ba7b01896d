"""`mcpfleet catalog schema|export`: client configuration files from a catalog file — their shapes, the merge
with what a person wrote, atomic writes with rotated backups, and `--watch` following the catalog."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from mcpfleet_cli.main import app
from mcpfleet_contracts.catalog import Catalog, CatalogServer, CatalogTool, catalog_schema
from mcpfleet_contracts.mcpserver import Risk, Transport
from mcpfleet_gateway.atomic_file import backups

runner = CliRunner()
TOKEN = "s3cr3t-token-value"


def tool(prefix: str, name: str, risk: Risk, cache: float = 0.0) -> CatalogTool:
    return CatalogTool(
        name=f"{prefix}:{name}",
        upstream_name=name,
        description=f"{name} does things",
        risk=risk,
        timeout_seconds=30 if risk is Risk.SAFE else 120,
        cache_ttl_seconds=cache,
        permissions=(f"{prefix}:{name.split('_', maxsplit=1)[0]}",),
    )


def catalog(revision: int = 7, *, with_monitoring: bool = True) -> Catalog:
    servers = [
        CatalogServer(
            name="mcpfleet-system/k8s-ops",
            prefix="k8s",
            endpoint="http://k8s-ops.mcpfleet-system.svc:8080/mcp",
            transport=Transport.STREAMABLE_HTTP,
            tools=(tool("k8s", "get_pods", Risk.SAFE, cache=60), tool("k8s", "delete_pod", Risk.HIGH)),
        )
    ]
    if with_monitoring:
        servers.append(
            CatalogServer(
                name="mcpfleet-system/monitoring",
                prefix="monitoring",
                endpoint="http://monitoring.mcpfleet-system.svc:8080/sse",
                transport=Transport.SSE,
                tools=(tool("monitoring", "query_metrics", Risk.SAFE),),
            )
        )
    return Catalog(
        revision=revision,
        generated_at=datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        servers=tuple(servers),
    )


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(catalog().dump())
    return path


@pytest.fixture(autouse=True)
def token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPFLEET_TOKEN", TOKEN)
    monkeypatch.delenv("MCPFLEET_GATEWAY_URL", raising=False)


def export(catalog_file: Path, output: Path, *args: str) -> Result:
    return runner.invoke(app, ["catalog", "export", "--catalog", str(catalog_file), "--output", str(output), *args])


def test_schema_prints_the_catalog_json_schema() -> None:
    result = runner.invoke(app, ["catalog", "schema"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == catalog_schema()


def test_json_export_lists_servers_and_tools_with_their_policy(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "mcp_config.json"

    result = export(catalog_file, output, "--format", "json", "--gateway", "https://mcp.example.com/")

    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert document["revision"] == 7
    assert document["gateway"] == {"url": "https://mcp.example.com/mcp", "token_env": "MCPFLEET_TOKEN"}
    assert document["servers"][1] == {
        "name": "mcpfleet-system/monitoring",
        "prefix": "monitoring",
        "endpoint": "http://monitoring.mcpfleet-system.svc:8080/sse",
        "transport": "sse",
    }
    tools = {entry["name"]: entry for entry in document["tools"]}
    assert set(tools) == {"k8s:get_pods", "k8s:delete_pod", "monitoring:query_metrics"}
    assert tools["k8s:get_pods"] == {
        "name": "k8s:get_pods",
        "server": "mcpfleet-system/k8s-ops",
        "risk": "SAFE",
        "timeout": 30.0,
        "cache_enabled": True,
        "cache_ttl": 60.0,
        "required_permissions": ["k8s:get"],
        "description": "get_pods does things",
    }
    assert tools["k8s:delete_pod"]["risk"] == "HIGH"
    assert tools["k8s:delete_pod"]["cache_enabled"] is False
    assert f"wrote {output}" in result.stdout


def test_cursor_export_adds_the_gateway_and_keeps_what_a_person_wrote(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "mcp.json"
    mine = {"command": "npx", "args": ["-y", "@acme/tool"]}
    output.write_text(json.dumps({"mcpServers": {"acme": mine}, "theme": "dark"}))

    result = export(catalog_file, output, "--format", "cursor", "--gateway", "https://mcp.example.com")

    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert document["theme"] == "dark"
    assert document["mcpServers"] == {
        "acme": mine,
        "mcpfleet": {
            "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": "Bearer ${env:MCPFLEET_TOKEN}"},
        },
    }
    assert TOKEN not in output.read_text()


def test_claude_direct_export_replaces_mcpfleet_entries_only(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / ".mcp.json"
    existing = {
        "mcpServers": {
            "mcpfleet-retired": {"type": "http", "url": "http://retired/mcp"},
            "notes": {"type": "stdio", "command": "notes-mcp"},
            "mcpfleet": {"type": "http", "url": "https://old-gateway/mcp"},
            "mcpfleet-k8s": {"type": "http", "url": "http://stale/mcp"},
        }
    }
    output.write_text(json.dumps(existing))

    result = export(catalog_file, output, "--format", "claude", "--direct")

    assert result.exit_code == 0, result.output
    servers = json.loads(output.read_text())["mcpServers"]
    assert list(servers) == ["notes", "mcpfleet-k8s", "mcpfleet-monitoring"]
    assert servers["notes"] == existing["mcpServers"]["notes"]
    assert servers["mcpfleet-k8s"] == {"type": "http", "url": "http://k8s-ops.mcpfleet-system.svc:8080/mcp"}
    assert servers["mcpfleet-monitoring"] == {"type": "sse", "url": "http://monitoring.mcpfleet-system.svc:8080/sse"}


def test_claude_gateway_entry_references_the_token_variable(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / ".mcp.json"

    result = export(
        catalog_file, output, "--format", "claude", "--gateway", "http://127.0.0.1:8000", "--token-env", "TEAM_TOKEN"
    )

    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text()) == {
        "mcpServers": {
            "mcpfleet": {
                "type": "http",
                "url": "http://127.0.0.1:8000/mcp",
                "headers": {"Authorization": "Bearer ${TEAM_TOKEN}"},
            }
        }
    }


def test_a_server_gone_from_the_catalog_loses_its_entry(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "mcp.json"
    assert export(catalog_file, output, "--format", "cursor", "--direct").exit_code == 0
    assert set(json.loads(output.read_text())["mcpServers"]) == {"mcpfleet-k8s", "mcpfleet-monitoring"}

    catalog_file.write_text(catalog(8, with_monitoring=False).dump())
    result = export(catalog_file, output, "--format", "cursor", "--direct")

    assert result.exit_code == 0, result.output
    assert set(json.loads(output.read_text())["mcpServers"]) == {"mcpfleet-k8s"}


def test_an_unchanged_export_writes_nothing(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "mcp.json"
    args = ("--format", "cursor", "--gateway", "https://mcp.example.com")
    assert export(catalog_file, output, *args).exit_code == 0
    before = output.stat()

    # A new revision with the same servers changes nothing a client sees.
    catalog_file.write_text(catalog(8).dump())
    result = export(catalog_file, output, *args)

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    after = output.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert backups(output) == []


def test_each_write_keeps_a_timestamped_backup_and_only_the_newest_five(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "mcp_config.json"
    contents = []
    for revision in range(1, 9):
        catalog_file.write_text(catalog(revision).dump())
        assert export(catalog_file, output, "--format", "json").exit_code == 0
        contents.append(output.read_text())

    kept = backups(output)
    assert len(kept) == 5
    assert all(re.fullmatch(r"mcp_config\.json\.\d{8}T\d{12}Z-\d{3}\.bak", path.name) for path in kept)
    # Oldest first, each a complete earlier version: revisions 3 to 7 (8 is the file itself).
    assert [path.read_text() for path in kept] == contents[2:7]
    assert json.loads(output.read_text())["revision"] == 8


def test_a_symlinked_config_is_written_through(catalog_file: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "mcp.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "mcp.json"
    link.symlink_to(real)

    assert export(catalog_file, link, "--format", "cursor", "--direct").exit_code == 0

    assert link.is_symlink()
    assert "mcpfleet-k8s" in json.loads(real.read_text())["mcpServers"]
    assert len(backups(real)) == 1


def test_a_broken_existing_file_is_left_alone(catalog_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "mcp.json"
    output.write_text('{"mcpServers": {"acme": ')

    result = export(catalog_file, output, "--format", "cursor", "--direct")

    assert result.exit_code == 2
    assert "not valid JSON" in result.output
    assert "not overwritten" in result.output
    assert output.read_text() == '{"mcpServers": {"acme": '


@pytest.mark.parametrize(
    ("args", "explains"),
    [
        (("--format", "cursor"), "--gateway URL"),
        (("--format", "claude", "--gateway", "mcp.example.com"), "not an http(s) URL"),
        (("--format", "json", "--token-env", "MY-TOKEN"), "not an environment variable name"),
    ],
)
def test_bad_options_say_what_to_change(
    catalog_file: Path, tmp_path: Path, args: tuple[str, ...], explains: str
) -> None:
    output = tmp_path / "out.json"

    result = export(catalog_file, output, *args)

    assert result.exit_code == 2
    assert explains in result.output
    assert not output.exists()


def test_an_invalid_catalog_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "catalog.json"
    source.write_text(json.dumps({"revision": -1, "generatedAt": "2025-01-01T00:00:00Z"}))

    result = export(source, tmp_path / "out.json", "--format", "json")

    assert result.exit_code == 2
    assert "not a valid catalog: revision" in result.output


def test_the_configmap_itself_is_accepted_as_a_catalog_file(tmp_path: Path) -> None:
    source = tmp_path / "configmap.json"
    source.write_text(json.dumps({"kind": "ConfigMap", "data": {"catalog.json": catalog(3).dump()}}))
    output = tmp_path / "out.json"

    assert export(source, output, "--format", "json").exit_code == 0

    assert json.loads(output.read_text())["revision"] == 3


def wait_until(check: Callable[[], Any], within: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last answer after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {within}s")
        time.sleep(0.05)


def servers_in(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text())["mcpServers"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return set()


def test_watch_follows_a_catalog_file_until_interrupted(catalog_file: Path, tmp_path: Path) -> None:
    catalog_file.write_text(catalog(1, with_monitoring=False).dump())
    output = tmp_path / "mcp.json"
    command = [sys.executable, "-m", "mcpfleet_cli.main", "catalog", "export", "--format", "cursor", "--direct"]
    command += ["--catalog", str(catalog_file), "--output", str(output), "--watch", "--interval", "0.05"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until(lambda: servers_in(output) == {"mcpfleet-k8s"})
        # Replaced the way editors and the operator's mount do: a new file renamed over the old one.
        replacement = tmp_path / "catalog.json.new"
        replacement.write_text(catalog(2).dump())
        replacement.replace(catalog_file)
        wait_until(lambda: servers_in(output) == {"mcpfleet-k8s", "mcpfleet-monitoring"})
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    assert [line.split(" (")[0] for line in stdout.splitlines()] == [f"wrote {output}"] * 2
    assert "revision 2" in stdout.splitlines()[1]
    assert len(backups(output)) == 1
