"""The catalog ConfigMap store (contract 3) against the Kubernetes emulator: revisions, skipped writes,
optimistic concurrency, history pruning, rollback and pinning; and the `mcpfleet catalog` commands that
read and change it in a cluster."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kmock
import pytest
from typer.testing import CliRunner, Result

from mcpfleet_cli.main import app
from mcpfleet_contracts.catalog import CATALOG_KEY, Catalog, CatalogServer, CatalogTool
from mcpfleet_contracts.mcpserver import Risk, Transport
from mcpfleet_operator.builders.model import CONFIG_MAP, ResourceKind
from mcpfleet_operator.catalog_store import (
    ANNOTATION_DIGEST,
    ANNOTATION_PINNED,
    ANNOTATION_REVISION,
    ANNOTATION_ROLLED_BACK_FROM,
    CatalogStore,
    CatalogUnreadable,
    RevisionNotFound,
    content_digest,
)
from mcpfleet_operator.kube import KubeClient, load_api_client
from tests.emulator import ApiServerEmulator
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

NS = "mcpfleet-system"
NAME = "mcpfleet-catalog"


def server(prefix: str, *tool_names: str) -> CatalogServer:
    return CatalogServer(
        name=f"team-a/{prefix}",
        prefix=prefix,
        endpoint=f"http://{prefix}.team-a.svc:8080/mcp",
        transport=Transport.STREAMABLE_HTTP,
        tools=tuple(
            CatalogTool(
                name=f"{prefix}:{tool}",
                upstream_name=tool,
                risk=Risk.SAFE,
                timeout_seconds=30,
                permissions=(f"{prefix}:get",),
            )
            for tool in tool_names
        ),
    )


A = (server("k8s", "get_pods"),)
B = (server("k8s", "get_pods", "list_nodes"),)
C = (server("k8s", "get_pods"), server("cmdb", "query_hosts"))


@pytest.fixture
def store(api: KubeClient) -> CatalogStore:
    return CatalogStore(api, NS, NAME, keep=3)


async def current(api: KubeClient) -> dict[str, Any]:
    obj = await api.get(CONFIG_MAP, NS, NAME)
    assert obj is not None
    return obj


def stored_catalog(obj: Mapping[str, Any]) -> Catalog:
    return Catalog.model_validate_json(obj["data"][CATALOG_KEY])


def history_names(emulator: ApiServerEmulator) -> set[str]:
    return {
        name
        for (resource, namespace, name), obj in emulator.objects.items()
        if resource.plural == "configmaps" and namespace == NS and name.startswith(f"{NAME}-r") and not obj.deleted
    }


async def test_the_first_write_creates_revision_1_with_its_history(api: KubeClient, store: CatalogStore) -> None:
    result = await store.write(A)

    assert (result.revision, result.skipped, result.conflicts) == (1, None, 0)
    obj = await current(api)
    catalog = stored_catalog(obj)
    assert catalog.revision == 1
    assert catalog.servers == A
    assert obj["data"][CATALOG_KEY] == catalog.dump()  # the pretty JSON, as people read it with kubectl
    annotations = obj["metadata"]["annotations"]
    assert annotations[ANNOTATION_REVISION] == "1"
    assert annotations[ANNOTATION_DIGEST] == content_digest(A, ":")
    history = await api.get(CONFIG_MAP, NS, f"{NAME}-r1")
    assert history is not None
    assert history["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "mcpfleet",
        "mcpfleet.io/catalog": NAME,
        "mcpfleet.io/catalog-revision": "1",
    }
    assert stored_catalog(history) == catalog
    read = await store.read()
    assert read is not None
    assert read.catalog == catalog
    assert not read.pinned
    assert read.resource_version == obj["metadata"]["resourceVersion"]


async def test_nothing_is_stored_at_first(store: CatalogStore) -> None:
    assert await store.read() is None
    assert await store.history() == []


async def test_an_identical_write_sends_no_write_at_all(emulator: ApiServerEmulator, store: CatalogStore) -> None:
    await store.write(A)
    writes_before = len(emulator.writes())

    result = await store.write(A)

    assert (result.revision, result.skipped) == (None, "unchanged")
    assert len(emulator.writes()) == writes_before


async def test_a_history_object_lost_between_two_writes_is_restored(api: KubeClient, store: CatalogStore) -> None:
    await store.write(A)
    await api.delete(CONFIG_MAP, NS, f"{NAME}-r1")  # as if the writer had stopped after the current ConfigMap

    result = await store.write(A)

    assert result.skipped == "unchanged"
    restored = await api.get(CONFIG_MAP, NS, f"{NAME}-r1")
    assert restored is not None
    assert stored_catalog(restored) == stored_catalog(await current(api))


async def test_a_change_is_the_next_revision_and_kept_in_history(
    api: KubeClient, emulator: ApiServerEmulator, store: CatalogStore
) -> None:
    await store.write(A)
    result = await store.write(B)

    assert result.revision == 2
    assert stored_catalog(await current(api)).servers == B
    assert history_names(emulator) == {f"{NAME}-r1", f"{NAME}-r2"}
    assert [(c.revision, c.servers) for c in await store.history()] == [(2, B), (1, A)]
    # The current catalog is replaced with the resourceVersion it was read at: no blind overwrite.
    puts = emulator.writes(("PUT",))
    assert len(puts) == 1
    assert puts[0].data["metadata"]["resourceVersion"]


async def test_only_the_newest_keep_revisions_are_kept(
    api: KubeClient, emulator: ApiServerEmulator, store: CatalogStore
) -> None:
    for count in range(1, 7):
        await store.write((server("k8s", *(f"get_thing{i}" for i in range(count))),))

    assert history_names(emulator) == {f"{NAME}-r4", f"{NAME}-r5", f"{NAME}-r6"}
    assert [c.revision for c in await store.history()] == [6, 5, 4]
    assert stored_catalog(await current(api)).revision == 6


class RacingClient(KubeClient):
    """A client whose first replace comes just after another writer's write: the lost-update race, made certain."""

    rival: tuple[CatalogStore, tuple[CatalogServer, ...]] | None = None
    raced = False

    async def replace(self, kind: ResourceKind, manifest: Mapping[str, Any]) -> dict[str, Any]:
        if self.rival is not None and not self.raced:
            self.raced = True
            store, servers = self.rival
            await store.write(servers)
        return await super().replace(kind, manifest)


