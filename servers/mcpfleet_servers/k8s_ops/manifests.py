"""Pure manifest work: building an apps/v1 Deployment, parsing manifests from text, and diffing objects."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field

from mcpfleet_servers.base.toolkit import InvalidArgument

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# Fields the API server owns: never part of a diff of what a change would do.
_SERVER_FIELDS = (
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "managedFields"),
    ("metadata", "uid"),
    ("metadata", "creationTimestamp"),
    ("metadata", "selfLink"),
    ("status",),
)


class SecretEnv(BaseModel):
    name: Annotated[str, Field(pattern=ENV_NAME, description="Environment variable name.")]
    secret: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Secret name.")]
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", description="Key inside the Secret.")]


class DeploymentParams(BaseModel):
    """What generate_deployment_yaml takes; every field is validated before a manifest is built."""

    name: Annotated[str, Field(max_length=63, pattern=DNS_LABEL, description="Deployment name (DNS label).")]
    image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S+$", description="Container image.")]
    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL, description="Namespace.")] = "default"
    replicas: Annotated[int, Field(ge=0, le=1000, description="Desired replicas.")] = 1
    container_port: Annotated[int | None, Field(ge=1, le=65535, description="Port the container listens on.")] = None
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the deployment and pods.")
    env: dict[str, str] = Field(default_factory=dict, description="Literal environment variables.")
    secret_env: list[SecretEnv] = Field(default_factory=list, description="Environment variables from Secret keys.")
    command: list[str] | None = Field(default=None, description="Container command (entrypoint).")
    args: list[str] | None = Field(default=None, description="Container arguments.")
    cpu_request: Annotated[str | None, Field(pattern=QUANTITY, description="CPU request, e.g. 100m.")] = None
    memory_request: Annotated[str | None, Field(pattern=QUANTITY, description="Memory request, e.g. 128Mi.")] = None
    cpu_limit: Annotated[str | None, Field(pattern=QUANTITY, description="CPU limit.")] = None
    memory_limit: Annotated[str | None, Field(pattern=QUANTITY, description="Memory limit.")] = None
    health_path: Annotated[
        str | None, Field(pattern=r"^/\S*$", description="HTTP path of readiness and liveness probes.")
    ] = None
    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None


def build_deployment(params: DeploymentParams) -> dict[str, Any]:
    """An apps/v1 Deployment from validated parameters (pure; the same input gives the same manifest)."""
    selector = {"app.kubernetes.io/name": params.name}
    labels = {**params.labels, **selector}
    container: dict[str, Any] = {"name": params.name, "image": params.image}
    if params.pull_policy:
        container["imagePullPolicy"] = params.pull_policy
    if params.command:
        container["command"] = list(params.command)
    if params.args:
        container["args"] = list(params.args)
    if params.container_port:
        container["ports"] = [{"name": "http", "containerPort": params.container_port, "protocol": "TCP"}]
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(params.env.items())]
    env += [
        {"name": s.name, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}} for s in params.secret_env
    ]
    if env:
        container["env"] = env
    requests = {k: v for k, v in (("cpu", params.cpu_request), ("memory", params.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", params.cpu_limit), ("memory", params.memory_limit)) if v}
    if requests or limits:
        container["resources"] = {
            **({"requests": requests} if requests else {}),
            **({"limits": limits} if limits else {}),
        }
    if params.health_path and params.container_port:
        probe = {"httpGet": {"path": params.health_path, "port": params.container_port}, "periodSeconds": 10}
        container["readinessProbe"] = probe
        container["livenessProbe"] = {**probe, "initialDelaySeconds": 10}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": params.name, "namespace": params.namespace, "labels": labels},
        "spec": {
            "replicas": params.replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def check_deployment(manifest: Mapping[str, Any]) -> list[str]:
    """Structural problems of a Deployment manifest that would make the API server reject it."""
    problems: list[str] = []
    if manifest.get("apiVersion") != "apps/v1":
        problems.append("apiVersion must be apps/v1")
    if manifest.get("kind") != "Deployment":
        problems.append("kind must be Deployment")
    meta = manifest.get("metadata") or {}
    if not re.match(DNS_LABEL, str(meta.get("name") or "")):
        problems.append("metadata.name must be a DNS label")
    spec = manifest.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        problems.append("spec.selector.matchLabels is required")
    elif any(template_labels.get(k) != v for k, v in selector.items()):
        problems.append("spec.selector.matchLabels must match spec.template.metadata.labels")
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        problems.append("spec.template.spec.containers needs at least one container")
    for i, container in enumerate(containers):
        if not container.get("name"):
            problems.append(f"spec.template.spec.containers[{i}].name is required")
        if not container.get("image"):
            problems.append(f"spec.template.spec.containers[{i}].image is required")
    return problems


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


_FENCE = re.compile(r"```(?:ya?ml|json)?\s*\n(.*?)```", re.S)


def parse_manifests(text: str, field: str = "manifest") -> list[dict[str, Any]]:
    """YAML or JSON documents from text (code fences allowed); InvalidArgument naming ``field`` when unusable."""
    fenced = _FENCE.findall(text)
    source = "\n---\n".join(fenced) if fenced else text
    try:
        docs = [d for d in yaml.safe_load_all(source) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidArgument(field, f"not valid YAML: {exc}") from None
    if not docs:
        raise InvalidArgument(field, "holds no object")
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise InvalidArgument(field, "every document needs apiVersion and kind")
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise InvalidArgument(field, "every document needs metadata.name")
    return docs


class FieldChange(BaseModel):
    path: str = Field(description="Dotted path of the field, e.g. spec.replicas.")
    op: Literal["add", "remove", "change"] = Field(description="What would happen to the field.")
    before: Any = Field(default=None, description="Current value (redacted), null when added.")
    after: Any = Field(default=None, description="New value (redacted), null when removed.")


def _strip_server_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(obj)
    for path in _SERVER_FIELDS:
        if len(path) == 1:
            result.pop(path[0], None)
        elif isinstance(result.get(path[0]), dict):
            result[path[0]] = {k: v for k, v in result[path[0]].items() if k != path[1]}
    return result


def _walk(before: Any, after: Any, path: str) -> Iterator[FieldChange]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in before:
                yield FieldChange(path=sub, op="add", after=after[key])
            elif key not in after:
                yield FieldChange(path=sub, op="remove", before=before[key])
            else:
                yield from _walk(before[key], after[key], sub)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            yield from _walk(b, a, f"{path}[{i}]")
    elif before != after:
        yield FieldChange(path=path, op="change", before=before, after=after)


def diff_objects(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[FieldChange]:
    """Field changes from ``before`` (None: the object does not exist) to ``after``, server fields ignored.

    Pass redacted objects: the diff shows values as given.
    """
    new = _strip_server_fields(after)
    if before is None:
        return [FieldChange(path="", op="add", after=new)]
    return list(_walk(_strip_server_fields(before), new, ""))
