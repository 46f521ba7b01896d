"""`mcpfleet doctor`: is the platform healthy? One line per check: ``PASS|FAIL|SKIP <check>: <detail>``.

Checks: the API server (kubeconfig and context), the MCPServer CRD (established, serving the version this
mcpfleet speaks, with this mcpfleet's schema), the operator (its /metrics, else its Deployment), the gateway
(/health and /ready), Redis (PING), Consul (a leader) and Prometheus (/-/ready). A FAIL says how to fix it.

Where to look comes from the options, else from the ready file of a running `mcpfleet dev`, else (for the API
server) from $KUBECONFIG. Every check has a deadline and all run concurrently.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from mcpfleet_cli.devplatform.ready import ReadyInfo
from mcpfleet_contracts.crd import CRD_NAME, openapi_schema
from mcpfleet_contracts.mcpserver import VERSION

DEFAULT_TIMEOUT_SECONDS = 5.0
OPERATOR_NAMESPACE = "mcpfleet-system"
_MANAGED_OBJECTS = re.compile(r"^mcpfleet_operator_managed_objects(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.M)


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    check: str
    outcome: Outcome
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.outcome} {self.check}: {self.detail}"
        return f"{text} -- fix: {self.fix}" if self.outcome is Outcome.FAIL and self.fix else text


def passed(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Outcome.PASS, detail)


def failed(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Outcome.FAIL, detail, fix)


def skipped(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Outcome.SKIP, detail)


@dataclass(frozen=True)
class Targets:
    """Where each part of the platform answers; None: not known, so that check is skipped."""

    kubeconfig: Path | None = None
    context: str | None = None
    operator_namespace: str = OPERATOR_NAMESPACE
    operator: str | None = None
    gateway: str | None = None
    redis: str | None = None
    consul: str | None = None
    consul_token: str | None = None
    prometheus: str | None = None


def with_dev_defaults(given: Targets, ready: ReadyInfo | None) -> Targets:
    """``given`` with every unset target taken from a running `mcpfleet dev`."""
    if ready is None:
        return given
    return replace(
        given,
        kubeconfig=given.kubeconfig or Path(ready.kubeconfig),
        operator=given.operator or ready.operator_metrics,
        gateway=given.gateway or ready.url,
        redis=given.redis or ready.redis,
        consul=given.consul or ready.consul,
        prometheus=given.prometheus or ready.prometheus,
    )


def redact_url(url: str) -> str:
    """The URL without its password (a Redis URL may carry one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(result.outcome is Outcome.FAIL for result in results) else 0


# -- the MCPServer CRD (pure) ------------------------------------------------------------------------------


def crd_verdict(installed: Mapping[str, Any]) -> CheckResult:
    """What an installed CRD object means for this mcpfleet: established, serving VERSION, the same schema."""
    conditions = {c.get("type"): c for c in (installed.get("status") or {}).get("conditions") or ()}
    established = conditions.get("Established") or {}
    apply_fix = "mcpfleet crd print | kubectl apply -f - (or: kubectl apply -f crds/, or helm upgrade)"
    if established.get("status") != "True":
        why = established.get("message") or "no Established condition yet"
        return failed("crd", f"{CRD_NAME} is not established: {why}", f"kubectl describe crd {CRD_NAME}")
    versions = {v.get("name"): v for v in (installed.get("spec") or {}).get("versions") or ()}
    served = sorted(str(name) for name, v in versions.items() if v.get("served"))
    ours = versions.get(VERSION)
    if ours is None or not ours.get("served"):
        return failed(
            "crd",
            f"{CRD_NAME} serves {', '.join(served) or 'no version'}; this mcpfleet speaks {VERSION}",
            apply_fix,
        )
    schema = (ours.get("schema") or {}).get("openAPIV3Schema")
    if schema != openapi_schema():
        return failed(
            "crd",
            f"{CRD_NAME} serves {VERSION} with a schema other than this mcpfleet's (installed by another version)",
            apply_fix,
        )
    storage = " (storage)" if ours.get("storage") else ""
    return passed("crd", f"{CRD_NAME} established, serves {', '.join(served)}{storage}; schema matches this mcpfleet")


# -- the operator's Deployment (pure) ----------------------------------------------------------------------


def _runs_the_operator(container: Mapping[str, Any]) -> bool:
    """`mcpfleet operator`: the subcommand follows `mcpfleet` in the command, or is the first argument to the
    image's entrypoint (mcpfleet) when the container sets no command."""
    command = [str(word) for word in container.get("command") or ()]
    args = [str(word) for word in container.get("args") or ()]
    if not command:
        return args[:1] == ["operator"]
    words = command + args
    return any(Path(word).name == "mcpfleet" and words[i + 1 : i + 2] == ["operator"] for i, word in enumerate(words))


def operator_deployments(deployments: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Deployments whose Pods run `mcpfleet operator`."""
    found = []
    for deployment in deployments:
        containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
        if any(_runs_the_operator(c) for c in containers or ()):
            found.append(deployment)
    return found


def operator_deployment_verdict(namespace: str, deployments: Sequence[Mapping[str, Any]]) -> CheckResult:
    candidates = operator_deployments(deployments)
    if not candidates:
        return failed(
            "operator",
            f"no Deployment running `mcpfleet operator` in namespace {namespace}, and no --operator URL",
            "install it (helm install mcpfleet charts/mcpfleet) or run `mcpfleet operator`; pass "
            "--operator-namespace, or --operator http://HOST:PORT/metrics for an operator running elsewhere",
        )
    for deployment in candidates:
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        if ready > 0:
            wanted = int((deployment.get("spec") or {}).get("replicas") or 1)
            name = deployment["metadata"]["name"]
            return passed("operator", f"Deployment {namespace}/{name}: {ready}/{wanted} replicas ready")
    name = candidates[0]["metadata"]["name"]
    return failed(
        "operator",
        f"Deployment {namespace}/{name} has no ready replica",
        f"kubectl -n {namespace} describe deployment {name}; kubectl -n {namespace} logs deployment/{name}",
    )


def operator_metrics_verdict(url: str, status: int, body: str) -> CheckResult:
    if status != 200 or "mcpfleet_operator_" not in body:
        return failed(
            "operator",
            f"{url} answered {status} without the operator's metrics",
            "pass the operator's metrics URL (MCPFLEET_OPERATOR_METRICS_PORT, default 9090) with --operator",
        )
    match = _MANAGED_OBJECTS.search(body)
    managed = f"; manages {float(match.group(1)):.0f} MCPServer(s)" if match else ""
    return passed("operator", f"running, metrics at {url}{managed}")


# -- checks against live components ------------------------------------------------------------------------

Check = Callable[[], Awaitable[CheckResult]]


async def _deadline(check: str, seconds: float, run: Check, target: str) -> CheckResult:
    try:
        async with asyncio.timeout(seconds):
            return await run()
    except TimeoutError:
        return failed(check, f"{target} did not answer within {seconds:.0f} s", f"check that {target} is up")


def _unreachable(check: str, target: str, exc: BaseException, fix: str) -> CheckResult:
    return failed(check, f"{target} is unreachable ({exc or type(exc).__name__})", fix)


async def check_gateway(session: aiohttp.ClientSession, url: str) -> CheckResult:
    base = url.rstrip("/")
    fix = "start it (mcpfleet gateway --config FILE, or make run) or pass the right --gateway URL"
    try:
        async with session.get(f"{base}/health") as health:
            if health.status != 200:
                return failed("gateway", f"{base}/health answered {health.status}", fix)
        async with session.get(f"{base}/ready") as ready:
            report = await ready.json(content_type=None)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _unreachable("gateway", base, exc, fix)
    problems = "; ".join(str(p) for p in (report or {}).get("problems") or ())
    if not (report or {}).get("ready"):
        return failed("gateway", f"{base} is not ready: {problems or report}", "read the gateway's log")
    note = f"; problems: {problems}" if problems else ""
    tools, revision = report.get("tools"), report.get("catalogRevision")
    return passed("gateway", f"{base} healthy and ready, {tools} tools, catalog revision {revision}{note}")


async def check_prometheus(session: aiohttp.ClientSession, url: str) -> CheckResult:
    base = url.rstrip("/")
    fix = "start Prometheus (or make run) or pass the right --prometheus URL"
    try:
        async with session.get(f"{base}/-/ready") as ready:
            if ready.status != 200:
                return failed("prometheus", f"{base}/-/ready answered {ready.status}", fix)
        async with session.get(f"{base}/api/v1/targets", params={"state": "active"}) as answer:
            targets = (await answer.json(content_type=None)).get("data", {}).get("activeTargets") or []
    except (aiohttp.ClientError, OSError, ValueError, AttributeError) as exc:
        return _unreachable("prometheus", base, exc, fix)
    up = sum(1 for target in targets if target.get("health") == "up")
    return passed("prometheus", f"{base} ready, {up} of {len(targets)} scrape targets up")


async def check_operator_metrics(session: aiohttp.ClientSession, url: str) -> CheckResult:
    try:
        async with session.get(url) as answer:
            return operator_metrics_verdict(url, answer.status, await answer.text())
    except (aiohttp.ClientError, OSError) as exc:
        return _unreachable("operator", url, exc, "start it (mcpfleet operator) or pass the right --operator URL")


async def check_redis(url: str, seconds: float) -> CheckResult:
    import redis.asyncio  # noqa: PLC0415 - only this check needs it
    from redis.exceptions import AuthenticationError, RedisError  # noqa: PLC0415

    shown = redact_url(url)
    try:
        client = redis.asyncio.Redis.from_url(url, socket_timeout=seconds, socket_connect_timeout=seconds)
    except ValueError as exc:
        return failed("redis", f"{shown} is not a Redis URL: {exc}", "write it as redis://[user:password@]host:port/db")
    try:
        await client.ping()
        version = (await client.info("server")).get("redis_version", "?")
    except AuthenticationError as exc:
        return failed("redis", f"{shown} refused the credentials ({exc})", "check the user and password in the URL")
    except (RedisError, OSError) as exc:
        return _unreachable("redis", shown, exc, "start redis-server (or make run) or pass the right --redis URL")
    finally:
        await client.aclose()
    return passed("redis", f"{shown} answers PING (Redis {version})")


async def check_consul(url: str, token: str | None) -> CheckResult:
    import consul  # noqa: PLC0415 - only this check needs it
    import consul.aio  # noqa: PLC0415

    parts = urlsplit(url if "://" in url else f"http://{url}")
    fix = "start the agent (consul agent -dev, or make consul and make run) or pass the right --consul URL"
    with warnings.catch_warnings():
        # py-consul builds its connector with aiohttp arguments aiohttp deprecates; not ours to change.
        warnings.simplefilter("ignore", DeprecationWarning)
        client = consul.aio.Consul(host=parts.hostname or "127.0.0.1", port=parts.port or 8500, scheme=parts.scheme)
    client.token = token
    try:
        leader = await client.status.leader()
    except (consul.ACLPermissionDenied, consul.ACLDisabled) as exc:
        return failed(
            "consul", f"{url} refused the token ({exc})", "pass a token with --consul-token (or CONSUL_HTTP_TOKEN)"
        )
    except (aiohttp.ClientError, OSError, consul.ConsulException) as exc:
        return _unreachable("consul", url, exc, fix)
    finally:
        await client.close()
    if not leader:
        return failed(
            "consul", f"{url} answers but has no leader", "consul operator raft list-peers; check the servers"
        )
    return passed("consul", f"{url} answers, leader {leader}")


async def _api_client(targets: Targets) -> Any:
    """An ApiClient from the given kubeconfig, else in-cluster credentials, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes_asyncio import client as k8s  # noqa: PLC0415 - the client is heavy to import
    from kubernetes_asyncio import config as k8s_config  # noqa: PLC0415

    configuration = k8s.Configuration()
    if targets.kubeconfig is None and targets.context is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration=configuration)
        except k8s_config.ConfigException:
            pass
    kubeconfig = str(targets.kubeconfig) if targets.kubeconfig else None
    await k8s_config.load_kube_config(
        config_file=kubeconfig, context=targets.context, client_configuration=configuration
    )
    return k8s.ApiClient(configuration=configuration)


async def check_api_server(api: Any, where: str) -> CheckResult:
    """GET /version: any authenticated client may read it, so it tests reachability and credentials alone."""
    from kubernetes_asyncio.client.exceptions import ApiException  # noqa: PLC0415

    host = api.configuration.host
    try:
        version = await api.call_api(
            "/version",
            "GET",
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=DEFAULT_TIMEOUT_SECONDS,
        )
    except ApiException as exc:
        if exc.status == 401:
            return failed(
                "api-server",
                f"{host} refused the credentials of {where}",
                "renew the kubeconfig's token or certificate",
            )
        return failed("api-server", f"{host} answered {exc.status} {exc.reason}", f"check {where}")
    except (aiohttp.ClientError, OSError) as exc:
        return _unreachable(
            "api-server", host, exc, f"start the API server (or make run) or point {where} at a running one"
        )
    return passed("api-server", f"{host} ({where}) answers, Kubernetes {(version or {}).get('gitVersion', '?')}")


async def check_crd(kube: Any) -> CheckResult:
    from mcpfleet_operator.builders.model import ResourceKind  # noqa: PLC0415
    from mcpfleet_operator.kube import KubeError  # noqa: PLC0415

    kind = ResourceKind("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False)
    try:
        installed = await kube.get(kind, None, CRD_NAME)
    except KubeError as exc:
        return failed("crd", f"cannot read {CRD_NAME}: {exc}", "use credentials that may get customresourcedefinitions")
    if installed is None:
        return failed(
            "crd",
            f"{CRD_NAME} is not installed",
            "kubectl apply -f crds/ (or: mcpfleet crd print | kubectl apply -f -, or helm install)",
        )
    return crd_verdict(installed)


async def check_operator_deployment(kube: Any, namespace: str) -> CheckResult:
    from mcpfleet_operator.builders.model import DEPLOYMENT  # noqa: PLC0415
    from mcpfleet_operator.kube import KubeError  # noqa: PLC0415

    try:
        deployments = await kube.list(DEPLOYMENT, namespace, limit=200)
    except KubeError as exc:
        return failed(
            "operator", f"cannot list Deployments in {namespace}: {exc}", "use credentials that may list them"
        )
    return operator_deployment_verdict(namespace, deployments)


def _kubeconfig_label(targets: Targets) -> str:
    where = f"kubeconfig {targets.kubeconfig}" if targets.kubeconfig else "the default kubeconfig"
    return f"{where}, context {targets.context}" if targets.context else where


async def _cluster_checks(targets: Targets, seconds: float) -> list[CheckResult]:
    """API server, CRD and (without an --operator URL) the operator's Deployment; the ones after the API server
    are skipped when it cannot be reached."""
    from kubernetes_asyncio.config import ConfigException  # noqa: PLC0415

    from mcpfleet_operator.kube import KubeClient  # noqa: PLC0415

    dependent = ["crd"] if targets.operator else ["crd", "operator"]
    try:
        api = await _api_client(targets)
    except (ConfigException, OSError) as exc:
        fix = "set KUBECONFIG or pass --kubeconfig (or start the local platform: make run)"
        return [
            failed("api-server", f"no cluster credentials ({exc})", fix),
            *(skipped(c, "no cluster") for c in dependent),
        ]
    kube = KubeClient(api, "mcpfleet-doctor")
    try:
        where = _kubeconfig_label(targets)
        host = str(api.configuration.host)
        api_result = await _deadline("api-server", seconds, lambda: check_api_server(api, where), host)
        if api_result.outcome is not Outcome.PASS:
            return [api_result, *(skipped(c, "the API server does not answer") for c in dependent)]
        checks = [_deadline("crd", seconds, lambda: check_crd(kube), host)]
        if not targets.operator:
            namespace = targets.operator_namespace
            checks.append(_deadline("operator", seconds, lambda: check_operator_deployment(kube, namespace), host))
        return [api_result, *await asyncio.gather(*checks)]
    finally:
        await kube.close()


def _unless_missing(
    check: str, target: str | None, flag: str, seconds: float, run: Callable[[str], Awaitable[CheckResult]]
) -> Awaitable[CheckResult]:
    if target is None:
        return _resolved(skipped(check, f"nothing to check: no {flag} URL given (nor by a running `mcpfleet dev`)"))
    return _deadline(check, seconds, lambda: run(target), redact_url(target))


async def _resolved(result: CheckResult) -> CheckResult:
    return result


ORDER = ("api-server", "crd", "operator", "gateway", "redis", "consul", "prometheus")


async def run_checks(targets: Targets, seconds: float = DEFAULT_TIMEOUT_SECONDS) -> list[CheckResult]:
    """Every check, concurrently; the results in ORDER."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
        single: list[Awaitable[CheckResult]] = [
            _unless_missing("gateway", targets.gateway, "--gateway", seconds, lambda u: check_gateway(session, u)),
            _unless_missing("redis", targets.redis, "--redis", seconds, lambda u: check_redis(u, seconds)),
            _unless_missing(
                "consul", targets.consul, "--consul", seconds, lambda u: check_consul(u, targets.consul_token)
            ),
            _unless_missing(
                "prometheus", targets.prometheus, "--prometheus", seconds, lambda u: check_prometheus(session, u)
            ),
        ]
        if targets.operator:
            single.append(
                _unless_missing(
                    "operator", targets.operator, "--operator", seconds, lambda u: check_operator_metrics(session, u)
                )
            )
        cluster, others = await asyncio.gather(_cluster_checks(targets, seconds), asyncio.gather(*single))
    results = [*cluster, *others]
    return sorted(results, key=lambda result: ORDER.index(result.check))
