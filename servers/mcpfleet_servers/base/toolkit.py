"""How a server declares its tools, and the errors a tool raises; the base turns both into MCP.

A server module defines typed async functions (parameters ``Annotated[T, Field(description=...)]``,
a pydantic model as the return type) inside a ``register(toolset, ...)`` function that closes over
its backend client, and decorates each with ``@toolset.tool(...)``. The function's signature is
the tool's input schema and its return type the output schema. The base (``mcpfleet_servers.base``)
applies the shared policy to every registered tool: read-only / no-destructive modes, allow/deny
lists, timeout, output budget, redaction, confirmation of risky calls, metrics.

Which calls are confirmed: those whose risk reaches the server's threshold (``Toolset(confirm_from=...)``,
HIGH unless the module says otherwise; the operator's ``MCP_CONFIRM_FROM`` wins), unless the tool decides
for itself (``confirm=True/False``). A tool whose risk depends on its arguments declares its usual risk
and a ``risk_for`` hook that raises it for one call (a production asset, say).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from mcpfleet_contracts.mcpserver import Risk

ToolFn = Callable[..., Awaitable[BaseModel]]
F = TypeVar("F", bound=ToolFn)
# Called with the call's arguments (as keywords) before the user is asked to confirm a call:
# raising a ToolFailure (e.g. Refused) ends the call there, so nobody confirms what policy refuses anyway.
Precheck = Callable[..., Awaitable[None]]
# Called with the call's validated arguments (every parameter, defaults filled in) before confirmation: the
# risk of this call. It can only raise the declared risk (a lower answer is ignored); raising a ToolFailure
# or InvalidArgument ends the call like a failure of the tool's body.
RiskFor = Callable[[dict[str, Any]], Awaitable[Risk] | Risk]


@dataclass(frozen=True)
class ToolTraits:
    """What a tool does to the world: drives MCP annotations, policy modes and confirmation."""

    risk: Risk
    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    # True when the tool talks to a system outside the server (a cluster, Prometheus, a CMDB).
    open_world: bool = True
    # Whether calls ask the user first: None follows the call's risk and the server's threshold; True/False
    # decides for this tool whatever the threshold (MCP_REQUIRE_CONFIRMATION=false still turns it off).
    confirm: bool | None = None

    def __post_init__(self) -> None:
        if self.read_only and (self.risk != Risk.SAFE or self.destructive):
            raise ValueError("a read-only tool is SAFE and not destructive")
        if self.destructive and self.risk != Risk.HIGH:
            raise ValueError("a destructive tool is HIGH risk")


@dataclass(frozen=True)
class ToolDef:
    name: str
    fn: ToolFn
    traits: ToolTraits
    title: str
    description: str
    precheck: Precheck | None = None
    risk_for: RiskFor | None = None


class Toolset:
    """The tools of one server, in registration order; names are unique.

    ``confirm_from`` is the server's default confirmation threshold: calls of this risk or higher ask the user
    first. None means HIGH. The operator's ``MCP_CONFIRM_FROM`` overrides it.
    """

    def __init__(self, *, confirm_from: Risk | None = None) -> None:
        self._tools: dict[str, ToolDef] = {}
        self.confirm_from = confirm_from

    def tool(
        self,
        *,
        risk: Risk,
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = True,
        title: str | None = None,
        name: str | None = None,
        precheck: Precheck | None = None,
        confirm: bool | None = None,
        risk_for: RiskFor | None = None,
    ) -> Callable[[F], F]:
        traits = ToolTraits(risk, read_only, destructive, idempotent, open_world, confirm)
        if risk_for is not None and read_only:
            raise ValueError("a read-only tool is SAFE on every call: it cannot have a risk_for hook")

        def register(fn: F) -> F:
            tool_name = name or fn.__name__
            if tool_name in self._tools:
                raise ValueError(f"tool {tool_name!r} is registered twice")
            description = (fn.__doc__ or "").strip()
            if not description:
                raise ValueError(f"tool {tool_name!r} needs a docstring: it is the description clients see")
            self._tools[tool_name] = ToolDef(
                tool_name,
                fn,
                traits,
                title or tool_name.replace("_", " ").capitalize(),
                description,
                precheck,
                risk_for,
            )
            return fn

        return register

    def __iter__(self) -> Iterator[ToolDef]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __getitem__(self, name: str) -> ToolDef:
        return self._tools[name]


class ToolFailure(Exception):
    """A failure the model should read: the message says what went wrong and what to change."""


class BackendUnavailable(ToolFailure):
    """The system behind the tool could not be reached or answered with a server error."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class NotFound(ToolFailure):
    """The object the call names does not exist."""


class Refused(ToolFailure):
    """Policy refuses the call (protected namespace, denied kind, read-only mode, no confirmation)."""


class InvalidArgument(Exception):
    """An argument is well-typed but unusable; becomes a JSON-RPC invalid-params error naming the field."""

    def __init__(self, field: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.details = details or {}
