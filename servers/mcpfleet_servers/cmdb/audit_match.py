"""Which audited gateway calls changed which Kubernetes objects: a pure rule over one audit record.

A record is a change when all of these hold:

1. the call succeeded: decision ``allowed`` and status ``ok`` (denied, rate-limited, failed, timed-out and
   cached calls changed nothing, or nothing anyone can vouch for);
2. its tool is not SAFE by the catalog's naming rule: the first word of the tool name after the prefix
   (``k8s:scale_deployment`` -> ``scale``) that is a known verb decides (get, list, describe, query... are
   SAFE); a name with no known verb counts as a change, as the catalog treats an unknown verb as MEDIUM;
3. it was not a dry run (``dry_run`` or ``dry_run_only`` true) and its tool matches none of
   CMDB_AUDIT_IGNORE_TOOLS (default ``*generate_*``: tools that only write text).

The objects a change names, each as an asset-style id (``deployment/shop/web``, ``node/node-1``):

- ``asset_id``: a kubernetes asset id as the cmdb tools take it (``cmdb:update_asset_status``);
- ``name`` with a kind: the ``kind`` argument (Deployment, deployments, deploy, ``deployments.apps``...), else
  the first word of the tool name that names a kind (``scale_deployment``, ``cordon_node``); the namespace is
  the ``namespace`` argument, else CMDB_AUDIT_DEFAULT_NAMESPACE; cluster-scoped kinds ignore it;
- ``node`` or ``node_name``: that node;
- ``manifest`` (YAML or JSON, several documents): each document's kind, ``metadata.name`` and
  ``metadata.namespace`` (else the call's namespace, else the default).

Kinds that are not assets (pods, config maps...) still give ids (``pod/shop/web-1``, ``configmap/shop/x``), so
the changes of a workload's pods can be found as its Events are. The ``context`` argument (another cluster of
the k8s-ops server) is not compared: such a call is attributed to the object of that name here.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mcpfleet_contracts.audit import AuditRecord
from mcpfleet_contracts.catalog import HIGH_VERBS, MEDIUM_VERBS, SAFE_VERBS, infer_risk
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.redact import redact_value
from mcpfleet_servers.base.toolkit import InvalidArgument
from mcpfleet_servers.cmdb.changes import parse_time
from mcpfleet_servers.cmdb.kinds import ASSET_KINDS, BY_KIND, POD, REPLICASET, Kind, asset_id, parse_asset_id
from mcpfleet_servers.cmdb.models import ChangeRecord

SOURCE = "audit"
DRY_RUN_ARGUMENTS = ("dry_run", "dry_run_only")
# Bounds: a manifest argument is parsed only up to this size, and a call names at most this many objects.
MAX_MANIFEST_CHARS = 256 * 1024
MAX_OBJECTS_PER_CALL = 50
REASON_CHARS = 600

_KNOWN_VERBS = SAFE_VERBS | MEDIUM_VERBS | HIGH_VERBS
_WORD = re.compile(r"[a-z0-9]+")
_SHORT_NAMES = {
    "no": "Node",
    "ns": "Namespace",
    "deploy": "Deployment",
    "sts": "StatefulSet",
    "ds": "DaemonSet",
    "svc": "Service",
    "ing": "Ingress",
    "pvc": "PersistentVolumeClaim",
    "po": "Pod",
    "rs": "ReplicaSet",
}


def _kind_aliases() -> dict[str, Kind]:
    aliases: dict[str, Kind] = {}
    for kind in (*ASSET_KINDS, POD, REPLICASET):
        for alias in (kind.kind.lower(), kind.plural, kind.type):
            aliases[alias] = kind
    for short, kind_name in _SHORT_NAMES.items():
        aliases[short] = BY_KIND[kind_name]
    return aliases


KIND_ALIASES = _kind_aliases()
# In tool names only full names count: a word like "no" or "po" is rarely a kind there.
_NAME_KINDS = {alias: kind for alias, kind in KIND_ALIASES.items() if alias not in _SHORT_NAMES}


def _words(text: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()
    return _WORD.findall(spaced)


def _unprefixed(tool: str) -> str:
    """The tool's own name: what follows the gateway's prefix (``k8s:``), when there is one."""
    return tool.split(":", 1)[1] if ":" in tool else tool


def call_risk(tool: str) -> Risk:
    """The catalog's name rule: the first known verb of the tool's own name; no known verb: MEDIUM."""
    verb = next((word for word in _words(_unprefixed(tool)) if word in _KNOWN_VERBS), None)
    return infer_risk(verb) if verb is not None else Risk.MEDIUM


def is_change(record: AuditRecord, ignored_tools: Sequence[str] = ()) -> bool:
    """A succeeded, non-SAFE, non-dry-run call of a tool not ignored (see the module docstring)."""
    tool = record.tool
    if not tool or not record.succeeded or call_risk(tool) is Risk.SAFE:
        return False
    if any(record.arguments.get(name) is True for name in DRY_RUN_ARGUMENTS):
        return False
    return not any(fnmatch.fnmatchcase(tool, pattern) for pattern in ignored_tools)


def kind_of(text: str) -> Kind | None:
    """A kind as kubectl takes it: Deployment, deployments, deploy, deployments.apps."""
    return KIND_ALIASES.get(text.strip().lower().split(".", 1)[0])


def _tool_kind(tool: str) -> Kind | None:
    words = _words(_unprefixed(tool))
    return next((_NAME_KINDS[word] for word in words[1:] if word in _NAME_KINDS), None)


def object_id(kind_text: str, name: str, namespace: str | None, default_namespace: str) -> str:
    """The asset-style id of one object; a kind that is no known kind keeps its own name, lower-cased."""
    kind = kind_of(kind_text)
    if kind is not None:
        return asset_id(kind, name, (namespace or default_namespace) if kind.namespaced else None)
    prefix = kind_text.strip().lower().split(".", 1)[0]
    return f"{prefix}/{namespace}/{name}" if namespace else f"{prefix}/{name}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _manifest_objects(manifest: str, namespace: str | None, default_namespace: str) -> list[str]:
    if len(manifest) > MAX_MANIFEST_CHARS:
        return []
    try:
        documents = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError:
        return []
    found: list[str] = []
    for document in documents[:MAX_OBJECTS_PER_CALL]:
        if not isinstance(document, dict):
            continue
        meta = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
        kind, name = _text(document.get("kind")), _text((meta or {}).get("name"))
        if kind and name:
            found.append(object_id(kind, name, _text((meta or {}).get("namespace")) or namespace, default_namespace))
    return found


def _kubernetes_asset(given: str) -> str | None:
    """The asset id as the kubernetes backend writes it; None for another backend's id."""
    try:
        kind, namespace, name = parse_asset_id(given)
    except InvalidArgument:
        return None
    return asset_id(kind, name, namespace)


