"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

No kubelet and no container runtime: Pods are stored but never run. Everything the control plane
writes (PKI, etcd data, logs, kubeconfigs, state) lives under one directory that `down` removes.

Two lifetimes:

* attached (tests): the processes are killed when the process that started them dies, even if
  it is killed outright, so an interrupted test run leaves nothing running;
* detached (`mcpfleet dev cluster up`): the processes outlive the command; `down` stops them.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mcpfleet_cli.devcluster.certs import SERVICE_CLUSTER_IP_RANGE, Pki, generate

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
STATE_FILE = "state.json"
# Written first into every directory `up` uses: `down` deletes only directories that carry it.
MARKER_FILE = ".mcpfleet-control-plane"
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 25


class ClusterError(RuntimeError):
    """The control plane could not be started, found or stopped; the message says what to do."""


@dataclass(frozen=True)
class ClusterState:
    """What `up` wrote to `<root>/state.json`: enough for `status` and `down` from another process."""

    root: str
    kubeconfig: str
    server: str
    pids: dict[str, int]
    ports: dict[str, int]
    attached: bool
    started_at: str

    @property
    def ca_cert(self) -> Path:
        return Path(self.root) / "pki" / "ca.crt"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool


def find_binaries(bin_dir: Path | None) -> dict[str, Path]:
    """Each binary from `bin_dir` (or $MCPFLEET_TOOLS_BIN), else from PATH."""
    directory = bin_dir or (Path(os.environ["MCPFLEET_TOOLS_BIN"]) if os.environ.get("MCPFLEET_TOOLS_BIN") else None)
    found: dict[str, Path] = {}
    missing = []
    for name in BINARIES:
        candidate = directory / name if directory else None
        if candidate is not None and candidate.is_file():
            found[name] = candidate
        elif directory is None and (on_path := shutil.which(name)):
            found[name] = Path(on_path)
        else:
            missing.append(name)
    if missing:
        where = f"in {directory}" if directory else "on PATH"
        raise ClusterError(
            f"{', '.join(missing)} not found {where}: run `make tools` and pass "
            '--bin-dir "$(python3 hack/tools/tools.py bindir)" (or set MCPFLEET_TOOLS_BIN)'
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path,
    *,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    """A self-contained kubeconfig (certificates embedded) for one user of the local control plane."""

    def embed(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    credentials: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        credentials = {"client-certificate-data": embed(client_cert), "client-key-data": embed(client_key)}
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "mcpfleet-dev", "cluster": {"server": server, "certificate-authority-data": embed(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "mcpfleet-dev", "user": user, "namespace": namespace}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: kill it when the parent thread dies.

    SIGKILL, not SIGTERM: the API server's graceful shutdown waits half a minute for an etcd that
    is shutting down beside it, and an attached control plane's data is thrown away anyway.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _is_our_process(pid: int, binary: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return Path(cmdline).name == binary


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager rooted at one directory."""

    def __init__(self, root: Path, binaries: Mapping[str, Path] | None = None) -> None:
        self.root = root.resolve()
        self._binaries = dict(binaries or {})
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    # -- lifecycle ---------------------------------------------------------------------------------

    def up(self, *, attached: bool, timeout: float = 120.0, certificate_lifetime_days: int = 30) -> ClusterState:
        existing = self.read_state()
        if existing is not None and any(c.running for c in self.status(existing)):
            raise ClusterError(f"a control plane already runs from {self.root}; `down` it first")
        if not self._binaries:
            raise ClusterError("no binaries given; see find_binaries()")
        self._remove_root()
        (self.root / "logs").mkdir(parents=True)
        self.root.chmod(0o700)
        (self.root / MARKER_FILE).touch()
        deadline = time.monotonic() + timeout
        try:
            pki = generate(self.root / "pki", datetime.timedelta(days=certificate_lifetime_days))
            ports = {name: free_port() for name in ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager")}
            server = f"https://127.0.0.1:{ports['kube-apiserver']}"
            self._start("etcd", self._etcd_args(ports), attached)
            self._wait("etcd", deadline, lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health"))
            self._start("kube-apiserver", self._apiserver_args(pki, ports), attached)
            admin_tls = _client_tls(pki.ca_cert, pki.admin.cert, pki.admin.key)
            self._wait("kube-apiserver", deadline, lambda: _http_ok(f"{server}/readyz", admin_tls))
            write_kubeconfig(
                self.kubeconfig, server, pki.ca_cert, user="admin", client_cert=pki.admin.cert, client_key=pki.admin.key
            )
            kcm_config = write_kubeconfig(
                self.root / "kube-controller-manager.kubeconfig",
                server,
                pki.ca_cert,
                user="kube-controller-manager",
                client_cert=pki.controller_manager.cert,
                client_key=pki.controller_manager.key,
            )
            self._start("kube-controller-manager", self._controller_manager_args(pki, ports, kcm_config), attached)
            kcm_health = f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz"
            self._wait("kube-controller-manager", deadline, lambda: _http_ok(kcm_health, _insecure_tls()))
        except BaseException:
            self._stop_processes({name: p.pid for name, p in self._processes.items()})
            raise
        state = ClusterState(
            root=str(self.root),
            kubeconfig=str(self.kubeconfig),
            server=server,
            pids={name: process.pid for name, process in self._processes.items()},
            ports=ports,
            attached=attached,
            started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        return state

    def down(self) -> bool:
        """Stop every component and remove the directory. False when nothing was there."""
        if not self.root.exists():
            return False
        self._check_ours()
        state = self.read_state()
        pids = {name: p.pid for name, p in self._processes.items()} | (state.pids if state else {})
        self._stop_processes(pids)
        self._remove_root()
        return True

    def read_state(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ClusterError(f"{self.state_file} is unreadable ({exc}); remove {self.root} by hand") from exc

    def status(self, state: ClusterState | None = None) -> list[ComponentStatus]:
        state = state or self.read_state()
        if state is None:
            return []
        return [ComponentStatus(name, pid, _is_our_process(pid, name)) for name, pid in state.pids.items()]

    def ready(self, state: ClusterState) -> bool:
        pki = Path(state.root) / "pki"
        tls = _client_tls(pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
        return _http_ok(f"{state.server}/readyz", tls)

    # -- processes ---------------------------------------------------------------------------------

    def _start(self, component: str, args: list[str], attached: bool) -> None:
        log = self.log(component).open("ab")
        try:
            self._processes[component] = subprocess.Popen(
                [str(self._binaries[component]), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
                preexec_fn=_die_with_parent if attached else None,  # noqa: PLW1509 - async-signal-safe prctl only
            )
        finally:
            log.close()

    def _wait(self, component: str, deadline: float, healthy: Callable[[], bool]) -> None:
        process = self._processes[component]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClusterError(
                    f"{component} exited with code {process.returncode} while starting; "
                    f"last lines of {self.log(component)}:\n{_tail(self.log(component))}"
                )
            if healthy():
                return
            time.sleep(0.25)
        raise ClusterError(
            f"{component} was not healthy in time; last lines of {self.log(component)}:\n{_tail(self.log(component))}"
        )

    def _stop_processes(self, pids: Mapping[str, int]) -> None:
        # Reverse start order: nothing loses its backend while still writing to it.
        ordered = [name for name in reversed(COMPONENTS) if name in pids]
        for name in ordered:
            pid = pids[name]
            process = self._processes.get(name)
            if process is not None and process.poll() is not None:
                continue
            if process is None and not _is_our_process(pid, name):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            if not self._reap(name, pid, timeout=15.0):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self._reap(name, pid, timeout=5.0)
        self._processes.clear()

    def _reap(self, name: str, pid: int, timeout: float) -> bool:
        process = self._processes.get(name)
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_our_process(pid, name):
                return True
            time.sleep(0.1)
        return False

    def _check_ours(self) -> None:
        """Refuse to touch a directory that holds anything but a control plane (a mistyped --dir)."""
        if self.root.exists() and not (self.root / MARKER_FILE).exists() and any(self.root.iterdir()):
            raise ClusterError(f"{self.root} holds files that are not a control plane's; choose another directory")

    def _remove_root(self) -> None:
        if self.root.exists():
            self._check_ours()
            shutil.rmtree(self.root)

    # -- command lines -----------------------------------------------------------------------------

    def _etcd_args(self, ports: Mapping[str, int]) -> list[str]:
        client, peer = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            "--name=default",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            # A throwaway store: durability across power loss buys nothing and costs every write an fsync.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: Pki, ports: Mapping[str, int]) -> list[str]:
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            f"--client-ca-file={pki.ca_cert}",
            f"--tls-cert-file={pki.serving.cert}",
            f"--tls-private-key-file={pki.serving.key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--authorization-mode=RBAC",
            # The `kubernetes` Service's endpoints may not point at loopback; nothing in-cluster dials it here.
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--profiling=false",
        ]

    def _controller_manager_args(self, pki: Pki, ports: Mapping[str, int], kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--cert-dir={self.root / 'kube-controller-manager'}",
            "--leader-elect=false",
            # Each controller acts with its own ServiceAccount token, as in a real cluster.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--profiling=false",
        ]


def _client_tls(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def _insecure_tls() -> ssl.SSLContext:
    # The controller manager serves /healthz with a self-signed cert it makes at start; only liveness is asked.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(url: str, tls: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=tls) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


@contextlib.contextmanager
def running(
    root: Path, binaries: Mapping[str, Path], *, timeout: float = 120.0
) -> Iterator[tuple[ControlPlane, ClusterState]]:
    """An attached control plane for the duration of a `with` block; always torn down."""
    plane = ControlPlane(root, binaries)
    try:
        state = plane.up(attached=True, timeout=timeout)
        yield plane, state
    finally:
        plane.down()


def kubectl(
    binaries: Mapping[str, Path], kubeconfig: Path, *args: str, stdin: str | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the built kubectl against a kubeconfig; never raises on a non-zero exit."""
    return subprocess.run(
        [str(binaries["kubectl"]), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        **kw,
    )
