"""A small server module for the confirmation threshold and per-call risk: assets in environments.

Test-only: it stands for servers (monitoring, cmdb) whose MEDIUM calls are confirmed and whose risk depends on
the arguments.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.toolkit import BackendUnavailable, Toolset

Environment = Literal["development", "staging", "production"]


class Asset(BaseModel):
    name: str
    status: str
    environment: Environment


async def risk_of_status_change(arguments: dict[str, Any]) -> Risk:
    """HIGH for production assets; an answer below the declared MEDIUM (development) must not lower it."""
    if arguments["environment"] == "production":
        return Risk.HIGH
    return Risk.SAFE if arguments["environment"] == "development" else Risk.MEDIUM


def risk_of_unknown_asset(arguments: dict[str, Any]) -> Risk:
    """A plain (not async) hook whose lookup fails for an unknown asset."""
    if arguments["name"] == "unknown":
        raise BackendUnavailable("Asset DB at http://assets.invalid", "connection refused")
    return Risk.MEDIUM


class AssetModule:
    type_name = "assets"
    instructions = "Assets for the confirmation tests."

    def __init__(self, confirm_from: Risk | None = None) -> None:
        self.confirm_from = confirm_from
        self.changed: list[Asset] = []
        self.retired: list[str] = []
        self.noted: list[str] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def backend_status(self) -> BackendStatus:
        return BackendStatus("Asset DB (in memory)", True)

    def register_extras(self, server: MCPServer) -> None:
        return None

    def toolset(self) -> Toolset:
        tools = Toolset(confirm_from=self.confirm_from)
        module = self

        @tools.tool(risk=Risk.SAFE, read_only=True, idempotent=True)
        async def get_asset(name: Annotated[str, Field(description="Asset name.")]) -> Asset:
            """Read an asset."""
            return Asset(name=name, status="active", environment="staging")

        @tools.tool(risk=Risk.MEDIUM, read_only=False, idempotent=True)
        async def rename_asset(
            name: Annotated[str, Field(description="Asset name.")],
            new_name: Annotated[str, Field(description="The new name.")],
        ) -> Asset:
            """Rename an asset (MEDIUM risk)."""
            asset = Asset(name=new_name, status="active", environment="staging")
            module.changed.append(asset)
            return asset

        @tools.tool(risk=Risk.MEDIUM, read_only=False, idempotent=True, risk_for=risk_of_status_change)
        async def update_asset_status(
            name: Annotated[str, Field(description="Asset name.")],
            status: Annotated[str, Field(description="The new status.")],
            environment: Annotated[Environment, Field(description="Where the asset runs.")] = "staging",
        ) -> Asset:
            """Change an asset's status (MEDIUM risk, HIGH for production)."""
            asset = Asset(name=name, status=status, environment=environment)
            module.changed.append(asset)
            return asset

        @tools.tool(risk=Risk.MEDIUM, read_only=False, risk_for=risk_of_unknown_asset)
        async def tag_asset(
            name: Annotated[str, Field(description="Asset name.")],
            tag: Annotated[str, Field(description="The tag.")],
        ) -> Asset:
            """Tag an asset (its risk hook looks the asset up)."""
            asset = Asset(name=name, status=tag, environment="staging")
            module.changed.append(asset)
            return asset

        @tools.tool(risk=Risk.MEDIUM, read_only=False, confirm=False)
        async def touch_asset(name: Annotated[str, Field(description="Asset name.")]) -> Asset:
            """Refresh an asset's timestamp (MEDIUM risk, never confirmed)."""
            asset = Asset(name=name, status="touched", environment="staging")
            module.changed.append(asset)
            return asset

        @tools.tool(risk=Risk.SAFE, read_only=False, idempotent=True, open_world=False, confirm=True)
        async def note_asset(note: Annotated[str, Field(description="The note.")]) -> Asset:
            """Write a note to the audit log (SAFE, always confirmed)."""
            module.noted.append(note)
            return Asset(name="note", status=note, environment="staging")

        @tools.tool(risk=Risk.HIGH, read_only=False, destructive=True)
        async def retire_asset(name: Annotated[str, Field(description="Asset name.")]) -> Asset:
            """Retire an asset for good (HIGH risk)."""
            module.retired.append(name)
            return Asset(name=name, status="retired", environment="staging")

        return tools
