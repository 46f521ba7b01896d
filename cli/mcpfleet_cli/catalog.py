"""`mcpfleet catalog`: the tool catalog (contract 3) — its schema, its revisions in the cluster, rollback,
and client configuration files (Cursor, Claude Code, plain JSON) generated from it.

Client files are merged, not overwritten: entries a person wrote stay; mcpfleet's own entries are
``mcpfleet`` (the gateway) and ``mcpfleet-<prefix>`` (one per server with --direct). A token never
reaches a file, only a reference to the environment variable that holds it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError

from mcpfleet_contracts.catalog import CATALOG_CONFIGMAP, CATALOG_KEY, Catalog, CatalogServer, catalog_schema
from mcpfleet_contracts.mcpserver import Transport
from mcpfleet_gateway.atomic_file import atomic_write_with_backups

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from mcpfleet_operator.catalog_store import CatalogRevision, CatalogStore

T = TypeVar("T")

catalog_app = typer.Typer(
    help="The tool catalog: its schema, revisions and rollback in the cluster, and client config files.",
    no_args_is_help=True,
)

GATEWAY_ENTRY = "mcpfleet"
DIRECT_PREFIX = "mcpfleet-"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTRY_NAME = re.compile(r"[^a-z0-9-]+")


class ExportFormat(StrEnum):
    CURSOR = "cursor"
    CLAUDE = "claude"
    JSON = "json"


class ExportError(Exception):
    """The export cannot be written as asked; the message says what to change."""


# -- cluster options ---------------------------------------------------------------------------------

Namespace = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace of the catalog ConfigMap (the operator's namespace).")
]
Name = Annotated[str, typer.Option("--name", help="Name of the catalog ConfigMap.")]
Kubeconfig = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="kubeconfig file. Default: in-cluster credentials, else $KUBECONFIG."),
]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context. Default: the current one.")]
Keep = Annotated[
    int,
    typer.Option(
        "--keep",
        min=1,
        max=50,
        envvar="MCPFLEET_OPERATOR_CATALOG_KEEP",
        help="Revisions kept (as the operator's MCPFLEET_OPERATOR_CATALOG_KEEP): a rollback prunes beyond it.",
    ),
]


@dataclass(frozen=True)
class Cluster:
    namespace: str = "mcpfleet-system"
    name: str = CATALOG_CONFIGMAP
    kubeconfig: Path | None = None
    context: str | None = None
    keep: int = 5

    @property
    def label(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


async def _api_client(cluster: Cluster) -> ApiClient:
    from kubernetes_asyncio.config import ConfigException  # noqa: PLC0415 - the client is heavy to import

    from mcpfleet_operator.kube import load_api_client  # noqa: PLC0415

    try:
        return await load_api_client(str(cluster.kubeconfig) if cluster.kubeconfig else None, cluster.context)
    except (ConfigException, OSError) as exc:
        _fail(f"no cluster credentials: {exc}; pass --kubeconfig or set KUBECONFIG", code=2)


def _with_store(cluster: Cluster, action: Callable[[CatalogStore], Awaitable[T]]) -> T:
    """Run ``action(store)`` against the cluster; API and connection failures end the command with exit 1."""
    import aiohttp  # noqa: PLC0415

    from mcpfleet_operator.catalog_store import (  # noqa: PLC0415
        CatalogStore,
        CatalogTooLarge,
        CatalogUnreadable,
        RevisionNotFound,
    )
    from mcpfleet_operator.kube import KubeClient, KubeError  # noqa: PLC0415

    async def run() -> T:
        client = KubeClient(await _api_client(cluster), "mcpfleet-cli")
        try:
            return await action(CatalogStore(client, cluster.namespace, cluster.name, keep=cluster.keep))
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except (KubeError, RevisionNotFound, CatalogUnreadable, CatalogTooLarge) as exc:
        _fail(str(exc))
    except (aiohttp.ClientError, TimeoutError) as exc:
        _fail(f"cannot reach the cluster: {exc or type(exc).__name__}")


# -- schema, show, history, rollback, unpin ----------------------------------------------------------


@catalog_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the catalog (ConfigMap mcpfleet-catalog, key catalog.json)."""
    typer.echo(json.dumps(catalog_schema(), indent=2))


