"""`mcpfleet release cleanup` (the chart's pre-delete hook) against the Kubernetes emulator: the release's
MCPServers deleted and waited for while the operator finalizes them, a stuck one named at the timeout, the
catalog's history deleted only once the operator has written the catalog without them, and every other
MCPServer and ConfigMap left alone.

The emulator ignores label selectors (it lists everything), so these tests also prove that the command checks
the selector and the history labels itself. RBAC is the e2e tier's (tests/e2e/test_helm.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from mcpfleet_cli.cleanup import CleanupIncomplete, CleanupOptions, LabelSelector, SelectorError, cleanup
from mcpfleet_cli.main import app
from mcpfleet_contracts.catalog import CatalogServer
from mcpfleet_contracts.mcpserver import Transport
from mcpfleet_operator.builders.model import CLUSTER_ROLE, CONFIG_MAP, MCPSERVER, Owner
from mcpfleet_operator.catalog_store import ANNOTATION_PINNED, CatalogStore
from mcpfleet_operator.handlers import FINALIZER
from mcpfleet_operator.kube import KubeClient
from tests.integration.conftest import NAMESPACE, eventually, mcpserver, running_operator

pytestmark = pytest.mark.integration

CATALOG_NS = "mcpfleet-system"
CATALOG = "mcpfleet-catalog"
RELEASE_LABELS = {
    "app.kubernetes.io/name": "mcpfleet",
    "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/component": "server",
    "app.kubernetes.io/managed-by": "Helm",
}
SELECTOR = ",".join(f"{key}={value}" for key, value in RELEASE_LABELS.items())
K8S_OPS: dict[str, Any] = {"type": "k8s-ops"}  # read-only preset: a cluster-wide ClusterRole per server
runner = CliRunner()


def entry(name: str) -> CatalogServer:
    short = name.rsplit("/", 1)[-1]
    return CatalogServer(
        name=name,
        prefix=short.replace("-", ""),
        endpoint=f"http://{short}.{NAMESPACE}.svc:8080/mcp",
        transport=Transport.STREAMABLE_HTTP,
    )


async def create_server(
    api: KubeClient, name: str, labels: dict[str, str], finalizers: Sequence[str] = ()
) -> dict[str, Any]:
    manifest = mcpserver(name, K8S_OPS)
    manifest["metadata"]["labels"] = labels
    if finalizers:
        manifest["metadata"]["finalizers"] = list(finalizers)
    return await api.create(MCPSERVER, manifest)


async def create_configmap(api: KubeClient, name: str, labels: dict[str, str]) -> None:
    metadata = {"name": name, "namespace": CATALOG_NS, "labels": labels}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    await api.create(CONFIG_MAP, manifest)


def history_labels(revision: int, catalog: str = CATALOG) -> dict[str, str]:
    return {"mcpfleet.io/catalog": catalog, "mcpfleet.io/catalog-revision": str(revision)}


async def create_decoys(api: KubeClient) -> set[str]:
    """ConfigMaps that look like history copies in one way or another, and are not."""
    await create_configmap(api, f"{CATALOG}-backup", history_labels(3))  # the label, not the name
    await create_configmap(api, "other-catalog-r1", history_labels(1, "other-catalog"))  # another catalog's
    await create_configmap(api, f"{CATALOG}-r99", {})  # the name, not the labels
    await create_configmap(api, f"{CATALOG}-rx", {**history_labels(1), "mcpfleet.io/catalog-revision": "x"})
    return {f"{CATALOG}-backup", "other-catalog-r1", f"{CATALOG}-r99", f"{CATALOG}-rx"}


async def configmap_names(api: KubeClient) -> set[str]:
    return {obj["metadata"]["name"] for obj in await api.list(CONFIG_MAP, CATALOG_NS)}


async def history_names(api: KubeClient) -> set[str]:
    """The operator's history copies: named <catalog>-r<N> and labelled as such."""
    return {
        obj["metadata"]["name"]
        for obj in await api.list(CONFIG_MAP, CATALOG_NS)
        if obj["metadata"]["name"].removeprefix(f"{CATALOG}-r").isdigit()
        and (obj["metadata"].get("labels") or {}).get("mcpfleet.io/catalog") == CATALOG
    }


def options(timeout: float = 30.0) -> CleanupOptions:
    return CleanupOptions(
        selector=LabelSelector.parse(SELECTOR),
        namespaces=(NAMESPACE,),
        catalog_namespace=CATALOG_NS,
        catalog_name=CATALOG,
        timeout=timeout,
        interval=0.05,
    )


