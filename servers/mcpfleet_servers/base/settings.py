"""The one settings object of a server process: transport, HTTP security and the shared tool policy.

Sources, strongest first: keyword overrides (the CLI options), MCP_* environment variables, the
operator's config file (``--config /etc/mcpfleet/config.json``), the defaults here. A settings object
remembers its sources, so a running server can read them again (``reload``, on SIGHUP).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.policy import ConfirmationPolicy, ToolPolicy

ENV_PREFIX = "MCP_"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Pages count item bytes only; the rest is left for separators and the envelope (note, token, total).
PAGE_SHARE_OF_OUTPUT = 0.75


class TransportName(StrEnum):
    STREAMABLE_HTTP = "streamable-http"
    SSE = "sse"
    STDIO = "stdio"


DEFAULT_PATHS = {TransportName.STREAMABLE_HTTP: "/mcp", TransportName.SSE: "/sse", TransportName.STDIO: "/mcp"}
SSE_MESSAGE_PATH = "/messages/"


# The key of each type's block in the config file (ServerConfig in the contracts).
_TYPE_BLOCKS = {"k8s-ops": "k8sOps", "monitoring": "monitoring", "cmdb": "cmdb"}
# Where in the config file a ServerSettings field comes from: top-level keys, and the type block's switches.
_FILE_KEYS = {
    "transport": "transport",
    "port": "port",
    "path": "path",
    "tool_prefix": "toolPrefix",
    "server_name": "name",
    "pod_namespace": "namespace",
    "tools_allow": "tools.allow",
    "tools_deny": "tools.deny",
}
_BLOCK_KEYS = {"read_only": "readOnly", "require_confirmation": "requireConfirmation"}


class ConfigFileError(Exception):
    """The --config file cannot be read or does not have the operator's shape."""


class ToolsBlock(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)

    allow: list[str] | None = None
    deny: list[str] | None = None
    risk_overrides: dict[str, str] | None = None


class ConfigFile(BaseModel):
    """The file the operator mounts (see ``server_config`` in the operator's builders)."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    type: str | None = None
    transport: str | None = None
    port: int | None = None
    path: str | None = None
    tool_prefix: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    tools: ToolsBlock = Field(default_factory=ToolsBlock)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this was read from (None when built in code)."""
        return self._source

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        """Parse the file; blocking, so called before the event loop starts."""
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigFileError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"the config file {path} is not JSON: {exc}") from exc
        try:
            config = cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
            )
            raise ConfigFileError(f"the config file {path} is invalid: {problems}") from exc
        config._source = path
        return config

    def type_block(self) -> dict[str, Any]:
        """The block of this server's type, e.g. ``config.k8sOps`` for type k8s-ops."""
        if self.type is None:
            return {}
        block = self.config.get(_TYPE_BLOCKS.get(self.type, self.type))
        return block if isinstance(block, dict) else {}

    def key_of(self, field: str) -> str | None:
        """The file's key for a ServerSettings field (``config.k8sOps.readOnly``), None when the file has none."""
        if field in _FILE_KEYS:
            return _FILE_KEYS[field]
        if field in _BLOCK_KEYS and self.type is not None:
            return f"config.{_TYPE_BLOCKS.get(self.type, self.type)}.{_BLOCK_KEYS[field]}"
        return None

    def settings_values(self) -> dict[str, Any]:
        """The file's contribution to ServerSettings, keyed by field name."""
        values: dict[str, Any] = {}
        for key in ("transport", "port", "path"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        if self.tool_prefix:
            values["tool_prefix"] = self.tool_prefix
        if self.name:
            values["server_name"] = self.name
        if self.namespace:
            values["pod_namespace"] = self.namespace
        if self.tools.allow is not None:
            values["tools_allow"] = self.tools.allow
        if self.tools.deny is not None:
            values["tools_deny"] = self.tools.deny
        # Policy switches that the typed config blocks carry (k8sOps.readOnly, k8sOps.requireConfirmation).
        block = self.type_block()
        for field, key in _BLOCK_KEYS.items():
            if key in block:
                values[field] = block[key]
        return values


_FILE_VALUES: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("mcpfleet_config_file_values")


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Values from the --config file: weaker than the environment, stronger than the defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        values = _FILE_VALUES.get({})
        return values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES.get({}))


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list):
        return tuple(value)
    return value


CommaList = Annotated[tuple[str, ...], NoDecode]

