"""The read-only k8s-ops tools (SAFE): cluster, namespaces, pods, logs, deployments, services, events, nodes,
metrics and any kind through discovery. Lists are bounded pages of compact summaries; objects are trimmed
and redacted."""

import difflib
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.paging import Page, decode_token, encode_token, paginate, query_fingerprint
from mcpfleet_servers.base.toolkit import InvalidArgument, NotFound, ToolFailure, Toolset
from mcpfleet_servers.k8s_ops.client import (
    DEPLOYMENT,
    EVENT,
    NAMESPACE,
    NODE,
    NODE_METRICS,
    POD,
    POD_METRICS,
    REPLICASET,
    SERVICE,
    ResourceType,
    Target,
    labels_match,
)
from mcpfleet_servers.k8s_ops.common import (
    AllNamespacesArg,
    ContextArg,
    ContinueArg,
    Deps,
    FieldSelectorArg,
    LabelSelectorArg,
    LimitArg,
    NameArg,
    NamespaceArg,
)
from mcpfleet_servers.k8s_ops.logs import read_log_page
from mcpfleet_servers.k8s_ops.models import (
    REVISION,
    ContainerState,
    DeploymentSummary,
    EventSummary,
    JsonObject,
    NamespaceSummary,
    NodeSummary,
    ObjectResult,
    PodSummary,
    ResourceSummary,
    ServiceSummary,
    age,
    container_states,
    deployment_summary,
    event_summary,
    event_time,
    node_summary,
    object_result,
    pod_summary,
    resource_summary,
    service_summary,
)
from mcpfleet_servers.k8s_ops.redact import redact_object

_MAX_EVENTS_SCANNED = 5000
_MAX_OWNER_DEPTH = 5
_METRICS_SCAN = 5000

KindArg = Annotated[
    str, Field(min_length=1, max_length=253, description="Kind, plural or short name, e.g. Deployment, pods, cm.")
]
ApiVersionArg = Annotated[
    str | None,
    Field(max_length=253, description="apiVersion to pick among kinds of the same name, e.g. apps/v1."),
]


class ClusterInfo(BaseModel):
    server: str = Field(description="URL of the API server.")
    version: str | None = Field(default=None, description="Kubernetes version (gitVersion).")
    platform: str | None = Field(default=None, description="Platform of the API server.")
    nodes_total: int = Field(description="Nodes counted (at most the budget).")
    nodes_ready: int = Field(description="Nodes whose Ready condition is True.")
    nodes_note: str | None = Field(default=None, description="Set when not every node was counted.")
    contexts: list[str] = Field(description="Contexts in the server's kubeconfig (empty in-cluster).")
    current_context: str | None = Field(default=None, description="Context used when a tool names none.")
    default_namespace: str = Field(description="Namespace used when a tool names none (K8S_NAMESPACE).")
    protected_namespaces: list[str] = Field(description="Namespaces that are read-only (K8S_PROTECTED_NAMESPACES).")
    allowed_namespaces: list[str] = Field(description="Namespaces the tools may touch; empty means all.")


class PodDetail(BaseModel):
    summary: PodSummary = Field(description="The pod in one line.")
    containers: list[ContainerState] = Field(description="Per-container state.")
    conditions: list[JsonObject] = Field(description="Pod conditions.")
    object: JsonObject = Field(description="The pod, trimmed and redacted (env shows secret references only).")


class LogPage(BaseModel):
    namespace: str = Field(description="Namespace of the pod.")
    pod: str = Field(description="Pod name.")
    container: str | None = Field(default=None, description="Container, when named.")
    text: str = Field(description="Log lines of this page (credentials masked).")
    lines: int = Field(description="Lines on this page.")
    truncated: bool = Field(description="True when more log follows this page.")
    continue_token: str | None = Field(default=None, description="Pass back as continue_token for the next page.")
    note: str | None = Field(default=None, description="Why the page was cut, in words.")


