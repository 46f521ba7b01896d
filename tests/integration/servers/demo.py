"""A small server module for the base's tests: every kind of tool and failure the base must govern.

Test-only: it stands for k8s-ops, monitoring and cmdb, which declare their tools the same way.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer, Resolve
from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Budget, Page, paginate, query_fingerprint
from mcpfleet_servers.base.toolkit import BackendUnavailable, InvalidArgument, Refused, ToolFailure, Toolset

SECRET = "hunter2-Xq9"
logger = logging.getLogger("mcpfleet_servers.demo")


class Item(BaseModel):
    name: str = Field(description="Item name.")
    size: int = Field(description="Item size.")


class ScaleResult(BaseModel):
    name: str
    replicas: int


class DeleteResult(BaseModel):
    deleted: str


class Connection(BaseModel):
    host: str
    user: str
    password: str
    note: str


class Blob(BaseModel):
    lines: list[str]


class Caller(BaseModel):
    protocol: str


class Annotation(BaseModel):
    note: str
    protocol: str
    caller_protocol: str


def caller(ctx: Context) -> Caller:
    """A resolver of the tool's own, beside the base's confirmation (module level: annotations name it)."""
    return Caller(protocol=str(ctx.protocol_version))


class DemoModule:
    type_name = "demo"
    instructions = "A demo server for the base's tests."

    def __init__(self, budget: Budget | None = None, *, reachable: bool = True) -> None:
        self.budget = budget or Budget()
        self.reachable = reachable
        self.started = False
        self.closed = False
        self.deleted: list[str] = []
        self.restarted: list[str] = []
        self.items = [Item(name=f"item-{i:03d}", size=i) for i in range(50)]

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def backend_status(self) -> BackendStatus:
        return BackendStatus("Demo API at http://demo.invalid", self.reachable, "" if self.reachable else "refused")

    def register_extras(self, server: MCPServer) -> None:
        @server.resource("demo://about", mime_type="text/plain")
        def about() -> str:
            return "demo"

    def toolset(self) -> Toolset:
        tools = Toolset()
        module = self

        @tools.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="List items")
        async def list_items(
            prefix: Annotated[str | None, Field(description="Only items whose name starts with this.")] = None,
            limit: Annotated[int | None, Field(ge=1, description="Most items to return.")] = None,
            continue_token: Annotated[str | None, Field(description="From a previous page.")] = None,
        ) -> Page[Item]:
            """List the demo items, a page at a time."""
            matching = [i for i in module.items if prefix is None or i.name.startswith(prefix)]
            return paginate(
                matching,
                limit=limit,
                token=continue_token,
                budget=module.budget,
                fingerprint=query_fingerprint(prefix=prefix),
            )

        @tools.tool(risk=Risk.MEDIUM, read_only=False, idempotent=True)
        async def scale(
            name: Annotated[str, Field(description="Deployment name.", pattern=r"^[a-z0-9-]+$")],
            replicas: Annotated[int, Field(ge=0, le=50, description="Desired replicas.")],
        ) -> ScaleResult:
            """Scale a demo deployment."""
            if name == "frozen":
                raise InvalidArgument("name", "this deployment cannot be scaled", {"hint": "pick another"})
            return ScaleResult(name=name, replicas=replicas)

        async def deletable(name: str, **_: Any) -> None:
            if name.startswith("protected-"):
                raise Refused(f"{name} is protected: nothing may delete it")
            if name == "":
                raise InvalidArgument("name", "name the item to delete")

        @tools.tool(risk=Risk.HIGH, read_only=False, destructive=True, precheck=deletable)
        async def delete_item(name: Annotated[str, Field(description="Item to delete.")]) -> DeleteResult:
            """Delete a demo item."""
            module.deleted.append(name)
            return DeleteResult(deleted=name)

        @tools.tool(risk=Risk.HIGH, read_only=False)
        async def restart(name: Annotated[str, Field(description="What to restart.")]) -> DeleteResult:
            """Restart a demo workload (HIGH risk, not destructive)."""
            module.restarted.append(name)
            return DeleteResult(deleted="")

        @tools.tool(risk=Risk.HIGH, read_only=False)
        async def annotate(
            note: Annotated[str, Field(description="The note to attach.")],
            ctx: Context,
            who: Annotated[Caller, Resolve(caller)],
        ) -> Annotation:
            """Attach a note (HIGH risk; uses its own Context and resolver)."""
            return Annotation(note=note, protocol=str(ctx.protocol_version), caller_protocol=who.protocol)

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def connection() -> Connection:
            """Show the demo database connection."""
            logger.info("connecting with password=%s", SECRET)
            return Connection(
                host="db.demo", user="app", password=SECRET, note=f"dsn postgres://app:{SECRET}@db.demo/app"
            )

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def slow() -> Item:
            """Take far longer than any timeout."""
            await anyio.sleep(30)
            return Item(name="late", size=0)

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def backend_down() -> Item:
            """Fail as when the backend cannot be reached."""
            raise BackendUnavailable("Demo API at http://demo.invalid", "connection refused")

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def leaky_failure() -> Item:
            """Fail with a secret in the message."""
            raise ToolFailure(f"login failed for password={SECRET}")

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def crash() -> Item:
            """Fail unexpectedly."""
            raise RuntimeError(f"boom with token={SECRET}")

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def dump(lines: Annotated[int, Field(ge=1, le=100_000, description="How many lines.")]) -> Blob:
            """Return a blob without paging (to test the output budget)."""
            return Blob(lines=["x" * 100] * lines)

        return tools
