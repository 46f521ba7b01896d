"""Server types `mcpfleet server <type>` can run, each a factory imported only when chosen."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_snake

from mcpfleet_servers.base.module import ServerModule
from mcpfleet_servers.base.settings import ConfigFile, ServerSettings

ServerFactory = Callable[[ServerSettings, ConfigFile | None], ServerModule]


class ServerTypeUnavailable(Exception):
    """The type is known but its code is not part of this installation."""


class ModuleSettingsInvalid(Exception):
    """The module's own settings (e.g. K8S_*) are wrong; one line per bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def _import(module_name: str, attribute: str, server_type: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ServerTypeUnavailable(
                f"the {server_type} server is not part of this installation ({module_name} is missing)"
            ) from exc
        raise
    return getattr(module, attribute)


def _error_lines(prefix: str, exc: ValidationError) -> list[str]:
    return [
        f"{prefix}{str(err['loc'][0]).upper() if err['loc'] else '?'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    ]


def module_settings(settings_cls: Any, block: Mapping[str, Any]) -> Any:
    """The module's pydantic-settings object; the config file's block fills what the environment leaves unset."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    overrides = {}
    for key, value in block.items():
        field = to_snake(key)
        if field in settings_cls.model_fields and f"{prefix}{field}".upper() not in {k.upper() for k in os.environ}:
            overrides[field] = value
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise ModuleSettingsInvalid(_error_lines(prefix, exc)) from exc


def _k8s_ops(settings: ServerSettings, config: ConfigFile | None) -> ServerModule:
    server_cls = _import("mcpfleet_servers.k8s_ops.server", "K8sOpsServer", "k8s-ops")
    settings_cls = _import("mcpfleet_servers.k8s_ops.settings", "K8sOpsSettings", "k8s-ops")
    if hasattr(settings_cls, "from_config"):
        # The module maps its own block (k8sOps.namespaces is its allowed_namespaces) under K8S_*.
        try:
            k8s_settings = settings_cls.from_config({"config": config.config} if config is not None else None)
        except ValidationError as exc:
            raise ModuleSettingsInvalid(_error_lines("K8S_", exc)) from exc
    else:
        k8s_settings = module_settings(settings_cls, config.type_block() if config is not None else {})
    module: ServerModule = server_cls(k8s_settings, settings.budget())
    return module


def _cmdb(settings: ServerSettings, config: ConfigFile | None) -> ServerModule:
    create = _import("mcpfleet_servers.cmdb.server", "create_cmdb", "cmdb")
    try:
        module: ServerModule = create(settings, config)
    except ValidationError as exc:
        raise ModuleSettingsInvalid(_error_lines("CMDB_", exc)) from exc
    return module


def _monitoring(settings: ServerSettings, config: ConfigFile | None) -> ServerModule:
    create = _import("mcpfleet_servers.monitoring.server", "create", "monitoring")
    try:
        module: ServerModule = create(settings, config)
    except ValidationError as exc:
        raise ModuleSettingsInvalid(_error_lines("MON_", exc)) from exc
    return module


SERVER_TYPES: dict[str, ServerFactory] = {"k8s-ops": _k8s_ops, "monitoring": _monitoring, "cmdb": _cmdb}


def create_module(server_type: str, settings: ServerSettings, config: ConfigFile | None = None) -> ServerModule:
    """The module of a registered type; KeyError for a type that is not registered."""
    return SERVER_TYPES[server_type](settings, config)


__all__ = [
    "SERVER_TYPES",
    "ModuleSettingsInvalid",
    "ServerFactory",
    "ServerTypeUnavailable",
    "create_module",
    "module_settings",
]
