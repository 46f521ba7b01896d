"""A small real MCP server with k8s-like tool names, behind the gateway in governance tests.

Its tools' names carry the verbs the risk model reads (list → SAFE, scale → MEDIUM, delete → HIGH), so the
gateway's inference, RBAC and rate limits act on them as on the real servers. It keeps state (replicas per
deployment, a call counter) to show calls really arrive — or really don't. In-process via ``build()``, or
a process: ``python -m tests.integration.gateway.fleet_app --port N``.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Annotated

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

SECRET_VALUE = "hunter2-very-secret"


def build() -> MCPServer:
    server: MCPServer = MCPServer("fleet")
    scaled: dict[str, int] = {}
    calls = itertools.count(1)

    @server.tool()
    def list_pods(
        namespace: Annotated[str, Field(description="Namespace to list.")],
        all_namespaces: Annotated[bool, Field(description="Every namespace instead.")] = False,
    ) -> dict[str, object]:
        """List pods (fake: three per namespace)."""
        return {"namespace": namespace, "pods": [f"{namespace}-pod-{i}" for i in range(3)], "call": next(calls)}

    @server.tool()
    def scale_deployment(
        namespace: Annotated[str, Field(description="Namespace of the deployment.")],
        name: Annotated[str, Field(description="Deployment name.")],
        replicas: Annotated[int, Field(ge=0, le=100, description="Desired replicas.")],
    ) -> dict[str, object]:
        """Scale a deployment."""
        key = f"{namespace}/{name}"
        before = scaled.get(key, 1)
        scaled[key] = replicas
        return {"deployment": key, "from": before, "to": replicas}

    @server.tool()
    def delete_pod(
        namespace: Annotated[str, Field(description="Namespace.")],
        name: Annotated[str, Field(description="Pod name.")],
    ) -> str:
        """Delete a pod."""
        return f"deleted {namespace}/{name}"

    @server.tool()
    def login(
        username: Annotated[str, Field(description="User.")],
        password: Annotated[str, Field(description="Password (must never reach an audit trail).")],
    ) -> str:
        """Get a session for a user (the password argument tests audit redaction)."""
        return f"session for {username}"

    @server.resource("fleet://inventory", name="inventory", description="What the fake fleet has.")
    def inventory() -> str:
        return "3 pods per namespace"

    @server.prompt()
    def triage(service: str) -> str:
        """An incident triage prompt."""
        return f"Triage {service}: check pods, then metrics."

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build().streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