# Bound once the process serves (the listener and its Host check, the Pod's identity, the modules' page
# budgets): a reload keeps the running values of these and says that a change needs a restart.
RESTART_ONLY_FIELDS = (
    "host",
    "port",
    "path",
    "transport",
    "stateless",
    "json_response",
    "allowed_hosts",
    "allowed_origins",
    "debug",
    "log_level",
    "pod_name",
    "pod_namespace",
    "pod_ip",
    "server_name",
    "max_items",
    "max_output_bytes",
)


class ServerSettings(BaseSettings):
    """Validated once at start; a bad value stops the server naming the variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(
        default=8080, ge=0, le=65535, description="Port of MCP (HTTP transports) and of the probes; 0 picks a free one."
    )
    path: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9._~/-]*$",
        description="HTTP path of the MCP endpoint; /mcp for streamable-http, /sse for sse.",
    )
    transport: TransportName = Field(default=TransportName.STREAMABLE_HTTP)
    debug: bool = False
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    stateless: bool = Field(default=False, description="Stateless streamable HTTP: no sessions, any replica answers.")
    json_response: bool | None = Field(
        default=None,
        description=(
            "Answer streamable HTTP POSTs with JSON instead of SSE. Unset: JSON when stateless (nothing is streamed "
            "back mid-call there), SSE for sessions (mid-call confirmations of older clients need the stream)."
        ),
    )

    @property
    def json_responses(self) -> bool:
        return self.stateless if self.json_response is None else self.json_response

    allowed_hosts: CommaList = Field(
        default=(),
        description="Host headers accepted on the MCP endpoint; '*' turns the check off. Default: loopback, and "
        "the in-cluster Service names when running in a pod.",
    )
    allowed_origins: CommaList = Field(default=(), description="Origin headers accepted on the MCP endpoint.")

    read_only: bool = Field(default=False, description="Serve only read-only tools.")
    no_destructive: bool = Field(default=False, description="Hide destructive tools.")
    tools_allow: CommaList = Field(default=(), description="Only tools matching one of these globs are served.")
    tools_deny: CommaList = Field(default=(), description="Tools matching one of these globs are never served.")
    tool_prefix: str | None = Field(default=None, description="The catalog prefix; globs may use it (k8s:get_*).")
    call_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_output_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_items: int = Field(default=200, ge=1, le=100_000)
    require_confirmation: bool = Field(
        default=True, description="Ask the user before calls that need it (see confirm_from); false: never ask."
    )
    confirm_from: Risk | None = Field(
        default=None,
        description="Calls of this risk or higher ask the user first (SAFE, MEDIUM, HIGH). Unset: the server "
        "module's own threshold, else HIGH.",
    )
    allow_unconfirmed: bool = Field(
        default=False, description="Run calls that need a confirmation from clients that cannot show one."
    )

    # Where these values came from (set by `load`), so that `reload` reads the same sources again.
    _config_file: ConfigFile | None = PrivateAttr(default=None)
    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)

    pod_name: str | None = Field(default=None, validation_alias=AliasChoices("POD_NAME", "pod_name"))
    pod_namespace: str | None = Field(default=None, validation_alias=AliasChoices("POD_NAMESPACE", "pod_namespace"))
    pod_ip: str | None = Field(default=None, validation_alias=AliasChoices("POD_IP", "pod_ip"))
    server_name: str | None = Field(default=None, validation_alias=AliasChoices("MCPFLEET_SERVER_NAME", "server_name"))

    @field_validator("allowed_hosts", "allowed_origins", "tools_allow", "tools_deny", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("confirm_from", mode="before")
    @classmethod
    def _risk_name(cls, value: object) -> object:
        # Accept medium as well as MEDIUM; an empty variable means unset.
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @classmethod
    def load(cls, config_file: ConfigFile | None = None, **overrides: Any) -> ServerSettings:
        """CLI overrides > environment > config file > defaults. Raises ValidationError."""
        given = {key: value for key, value in overrides.items() if value is not None}
        token = _FILE_VALUES.set(config_file.settings_values() if config_file else {})
        try:
            settings = cls(**given)
        finally:
            _FILE_VALUES.reset(token)
        settings._config_file = config_file
        settings._overrides = given
        return settings

    @property
    def config_file(self) -> ConfigFile | None:
        """The config file these settings were loaded with (its type block configures the module)."""
        return self._config_file

    def reload(self) -> ServerSettings:
        """The same sources read again: the config file from its path, the environment, the same overrides.

        Blocking (it reads the file): call it off the event loop. Raises ConfigFileError or ValidationError,
        and the running settings stay as they are.
        """
        config_file = self._config_file
        if config_file is not None and config_file.source is not None:
            config_file = ConfigFile.read(config_file.source)
        return type(self).load(config_file, **self._overrides)

    def restart_only_changes(self, new: ServerSettings) -> list[str]:
        """The fields in RESTART_ONLY_FIELDS whose value differs in ``new``."""
        return [name for name in RESTART_ONLY_FIELDS if getattr(new, name) != getattr(self, name)]

    def keeping_restart_only(self, running: ServerSettings) -> ServerSettings:
        """These settings with the running values of RESTART_ONLY_FIELDS (the listener stays as it is)."""
        return self.model_copy(update={name: getattr(running, name) for name in RESTART_ONLY_FIELDS})

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable that sets a field (for error messages)."""
        info = cls.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return f"{ENV_PREFIX}{field.upper()}"

    # ------------------------------------------------------------ derived values

    @property
    def mcp_path(self) -> str:
        return self.path or DEFAULT_PATHS[self.transport]

    @property
    def in_pod(self) -> bool:
        return bool(self.pod_namespace and self.server_name)

    def tool_policy(self) -> ToolPolicy:
        return ToolPolicy(
            read_only=self.read_only,
            no_destructive=self.no_destructive,
            allow=self.tools_allow,
            deny=self.tools_deny,
            prefix=self.tool_prefix,
        )

    def confirmation_policy(self, module_threshold: Risk | None = None) -> ConfirmationPolicy:
        """Which calls ask first: MCP_CONFIRM_FROM, else the module's threshold, else HIGH; none when switched off."""
        threshold = self.confirm_from or module_threshold or Risk.HIGH
        return ConfirmationPolicy(required=self.require_confirmation, threshold=threshold)

    def budget(self) -> Budget:
        """What one page of a list or log tool may hold; leaves room under MCP_MAX_OUTPUT_BYTES."""
        return Budget(max_items=self.max_items, max_bytes=int(self.max_output_bytes * PAGE_SHARE_OF_OUTPUT))

    def service_hostnames(self) -> list[str]:
        """The names a Kubernetes Service of this server answers to, most specific last."""
        if not self.in_pod:
            return []
        name, ns = self.server_name, self.pod_namespace
        return [f"{name}", f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]