@catalog_app.command("show")
def show(
    revision: Annotated[int | None, typer.Option(min=1, help="A kept earlier revision instead of the current.")] = None,
    namespace: Namespace = "mcpfleet-system",
    name: Name = CATALOG_CONFIGMAP,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Print the current catalog (or a kept revision) as stored in the cluster."""
    cluster = Cluster(namespace, name, kubeconfig, context)

    async def fetch(store: CatalogStore) -> Catalog | None:
        if revision is not None:
            return await store.get_revision(revision)
        stored = await store.read(strict=True)
        return stored.catalog if stored is not None else None

    catalog = _with_store(cluster, fetch)
    if catalog is None:
        _fail(f"{cluster.label} does not exist yet: the operator writes it once an MCPServer reports tools")
    typer.echo(catalog.dump())


@catalog_app.command("history")
def history(
    namespace: Namespace = "mcpfleet-system",
    name: Name = CATALOG_CONFIGMAP,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    keep: Keep = 5,
) -> None:
    """List the kept revisions, newest first: what `rollback` can go back to."""
    cluster = Cluster(namespace, name, kubeconfig, context, keep)

    async def fetch(store: CatalogStore) -> tuple[list[CatalogRevision], int | None]:
        from mcpfleet_operator.catalog_store import CatalogUnreadable  # noqa: PLC0415

        revisions = await store.revisions()
        try:
            stored = await store.read(strict=True)
        except CatalogUnreadable:
            stored = None  # a hand-edited current catalog: the kept revisions are still worth seeing
        return revisions, stored.catalog.revision if stored is not None else None

    revisions, current = _with_store(cluster, fetch)
    if not revisions:
        typer.echo(f"no revisions kept for {cluster.label}")
        return
    typer.echo(f"{'REVISION':<9} {'GENERATED':<25} {'SERVERS':>7} {'TOOLS':>6}  NOTE")
    for entry in revisions:
        catalog = entry.catalog
        notes = []
        if entry.rolled_back_from is not None:
            notes.append(f"rolled back from {entry.rolled_back_from}")
        if entry.pinned:
            notes.append("pinned")
        if catalog.revision == current:
            notes.append("current")
        tools = sum(len(server.tools) for server in catalog.servers)
        generated = catalog.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        typer.echo(f"{catalog.revision:<9} {generated:<25} {len(catalog.servers):>7} {tools:>6}  {', '.join(notes)}")


@catalog_app.command("rollback")
def rollback(
    revision: Annotated[int, typer.Argument(min=1, help="The kept revision to go back to (see `history`).")],
    pin: Annotated[
        bool, typer.Option("--pin", help="Keep it: the operator skips its writes until `mcpfleet catalog unpin`.")
    ] = False,
    namespace: Namespace = "mcpfleet-system",
    name: Name = CATALOG_CONFIGMAP,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    keep: Keep = 5,
) -> None:
    """Write a kept revision's servers again, as a new revision (clients see a change, never a step back)."""
    cluster = Cluster(namespace, name, kubeconfig, context, keep)

    async def act(store: CatalogStore) -> Catalog:
        return await store.rollback(revision, pin=pin)

    catalog = _with_store(cluster, act)
    pinned = "; pinned: the operator leaves it until `mcpfleet catalog unpin`" if pin else ""
    typer.echo(f"{cluster.label}: revision {revision} written again as revision {catalog.revision}{pinned}")


@catalog_app.command("unpin")
def unpin(
    namespace: Namespace = "mcpfleet-system",
    name: Name = CATALOG_CONFIGMAP,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    keep: Keep = 5,
) -> None:
    """Let the operator write the catalog again after a pinned rollback."""
    cluster = Cluster(namespace, name, kubeconfig, context, keep)

    async def act(store: CatalogStore) -> bool:
        stored = await store.read(strict=True)
        if stored is None or not stored.pinned:
            return False
        await store.unpin()
        return True

    if _with_store(cluster, act):
        typer.echo(f"{cluster.label}: unpinned; the operator's next change becomes the next revision")
    else:
        typer.echo(f"{cluster.label}: not pinned")


# -- client configuration files ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    format: ExportFormat
    gateway: str | None = None
    token_env: str = "MCPFLEET_TOKEN"
    direct: bool = False


def gateway_mcp_url(gateway: str) -> str:
    """The gateway's MCP endpoint for a base URL: https://gw.example → https://gw.example/mcp."""
    parts = urlsplit(gateway)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExportError(f"--gateway {gateway!r} is not an http(s) URL, e.g. https://mcp.example.com")
    base = gateway.rstrip("/")
    return base if base.endswith("/mcp") else f"{base}/mcp"


def direct_entry_name(server: CatalogServer) -> str:
    label = server.prefix or server.name.rsplit("/", 1)[-1]
    return DIRECT_PREFIX + (_ENTRY_NAME.sub("-", label.lower()).strip("-") or "server")


def is_ours(entry: str) -> bool:
    return entry == GATEWAY_ENTRY or entry.startswith(DIRECT_PREFIX)


def client_entries(catalog: Catalog, options: ExportOptions) -> dict[str, dict[str, Any]]:
    """mcpfleet's entries of a Cursor or Claude Code config: the gateway, or one per server with --direct."""
    claude = options.format is ExportFormat.CLAUDE
    if not options.direct:
        if options.gateway is None:
            raise ExportError("--gateway URL is needed (or --direct to list every server's own endpoint)")
        reference = f"${{{options.token_env}}}" if claude else f"${{env:{options.token_env}}}"
        entry: dict[str, Any] = {"url": gateway_mcp_url(options.gateway)}
        entry["headers"] = {"Authorization": f"Bearer {reference}"}
        return {GATEWAY_ENTRY: {"type": "http", **entry} if claude else entry}
    entries: dict[str, dict[str, Any]] = {}
    for server in catalog.servers:
        if server.transport is Transport.STDIO:
            continue  # not reachable over the network; the gateway serves its tools
        name = direct_entry_name(server)
        if name in entries:
            raise ExportError(f"servers {name!r} collide: two catalog servers share the prefix {server.prefix!r}")
        if claude:
            transport = "sse" if server.transport is Transport.SSE else "http"
            entries[name] = {"type": transport, "url": server.endpoint}
        else:
            entries[name] = {"url": server.endpoint}
    return entries


def merge_entries(existing: Mapping[str, Any], entries: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """``existing`` with mcpfleet's entries replaced by ``entries``: a person's entries keep their place,
    ours no longer in the catalog go, new ones come last."""
    servers = existing.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise ExportError("its mcpServers is not an object; fix or move the file (it is left as it is)")
    merged: dict[str, Any] = {}
    for name, value in servers.items():
        if not is_ours(name):
            merged[name] = value
        elif name in entries:
            merged[name] = entries[name]
    for name, value in entries.items():
        merged.setdefault(name, value)
    return {**existing, "mcpServers": merged}


def json_document(catalog: Catalog, options: ExportOptions) -> dict[str, Any]:
    """A self-contained description of every server and tool (the mcp_config.json shape)."""
    document: dict[str, Any] = {
        "source": "mcpfleet",
        "revision": catalog.revision,
        "generated_at": catalog.generated_at.isoformat().replace("+00:00", "Z"),
        "separator": catalog.separator,
    }
    if options.gateway is not None:
        document["gateway"] = {"url": gateway_mcp_url(options.gateway), "token_env": options.token_env}
    document["servers"] = [
        {"name": s.name, "prefix": s.prefix, "endpoint": s.endpoint, "transport": s.transport.value}
        for s in catalog.servers
    ]
    document["tools"] = [
        {
            "name": tool.name,
            "server": server.name,
            "risk": tool.risk.value,
            "timeout": tool.timeout_seconds,
            "cache_enabled": tool.cache_ttl_seconds > 0,
            "cache_ttl": tool.cache_ttl_seconds,
            "required_permissions": list(tool.permissions),
            "description": tool.description,
        }
        for server in catalog.servers
        for tool in server.tools
    ]
    return document


def render(catalog: Catalog, options: ExportOptions, existing: Mapping[str, Any] | None) -> dict[str, Any]:
    if options.format is ExportFormat.JSON:
        return json_document(catalog, options)
    return merge_entries(existing or {}, client_entries(catalog, options))


def read_existing(path: Path) -> dict[str, Any] | None:
    """The output file as JSON, None when there is none; ExportError when it is not a JSON object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ExportError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if not text.strip():
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
            "fix or move it, it is not overwritten"
        ) from None
    if not isinstance(document, dict):
        raise ExportError(f"{path}: not a JSON object; fix or move it, it is not overwritten")
    return document


@dataclass(frozen=True)
class ExportResult:
    written: bool
    backup: Path | None


def export_catalog(catalog: Catalog, options: ExportOptions, output: Path) -> ExportResult:
    """Write ``output`` for ``catalog`` unless it already says the same; the previous file is backed up."""
    existing = read_existing(output)
    document = render(catalog, options, existing)
    if document == existing:
        return ExportResult(False, None)
    try:
        # mcpfleet writes references to tokens, never tokens: a new client config is as readable as any dotfile.
        replaced = atomic_write_with_backups(output, json.dumps(document, indent=2) + "\n", new_file_mode=0o644)
    except OSError as exc:
        raise ExportError(f"{output}: cannot be written: {exc.strerror or exc}") from None
    return ExportResult(True, replaced.backup)


def read_catalog_file(path: Path) -> Catalog:
    """A catalog.json, or the catalog ConfigMap itself as `kubectl get -o json` prints it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ExportError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    if isinstance(document, dict) and document.get("kind") == "ConfigMap":
        text = str((document.get("data") or {}).get(CATALOG_KEY) or "")
    return _parse_catalog(text, str(path))


def _parse_catalog(text: str, where: str) -> Catalog:
    try:
        return Catalog.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ExportError(f"{where}: not a valid catalog: {location}: {first['msg']}") from None


def _report(output: Path, catalog: Catalog, result: ExportResult) -> None:
    if not result.written:
        return
    backup = f", previous file kept as {result.backup.name}" if result.backup is not None else ""
    servers = f"{len(catalog.servers)} server{'' if len(catalog.servers) == 1 else 's'}"
    typer.echo(f"wrote {output} (catalog revision {catalog.revision}, {servers}{backup})")


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _watch_file(source: Path, write: Callable[[Catalog], None], interval: float) -> None:
    """Export again whenever ``source`` changes (checked every ``interval`` seconds), until Ctrl-C."""
    seen: tuple[int, int, int] | None = None
    first = True
    while True:
        state = _file_state(source)
        if state != seen or first:
            seen, first = state, False
            try:
                write(read_catalog_file(source))
            except ExportError as exc:
                typer.echo(f"error: {exc} (waiting for the next change)", err=True)
        time.sleep(interval)


async def _watch_cluster(cluster: Cluster, write: Callable[[Catalog], None]) -> None:
    """Export again on every change of the catalog ConfigMap, reconnecting the watch with backoff."""
    import aiohttp  # noqa: PLC0415
    from kubernetes_asyncio import client as k8s  # noqa: PLC0415
    from kubernetes_asyncio import watch  # noqa: PLC0415
    from kubernetes_asyncio.client.exceptions import ApiException  # noqa: PLC0415

    api = await _api_client(cluster)
    core = k8s.CoreV1Api(api)
    delay = 1.0
    try:
        while True:
            events = 0
            try:
                async with watch.Watch().stream(
                    core.list_namespaced_config_map,
                    cluster.namespace,
                    field_selector=f"metadata.name={cluster.name}",
                    timeout_seconds=300,
                    _request_timeout=330,
                ) as stream:
                    async for event in stream:
                        obj = event["raw_object"]
                        if (obj.get("metadata") or {}).get("name") != cluster.name:
                            continue  # the field selector is the server's job; a lax one is tolerated
                        events += 1
                        await _on_event(cluster, str(event["type"]), obj, write)
            except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
                typer.echo(f"watch of {cluster.label} interrupted ({exc}); again in {delay:.0f}s", err=True)
            if events:
                delay = 1.0
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
    finally:
        await api.close()


async def _on_event(cluster: Cluster, kind: str, obj: Mapping[str, Any], write: Callable[[Catalog], None]) -> None:
    if kind == "DELETED":
        typer.echo(f"{cluster.label} was deleted; the file stays as it is", err=True)
        return
    if kind not in ("ADDED", "MODIFIED"):
        return
    text = (obj.get("data") or {}).get(CATALOG_KEY)
    if text is None:
        return  # created empty (e.g. by the chart): nothing cataloged yet
    try:
        catalog = _parse_catalog(str(text), cluster.label)
        await asyncio.to_thread(write, catalog)
    except ExportError as exc:
        typer.echo(f"error: {exc} (waiting for the next change)", err=True)


@catalog_app.command("export")
def export(
    format: Annotated[ExportFormat, typer.Option("--format", help="cursor (mcp.json), claude (.mcp.json) or json.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write (merged when it exists).")],
    catalog_file: Annotated[
        Path | None,
        typer.Option("--catalog", help="Read catalog.json (or the ConfigMap as JSON) from a file, not the cluster."),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(envvar="MCPFLEET_GATEWAY_URL", help="The gateway's base URL, e.g. https://mcp.example.com."),
    ] = None,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the gateway token (only its name is written).")
    ] = "MCPFLEET_TOKEN",
    direct: Annotated[
        bool, typer.Option("--direct", help="cursor/claude: one entry per server's own endpoint, not the gateway.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the file in sync with the catalog until Ctrl-C (one line per write).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, max=3600, help="--watch --catalog: seconds between checks of the file.")
    ] = 2.0,
    namespace: Namespace = "mcpfleet-system",
    name: Name = CATALOG_CONFIGMAP,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Write a client config for the catalog: Cursor's mcp.json, Claude Code's .mcp.json, or a JSON listing.

    Entries of your own in an existing file are kept; mcpfleet's are `mcpfleet` (the gateway, with a
    reference to --token-env, never the token) or `mcpfleet-<prefix>` per server with --direct. The
    previous file is kept as <file>.<time>-<n>.bak (newest 5); an unchanged file is not written.
    """
    if not _ENV_NAME.match(token_env):
        _fail(f"--token-env {token_env!r} is not an environment variable name (letters, digits, _)", code=2)
    options = ExportOptions(format, gateway, token_env, direct)
    if format is not ExportFormat.JSON and not direct and gateway is None:
        _fail("--gateway URL (or MCPFLEET_GATEWAY_URL) is needed, or --direct for every server's endpoint", code=2)
    cluster = Cluster(namespace, name, kubeconfig, context)

    def write(catalog: Catalog) -> None:
        _report(output, catalog, export_catalog(catalog, options, output))

    try:
        if not watch:
            write(read_catalog_file(catalog_file) if catalog_file is not None else _fetch(cluster))
        elif catalog_file is not None:
            _watch_file(catalog_file, write, interval)
        else:
            asyncio.run(_watch_cluster(cluster, write))
    except ExportError as exc:
        _fail(str(exc), code=2)
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)


def _fetch(cluster: Cluster) -> Catalog:
    async def fetch(store: CatalogStore) -> Catalog | None:
        stored = await store.read(strict=True)
        return stored.catalog if stored is not None else None

    catalog = _with_store(cluster, fetch)
    if catalog is None:
        _fail(f"{cluster.label} does not exist yet: the operator writes it once an MCPServer reports tools")
    return catalog
