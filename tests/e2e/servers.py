"""Built-in servers as real processes for the e2e tier, and a real MCP client that talks to them over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from mcpfleet_cli.devcluster.cluster import free_port
from tests.e2e.conftest import eventually


@dataclass
class ServerProcess:
    """One `mcpfleet server <type>` subprocess on a loopback port."""

    server_type: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    checked_up_to: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def http_json(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self) -> None:
        def up() -> bool:
            assert self.process.poll() is None, f"the server exited:\n{self.log_text()[-3000:]}"
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return bool(response.status == 200)

        eventually(up, within=60, interval=0.2, what=f"{self.server_type} server serving /health")

    def assert_no_traceback(self) -> None:
        """The log written since the last check holds no traceback (an unexpected error inside the server)."""
        text = self.log_text()
        fresh, self.checked_up_to = text[self.checked_up_to :], len(text)
        if "Traceback" in fresh:
            pytest.fail(f"the {self.server_type} server logged a traceback:\n{fresh[-5000:]}", pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def clean_environment(*prefixes: str) -> dict[str, str]:
    """This process's environment without MCP_*, KUBECONFIG and the given prefixes: a developer's shell must not
    configure the server under test."""
    dropped = ("MCP_", "KUBECONFIG", *prefixes)
    return {key: value for key, value in os.environ.items() if not key.startswith(dropped)}


def start_server(
    server_type: str, log: Path, environment: dict[str, str], *args: str, port: int | None = None
) -> ServerProcess:
    """Start `mcpfleet server <type> [args]` on loopback over streamable HTTP; returns once /health answers."""
    port = port or free_port()
    command = [str(Path(sys.executable).parent / "mcpfleet"), "server", server_type, *args]
    command += ["--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    server = ServerProcess(server_type, port, log, process)
    try:
        server.wait_serving()
    except BaseException:
        server.stop()
        raise
    return server


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@dataclass
class Mcp:
    """A real MCP client over HTTP: one connection per call; confirmations answered with `answer`."""

    server: ServerProcess
    answer: str = "accept"
    asked: list[str] = field(default_factory=list)
    max_pages: int = 100  # a paged tool that hands out more continue tokens than this is broken

    async def _elicit(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        if self.answer == "accept":
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        """The tool's result; a protocol error (invalid params) raises MCPError."""

        async def run() -> CallToolResult | MCPError:
            async with Client(self.server.url, elicitation_callback=self._elicit) as client:
                try:
                    return await client.call_tool(tool, arguments)
                except MCPError as exc:  # returned, not raised: the client's task group would wrap it
                    return exc

        outcome = anyio.run(run)
        if isinstance(outcome, MCPError):
            raise outcome
        return outcome

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = self.call(tool, **arguments)
        assert not result.is_error, f"{tool} failed: {text_of(result)}"
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    def fails(self, tool: str, **arguments: Any) -> str:
        result = self.call(tool, **arguments)
        assert result.is_error, f"{tool} succeeded: {result.structured_content}"
        return text_of(result)

    def every_item(self, tool: str, **arguments: Any) -> list[dict[str, Any]]:
        """All pages of a paged tool, following continue_token."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(self.max_pages):
            page = self.ok(tool, **arguments, **({"continue_token": token} if token else {}))
            items += page["items"]
            token = page["continue_token"]
            if token is None:
                return items
        raise AssertionError(f"{tool} never stopped paging")

    def ids(self, tool: str, **arguments: Any) -> list[str]:
        return [item["id"] for item in self.every_item(tool, **arguments)]

    def tool_names(self) -> list[str]:
        async def run() -> list[str]:
            async with Client(self.server.url) as client:
                return [tool.name for tool in (await client.list_tools()).tools]

        return anyio.run(run)
