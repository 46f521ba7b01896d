"""`mcpfleet dev`: start the whole platform, serve until a signal or a death, stop everything in reverse order.

Start order: the toolchain, the control plane, the CRD and the operator's RBAC, Redis, Consul, Prometheus, the
three servers, the operator, the servers' MCPServer objects, the gateway. Ready means: the catalog holds the tools of
all three servers and the gateway serves that catalog revision. Ctrl-C or SIGTERM stops everything newest first
and exits 0; a child that dies stops the platform with its log tail and exits 1.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from mcpfleet_cli.devcluster.cluster import ClusterError, ClusterState, ControlPlane
from mcpfleet_cli.devplatform import configs, manifests, probes
from mcpfleet_cli.devplatform.kube import Admin, KubeStepFailed, read_catalog
from mcpfleet_cli.devplatform.layout import Layout, LayoutError
from mcpfleet_cli.devplatform.manifests import NAMESPACE, LocalServer
from mcpfleet_cli.devplatform.processes import Child, StartFailed, Supervisor, tail, wait_healthy
from mcpfleet_cli.devplatform.ready import ReadyInfo, remove_ready, write_ready
from mcpfleet_cli.devplatform.summary import summary_lines
from mcpfleet_cli.devplatform.toolchain import Toolchain, ToolchainError, find_or_build
from mcpfleet_contracts.catalog import CATALOG_CONFIGMAP, Catalog
from mcpfleet_contracts.mcpserver import ServerType
from mcpfleet_operator.builders.operator_rbac import OPERATOR_NAME

EXIT_STOPPED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_PORT = 8765
WATCH_INTERVAL_SECONDS = 0.5
# What the developer's shell may set that would configure a child behind the platform's back.
_INHERITED_SETTINGS = (
    "KUBECONFIG",
    "MCP_",
    "K8S_",
    "CMDB_",
    "MON_",
    "POD_",
    "MCPFLEET_OPERATOR_",
    "MCPFLEET_GATEWAY_",
    "MCPFLEET_SERVER_NAME",
    "MCPFLEET_DEV_",
    "CONSUL_HTTP_",
)
_CONSUL_PORT_NAMES = ("serf_lan", "serf_wan", "server", "grpc")

Echo = Callable[[str], None]


class DevFailed(RuntimeError):
    """The platform cannot start or keep running; the message says what happened and what to do."""


class UsageProblem(DevFailed):
    """An option cannot be honoured (exit 2); the message names the option."""


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived: stop everything and exit 0."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Options:
    directory: Path
    port: int = DEFAULT_PORT
    bin_dir: Path | None = None
    ready_file: Path | None = None
    prometheus: bool = True
    prometheus_url: str | None = None
    timeout: float = 300.0


@dataclass(frozen=True)
class Ports:
    gateway: int
    redis: int
    prometheus: int
    operator_metrics: int
    consul_http: int
    consul_other: dict[str, int]
    servers: dict[ServerType, int]

    @classmethod
    def allocate(cls, gateway: int) -> Ports:
        picked = probes.free_ports(4 + len(_CONSUL_PORT_NAMES) + len(manifests.BUILT_IN) + (1 if gateway == 0 else 0))
        if gateway == 0:
            gateway = picked.pop()
        redis, prometheus, operator_metrics, consul_http = picked[:4]
        consul_other = dict(zip(_CONSUL_PORT_NAMES, picked[4:8], strict=True))
        servers = dict(zip(manifests.BUILT_IN, picked[8:], strict=True))
        return cls(gateway, redis, prometheus, operator_metrics, consul_http, consul_other, servers)


@dataclass(frozen=True)
class Reporter:
    out: Echo
    err: Echo

    def step(self, message: str) -> None:
        self.out(f"dev: {message}")


def mcpfleet_command() -> list[str]:
    """This installation's `mcpfleet`: the console script beside the interpreter, else the module."""
    script = Path(sys.executable).parent / "mcpfleet"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mcpfleet_cli.main"]