class DeploymentDetail(BaseModel):
    summary: DeploymentSummary = Field(description="The deployment in one line.")
    conditions: list[JsonObject] = Field(description="Deployment conditions.")
    object: JsonObject = Field(description="The deployment, trimmed and redacted.")


class RolloutStatus(BaseModel):
    namespace: str = Field(description="Namespace.")
    name: str = Field(description="Deployment name.")
    done: bool = Field(description="True when the rollout is complete.")
    message: str = Field(description="What kubectl rollout status would say.")
    desired: int = Field(description="Desired replicas.")
    updated: int = Field(description="Replicas on the new template.")
    ready: int = Field(description="Ready replicas.")
    available: int = Field(description="Available replicas.")
    revision: str | None = Field(default=None, description="Current revision.")


class Revision(BaseModel):
    revision: int = Field(description="Revision number (deployment.kubernetes.io/revision).")
    replicaset: str = Field(description="ReplicaSet holding that revision's template.")
    images: list[str] = Field(description="Images of that template.")
    change_cause: str | None = Field(default=None, description="kubernetes.io/change-cause, when recorded.")
    replicas: int = Field(description="Replicas the ReplicaSet currently has.")
    current: bool = Field(description="True for the revision the deployment runs now.")
    age: str | None = Field(default=None, description="Age of the ReplicaSet.")


class RolloutHistory(BaseModel):
    namespace: str = Field(description="Namespace.")
    name: str = Field(description="Deployment name.")
    revisions: list[Revision] = Field(description="Revisions, newest first (one page of them).")
    truncated: bool = Field(default=False, description="True when older revisions exist than this page holds.")
    continue_token: str | None = Field(default=None, description="Pass back as continue_token for older revisions.")
    note: str | None = Field(default=None, description="Why the page was cut, in words.")


class ServiceDetail(BaseModel):
    summary: ServiceSummary = Field(description="The service in one line.")
    object: JsonObject = Field(description="The service, trimmed and redacted.")


class OwnerLink(BaseModel):
    kind: str = Field(description="Owner kind.")
    name: str = Field(description="Owner name.")
    found: bool = Field(description="False when the owner could not be read.")


class Description(BaseModel):
    summary: ResourceSummary = Field(description="The object in one line.")
    object: JsonObject = Field(description="The object, trimmed and redacted (denied kinds: metadata only).")
    owners: list[OwnerLink] = Field(description="Owner chain, nearest first (e.g. ReplicaSet, Deployment).")
    events: list[EventSummary] = Field(description="Recent events about the object, newest first.")


class PodUsage(BaseModel):
    namespace: str = Field(description="Namespace.")
    name: str = Field(description="Pod name.")
    cpu_millicores: float = Field(description="CPU use in millicores.")
    memory_mib: float = Field(description="Memory use in MiB.")


class NodeUsage(BaseModel):
    name: str = Field(description="Node name.")
    cpu_millicores: float = Field(description="CPU use in millicores.")
    memory_mib: float = Field(description="Memory use in MiB.")


_CPU = re.compile(r"^([0-9.]+)(n|u|m)?$")
_MEM = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def cpu_millicores(quantity: str) -> float:
    match = _CPU.match(quantity or "0")
    if not match:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value * {"n": 1e-6, "u": 1e-3, "m": 1.0, None: 1000.0}[unit]


def memory_mib(quantity: str) -> float:
    match = _MEM.match(quantity or "0")
    if not match:
        return 0.0
    factors = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    return round(float(match.group(1)) * factors.get(match.group(2) or "", 1) / 1024**2, 2)