async def invoke(kubeconfig: Path, *args: str) -> Result:
    """The command in a thread: it runs its own event loop while this one keeps serving the emulator."""
    command = ["release", "cleanup", "--kubeconfig", str(kubeconfig), "--catalog-namespace", CATALOG_NS, *args]
    return await asyncio.to_thread(runner.invoke, app, command)


# -- with the operator -----------------------------------------------------------------------------------


async def test_the_operator_finalizes_the_releases_servers_then_their_history_goes(
    kubeconfig: Path, api: KubeClient
) -> None:
    # The operator starts from a catalog that lists the release's two servers, as after they served tools.
    store = CatalogStore(api, CATALOG_NS, CATALOG, keep=5)
    await store.write([entry(f"{NAMESPACE}/rel-a")])
    await store.write([entry(f"{NAMESPACE}/rel-a"), entry(f"{NAMESPACE}/rel-b")])
    assert await history_names(api) == {f"{CATALOG}-r1", f"{CATALOG}-r2"}
    decoys = await create_decoys(api)
    await create_server(api, "rel-a", RELEASE_LABELS)
    await create_server(api, "rel-b", RELEASE_LABELS)
    await create_server(api, "mine", {**RELEASE_LABELS, "app.kubernetes.io/managed-by": "kubectl"})

    async with running_operator(kubeconfig):

        async def reconciled() -> bool:
            for name in ("rel-a", "rel-b", "mine"):
                obj = await api.get(MCPSERVER, NAMESPACE, name)
                assert obj is not None, name
                assert FINALIZER in obj["metadata"].get("finalizers", []), name
                assert (obj.get("status") or {}).get("phase") == "Deploying", name
            return True

        await eventually(reconciled)
        grant = CLUSTER_ROLE.name_for(Owner("rel-a", NAMESPACE, ""))
        assert await api.get(CLUSTER_ROLE, None, grant) is not None

        result = await invoke(kubeconfig, "--selector", SELECTOR, "--namespace", NAMESPACE, "--timeout", "30")

        assert result.exit_code == 0, result.output
        assert await api.get(MCPSERVER, NAMESPACE, "rel-a") is None
        assert await api.get(MCPSERVER, NAMESPACE, "rel-b") is None
        assert await api.get(CLUSTER_ROLE, None, grant) is None, "the operator's finalizer removed the grant"
        mine = await api.get(MCPSERVER, NAMESPACE, "mine")
        assert mine is not None
        assert not mine["metadata"].get("deletionTimestamp"), "not the release's: untouched"
        stored = await store.read()
        assert stored is not None
        assert stored.catalog.revision == 3, "the operator wrote the catalog without them"
        assert stored.catalog.servers == ()
        assert await history_names(api) == set(), "r1, r2 and the operator's r3 are gone"
        assert await configmap_names(api) == decoys | {CATALOG}, "every other ConfigMap stays"

    lines = result.stdout.splitlines()
    assert f"mcpservers: 2 match {SELECTOR} in {NAMESPACE}" in lines
    assert {f"  deleting MCPServer {NAMESPACE}/rel-a", f"  MCPServer {NAMESPACE}/rel-b is gone"} <= set(lines)
    assert f"  deleted ConfigMap {CATALOG_NS}/{CATALOG}-r3" in lines
    assert lines[-1] == "cleanup done: 2 MCPServer(s) and 3 catalog history ConfigMap(s) deleted"


# -- the waits ---------------------------------------------------------------------------------------------


async def test_a_stuck_mcpserver_is_named_at_the_timeout_and_the_catalog_is_left_alone(
    kubeconfig: Path, api: KubeClient
) -> None:
    store = CatalogStore(api, CATALOG_NS, CATALOG, keep=5)
    await store.write([entry("elsewhere/legacy")])
    await create_server(api, "stuck", RELEASE_LABELS, finalizers=["example.com/hold"])

    result = await invoke(kubeconfig, "-l", SELECTOR, "-n", NAMESPACE, "--timeout", "1")

    assert result.exit_code == 1, result.output
    assert "error: 1 MCPServer(s) still present after 1s" in result.output
    assert f"MCPServer {NAMESPACE}/stuck: deletion requested" in result.output
    assert "finalizers: example.com/hold" in result.output
    stuck = await api.get(MCPSERVER, NAMESPACE, "stuck")
    assert stuck is not None
    assert stuck["metadata"].get("deletionTimestamp"), "deleted, waiting for its finalizer"
    assert await history_names(api) == {f"{CATALOG}-r1"}, "nothing of the catalog goes while servers remain"