@pytest.fixture
async def racing(kubeconfig: Path) -> AsyncIterator[RacingClient]:
    """A second client with its own connection: the rival writes through the test's `api`."""
    client = RacingClient(await load_api_client(str(kubeconfig)), "racer")
    yield client
    await client.close()


async def test_a_concurrent_writer_is_not_overwritten(
    api: KubeClient, racing: RacingClient, emulator: ApiServerEmulator
) -> None:
    rival = CatalogStore(api, NS, NAME)
    await rival.write(A)
    racing.rival = (rival, B)

    result = await CatalogStore(racing, NS, NAME).write(C)

    assert racing.raced
    assert (result.revision, result.skipped, result.conflicts) == (3, None, 1)
    conflicts = [req for req in emulator.writes(("PUT",)) if req.data["metadata"]["resourceVersion"]]
    assert len(conflicts) == 3  # the rival's, ours refused with 409, ours again
    assert stored_catalog(await current(api)).servers == C
    history = await rival.history()
    assert [(c.revision, c.servers) for c in history] == [(3, C), (2, B), (1, A)]


async def test_a_concurrent_writer_with_the_same_content_makes_ours_unchanged(
    api: KubeClient, racing: RacingClient
) -> None:
    rival = CatalogStore(api, NS, NAME)
    await rival.write(A)
    racing.rival = (rival, B)

    result = await CatalogStore(racing, NS, NAME).write(B)

    assert (result.revision, result.skipped, result.conflicts) == (None, "unchanged", 1)
    assert stored_catalog(await current(api)).revision == 2


