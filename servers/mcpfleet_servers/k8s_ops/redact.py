"""Kubernetes-aware redaction and trimming: pure functions applied to every object and text a tool returns.

The rules: a denied kind (Secret by default) shows metadata, its type and how many keys it has, never
data; environment variables show a ``valueFrom`` reference, never a resolved value, and a literal value
under a credential-like name is masked; ConfigMap values under credential-like keys are masked;
annotations holding kubeconfigs, tokens or the last-applied configuration are masked or dropped;
free text (logs, events, exec output, error messages) loses bearer tokens, passwords and private keys.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping
from typing import Any

REDACTED = "<redacted>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_CREDENTIAL_KEY = re.compile(
    r"(?i)(passw(or)?d|passwd|pwd|secret|token|api[-_.]?key|private[-_.]?key|credential|auth|"
    r"access[-_.]?key|client[-_.]?key|kubeconfig|\.pem$|\.key$|dsn|connection[-_.]?string|cookie|session[-_.]?key)"
)
_KUBECONFIG_VALUE = re.compile(r"(?s)(clusters\s*:|client-key-data|client-certificate-data|\"clusters\"\s*:)")
_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        "-----BEGIN \\1PRIVATE KEY----- " + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), "\\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),  # JWTs
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@"), "\\1:" + REDACTED + "@"),  # URL userinfo
    (
        re.compile(
            r"(?i)((?:passw(?:or)?d|passwd|pwd|secret|token|api[-_]?key|access[-_]?key|client[-_]?secret|"
            r"private[-_]?key|credentials?|auth)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]+)"
        ),
        "\\1" + REDACTED,
    ),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (
        re.compile(r"(?i)\b(client-key-data|client-certificate-data|certificate-authority-data)\s*:\s*\S+"),
        "\\1: " + REDACTED,
    ),
)


def is_credential_key(key: str) -> bool:
    return bool(_CREDENTIAL_KEY.search(key))


def redact_text(text: str) -> str:
    """Mask bearer tokens, passwords, private keys, JWTs and URL credentials in free text."""
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_strings(value: Any) -> Any:
    """``redact_text`` over every string inside a JSON-like value (a copy)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_strings(v) for v in value]
    return value


def redact_annotations(annotations: Mapping[str, Any] | None) -> dict[str, str]:
    """Annotations without the last-applied copy; kubeconfigs, tokens and credential keys masked."""
    result: dict[str, str] = {}
    for key, raw in (annotations or {}).items():
        if key == LAST_APPLIED:
            continue
        value = str(raw)
        if is_credential_key(key.rsplit("/", 1)[-1]) or _KUBECONFIG_VALUE.search(value):
            result[key] = REDACTED
        else:
            result[key] = redact_text(value)
    return result


def trim_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata without managedFields and with redacted annotations."""
    meta = {k: copy.deepcopy(v) for k, v in (metadata or {}).items() if k != "managedFields"}
    if "annotations" in meta:
        meta["annotations"] = redact_annotations(meta["annotations"])
    return meta


def redact_env(env: list[Any] | None) -> list[Any]:
    """Env vars: valueFrom stays a reference; a literal value under a credential-like name is masked."""
    result: list[Any] = []
    for item in env or []:
        if not isinstance(item, Mapping):
            continue
        entry = dict(item)
        if "valueFrom" in entry:
            entry.pop("value", None)
        elif "value" in entry and is_credential_key(str(entry.get("name", ""))):
            entry["value"] = REDACTED
        elif isinstance(entry.get("value"), str):
            entry["value"] = redact_text(entry["value"])
        result.append(entry)
    return result


def _redact_containers(node: Any) -> None:
    """Walk a pod spec (or anything holding one) and redact every container's env in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and "env" in container:
                        container["env"] = redact_env(container["env"])
            _redact_containers(value)
    elif isinstance(node, list):
        for item in node:
            _redact_containers(item)


def denied_summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a denied kind (a Secret) may show: identity, type, and how many keys; never the values."""
    data = obj.get("data") or {}
    string_data = obj.get("stringData") or {}
    meta = trim_metadata(obj.get("metadata"))
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": meta,
        "type": obj.get("type"),
        "keys": len(set(data) | set(string_data)),
        "note": "data withheld: this kind is in K8S_DENIED_KINDS",
    }


def redact_object(obj: Mapping[str, Any], denied_kinds: Collection[str], kind: str | None = None) -> dict[str, Any]:
    """A copy of one object that is safe to show: trimmed, secrets and credentials masked."""
    kind = kind or str(obj.get("kind") or "")
    if kind.lower() in {k.lower() for k in denied_kinds}:
        return denied_summary({**obj, "kind": obj.get("kind") or kind})
    result = {k: trim_metadata(v) if k == "metadata" else copy.deepcopy(v) for k, v in obj.items()}
    if kind == "ConfigMap":
        for field in ("data", "binaryData"):
            values = result.get(field)
            if isinstance(values, dict):
                result[field] = {
                    k: (REDACTED if is_credential_key(k) else redact_text(v) if isinstance(v, str) else v)
                    for k, v in values.items()
                }
    _redact_containers(result.get("spec"))
    return redact_strings(result)  # type: ignore[no-any-return]