def register_read(toolset: Toolset, deps: Deps) -> None:  # noqa: PLR0915 - one closure per tool
    backend, settings, budget = deps.backend, deps.settings, deps.budget
    denied = settings.denied_kinds
    read = toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True)

    @read
    async def cluster_info(context: ContextArg = None) -> ClusterInfo:
        """Version and address of the Kubernetes API server, node readiness, kubeconfig contexts and the
        namespace policy of this server."""
        server = await backend.server_url(context)
        version = await backend.request("GET", "/version", Target("get", None, None, "version"), context=context)
        nodes = await backend.request(
            "GET", NODE.path(), Target("list", NODE), context=context, query=[("limit", str(budget.max_items))]
        )
        items = nodes.get("items") or []
        more = bool((nodes.get("metadata") or {}).get("continue"))
        return ClusterInfo(
            server=server,
            version=version.get("gitVersion"),
            platform=version.get("platform"),
            nodes_total=len(items),
            nodes_ready=sum(1 for n in items if node_summary(n).ready),
            nodes_note=f"counted the first {len(items)} nodes; use list_nodes for all" if more else None,
            contexts=backend.contexts,
            current_context=context or backend.current_context,
            default_namespace=settings.namespace,
            protected_namespaces=list(settings.protected_namespaces),
            allowed_namespaces=list(settings.allowed_namespaces),
        )

    @read
    async def list_namespaces(
        limit: LimitArg = None, continue_token: ContinueArg = None, context: ContextArg = None
    ) -> Page[NamespaceSummary]:
        """Namespaces (only those in K8S_ALLOWED_NAMESPACES when set), with phase and whether changes are refused."""

        def convert(obj: dict[str, Any]) -> NamespaceSummary | None:
            meta = obj.get("metadata") or {}
            name = str(meta.get("name") or "")
            if not settings.is_allowed(name):
                return None
            return NamespaceSummary(
                name=name,
                phase=(obj.get("status") or {}).get("phase"),
                protected=settings.is_protected(name),
                age=age(meta.get("creationTimestamp")),
            )

        return await backend.list_page(
            NAMESPACE,
            namespace=None,
            convert=convert,
            budget=budget,
            limit=limit,
            token=continue_token,
            fingerprint=query_fingerprint(tool="list_namespaces", context=context),
            context=context,
        )

    def _scoped(convert: Any) -> Any:
        def keep(obj: dict[str, Any]) -> Any:
            if not deps.in_scope((obj.get("metadata") or {}).get("namespace")):
                return None
            return convert(obj)

        return keep

    @read
    async def list_pods(
        namespace: NamespaceArg = None,
        all_namespaces: AllNamespacesArg = False,
        label_selector: LabelSelectorArg = None,
        field_selector: FieldSelectorArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[PodSummary]:
        """Pods of a namespace (or all allowed namespaces) as one-line summaries: status, readiness, restarts,
        node. Paged: pass continue_token back for more."""
        scope = deps.list_scope(namespace, all_namespaces)
        return await backend.list_page(
            POD,
            namespace=scope,
            convert=_scoped(pod_summary),
            budget=budget,
            limit=limit,
            token=continue_token,
            fingerprint=query_fingerprint(
                tool="list_pods", ns=scope, ls=label_selector, fs=field_selector, context=context
            ),
            label_selector=label_selector,
            field_selector=field_selector,
            context=context,
        )

    @read
    async def get_pod(name: NameArg, namespace: NamespaceArg = None, context: ContextArg = None) -> PodDetail:
        """One pod: summary, container states, conditions and the trimmed object (secret values never shown)."""
        ns = deps.readable(namespace)
        pod = await backend.request("GET", POD.path(ns, name), Target("get", POD, ns, name), context=context)
        return PodDetail(
            summary=pod_summary(pod),
            containers=container_states(pod),
            conditions=list((pod.get("status") or {}).get("conditions") or []),
            object=redact_object(pod, denied, "Pod"),
        )

    @read
    async def get_pod_logs(
        name: NameArg,
        namespace: NamespaceArg = None,
        container: Annotated[
            str | None, Field(max_length=253, description="Container; needed for multi-container pods.")
        ] = None,
        tail_lines: Annotated[int | None, Field(ge=1, le=100_000, description="Only the last N lines.")] = None,
        since_seconds: Annotated[
            int | None, Field(ge=1, le=30 * 86400, description="Only lines newer than this.")
        ] = None,
        previous: Annotated[bool, Field(description="Logs of the previous (crashed) container instance.")] = False,
        grep: Annotated[
            str | None, Field(max_length=512, description="Only lines matching this regular expression.")
        ] = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> LogPage:
        """Container logs from the pods/log subresource, bounded by the output budget with a continue_token;
        tokens, passwords and keys in log lines are masked."""
        ns = deps.readable(namespace)
        pattern: re.Pattern[str] | None = None
        if grep:
            try:
                pattern = re.compile(grep)
            except re.error as exc:
                raise InvalidArgument("grep", f"not a regular expression: {exc}") from None
        fingerprint = query_fingerprint(
            tool="get_pod_logs",
            ns=ns,
            name=name,
            c=container,
            t=tail_lines,
            s=since_seconds,
            p=previous,
            g=grep,
            context=context,
        )
        offset = decode_token(continue_token, fingerprint) or 0
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument("continue_token", "not a continuation token of this log")
        query: list[tuple[str, str]] = []
        if container:
            query.append(("container", container))
        if tail_lines:
            query.append(("tailLines", str(tail_lines)))
        if since_seconds:
            query.append(("sinceSeconds", str(since_seconds)))
        if previous:
            query.append(("previous", "true"))
        limit_bytes = None if pattern else offset + budget.max_bytes + 1
        if limit_bytes is not None:
            query.append(("limitBytes", str(limit_bytes)))
        target = Target("get", POD, ns, name, "log")
        try:
            async with backend.stream(POD.path(ns, name, "log"), target, context=context, query=query) as chunks:
                page = await read_log_page(
                    chunks, offset=offset, max_bytes=budget.max_bytes, grep=pattern, limit_bytes=limit_bytes
                )
        except (InvalidArgument, NotFound) as exc:
            raise _log_error(ns, name, exc) from None
        if offset == 0 and not page.text and page.next_offset is None:
            # A real API server answers 204 No Content (not an error) for a pod that has no node yet.
            pod = await backend.request("GET", POD.path(ns, name), Target("get", POD, ns, name), context=context)
            if not (pod.get("spec") or {}).get("nodeName"):
                phase = (pod.get("status") or {}).get("phase") or "Unknown"
                raise ToolFailure(
                    f"pod {ns}/{name} has no logs: it has no node assigned (phase {phase}), so its containers "
                    "never started. Check get_pod and list_events for why it is not scheduled."
                )
        more = page.next_offset is not None
        note = None
        if more:
            note = f"cut at {budget.max_bytes} bytes; pass continue_token for the next page"
        if page.cut_long_lines:
            note = (note or "") + f" ({page.cut_long_lines} overlong line(s) shortened)"
        return LogPage(
            namespace=ns,
            pod=name,
            container=container,
            text=page.text,
            lines=page.lines,
            truncated=more,
            continue_token=encode_token(page.next_offset, fingerprint) if more else None,
            note=note,
        )

    @read
    async def list_deployments(
        namespace: NamespaceArg = None,
        all_namespaces: AllNamespacesArg = False,
        label_selector: LabelSelectorArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[DeploymentSummary]:
        """Deployments as one-line summaries: desired/ready/updated/available replicas, images, revision."""
        scope = deps.list_scope(namespace, all_namespaces)
        return await backend.list_page(
            DEPLOYMENT,
            namespace=scope,
            convert=_scoped(deployment_summary),
            budget=budget,
            limit=limit,
            token=continue_token,
            fingerprint=query_fingerprint(tool="list_deployments", ns=scope, ls=label_selector, context=context),
            label_selector=label_selector,
            context=context,
        )

    @read
    async def get_deployment(
        name: NameArg, namespace: NamespaceArg = None, context: ContextArg = None
    ) -> DeploymentDetail:
        """One deployment: summary, conditions and the trimmed object (secret values never shown)."""
        ns = deps.readable(namespace)
        dep = await backend.request(
            "GET", DEPLOYMENT.path(ns, name), Target("get", DEPLOYMENT, ns, name), context=context
        )
        return DeploymentDetail(
            summary=deployment_summary(dep),
            conditions=list((dep.get("status") or {}).get("conditions") or []),
            object=redact_object(dep, denied, "Deployment"),
        )

    @read
    async def rollout_status(
        name: NameArg, namespace: NamespaceArg = None, context: ContextArg = None
    ) -> RolloutStatus:
        """Whether a deployment's rollout is complete, as kubectl rollout status judges it."""
        ns = deps.readable(namespace)
        dep = await backend.request(
            "GET", DEPLOYMENT.path(ns, name), Target("get", DEPLOYMENT, ns, name), context=context
        )
        return rollout_state(dep)

    @read
    async def rollout_history(
        name: NameArg,
        namespace: NamespaceArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> RolloutHistory:
        """Revisions of a deployment from its ReplicaSets (revision annotation), newest first."""
        ns = deps.readable(namespace)
        dep, sets = await _history(ns, name, context)
        current = (dep.get("metadata") or {}).get("annotations", {}).get(REVISION)
        revisions = [
            Revision(
                revision=rev,
                replicaset=str(rs["metadata"]["name"]),
                images=[
                    str(c.get("image"))
                    for c in (((rs.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
                ],
                change_cause=(rs["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause"),
                replicas=int((rs.get("status") or {}).get("replicas") or 0),
                current=str(rev) == str(current),
                age=age(rs["metadata"].get("creationTimestamp")),
            )
            for rev, rs in sets
        ]
        page = paginate(
            revisions,
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(tool="rollout_history", ns=ns, name=name, context=context),
        )
        return RolloutHistory(
            namespace=ns,
            name=name,
            revisions=page.items,
            truncated=page.truncated,
            continue_token=page.continue_token,
            note=page.note,
        )

    async def _history(
        ns: str, name: str, context: str | None
    ) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
        dep = await backend.request(
            "GET", DEPLOYMENT.path(ns, name), Target("get", DEPLOYMENT, ns, name), context=context
        )
        return dep, await owned_replicasets(deps, dep, ns, context)

    @read
    async def list_services(
        namespace: NamespaceArg = None,
        all_namespaces: AllNamespacesArg = False,
        label_selector: LabelSelectorArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[ServiceSummary]:
        """Services as one-line summaries: type, cluster IP, external addresses, ports, selector."""
        scope = deps.list_scope(namespace, all_namespaces)
        return await backend.list_page(
            SERVICE,
            namespace=scope,
            convert=_scoped(service_summary),
            budget=budget,
            limit=limit,
            token=continue_token,
            fingerprint=query_fingerprint(tool="list_services", ns=scope, ls=label_selector, context=context),
            label_selector=label_selector,
            context=context,
        )

    @read
    async def get_service(name: NameArg, namespace: NamespaceArg = None, context: ContextArg = None) -> ServiceDetail:
        """One service: summary and the trimmed object."""
        ns = deps.readable(namespace)
        svc = await backend.request("GET", SERVICE.path(ns, name), Target("get", SERVICE, ns, name), context=context)
        return ServiceDetail(summary=service_summary(svc), object=redact_object(svc, denied, "Service"))

    @read
    async def list_events(
        namespace: NamespaceArg = None,
        kind: Annotated[
            str | None, Field(max_length=253, description="Only events about objects of this kind.")
        ] = None,
        name: Annotated[
            str | None, Field(max_length=253, description="Only events about the object of this name.")
        ] = None,
        warnings_only: Annotated[bool, Field(description="Only Warning events.")] = False,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[EventSummary]:
        """Events of a namespace, or about one object (kind and/or name), newest first; messages redacted."""
        ns = deps.readable(namespace)
        scan = EventScan()
        events = await namespace_events(deps, ns, kind, name, context, scan)
        if warnings_only:
            events = [e for e in events if e.type == "Warning"]
        page = paginate(
            events,
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(tool="list_events", ns=ns, k=kind, n=name, w=warnings_only, context=context),
        )
        if scan.capped:
            # The API lists events by name, not time: past the scan limit the newest may be missing.
            capped = (
                f"only the first {_MAX_EVENTS_SCANNED} events of the namespace were read, so newer ones may be "
                "missing; narrow with kind and name"
            )
            page.note = f"{page.note}; {capped}" if page.note else capped
        return page

    @read
    async def describe_resource(
        kind: KindArg,
        name: NameArg,
        namespace: NamespaceArg = None,
        api_version: ApiVersionArg = None,
        context: ContextArg = None,
    ) -> Description:
        """Any object (any kind, custom resources too): a summary, the trimmed object, its owner chain and the
        recent events about it. Denied kinds (Secrets) show metadata only."""
        rtype = await _resolve(kind, api_version, context)
        ns = deps.scope_for(rtype, namespace, write=False)
        obj = await backend.request("GET", rtype.path(ns, name), Target("get", rtype, ns, name), context=context)
        owners = await _owner_chain(obj, ns, context)
        events: list[EventSummary] = []
        if ns is not None:
            try:
                events = (await namespace_events(deps, ns, rtype.kind, name, context))[:20]
            except (ToolFailure, InvalidArgument):
                events = []
        return Description(
            summary=resource_summary(obj, rtype.api_version, rtype.kind, denied),
            object=redact_object(obj, denied, rtype.kind),
            owners=owners,
            events=events,
        )

    async def _owner_chain(obj: dict[str, Any], ns: str | None, context: str | None) -> list[OwnerLink]:
        chain: list[OwnerLink] = []
        current = obj
        for _ in range(_MAX_OWNER_DEPTH):
            refs = (current.get("metadata") or {}).get("ownerReferences") or []
            ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
            if ref is None:
                break
            kind, owner = str(ref.get("kind")), str(ref.get("name"))
            try:
                rtype = await backend.resolve(kind, ref.get("apiVersion"), context)
                current = await backend.request(
                    "GET", rtype.path(ns, owner), Target("get", rtype, ns, owner), context=context
                )
            except (ToolFailure, InvalidArgument):
                chain.append(OwnerLink(kind=kind, name=owner, found=False))
                break
            chain.append(OwnerLink(kind=kind, name=owner, found=True))
        return chain

    async def _resolve(kind: str, api_version: str | None, context: str | None) -> ResourceType:
        try:
            return await backend.resolve(kind, api_version, context)
        except InvalidArgument:
            known = sorted({t.kind for t in await backend.discover(context)})
            close = difflib.get_close_matches(kind, known, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; served kinds include {', '.join(known[:30])}"
            where = f" in {api_version}" if api_version else ""
            raise InvalidArgument("kind", f"the API server serves no kind {kind!r}{where}{hint}") from None

    @read
    async def list_resources(
        kind: KindArg,
        api_version: ApiVersionArg = None,
        namespace: NamespaceArg = None,
        all_namespaces: AllNamespacesArg = False,
        label_selector: LabelSelectorArg = None,
        field_selector: FieldSelectorArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[ResourceSummary]:
        """Objects of any kind the API server serves (found through discovery, custom resources included) as
        one-line summaries. Denied kinds (Secrets) show type and key count, never data."""
        rtype = await _resolve(kind, api_version, context)
        scope = deps.list_scope(namespace, all_namespaces) if rtype.namespaced else None

        def convert(obj: dict[str, Any]) -> ResourceSummary | None:
            if rtype.namespaced and not deps.in_scope((obj.get("metadata") or {}).get("namespace")):
                return None
            return resource_summary(obj, rtype.api_version, rtype.kind, denied)

        return await backend.list_page(
            rtype,
            namespace=scope,
            convert=convert,
            budget=budget,
            limit=limit,
            token=continue_token,
            fingerprint=query_fingerprint(
                tool="list_resources",
                r=rtype.resource,
                v=rtype.version,
                ns=scope,
                ls=label_selector,
                fs=field_selector,
                context=context,
            ),
            label_selector=label_selector,
            field_selector=field_selector,
            context=context,
        )

    @read
    async def get_resource(
        kind: KindArg,
        name: NameArg,
        namespace: NamespaceArg = None,
        api_version: ApiVersionArg = None,
        context: ContextArg = None,
    ) -> ObjectResult:
        """One object of any kind (custom resources too), trimmed and redacted; Secrets show metadata only."""
        rtype = await _resolve(kind, api_version, context)
        ns = deps.scope_for(rtype, namespace, write=False)
        obj = await backend.request("GET", rtype.path(ns, name), Target("get", rtype, ns, name), context=context)
        return object_result(obj, rtype.api_version, rtype.kind, denied)

    @read
    async def list_nodes(
        label_selector: LabelSelectorArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[NodeSummary]:
        """Nodes as one-line summaries: readiness, roles, kubelet version, allocatable CPU and memory."""
        return await backend.list_page(
            NODE,
            namespace=None,
            convert=node_summary,
            budget=budget,
            limit=limit,
            token=continue_token,
            fingerprint=query_fingerprint(tool="list_nodes", ls=label_selector, context=context),
            label_selector=label_selector,
            context=context,
        )

    async def _metrics(rtype: ResourceType, ns: str | None, context: str | None) -> list[dict[str, Any]]:
        served = any(t.group == rtype.group and t.plural == rtype.plural for t in await backend.discover(context))
        try:
            if not served:
                raise NotFound(f"{rtype.group} is not in the API server's discovery")
            answer = await backend.request(
                "GET", rtype.path(ns), Target("list", rtype, ns), context=context, query=[("limit", str(_METRICS_SCAN))]
            )
        except NotFound:
            raise ToolFailure(
                "the metrics API (metrics.k8s.io) is not served by this cluster; install metrics-server to use "
                "top_pods and top_nodes"
            ) from None
        return list(answer.get("items") or [])

    @read
    async def top_pods(
        namespace: NamespaceArg = None,
        all_namespaces: AllNamespacesArg = False,
        label_selector: LabelSelectorArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
        context: ContextArg = None,
    ) -> Page[PodUsage]:
        """CPU and memory use of pods from metrics.k8s.io, highest CPU first; a clear error without metrics-server."""
        scope = deps.list_scope(namespace, all_namespaces)
        usage = []
        for item in await _metrics(POD_METRICS, scope, context):
            meta = item.get("metadata") or {}
            if not deps.in_scope(meta.get("namespace")) or not labels_match(meta.get("labels") or {}, label_selector):
                continue
            containers = item.get("containers") or []
            usage.append(
                PodUsage(
                    namespace=str(meta.get("namespace") or ""),
                    name=str(meta.get("name") or ""),
                    cpu_millicores=round(
                        sum(cpu_millicores((c.get("usage") or {}).get("cpu", "0")) for c in containers), 2
                    ),
                    memory_mib=round(sum(memory_mib((c.get("usage") or {}).get("memory", "0")) for c in containers), 2),
                )
            )
        usage.sort(key=lambda u: (-u.cpu_millicores, u.namespace, u.name))
        return paginate(
            usage,
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(tool="top_pods", ns=scope, ls=label_selector, context=context),
        )

    @read
    async def top_nodes(
        limit: LimitArg = None, continue_token: ContinueArg = None, context: ContextArg = None
    ) -> Page[NodeUsage]:
        """CPU and memory use of nodes from metrics.k8s.io, highest CPU first; a clear error without metrics-server."""
        usage = [
            NodeUsage(
                name=str((item.get("metadata") or {}).get("name") or ""),
                cpu_millicores=round(cpu_millicores((item.get("usage") or {}).get("cpu", "0")), 2),
                memory_mib=memory_mib((item.get("usage") or {}).get("memory", "0")),
            )
            for item in await _metrics(NODE_METRICS, None, context)
        ]
        usage.sort(key=lambda u: (-u.cpu_millicores, u.name))
        return paginate(
            usage,
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(tool="top_nodes", context=context),
        )


def _log_error(ns: str, name: str, exc: Exception) -> Exception:
    """The API cannot serve logs for pods that never ran (no node, still pending) or a wrong container."""
    text = str(exc)
    if isinstance(exc, NotFound):
        return NotFound(f"no logs for pod {ns}/{name}: {text}. The pod may not exist or may not be scheduled yet.")
    return ToolFailure(
        f"the API server cannot serve logs of pod {ns}/{name}: {text}. Pods without a node or whose container "
        "has not started have no logs; check get_pod and list_events."
    )


def rollout_state(dep: dict[str, Any]) -> RolloutStatus:
    """kubectl's rollout-status verdict from a Deployment's spec and status (pure)."""
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    name = str(meta.get("name") or "")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing") or {}
    done = False
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        message = f"waiting for deployment {name!r} spec update to be observed"
    elif progressing.get("reason") == "ProgressDeadlineExceeded":
        message = f"deployment {name!r} exceeded its progress deadline"
    elif updated < desired:
        message = f"waiting for rollout of {name!r}: {updated} of {desired} new replicas have been updated"
    elif total > updated:
        message = f"waiting for rollout of {name!r}: {total - updated} old replicas are pending termination"
    elif available < updated:
        message = f"waiting for rollout of {name!r}: {available} of {updated} updated replicas are available"
    else:
        done = True
        message = f"deployment {name!r} successfully rolled out"
    return RolloutStatus(
        namespace=str(meta.get("namespace") or ""),
        name=name,
        done=done,
        message=message,
        desired=desired,
        updated=updated,
        ready=ready,
        available=available,
        revision=(meta.get("annotations") or {}).get(REVISION),
    )


async def owned_replicasets(
    deps: Deps, dep: dict[str, Any], ns: str, context: str | None
) -> list[tuple[int, dict[str, Any]]]:
    """ReplicaSets the deployment controls, by revision, newest first."""
    uid = (dep.get("metadata") or {}).get("uid")
    selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or None
    query = [("labelSelector", label_selector)] if label_selector else []
    answer = await deps.backend.request(
        "GET", REPLICASET.path(ns), Target("list", REPLICASET, ns), context=context, query=query
    )
    name = (dep.get("metadata") or {}).get("name")
    result: list[tuple[int, dict[str, Any]]] = []
    for rs in answer.get("items") or []:
        meta = rs.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        if not any(o.get("kind") == "Deployment" and (o.get("uid") == uid or o.get("name") == name) for o in owners):
            continue
        try:
            revision = int((meta.get("annotations") or {}).get(REVISION) or 0)
        except ValueError:
            continue
        if revision:
            result.append((revision, rs))
    result.sort(key=lambda pair: -pair[0])
    return result


@dataclass
class EventScan:
    """Whether a namespace's events were more than one bounded scan could read."""

    capped: bool = False


async def namespace_events(
    deps: Deps, ns: str, kind: str | None, name: str | None, context: str | None, scan: EventScan | None = None
) -> list[EventSummary]:
    """Events of a namespace, optionally about one object, newest first (scans at most a bounded number)."""
    fields = [f"involvedObject.kind={kind}"] if kind else []
    if name:
        fields.append(f"involvedObject.name={name}")
    query = [("limit", str(_MAX_EVENTS_SCANNED))]
    if fields:
        query.append(("fieldSelector", ",".join(fields)))
    answer = await deps.backend.request("GET", EVENT.path(ns), Target("list", EVENT, ns), context=context, query=query)
    if scan is not None:
        scan.capped = bool((answer.get("metadata") or {}).get("continue"))
    items = []
    for event in answer.get("items") or []:
        involved = event.get("involvedObject") or {}
        if kind and str(involved.get("kind", "")).lower() != kind.lower():
            continue
        if name and involved.get("name") != name:
            continue
        items.append(event)
    items.sort(key=event_time, reverse=True)
    return [event_summary(e) for e in items]