async def test_a_rollback_is_a_new_revision_with_the_old_content(api: KubeClient, store: CatalogStore) -> None:
    await store.write(A)
    await store.write(B)

    rolled = await store.rollback(1)

    assert rolled.revision == 3
    assert rolled.servers == A
    obj = await current(api)
    assert stored_catalog(obj) == rolled
    assert obj["metadata"]["annotations"][ANNOTATION_ROLLED_BACK_FROM] == "1"
    assert ANNOTATION_PINNED not in obj["metadata"]["annotations"]
    newest = (await store.revisions())[0]
    assert (newest.catalog.revision, newest.rolled_back_from, newest.pinned) == (3, 1, False)
    # The operator's next change is written as usual (the rollback was not pinned).
    assert (await store.write(C)).revision == 4
    assert ANNOTATION_ROLLED_BACK_FROM not in (await current(api))["metadata"]["annotations"]


async def test_a_pinned_rollback_holds_until_unpinned(
    api: KubeClient, emulator: ApiServerEmulator, store: CatalogStore
) -> None:
    await store.write(A)
    await store.write(B)
    await store.rollback(1, pin=True)
    stored = await store.read()
    assert stored is not None
    assert stored.pinned
    writes_before = len(emulator.writes())

    result = await store.write(C)

    assert (result.revision, result.skipped) == (None, "pinned")
    assert len(emulator.writes()) == writes_before
    assert stored_catalog(await current(api)).servers == A

    await store.unpin()

    assert ANNOTATION_PINNED not in (await current(api))["metadata"]["annotations"]
    assert (await store.write(C)).revision == 4


async def test_a_rollback_to_a_revision_no_longer_kept_names_the_kept_ones(store: CatalogStore) -> None:
    for servers in (A, B, C, A):
        await store.write(servers)

    with pytest.raises(RevisionNotFound, match=r"revision 1 .* not kept \(kept revisions: 4, 3, 2\)"):
        await store.rollback(1)


async def test_a_hand_edited_catalog_is_overwritten_with_a_higher_revision(
    api: KubeClient, store: CatalogStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.write(A)
    await store.write(B)
    await api.patch(CONFIG_MAP, NS, NAME, {"data": {CATALOG_KEY: '{"revision": "two"'}})
    with pytest.raises(CatalogUnreadable, match=r"mcpfleet-catalog key catalog.json is not a valid catalog"):
        await store.read(strict=True)
    assert await store.read() is None  # what the operator starts from: nothing it could use

    with caplog.at_level(logging.WARNING, logger="mcpfleet_operator.catalog_store"):
        result = await store.write(C)

    assert result.revision == 3
    assert "overwritten with the next revision" in caplog.text
    assert stored_catalog(await current(api)).servers == C


async def test_a_deleted_current_catalog_continues_after_the_newest_kept_revision(
    api: KubeClient, store: CatalogStore
) -> None:
    await store.write(A)
    await store.write(B)
    await api.delete(CONFIG_MAP, NS, NAME)

    assert (await store.write(B)).revision == 3


async def test_labels_and_keys_others_put_on_the_catalog_stay(api: KubeClient, store: CatalogStore) -> None:
    await api.create(
        CONFIG_MAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": NAME,
                "namespace": NS,
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": "mcpfleet"},
            },
            "data": {"README": "written by the operator"},
        },
    )

    assert (await store.write(A)).revision == 1

    obj = await current(api)
    assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == "mcpfleet"
    assert obj["data"]["README"] == "written by the operator"


async def test_list_follows_continue_and_stops_at_its_limit(emulator: ApiServerEmulator, api: KubeClient) -> None:
    path = "/api/v1/namespaces/paged/configmaps"

    def page(names: list[str], token: str) -> dict[str, Any]:
        items = [{"metadata": {"name": n, "namespace": "paged"}} for n in names]
        return {"kind": "ConfigMapList", "metadata": {"continue": token}, "items": items}

    emulator["get", path, kmock.params({"continue": "p2"})] << page(["c", "d"], "p3")
    emulator["get", path, kmock.params({"continue": "p3"})] << page(["e"], "")
    emulator["get", path, kmock.params({"labelSelector": "app=x"})] << page(["a", "b"], "p2")

    everything = await api.list(CONFIG_MAP, "paged", label_selector="app=x")
    assert [o["metadata"]["name"] for o in everything] == ["a", "b", "c", "d", "e"]
    capped = await api.list(CONFIG_MAP, "paged", label_selector="app=x", limit=3)
    assert [o["metadata"]["name"] for o in capped] == ["a", "b", "c"]
    asked = [dict(req.params) for req in emulator.writes(("GET",)) if req.url.path == path]
    assert asked[-1] == {"labelSelector": "app=x", "limit": "1", "continue": "p2"}