def settings_error_lines(exc: ValidationError, config_file: ConfigFile | None = None) -> list[str]:
    """One line per bad value, naming the environment variable (and the config file's key it may come from)."""
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        key = config_file.key_of(field) if config_file is not None else None
        origin = f", or {key} in {config_file.source or 'the config file'}" if config_file is not None and key else ""
        lines.append(f"{ServerSettings.env_name(field)} ({field}{origin}): {error['msg']}")
    return lines


def _has_port(host: str) -> bool:
    if host.startswith("["):
        return "]:" in host
    return host.count(":") == 1


def _with_ports(hosts: list[str]) -> list[str]:
    """Each host as itself and with any port: the SDK's "host:*" does not match a Host without a port."""
    result: list[str] = []
    for host in hosts:
        for form in (host,) if _has_port(host) else (host, f"{host}:*"):
            if form not in result:
                result.append(form)
    return result


def _own_addresses(settings: ServerSettings) -> list[str]:
    """The pod's own IP, so that a client addressing the pod directly (the operator's tools/list) passes."""
    addresses = [settings.pod_ip] if settings.pod_ip else []
    if settings.in_pod:
        # /etc/hosts maps the pod's hostname to its IP; read once at start, before the loop runs.
        with contextlib.suppress(OSError):
            addresses.append(socket.gethostbyname(socket.gethostname()))
    return [a for a in dict.fromkeys(addresses) if a and not a.startswith("127.")]


def allowed_hosts(settings: ServerSettings) -> list[str]:
    if settings.allowed_hosts:
        return _with_ports(list(settings.allowed_hosts))
    hosts = list(LOOPBACK_HOSTS) + settings.service_hostnames() + _own_addresses(settings)
    return _with_ports(hosts)


def allowed_origins(settings: ServerSettings) -> list[str]:
    if settings.allowed_origins:
        return list(settings.allowed_origins)
    names = list(LOOPBACK_HOSTS) + settings.service_hostnames()
    return [origin for name in names for origin in (f"http://{name}", f"http://{name}:*")]


def dns_rebinding_disabled(settings: ServerSettings) -> bool:
    """Only an explicit MCP_ALLOWED_HOSTS=* turns the Host check off."""
    return "*" in settings.allowed_hosts
