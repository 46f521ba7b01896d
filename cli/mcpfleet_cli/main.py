"""`mcpfleet`: the one console script. Each component is a subcommand, imported only when run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mcpfleet_cli.catalog import catalog_app

app = typer.Typer(
    name="mcpfleet",
    help=(
        "mcpfleet: an MCP platform for Kubernetes. The operator turns MCPServer objects into running, "
        "least-privileged MCP servers; the gateway serves their tools to AI clients."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
crd_app = typer.Typer(help="The MCPServer CustomResourceDefinition.", no_args_is_help=True)
app.add_typer(crd_app, name="crd")
rbac_app = typer.Typer(help="The operator's own RBAC.", no_args_is_help=True)
app.add_typer(rbac_app, name="rbac")
audit_app = typer.Typer(help="The gateway's audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
config_app = typer.Typer(help="The gateway's config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(catalog_app, name="catalog")
release_app = typer.Typer(help="What a Helm release of the chart needs beyond Helm.", no_args_is_help=True)
app.add_typer(release_app, name="release")
dev_app = typer.Typer(invoke_without_command=True)
app.add_typer(dev_app, name="dev")
cluster_app = typer.Typer(
    help="A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback; "
    "no kubelet, so Pods are stored but never run.",
    no_args_is_help=True,
)
dev_app.add_typer(cluster_app, name="cluster")


def _settings_error(exc: ValidationError, prefix: str) -> typer.Exit:
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        typer.echo(f"error: {prefix}{field.upper()} ({field}): {error['msg']}", err=True)
    return typer.Exit(code=2)


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Watch only this namespace (repeatable). Default: MCPFLEET_OPERATOR_NAMESPACES, else all.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Port of /metrics (0 turns it off). Default: MCPFLEET_OPERATOR_METRICS_PORT."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every event and API call.")] = False,
) -> None:
    """Run the MCPServer operator against the current cluster (in-cluster credentials or kubeconfig).

    Settings come from MCPFLEET_OPERATOR_* environment variables (see docs/operator.md); the options
    here override them.
    """
    from mcpfleet_operator.main import run  # noqa: PLC0415 - the operator's imports are heavy
    from mcpfleet_operator.settings import OperatorSettings  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if namespace:
        overrides["namespaces"] = tuple(namespace)
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    try:
        settings = OperatorSettings(**overrides)
    except ValidationError as exc:
        raise _settings_error(exc, "MCPFLEET_OPERATOR_") from exc
    run(settings, verbose=verbose)


@app.command()
def server(
    server_type: Annotated[str, typer.Argument(metavar="TYPE", help="The server type: k8s-ops, monitoring or cmdb.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The operator's config file (JSON: transport, port, path, config, tools)."),
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option(help="streamable-http, sse or stdio. Default: MCP_TRANSPORT, else the config file."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address. Default: MCP_HOST, else 127.0.0.1.")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port of MCP and of /health, /ready, /metrics. Default: MCP_PORT, else 8080.")
    ] = None,
) -> None:
    """Run a built-in MCP server (what the operator's pods run).

    Settings: these options, then MCP_* environment variables (MCP_READ_ONLY, MCP_TOOLS_DENY,
    MCP_ALLOWED_HOSTS, ...), then the --config file, then defaults.
    """
    from mcpfleet_servers.registry import SERVER_TYPES  # noqa: PLC0415

    if server_type not in SERVER_TYPES:
        typer.echo(f"error: unknown server type {server_type!r}; available: {', '.join(SERVER_TYPES)}", err=True)
        raise typer.Exit(code=2)

    from mcpfleet_servers.base.app import build_server  # noqa: PLC0415
    from mcpfleet_servers.base.run import configure_logging, run_server  # noqa: PLC0415
    from mcpfleet_servers.base.settings import (  # noqa: PLC0415
        ConfigFile,
        ConfigFileError,
        ServerSettings,
        settings_error_lines,
    )
    from mcpfleet_servers.registry import ModuleSettingsInvalid, ServerTypeUnavailable, create_module  # noqa: PLC0415

    try:
        config_file = ConfigFile.read(config) if config is not None else None
    except ConfigFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if config_file is not None and config_file.type not in (None, server_type):
        typer.echo(f"error: {config} is for type {config_file.type}, not {server_type}", err=True)
        raise typer.Exit(code=2)
    try:
        settings = ServerSettings.load(config_file, transport=transport, host=host, port=port)
    except ValidationError as exc:
        for line in settings_error_lines(exc):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(code=2) from exc
    configure_logging(settings)
    try:
        module = create_module(server_type, settings, config_file)
    except ServerTypeUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except ModuleSettingsInvalid as exc:
        for line in exc.lines:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(code=2) from exc
    run_server(build_server(module, settings))


@app.command()
def gateway(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="The gateway config (JSON or YAML). Default: MCPFLEET_GATEWAY_CONFIG, else built-in."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (overrides listen.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (overrides listen.port; 0 picks a free one).")] = None,
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve one local MCP client over stdin/stdout.")] = False,
) -> None:
    """Run the gateway: every server's tools behind one governed MCP endpoint (and a REST facade)."""
    from mcpfleet_gateway.config import GatewaySettings  # noqa: PLC0415
    from mcpfleet_gateway.config_store import ConfigInvalid  # noqa: PLC0415
    from mcpfleet_gateway.run import run_gateway  # noqa: PLC0415

    overrides: dict[str, Any] = {
        key: value for key, value in (("config", config), ("host", host), ("port", port)) if value is not None
    }
    try:
        settings = GatewaySettings(**overrides)
    except ValidationError as exc:
        raise _settings_error(exc, "MCPFLEET_GATEWAY_") from exc
    try:
        run_gateway(settings, stdio=stdio)
    except ConfigInvalid as exc:
        for problem in exc.problems:
            typer.echo(f"error: {settings.config}: {problem}" if settings.config else f"error: {problem}", err=True)
        raise typer.Exit(code=2) from exc
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


@config_app.command("validate")
def config_validate(
    file: Annotated[Path, typer.Argument(help="A gateway config file (JSON or YAML).")],
) -> None:
    """Check a gateway config: exit 0 when valid, 1 listing every problem as <field>: <what to change>."""
    from mcpfleet_gateway.config import config_store  # noqa: PLC0415
    from mcpfleet_gateway.config_store import ConfigInvalid  # noqa: PLC0415

    try:
        config_store(file).load()
    except OSError as exc:
        typer.echo(f"error: {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=2) from exc
    except ConfigInvalid as exc:
        for problem in exc.problems:
            typer.echo(f"{file}: {problem}")
        raise typer.Exit(code=1) from exc
    typer.echo(f"{file}: valid")


@config_app.command("schema")
def config_schema_print() -> None:
    """Print the JSON Schema of the gateway config."""
    import json  # noqa: PLC0415

    from mcpfleet_gateway.config import config_schema  # noqa: PLC0415

    typer.echo(json.dumps(config_schema(), indent=2))


@crd_app.command("print")
def crd_print() -> None:
    """Print the MCPServer CRD (YAML) generated from the typed models; `kubectl apply -f -` takes it."""
    from mcpfleet_contracts.crd import render_crd_yaml  # noqa: PLC0415

    typer.echo(render_crd_yaml(), nl=False)


@rbac_app.command("print")
def rbac_print(
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the operator's ServiceAccount.")] = (
        "mcpfleet-system"
    ),
    service_account: Annotated[str, typer.Option(help="Name of the operator's ServiceAccount.")] = "mcpfleet-operator",
) -> None:
    """Print the operator's least-privilege ServiceAccount, ClusterRole and ClusterRoleBinding, and the admission
    policy that confines each server's tool report to its own Pod's two annotations (YAML)."""
    import yaml  # noqa: PLC0415

    from mcpfleet_operator.builders.operator_rbac import operator_rbac  # noqa: PLC0415
    from mcpfleet_operator.builders.report_policy import report_policy  # noqa: PLC0415

    documents = operator_rbac(namespace, service_account) + report_policy()
    typer.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)


