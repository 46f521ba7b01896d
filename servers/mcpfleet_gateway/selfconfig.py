"""The gateway's own tools for its config: validate, show (secrets masked), schema, and set with hot reload.

They are HIGH risk and need the `gateway:config` permission (admins hold `*`). The `config-file` argument
may only name the gateway's own config file: any other path, `..` tricks and symlinks out included, is
refused. `set-mcp-config` validates first, keeps a timestamped backup (the newest five), replaces the file
atomically and reloads the gateway without dropping calls; an invalid text changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types

from mcpfleet_contracts.catalog import CatalogTool, qualified_name, schema_digest
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.config import GatewayConfig, config_schema, config_store, load_config
from mcpfleet_gateway.config_store import ConfigInvalid, ConfigStore, PathNotAllowed, parse_document
from mcpfleet_gateway.table import Route
from mcpfleet_gateway.upstreams.base import ClientInput
from mcpfleet_servers.base.redact import redact_value

if TYPE_CHECKING:
    from mcpfleet_gateway.gateway import Gateway

PERMISSION = "gateway:config"
_FILE = {
    "type": "string",
    "description": "The config file; only the gateway's own file is accepted. Omit for the current config.",
}
_CONTENT = {"type": "string", "description": "The whole new config, JSON (or YAML when the file is .yaml)."}

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _text_result(payload: dict[str, Any], *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(payload, indent=2, sort_keys=True))],
        structured_content=payload,
        is_error=error,
    )


class SelfConfigTools:
    """A tool backend served by the gateway itself."""

    def __init__(self, gateway: Gateway, store: ConfigStore[GatewayConfig]) -> None:
        self.gateway = gateway
        self.store = store
        self.name = "gateway"
        self._handlers: dict[str, tuple[Handler, dict[str, Any], str, bool]] = {}
        self._register(
            "validate-mcp-config",
            self.validate,
            {"config-file": _FILE, "config-content": _CONTENT},
            [],
            "Check a gateway config (the current file, or a proposed text) and list every problem.",
            True,
        )
        self._register(
            "show-mcp-config",
            self.show,
            {"config-file": _FILE},
            [],
            "Show the gateway's config file with secrets masked.",
            True,
        )
        self._register("show-mcp-config-schema", self.schema, {}, [], "The JSON Schema of the gateway config.", True)
        self._register(
            "set-mcp-config",
            self.set,
            {"config-file": _FILE, "config-content": _CONTENT},
            ["config-content"],
            "Replace the gateway config: validated first, the old file backed up (newest 5 kept), "
            "written atomically, then reloaded without dropping calls.",
            False,
        )

    def _register(
        self,
        name: str,
        handler: Handler,
        properties: dict[str, Any],
        required: list[str],
        description: str,
        read_only: bool,
    ) -> None:
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        self._handlers[name] = (handler, schema, description, read_only)

    def routes(self) -> tuple[Route, ...]:
        config = self.gateway.config
        prefix = config.self_config.prefix
        routes = []
        for name, (_, schema, description, read_only) in self._handlers.items():
            entry = CatalogTool(
                name=qualified_name(prefix, name, config.separator),
                upstream_name=name,
                description=description,
                input_schema=schema,
                risk=Risk.HIGH,
                timeout_seconds=30,
                permissions=(PERMISSION,),
                annotations={"readOnlyHint": read_only, "destructiveHint": not read_only, "idempotentHint": True},
                schema_digest=schema_digest(description, schema),
            )
            routes.append(Route(entry, self, "gateway"))
        return tuple(routes)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the ToolBackend interface; file work is bounded
        retry: bool = False,
        client_input: ClientInput | None = None,  # the gateway's own tools never ask the user
    ) -> types.CallToolResult:
        handler = self._handlers[name][0]
        try:
            return _text_result(await handler(arguments))
        except PathNotAllowed as exc:
            return _text_result({"error": str(exc)}, error=True)
        except ConfigInvalid as exc:
            return _text_result({"valid": False, "problems": exc.problems}, error=True)

    async def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        path = self.store.resolve(arguments.get("config-file"))
        given = arguments.get("config-content")
        text = str(given) if given is not None else await asyncio.to_thread(path.read_text)
        try:
            self.store.validate_text(text)
        except ConfigInvalid as exc:
            return {"valid": False, "file": str(path), "problems": exc.problems}
        return {"valid": True, "file": str(path), "problems": []}

    async def show(self, arguments: dict[str, Any]) -> dict[str, Any]:
        path = self.store.resolve(arguments.get("config-file"))
        text = await asyncio.to_thread(path.read_text)
        document = parse_document(text, suffix=path.suffix.lower())
        return {"file": str(path), "config": redact_value(document)}

    async def schema(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return config_schema()

    async def set(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.store.resolve(arguments.get("config-file"))
        text = str(arguments["config-content"])
        written = await asyncio.to_thread(self.store.write, text)
        # Reload from the file, not from this text: with writers racing, the last reload must apply the last write.
        settings = self.gateway.settings
        await self.gateway.reload(lambda: load_config(settings))
        return {
            "written": str(written.path),
            "backup": str(written.backup) if written.backup else None,
            "pruned": [str(p) for p in written.pruned],
            "reloaded": True,
            "tools": len(self.gateway.table.tools),
        }


def self_config_tools(gateway: Gateway) -> tuple[tuple[Route, ...], ...]:
    """The routes of the config tools, or none when they are off or the gateway runs without a config file."""
    path = gateway.settings.config
    if not gateway.config.self_config.enabled or path is None:
        return ()
    return (SelfConfigTools(gateway, config_store(path)).routes(),)
