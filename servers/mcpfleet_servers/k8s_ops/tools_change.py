"""The k8s-ops tools that change the cluster: scale, restart, rollback, server-side apply, delete, exec.

Every change is checked against the namespace policy before the first request: protected namespaces
(K8S_PROTECTED_NAMESPACES) and namespaces outside K8S_ALLOWED_NAMESPACES are refused.
"""

import copy
import datetime
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.toolkit import F, InvalidArgument, NotFound, Precheck, Toolset
from mcpfleet_servers.k8s_ops.client import APPLY_PATCH, DEPLOYMENT, MERGE_PATCH, ResourceType, Target
from mcpfleet_servers.k8s_ops.common import ChangeResult, ContextArg, Deps, NameArg, NamespaceArg
from mcpfleet_servers.k8s_ops.manifests import FieldChange, diff_objects, parse_manifests
from mcpfleet_servers.k8s_ops.models import REVISION
from mcpfleet_servers.k8s_ops.redact import redact_object, redact_text
from mcpfleet_servers.k8s_ops.tools_read import ApiVersionArg, KindArg, owned_replicasets

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_MAX_DOCUMENTS = 50
_MAX_CHANGES_SHOWN = 200


class AppliedObject(BaseModel):
    api_version: str = Field(description="apiVersion of the object.")
    kind: str = Field(description="Kind of the object.")
    namespace: str | None = Field(default=None, description="Namespace, null for cluster-scoped objects.")
    name: str = Field(description="Object name.")
    action: Literal["create", "update", "unchanged"] = Field(description="What the apply does to this object.")
    changes: list[FieldChange] = Field(description="Fields the apply changes (values redacted).")
    changes_truncated: bool = Field(default=False, description="True when more changes exist than shown.")
    applied: bool = Field(description="False for a dry run; True once the change was made.")


class ApplyResult(BaseModel):
    dry_run: bool = Field(description="True when nothing was changed (dry_run_only).")
    objects: list[AppliedObject] = Field(description="Per object: what the server-side dry run said would change.")
    message: str = Field(description="One sentence for the user.")


class ExecResult(BaseModel):
    namespace: str = Field(description="Namespace of the pod.")
    pod: str = Field(description="Pod name.")
    container: str | None = Field(default=None, description="Container, when named.")
    output: str = Field(description="stdout and stderr of the command (credentials masked, bounded).")
    truncated: bool = Field(description="True when the output was cut to the budget.")