@audit_app.command("verify")
def audit_verify(
    trail: Annotated[
        Path | None, typer.Argument(help="An audit trail as JSON lines (the gateway's audit log).", show_default=False)
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar="MCPFLEET_AUDIT_REDIS_URL",
            help="Redis URL (redis://user:password@host:port/db) holding the audit stream (with --stream); keep "
            "a password out of the command line with the environment variable.",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[
        str | None, typer.Option(help="The replica's audit stream, e.g. mcpfleet:audit:gw-1.", show_default=False)
    ] = None,
    head: Annotated[
        str | None, typer.Option(help="The last head hash published elsewhere: also catches records cut off the end.")
    ] = None,
) -> None:
    """Check the hash chain of an audit trail (a file, or a Redis stream with --redis and --stream): exit 0 when
    intact, 1 naming every edited, missing or moved record, 2 when the trail cannot be read."""
    from mcpfleet_gateway.audit import read_lines, verify  # noqa: PLC0415

    if (trail is None) == (stream is None):
        typer.echo("error: give either a trail FILE or --redis URL --stream NAME (exactly one of them)", err=True)
        raise typer.Exit(code=2)
    if trail is not None:
        if not trail.is_file():
            typer.echo(f"error: {trail} is not a file", err=True)
            raise typer.Exit(code=2)
        label = str(trail)
        result = verify(read_lines(trail), expected_head=head)
    else:
        from redis.exceptions import RedisError  # noqa: PLC0415

        from mcpfleet_gateway.audit_sink import verify_stream  # noqa: PLC0415

        if redis_url is None:
            typer.echo("error: --stream needs --redis URL (or MCPFLEET_AUDIT_REDIS_URL)", err=True)
            raise typer.Exit(code=2)
        label = f"stream {stream}"
        try:
            result = verify_stream(redis_url, str(stream), expected_head=head)
        except (LookupError, RedisError, OSError, ValueError) as exc:
            typer.echo(f"error: cannot read {label}: {exc}", err=True)
            raise typer.Exit(code=2) from None
    for problem in result.problems:
        typer.echo(problem)
    verdict = "intact" if result.ok else f"{len(result.problems)} problem(s)"
    typer.echo(f"{label}: {result.records} record(s), head {result.head}: {verdict}")
    if not result.ok:
        raise typer.Exit(code=1)


@dev_app.callback()
def dev(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="State directory (control plane, configs, logs). Default: ~/.cache/mcpfleet/dev.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Gateway port on 127.0.0.1 (0 picks a free one).")] = 8765,
    bin_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory with etcd, kube-apiserver, kube-controller-manager and kubectl. Default: "
            "$MCPFLEET_TOOLS_BIN, else built once from source into ~/.cache/mcpfleet.",
            show_default=False,
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            help="Also write the ready file (URLs, token, kubeconfig; JSON, mode 0600) here.", show_default=False
        ),
    ] = None,
    prometheus: Annotated[
        bool, typer.Option("--prometheus/--no-prometheus", help="Run a local Prometheus (and the monitoring server).")
    ] = True,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            help="Point the monitoring server at this Prometheus instead of starting one.", show_default=False
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=10, help="Seconds the platform may take to become ready (after the toolchain build).")
    ] = 300.0,
) -> None:
    """Run the whole platform on this machine until Ctrl-C: a real control plane, the operator, the k8s-ops,
    monitoring and cmdb servers (local processes cataloged as external MCPServers), the gateway, Redis, Consul
    (when built) and Prometheus. Prints the gateway URL, a token and a client configuration.

    `mcpfleet dev cluster ...` manages a bare control plane instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from mcpfleet_cli.devplatform.layout import default_root  # noqa: PLC0415
    from mcpfleet_cli.devplatform.platform import Options, run  # noqa: PLC0415

    options = Options(
        directory=directory or default_root(),
        port=port,
        bin_dir=bin_dir,
        ready_file=ready_file,
        prometheus=prometheus,
        prometheus_url=prometheus_url,
        timeout=timeout,
    )
    code = run(options, typer.echo, lambda line: typer.echo(line, err=True))
    raise typer.Exit(code=code)


@app.command()
def doctor(
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="kubeconfig of the cluster. Default: mcpfleet dev's, else $KUBECONFIG.", show_default=False),
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context. Default: the current one.")] = None,
    operator_namespace: Annotated[
        str, typer.Option(help="Namespace of the operator's Deployment (when no --operator URL is known).")
    ] = "mcpfleet-system",
    operator_url: Annotated[
        str | None,
        typer.Option(
            "--operator",
            help="The operator's /metrics URL (instead of looking for its Deployment).",
            show_default=False,
        ),
    ] = None,
    gateway: Annotated[str | None, typer.Option(help="The gateway's base URL.", show_default=False)] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar="MCPFLEET_REDIS_URL",
            help="Redis URL (redis://user:password@host:port/db); keep a password out of the command line with the "
            "environment variable.",
            show_default=False,
        ),
    ] = None,
    consul_url: Annotated[str | None, typer.Option("--consul", help="Consul's HTTP API.", show_default=False)] = None,
    consul_token: Annotated[
        str | None, typer.Option(envvar="CONSUL_HTTP_TOKEN", help="Consul ACL token.", show_default=False)
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus's base URL.", show_default=False)
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            help="A running `mcpfleet dev`'s ready file. Default: ~/.cache/mcpfleet/dev/ready.json.", show_default=False
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.5, help="Seconds each check may take.")] = 5.0,
) -> None:
    """Check the platform: API server, MCPServer CRD, operator, gateway, Redis, Consul, Prometheus. One line
    each, PASS, FAIL (with the fix) or SKIP (nothing to check); exit 1 when anything failed.

    Without options it checks what a running `mcpfleet dev` (make run) serves.
    """
    import asyncio  # noqa: PLC0415

    from mcpfleet_cli.devplatform.layout import default_root  # noqa: PLC0415
    from mcpfleet_cli.devplatform.ready import ReadyFileError, is_running, read_ready  # noqa: PLC0415
    from mcpfleet_cli.doctor import Targets, exit_code, run_checks, with_dev_defaults  # noqa: PLC0415

    path = ready_file or default_root() / "ready.json"
    try:
        ready = read_ready(path)
    except ReadyFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if ready is not None and not is_running(ready):
        typer.echo(f"doctor: ignoring {path}: the `mcpfleet dev` that wrote it (pid {ready.pid}) no longer runs")
        ready = None
    elif ready is not None:
        typer.echo(f"doctor: checking the `mcpfleet dev` platform described in {path}")
    given = Targets(
        kubeconfig=kubeconfig,
        context=context,
        operator_namespace=operator_namespace,
        operator=operator_url,
        gateway=gateway,
        redis=redis_url,
        consul=consul_url,
        consul_token=consul_token,
        prometheus=prometheus_url,
    )
    results = asyncio.run(run_checks(with_dev_defaults(given, ready), timeout))
    for result in results:
        typer.echo(result.line())
    raise typer.Exit(code=exit_code(results))


@release_app.command("cleanup")
def release_cleanup(
    selector: Annotated[
        str,
        typer.Option(
            "--selector",
            "-l",
            help="Label selector of the release's MCPServers (equality-based, with at least one key=value), e.g. "
            "app.kubernetes.io/instance=mcpfleet,app.kubernetes.io/managed-by=Helm.",
            show_default=False,
        ),
    ],
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace of the MCPServers (repeatable). Default: every namespace."),
    ] = None,
    catalog_namespace: Annotated[
        str, typer.Option(help="Namespace of the catalog ConfigMap (the operator's namespace).")
    ] = "mcpfleet-system",
    catalog_name: Annotated[str, typer.Option(help="Name of the catalog ConfigMap.")] = "mcpfleet-catalog",
    delete_catalog: Annotated[
        bool,
        typer.Option(
            "--delete-catalog", help="Delete the catalog ConfigMap itself too (when the operator, not Helm, made it)."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the operator to finalize the MCPServers.")
    ] = 120.0,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="kubeconfig file. Default: in-cluster credentials, else $KUBECONFIG.", show_default=False),
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context. Default: the current one.")] = None,
) -> None:
    """Before `helm uninstall`: delete the release's MCPServers while the operator still runs, wait until it has
    finalized them (their Deployments, Services and cluster-wide grants removed), then delete the catalog's
    history ConfigMaps (<catalog>-r<N>). The chart's pre-delete hook runs this.

    Exit 0 when all is gone; 1 naming what is left when --timeout passes (or the API fails); 2 on bad options.
    """
    from mcpfleet_cli.cleanup import CleanupOptions, LabelSelector, SelectorError, run  # noqa: PLC0415

    try:
        parsed = LabelSelector.parse(selector)
    except SelectorError as exc:
        typer.echo(f"error: --selector: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    options = CleanupOptions(
        selector=parsed,
        namespaces=tuple(namespace or ()),
        catalog_namespace=catalog_namespace,
        catalog_name=catalog_name,
        delete_current_catalog=delete_catalog,
        timeout=timeout,
    )
    code = run(options, kubeconfig, context, typer.echo, lambda line: typer.echo(line, err=True))
    raise typer.Exit(code=code)


def _cache_dir() -> Path:
    base = os.environ.get("MCPFLEET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mcpfleet"
    )
    return Path(base)


ClusterDir = Annotated[
    Path | None,
    typer.Option("--dir", help="Where the control plane keeps its state. Default: ~/.cache/mcpfleet/dev-cluster."),
]


@cluster_app.command("up")
def cluster_up(
    directory: ClusterDir = None,
    bin_dir: Annotated[
        Path | None,
        typer.Option(help="Directory with etcd, kube-apiserver, kube-controller-manager and kubectl (`make tools`)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every component to be healthy.")] = 120.0,
) -> None:
    """Start the control plane in the background and print the kubeconfig to use."""
    from mcpfleet_cli.devcluster.cluster import ClusterError, ControlPlane, find_binaries  # noqa: PLC0415

    try:
        plane = ControlPlane(directory or _cache_dir() / "dev-cluster", find_binaries(bin_dir))
        state = plane.up(attached=False, timeout=timeout, certificate_lifetime_days=365)
    except ClusterError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"control plane ready at {state.server} (logs in {state.root}/logs)")
    typer.echo(f"export KUBECONFIG={state.kubeconfig}")


@cluster_app.command("down")
def cluster_down(directory: ClusterDir = None) -> None:
    """Stop the control plane and delete everything it wrote."""
    from mcpfleet_cli.devcluster.cluster import ClusterError, ControlPlane  # noqa: PLC0415

    root = directory or _cache_dir() / "dev-cluster"
    try:
        stopped = ControlPlane(root).down()
    except ClusterError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"stopped and removed {root}" if stopped else f"nothing runs from {root}")


@cluster_app.command("status")
def cluster_status(directory: ClusterDir = None) -> None:
    """Show each component's process and whether the API server is ready; exit 1 unless all are."""
    from mcpfleet_cli.devcluster.cluster import ClusterError, ControlPlane  # noqa: PLC0415

    plane = ControlPlane(directory or _cache_dir() / "dev-cluster")
    try:
        state = plane.read_state()
    except ClusterError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if state is None:
        typer.echo(f"no control plane in {plane.root}")
        raise typer.Exit(code=1)
    components = plane.status(state)
    for component in components:
        typer.echo(f"{component.name:<24} pid {component.pid:<8} {'running' if component.running else 'stopped'}")
    ready = all(c.running for c in components) and plane.ready(state)
    typer.echo(f"api server {state.server}: {'ready' if ready else 'not ready'}")
    typer.echo(f"export KUBECONFIG={state.kubeconfig}")
    if not ready:
        raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