def named_objects(tool: str, arguments: Mapping[str, Any], default_namespace: str) -> list[str]:
    """The ids of the objects a call's arguments name (see the module docstring), each once, bounded."""
    found: list[str] = []
    given = _text(arguments.get("asset_id"))
    if given is not None and (canonical := _kubernetes_asset(given)) is not None:
        found.append(canonical)
    namespace = _text(arguments.get("namespace"))
    name = _text(arguments.get("name"))
    kind_text = _text(arguments.get("kind"))
    if name is not None:
        if kind_text is not None:
            found.append(object_id(kind_text, name, namespace, default_namespace))
        elif (kind := _tool_kind(tool)) is not None:
            found.append(object_id(kind.kind, name, namespace, default_namespace))
    for key in ("node", "node_name"):
        node = _text(arguments.get(key))
        if node is not None:
            found.append(object_id("Node", node, None, default_namespace))
    manifest = arguments.get("manifest")
    if isinstance(manifest, str):
        found += _manifest_objects(manifest, namespace, default_namespace)
    return list(dict.fromkeys(found))[:MAX_OBJECTS_PER_CALL]


def _reason(record: AuditRecord) -> str:
    # The gateway redacted the arguments already; redacting again costs little and guards older trails.
    arguments = json.dumps(redact_value(record.arguments), separators=(",", ":"), sort_keys=True, default=str)
    if len(arguments) > REASON_CHARS:
        arguments = arguments[:REASON_CHARS] + "…"
    return f"{record.tool} {arguments} (request {record.request_id}, via the gateway)"


def change_records(
    record: AuditRecord, trail: str, default_namespace: str, ignored_tools: Sequence[str] = ()
) -> list[ChangeRecord]:
    """One change record per object a changing call names; none for a call that changed nothing."""
    when = parse_time(record.time)
    if when is None or record.tool is None or not is_change(record, ignored_tools):
        return []
    objects = named_objects(record.tool, record.arguments, default_namespace)
    return [
        ChangeRecord(
            id=f"audit/{trail}/{record.seq}" + (f"/{index}" if len(objects) > 1 else ""),
            asset=object_id_,
            time=when,
            actor=record.subject,
            action=record.tool,
            reason=_reason(record),
            source=SOURCE,
        )
        for index, object_id_ in enumerate(objects, start=1)
    ]