async def test_the_history_waits_for_the_catalog_revision_without_the_deleted_servers(api: KubeClient) -> None:
    store = CatalogStore(api, CATALOG_NS, CATALOG, keep=5)
    await store.write([entry(f"{NAMESPACE}/rel-a"), entry("elsewhere/legacy")])
    await create_server(api, "rel-a", RELEASE_LABELS)
    lines: list[str] = []
    running = asyncio.create_task(cleanup(api, options(), lines.append))

    async def waiting_for_the_operator() -> bool:
        return any("waiting for the operator to write the next revision" in line for line in lines)

    await eventually(waiting_for_the_operator)
    assert await history_names(api) == {f"{CATALOG}-r1"}, "nothing deleted while the catalog still lists rel-a"
    # What the operator does once rel-a is finalized: the next revision, kept as history.
    await store.write([entry("elsewhere/legacy")])
    report = await asyncio.wait_for(running, 30)

    assert report.servers == [f"{NAMESPACE}/rel-a"]
    assert sorted(report.history) == [f"{CATALOG}-r1", f"{CATALOG}-r2"]
    assert await history_names(api) == set()
    assert f"catalog: {CATALOG_NS}/{CATALOG} revision 2 lists none of the deleted servers" in lines


async def test_a_catalog_that_keeps_listing_a_deleted_server_is_reported_at_the_timeout(api: KubeClient) -> None:
    store = CatalogStore(api, CATALOG_NS, CATALOG, keep=5)
    await store.write([entry(f"{NAMESPACE}/rel-a")])
    await create_server(api, "rel-a", RELEASE_LABELS)

    with pytest.raises(CleanupIncomplete) as incomplete:
        await cleanup(api, options(timeout=1), lambda _: None)

    assert f"catalog {CATALOG_NS}/{CATALOG} revision 1 still lists deleted servers" in incomplete.value.summary
    assert incomplete.value.lines == (f"listed: {NAMESPACE}/rel-a",)
    assert await history_names(api) == {f"{CATALOG}-r1"}


async def test_a_pinned_catalog_is_not_waited_for(api: KubeClient) -> None:
    store = CatalogStore(api, CATALOG_NS, CATALOG, keep=5)
    await store.write([entry(f"{NAMESPACE}/rel-a")])
    await store.rollback(1, pin=True)
    current = await api.get(CONFIG_MAP, CATALOG_NS, CATALOG)
    assert current is not None
    assert current["metadata"]["annotations"][ANNOTATION_PINNED] == "true"
    await create_server(api, "rel-a", RELEASE_LABELS)
    lines: list[str] = []

    report = await cleanup(api, options(timeout=2), lines.append)

    assert sorted(report.history) == [f"{CATALOG}-r1", f"{CATALOG}-r2"]
    assert f"catalog: {CATALOG_NS}/{CATALOG} is pinned: the operator leaves it as it is" in lines


async def test_delete_catalog_removes_the_current_catalog_too(kubeconfig: Path, api: KubeClient) -> None:
    store = CatalogStore(api, CATALOG_NS, CATALOG, keep=5)
    await store.write([entry("elsewhere/legacy")])

    result = await invoke(kubeconfig, "-l", SELECTOR, "-n", NAMESPACE, "--delete-catalog")

    assert result.exit_code == 0, result.output
    assert await configmap_names(api) == set()
    assert "mcpservers: 0 match" in result.stdout
    assert result.stdout.splitlines()[-1].endswith(", and the catalog itself")


# -- what the command refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("", "no key=value term"),
        ("app.kubernetes.io/instance", "no key=value term"),
        ("!app.kubernetes.io/instance,tier!=web", "no key=value term"),
        ("app.kubernetes.io/instance in (a,b)", "set-based terms"),
        ("!tier=web", "`!` goes only before a bare key"),
    ],
)
async def test_a_selector_that_could_reach_beyond_a_release_is_refused(
    kubeconfig: Path, api: KubeClient, selector: str, message: str
) -> None:
    await create_server(api, "other", {"app.kubernetes.io/instance": "b"})

    result = await invoke(kubeconfig, "--selector", selector)

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert await api.get(MCPSERVER, NAMESPACE, "other") is not None


def test_the_selector_matches_like_the_api_server() -> None:
    selector = LabelSelector.parse("a=1, b==2,c!=3,d,!e")
    assert selector.text == "a=1,b==2,c!=3,d,!e"
    assert selector.matches({"a": "1", "b": "2", "d": ""})
    assert selector.matches({"a": "1", "b": "2", "c": "4", "d": "x"})
    assert not selector.matches({"a": "1", "b": "2", "c": "3", "d": ""})
    assert not selector.matches({"a": "1", "b": "2", "d": "", "e": ""})
    assert not selector.matches({"a": "1", "b": "2"})
    assert not selector.matches({"a": "2", "b": "2", "d": ""})
    with pytest.raises(SelectorError):
        LabelSelector.parse("a=1,,b=2")