def restart_patch(now: datetime.datetime | None = None) -> dict[str, Any]:
    """The merge patch of ``kubectl rollout restart``: a new restartedAt annotation on the pod template."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def rollback_template(replicaset: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's pod template as a Deployment template: without the pod-template-hash label."""
    template = copy.deepcopy(((replicaset.get("spec") or {}).get("template")) or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    return template


def replacement_patch(current: Any, desired: Any) -> Any:
    """A JSON merge patch (RFC 7386) turning ``current`` into exactly ``desired``: removed keys become null."""
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return copy.deepcopy(desired)
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            patch[key] = replacement_patch(current[key], value)
    return patch


def register_change(toolset: Toolset, deps: Deps) -> None:  # noqa: PLR0915 - one closure per tool
    backend, settings, budget = deps.backend, deps.settings, deps.budget
    denied = settings.denied_kinds

    def high(precheck: Precheck) -> Callable[[F], F]:
        # The precheck runs the call's policy checks before the user is asked to confirm it.
        return toolset.tool(risk=Risk.HIGH, read_only=False, destructive=True, precheck=precheck)

    async def namespace_writable(namespace: str | None = None, **_: Any) -> None:
        deps.writable(namespace)

    async def patch_deployment(ns: str, name: str, body: dict[str, Any], context: str | None) -> None:
        # Merge patches, recorded under the server's own field manager so later applies name it in conflicts.
        await backend.request(
            "PATCH",
            DEPLOYMENT.path(ns, name),
            Target("patch", DEPLOYMENT, ns, name),
            context=context,
            body=body,
            query=[("fieldManager", settings.field_manager)],
            content_type=MERGE_PATCH,
        )

    @toolset.tool(risk=Risk.MEDIUM, read_only=False, destructive=False, idempotent=True)
    async def scale_deployment(
        name: NameArg,
        replicas: Annotated[int, Field(ge=0, le=1000, description="Desired number of replicas.")],
        namespace: NamespaceArg = None,
        context: ContextArg = None,
    ) -> ChangeResult:
        """Set a deployment's replica count (refused in protected namespaces)."""
        ns = deps.writable(namespace)
        current = await backend.request(
            "GET", DEPLOYMENT.path(ns, name), Target("get", DEPLOYMENT, ns, name), context=context
        )
        before = (current.get("spec") or {}).get("replicas")
        await patch_deployment(ns, name, {"spec": {"replicas": replicas}}, context)
        return ChangeResult(
            kind="Deployment",
            namespace=ns,
            name=name,
            action="scaled",
            message=f"deployment {ns}/{name} scaled from {before} to {replicas} replicas",
            before=None if before is None else str(before),
            after=str(replicas),
        )

    @high(namespace_writable)
    async def restart_deployment(
        name: NameArg, namespace: NamespaceArg = None, context: ContextArg = None
    ) -> ChangeResult:
        """Rolling restart of a deployment's pods (kubectl rollout restart: a new restartedAt template annotation)."""
        ns = deps.writable(namespace)
        patch = restart_patch()
        stamp = patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        await patch_deployment(ns, name, patch, context)
        return ChangeResult(
            kind="Deployment",
            namespace=ns,
            name=name,
            action="restarted",
            message=f"deployment {ns}/{name} restarting; follow it with rollout_status",
            after=stamp,
        )

    @high(namespace_writable)
    async def rollback_deployment(
        name: NameArg,
        to_revision: Annotated[
            int | None,
            Field(ge=1, description="Revision to return to (see rollout_history); default: the previous one."),
        ] = None,
        namespace: NamespaceArg = None,
        context: ContextArg = None,
    ) -> ChangeResult:
        """Roll a deployment back to the pod template of an earlier revision, taken from its ReplicaSet."""
        ns = deps.writable(namespace)
        dep = await backend.request(
            "GET", DEPLOYMENT.path(ns, name), Target("get", DEPLOYMENT, ns, name), context=context
        )
        history = await owned_replicasets(deps, dep, ns, context)
        current = int(((dep.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)
        known = [rev for rev, _ in history]
        if to_revision is None:
            older = [rev for rev in known if rev < current] if current else known[1:]
            if not older:
                raise InvalidArgument("to_revision", f"deployment {ns}/{name} has no earlier revision to roll back to")
            to_revision = older[0]
        chosen = next((rs for rev, rs in history if rev == to_revision), None)
        if chosen is None:
            raise InvalidArgument(
                "to_revision", f"no revision {to_revision} of deployment {ns}/{name}; known: {known or 'none'}"
            )
        if to_revision == current:
            return ChangeResult(
                kind="Deployment",
                namespace=ns,
                name=name,
                action="unchanged",
                message=f"deployment {ns}/{name} already runs revision {current}",
                before=str(current),
                after=str(current),
            )
        template = (dep.get("spec") or {}).get("template") or {}
        patch = {
            "metadata": {"resourceVersion": (dep.get("metadata") or {}).get("resourceVersion")},
            "spec": {"template": replacement_patch(template, rollback_template(chosen))},
        }
        await patch_deployment(ns, name, patch, context)
        return ChangeResult(
            kind="Deployment",
            namespace=ns,
            name=name,
            action="rolled back",
            message=f"deployment {ns}/{name} rolled back to the template of revision {to_revision}",
            before=str(current or "unknown"),
            after=str(to_revision),
        )

    async def _plan(
        doc: dict[str, Any], namespace: str | None, context: str | None
    ) -> tuple[ResourceType, str | None, dict[str, Any]]:
        rtype = await backend.resolve(str(doc["kind"]), str(doc["apiVersion"]), context)
        meta = doc.setdefault("metadata", {})
        name = str(meta["name"])
        if rtype.namespaced:
            doc_ns = meta.get("namespace")
            if doc_ns and namespace and doc_ns != namespace:
                raise InvalidArgument(
                    "namespace", f"{rtype.kind} {name} names namespace {doc_ns!r} but the call names {namespace!r}"
                )
            ns = deps.writable(doc_ns or namespace)
            meta["namespace"] = ns
            return rtype, ns, doc
        meta.pop("namespace", None)
        deps.check_cluster_scoped_change(rtype, name)
        return rtype, None, doc

    async def _apply(
        rtype: ResourceType, ns: str | None, doc: dict[str, Any], *, dry_run: bool, force: bool, context: str | None
    ) -> dict[str, Any]:
        name = str(doc["metadata"]["name"])
        query = [("fieldManager", settings.field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        return await backend.request(
            "PATCH",
            rtype.path(ns, name),
            Target("patch", rtype, ns, name),
            context=context,
            query=query,
            body=doc,
            content_type=APPLY_PATCH,
        )

    async def apply_allowed(manifest: str, namespace: str | None = None, context: str | None = None, **_: Any) -> None:
        for doc in parse_manifests(manifest):
            await _plan(doc, namespace, context)

    @high(apply_allowed)
    async def apply_manifest(
        manifest: Annotated[
            str, Field(min_length=1, max_length=1_000_000, description="YAML or JSON; several documents allowed.")
        ],
        namespace: NamespaceArg = None,
        dry_run_only: Annotated[bool, Field(description="Only show what would change; change nothing.")] = False,
        force_conflicts: Annotated[bool, Field(description="Take over fields other managers own.")] = False,
        context: ContextArg = None,
    ) -> ApplyResult:
        """Server-side apply of manifests. Always runs a server-side dry run first and returns the diff of what
        changes; with dry_run_only nothing is written. Refused in protected namespaces."""
        docs = parse_manifests(manifest)
        if len(docs) > _MAX_DOCUMENTS:
            raise InvalidArgument("manifest", f"holds {len(docs)} documents; at most {_MAX_DOCUMENTS} per call")
        plans = [await _plan(doc, namespace, context) for doc in docs]  # every policy check before any write
        results: list[AppliedObject] = []
        for rtype, ns, doc in plans:
            name = str(doc["metadata"]["name"])
            try:
                current: dict[str, Any] | None = await backend.request(
                    "GET", rtype.path(ns, name), Target("get", rtype, ns, name), context=context
                )
            except NotFound:
                current = None
            preview = await _apply(rtype, ns, doc, dry_run=True, force=force_conflicts, context=context)
            after = redact_object(preview or doc, denied, rtype.kind)
            changes = [] if current is None else diff_objects(redact_object(current, denied, rtype.kind), after)
            action: Literal["create", "update", "unchanged"] = (
                "create" if current is None else "update" if changes else "unchanged"
            )
            if current is None:
                changes = diff_objects(None, after)
            results.append(
                AppliedObject(
                    api_version=rtype.api_version,
                    kind=rtype.kind,
                    namespace=ns,
                    name=name,
                    action=action,
                    changes=changes[:_MAX_CHANGES_SHOWN],
                    changes_truncated=len(changes) > _MAX_CHANGES_SHOWN,
                    applied=False,
                )
            )
        if not dry_run_only:
            for (rtype, ns, doc), result in zip(plans, results, strict=True):
                if result.action != "unchanged":
                    await _apply(rtype, ns, doc, dry_run=False, force=force_conflicts, context=context)
                    result.applied = True
        counts = {a: sum(1 for r in results if r.action == a) for a in ("create", "update", "unchanged")}
        summary = ", ".join(f"{n} to {a}" for a, n in counts.items() if n) or "nothing"
        return ApplyResult(
            dry_run=dry_run_only,
            objects=results,
            message=("dry run: " if dry_run_only else "applied: ") + summary,
        )

    async def delete_allowed(
        kind: str,
        name: str,
        namespace: str | None = None,
        api_version: str | None = None,
        context: str | None = None,
        **_: Any,
    ) -> None:
        rtype = await backend.resolve(kind, api_version, context)
        if rtype.namespaced:
            deps.writable(namespace)
        else:
            deps.check_cluster_scoped_change(rtype, name)

    @high(delete_allowed)
    async def delete_resource(
        kind: KindArg,
        name: NameArg,
        namespace: NamespaceArg = None,
        api_version: ApiVersionArg = None,
        propagation: Annotated[
            Literal["Background", "Foreground", "Orphan"], Field(description="What happens to dependents.")
        ] = "Background",
        context: ContextArg = None,
    ) -> ChangeResult:
        """Delete one object of any kind (refused in protected namespaces and for protected Namespace objects)."""
        rtype = await backend.resolve(kind, api_version, context)
        if rtype.namespaced:
            ns: str | None = deps.writable(namespace)
        else:
            ns = None
            deps.check_cluster_scoped_change(rtype, name)
        await backend.request(
            "DELETE",
            rtype.path(ns, name),
            Target("delete", rtype, ns, name),
            context=context,
            body={"propagationPolicy": propagation},
            content_type="application/json",
        )
        where = f"{ns}/" if ns else ""
        return ChangeResult(
            kind=rtype.kind,
            namespace=ns,
            name=name,
            action="deleted",
            message=f"{rtype.kind} {where}{name} deleted ({propagation} propagation)",
        )

    if settings.exec_enabled:

        @high(namespace_writable)
        async def exec_in_pod(
            name: NameArg,
            command: Annotated[
                list[Annotated[str, Field(max_length=4096)]],
                Field(min_length=1, max_length=64, description='Command and arguments, e.g. ["cat", "/etc/hosts"].'),
            ],
            namespace: NamespaceArg = None,
            container: Annotated[
                str | None, Field(max_length=253, description="Container; default: the first.")
            ] = None,
            context: ContextArg = None,
        ) -> ExecResult:
            """Run a command in a pod's container (pods/exec over a websocket) and return its output, bounded and
            with credentials masked. Only offered when K8S_EXEC_ENABLED is true."""
            ns = deps.writable(namespace)
            output = redact_text(await backend.exec(ns, name, command, container, context))
            data = output.encode()
            truncated = len(data) > budget.max_bytes
            if truncated:
                output = data[: budget.max_bytes].decode("utf-8", "ignore")
            return ExecResult(namespace=ns, pod=name, container=container, output=output, truncated=truncated)