# -- the CLI against the cluster -----------------------------------------------------------------------

runner = CliRunner()


async def invoke(kubeconfig: Path, *args: str) -> Result:
    """The command in a thread: it runs its own event loop while this one keeps serving the emulator."""
    cluster = ["--namespace", NS, "--kubeconfig", str(kubeconfig)]
    return await asyncio.to_thread(runner.invoke, app, ["catalog", *args, *cluster])


async def test_cli_show_history_rollback_and_unpin(kubeconfig: Path, api: KubeClient, store: CatalogStore) -> None:
    await store.write(A)
    await store.write(B)

    shown = await invoke(kubeconfig, "show")
    assert shown.exit_code == 0, shown.output
    assert Catalog.model_validate_json(shown.stdout).servers == B
    old = await invoke(kubeconfig, "show", "--revision", "1")
    assert Catalog.model_validate_json(old.stdout).servers == A

    rolled = await invoke(kubeconfig, "rollback", "1", "--pin")
    assert rolled.exit_code == 0, rolled.output
    assert "revision 3" in rolled.stdout

    history = await invoke(kubeconfig, "history")
    assert history.exit_code == 0, history.output
    lines = history.stdout.splitlines()
    assert lines[0].split() == ["REVISION", "GENERATED", "SERVERS", "TOOLS", "NOTE"]
    assert lines[1].split()[0] == "3"
    assert "rolled back from 1, pinned" in lines[1]
    assert lines[2].split()[0] == "2"
    assert lines[2].split()[2:4] == ["1", "2"]  # one server, two tools

    assert (await store.write(C)).skipped == "pinned"
    unpinned = await invoke(kubeconfig, "unpin")
    assert unpinned.exit_code == 0, unpinned.output
    assert (await store.write(C)).revision == 4

    missing = await invoke(kubeconfig, "rollback", "1")
    assert missing.exit_code == 1
    assert "not kept" in missing.output


async def test_cli_export_from_the_cluster(kubeconfig: Path, store: CatalogStore, tmp_path: Path) -> None:
    await store.write(C)
    target = tmp_path / "mcp_config.json"

    result = await invoke(kubeconfig, "export", "--format", "json", "--output", str(target))

    assert result.exit_code == 0, result.output
    document = json.loads(target.read_text())
    assert document["revision"] == 1
    assert [s["prefix"] for s in document["servers"]] == ["k8s", "cmdb"]


async def test_cli_export_watch_follows_the_cluster(kubeconfig: Path, store: CatalogStore, tmp_path: Path) -> None:
    await store.write(A)
    target = tmp_path / ".mcp.json"
    command = [sys.executable, "-m", "mcpfleet_cli.main", "catalog", "export", "--format", "claude", "--direct"]
    command += ["--output", str(target), "--watch", "--namespace", NS, "--kubeconfig", str(kubeconfig)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=PIPE, stderr=PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:

        def servers_in_file() -> set[str]:
            return set(json.loads(target.read_text())["mcpServers"]) if target.exists() else set()

        async def first_export() -> bool:
            return servers_in_file() == {"mcpfleet-k8s"}

        async def second_export() -> bool:
            return servers_in_file() == {"mcpfleet-k8s", "mcpfleet-cmdb"}

        await eventually(first_export, within=30)
        await store.write(C)
        await eventually(second_export, within=30)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        print(out.decode(), err.decode(), sep="\n")  # shown by pytest when the test fails
    assert process.returncode == 0, err.decode()
    written = [line for line in out.decode().splitlines() if line.startswith("wrote")]
    assert len(written) == 2, out.decode()