def child_environment(**extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(_INHERITED_SETTINGS)}
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(extra)
    return environment


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signum)


@dataclass
class DevPlatform:
    options: Options
    report: Reporter
    layout: Layout = field(init=False)
    supervisor: Supervisor = field(default_factory=Supervisor)
    plane: ControlPlane | None = None
    cluster: ClusterState | None = None
    admin: Admin | None = None
    servers: list[LocalServer] = field(default_factory=list)
    prepared: bool = False
    consul_address: str | None = None
    prometheus_url: str | None = None

    def __post_init__(self) -> None:
        self.layout = Layout(self.options.directory.expanduser().resolve())

    # -- the whole run ---------------------------------------------------------------------------------

    def run(self) -> int:
        previous = {signum: signal.signal(signum, _raise_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = self._run_until_stopped()
        except StopRequested:  # a second signal while the first failure was being reported
            code = EXIT_STOPPED
        finally:
            # A second Ctrl-C must not cut the cleanup short: every stop below has its own deadline.
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
        try:
            self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return code

    def _run_until_stopped(self) -> int:
        try:
            self.start()
            self.serve()
        except StopRequested as stop:
            self.report.step(f"{stop} received: stopping everything")
            return EXIT_STOPPED
        except UsageProblem as exc:
            self.report.err(f"error: {exc}")
            return EXIT_USAGE
        except (DevFailed, StartFailed, ToolchainError, ClusterError, LayoutError, KubeStepFailed) as exc:
            self.report.err(f"error: {exc}")
            self.report.err("dev: stopping everything")
            return EXIT_FAILED

    def start(self) -> None:
        started = time.monotonic()
        port = self._gateway_port()
        toolchain = find_or_build(self.options.bin_dir, self.report.step)
        self.layout.prepare()
        self.prepared = True
        ports = Ports.allocate(port)
        self.servers = [LocalServer(t, ports.servers[t]) for t in manifests.BUILT_IN if self._runs(t)]
        deadline = time.monotonic() + self.options.timeout
        self._start_control_plane(toolchain)
        self._install()
        self._start_redis(ports, deadline)
        if toolchain.consul is not None:
            self._start_consul(toolchain.consul, ports, deadline)
        self._start_prometheus(ports, deadline)
        # The servers before their clients: stopping in reverse, the operator and the gateway let go of the
        # servers' streams before the servers shut down.
        self._start_servers(deadline)
        self._start_operator(ports, deadline)
        self._register_servers()
        secret = secrets.token_urlsafe(32)
        self._start_gateway(ports, secret, deadline)
        catalog = self._wait_for_catalog(deadline)
        self._wait_for_gateway(ports.gateway, catalog.revision, deadline)
        self._announce(ports, secret, catalog, time.monotonic() - started)

    def serve(self) -> NoReturn:
        """Watch every child until one dies (DevFailed) or a signal arrives (StopRequested)."""
        while True:
            self._check_alive()
            time.sleep(WATCH_INTERVAL_SECONDS)

    def stop(self) -> None:
        """Stop every child newest first, then the control plane; remove what only a running platform needs."""
        if not self.prepared:
            return
        self.supervisor.stop_all(self.report.step)
        if self.plane is not None:
            self.report.step("stopping the control plane")
            try:
                self.plane.down()
            except ClusterError as exc:
                self.report.err(f"error: {exc}")
        if self.options.ready_file is not None:
            remove_ready(self.options.ready_file)
        self.layout.cleanup()
        self.prepared = False
        self.report.step(f"stopped; logs are in {self.layout.logs}")

    # -- steps -----------------------------------------------------------------------------------------

    def _runs(self, server_type: ServerType) -> bool:
        """monitoring needs a Prometheus: without one (--no-prometheus and no --prometheus-url) it stays off."""
        return server_type is not ServerType.MONITORING or self.options.prometheus or bool(self.options.prometheus_url)

    def _gateway_port(self) -> int:
        port = self.options.port
        if port != 0 and not probes.port_is_free(port):
            raise UsageProblem(f"port {port} on 127.0.0.1 is in use: pass --port with a free port (0 picks one)")
        return port

    def _start_control_plane(self, toolchain: Toolchain) -> None:
        self.report.step("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
        self.plane = ControlPlane(self.layout.cluster, toolchain.binaries)
        self.cluster = self.plane.up(attached=True, timeout=self.options.timeout, certificate_lifetime_days=30)
        self.admin = Admin(toolchain.binaries, Path(self.cluster.kubeconfig), self.cluster.server, self.cluster.ca_cert)
        self.report.step(f"control plane ready at {self.cluster.server}")

    def _install(self) -> None:
        admin = self._admin()
        self.report.step(f"installing the MCPServer CRD and the operator's RBAC in {NAMESPACE}")
        admin.apply(manifests.platform_manifests())
        admin.run("wait", "--for=condition=Established", "--timeout=60s", "crd/mcpservers.mcpfleet.io")
        identities = [m for server in self.servers for m in manifests.server_identity(server)]
        admin.apply(identities + manifests.gateway_reader(CATALOG_CONFIGMAP))

    def _start_redis(self, ports: Ports, deadline: float) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevFailed("redis-server is not installed: run `make system-deps` or `apt-get install redis-server`")
        data = self.layout.data / "redis"
        data.mkdir()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(ports.redis), "--dir", str(data)]
        argv += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        child = self._start("redis", argv, child_environment())
        wait_healthy(child, lambda: probes.redis_answers(ports.redis), deadline, "answer PING")

    def _start_consul(self, binary: Path, ports: Ports, deadline: float) -> None:
        data = self.layout.data / "consul"
        data.mkdir()
        config = data / "agent.json"
        config.write_text(json.dumps(configs.consul_config(ports.consul_http, ports.consul_other)))
        child = self._start("consul", [str(binary), "agent", "-dev", "-config-file", str(config)], child_environment())
        address = f"http://127.0.0.1:{ports.consul_http}"
        wait_healthy(child, lambda: probes.consul_has_leader(address), deadline, "elect a leader")
        self.consul_address = address

    def _start_prometheus(self, ports: Ports, deadline: float) -> None:
        if self.options.prometheus_url:
            self.prometheus_url = self.options.prometheus_url.rstrip("/")
            return
        if not self.options.prometheus:
            return
        binary = shutil.which("prometheus")
        if binary is None:
            raise DevFailed(
                "prometheus is not installed: run `make system-deps` or `apt-get install prometheus` "
                "(or pass --no-prometheus)"
            )
        data = self.layout.data / "prometheus"
        data.mkdir()
        config = data / "prometheus.yml"
        config.write_text(json.dumps(configs.prometheus_config(self._scrape_targets(ports), ports.prometheus)))
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{ports.prometheus}",
        ]
        child = self._start("prometheus", argv, child_environment())
        url = f"http://127.0.0.1:{ports.prometheus}"
        wait_healthy(child, lambda: probes.http_ok(f"{url}/-/ready"), deadline, "report ready")
        self.prometheus_url = url

    def _scrape_targets(self, ports: Ports) -> list[configs.ScrapeTarget]:
        targets = [
            configs.ScrapeTarget("mcpfleet-operator", ports.operator_metrics),
            configs.ScrapeTarget("mcpfleet-gateway", ports.gateway),
        ]
        targets += [
            configs.ScrapeTarget(
                "mcpfleet-servers", s.port, {"server": s.name, "namespace": NAMESPACE, "service": s.name}
            )
            for s in self.servers
        ]
        return targets

    def _start_operator(self, ports: Ports, deadline: float) -> None:
        admin = self._admin()
        kubeconfig = admin.service_account_kubeconfig(
            OPERATOR_NAME, NAMESPACE, self.layout.config / "operator.kubeconfig"
        )
        settings = {
            "KUBECONFIG": str(kubeconfig),
            "MCPFLEET_OPERATOR_METRICS_PORT": str(ports.operator_metrics),
            "MCPFLEET_OPERATOR_METRICS_HOST": "127.0.0.1",
            "MCPFLEET_OPERATOR_LIVENESS_PORT": "0",
            "MCPFLEET_OPERATOR_CATALOG_NAMESPACE": NAMESPACE,
        }
        if self.consul_address is not None:
            settings["MCPFLEET_OPERATOR_CONSUL_ADDRESS"] = self.consul_address
        self.report.step("starting the operator")
        child = self._start("operator", [*mcpfleet_command(), "operator"], child_environment(**settings))
        metrics = f"http://127.0.0.1:{ports.operator_metrics}/metrics"
        wait_healthy(child, lambda: probes.http_ok(metrics), deadline, "serve its metrics")

    def _start_servers(self, deadline: float) -> None:
        self.report.step(f"starting the servers: {', '.join(s.name for s in self.servers)}")
        started = [(server, self._start_server(server)) for server in self.servers]
        for server, child in started:
            health = f"http://127.0.0.1:{server.port}/health"
            wait_healthy(child, functools.partial(probes.http_ok, health), deadline, "serve /health")

    def _start_server(self, server: LocalServer) -> Child:
        admin = self._admin()
        kubeconfig = admin.service_account_kubeconfig(
            server.name, NAMESPACE, self.layout.config / f"{server.name}.kubeconfig"
        )
        settings = {"KUBECONFIG": str(kubeconfig), "MCP_TOOL_PREFIX": server.prefix}
        if server.server_type is ServerType.K8S_OPS:
            # Its ServiceAccount may only read (the type's default preset): offer only the tools that can work.
            settings |= {"K8S_KUBECONFIG_PATH": str(kubeconfig), "MCP_READ_ONLY": "true"}
        elif server.server_type is ServerType.CMDB:
            settings |= {"CMDB_KUBECONFIG_PATH": str(kubeconfig), "MCP_READ_ONLY": "true"}
        elif server.server_type is ServerType.MONITORING:
            settings |= {"MON_KUBECONFIG": str(kubeconfig), "MON_PROMETHEUS_URL": self.prometheus_url or ""}
        argv = [*mcpfleet_command(), "server", server.name, "--transport", "streamable-http"]
        argv += ["--host", "127.0.0.1", "--port", str(server.port)]
        return self._start(server.name, argv, child_environment(**settings))

    def _register_servers(self) -> None:
        self.report.step("registering the servers as external MCPServer objects")
        self._admin().apply([manifests.external_mcpserver(server) for server in self.servers])

    def _start_gateway(self, ports: Ports, secret: str, deadline: float) -> None:
        admin = self._admin()
        reader = admin.service_account_kubeconfig(
            manifests.GATEWAY_ACCOUNT, NAMESPACE, self.layout.config / "gateway.kubeconfig"
        )
        document = configs.gateway_config(
            port=ports.gateway,
            redis_url=f"redis://127.0.0.1:{ports.redis}/0",
            audit_dir=self.layout.audit,
            catalog_namespace=NAMESPACE,
            catalog_name=CATALOG_CONFIGMAP,
            kubeconfig=reader,
        )
        config = self.layout.config / "gateway.json"
        config.write_text(json.dumps(document, indent=2) + "\n")
        config.chmod(0o600)
        environment = child_environment(**{configs.TOKEN_SECRET_ENV: secret, "MCPFLEET_GATEWAY_REPLICA": "dev"})
        self.report.step(f"starting the gateway on {configs.gateway_url(ports.gateway)}")
        child = self._start("gateway", [*mcpfleet_command(), "gateway", "--config", str(config)], environment)
        health = f"{configs.gateway_url(ports.gateway)}/health"
        wait_healthy(child, lambda: probes.http_ok(health), deadline, "serve /health")

    def _wait_for_catalog(self, deadline: float) -> Catalog:
        """The first catalog revision holding tools of every server."""
        self.report.step("waiting for the operator to catalog every server's tools")
        wanted = {f"{NAMESPACE}/{server.name}" for server in self.servers}
        admin = self._admin()
        while True:
            self._check_alive()
            catalog = read_catalog(admin, CATALOG_CONFIGMAP, NAMESPACE)
            listed = {s.name for s in catalog.servers if s.tools} if catalog is not None else set()
            if catalog is not None and wanted <= listed:
                return catalog
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(wanted - listed))
                raise DevFailed(
                    f"the catalog has no tools of {missing} after {self.options.timeout:.0f} s; "
                    f"see `kubectl get mcps -n {NAMESPACE}` (KUBECONFIG={self._admin().kubeconfig}) "
                    f"and {self.layout.log('operator')}"
                )
            time.sleep(WATCH_INTERVAL_SECONDS)

    def _wait_for_gateway(self, port: int, revision: int, deadline: float) -> None:
        """The gateway serves ``revision`` (or a later one) of the catalog."""
        url = f"{configs.gateway_url(port)}/ready"
        report: Any = None
        while True:
            self._check_alive()
            status, report = probes.http_json(url)
            if status == 200 and isinstance(report, dict) and (report.get("catalogRevision") or 0) >= revision:
                return
            if time.monotonic() > deadline:
                raise DevFailed(
                    f"the gateway does not serve catalog revision {revision}: {url} says {report}; "
                    f"see {self.layout.log('gateway')}"
                )
            time.sleep(WATCH_INTERVAL_SECONDS)

    def _announce(self, ports: Ports, secret: str, catalog: Catalog, elapsed: float) -> None:
        assert self.cluster is not None
        url = configs.gateway_url(ports.gateway)
        info = ReadyInfo(
            url=url,
            mcp_url=configs.gateway_audience(ports.gateway),
            token=configs.mint_token(secret, ports.gateway),
            kubeconfig=self.cluster.kubeconfig,
            redis=f"redis://127.0.0.1:{ports.redis}/0",
            consul=self.consul_address,
            prometheus=self.prometheus_url,
            operator_metrics=f"http://127.0.0.1:{ports.operator_metrics}/metrics",
            logs=str(self.layout.logs),
            pid=os.getpid(),
            pids={**{f"control-plane/{k}": v for k, v in self.cluster.pids.items()}, **self.supervisor.pids()},
            started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        write_ready(self.layout.ready_file, info)
        if self.options.ready_file is not None:
            write_ready(self.options.ready_file, info)
        lines = summary_lines(
            info, self.servers, catalog, port=ports.gateway, ready_file=self.layout.ready_file, elapsed_seconds=elapsed
        )
        for line in lines:
            self.report.out(line)

    # -- helpers ---------------------------------------------------------------------------------------

    def _admin(self) -> Admin:
        assert self.admin is not None, "the control plane runs first"
        return self.admin

    def _start(self, name: str, argv: list[str], environment: dict[str, str]) -> Child:
        return self.supervisor.start(name, argv, self.layout.log(name), environment, self.layout.root)

    def _check_alive(self) -> None:
        """DevFailed naming the first child or control plane component that is no longer running."""
        dead = self.supervisor.first_dead()
        if dead is not None:
            raise DevFailed(dead.died_message())
        if self.plane is not None and self.cluster is not None:
            for component in self.plane.status(self.cluster):
                if not component.running:
                    log = self.plane.log(component.name)
                    raise DevFailed(
                        f"{component.name} (pid {component.pid}) is no longer running; "
                        f"last lines of {log}:\n{tail(log)}"
                    )


def run(options: Options, out: Echo, err: Echo) -> int:
    """Run the platform until a signal (exit 0), a failure (exit 1) or an unusable option (exit 2)."""
    return DevPlatform(options, Reporter(out, err)).run()
