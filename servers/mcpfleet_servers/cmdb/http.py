"""The HTTP client of the rest and netbox backends, on mcpfleet_servers.base.http; failures classified at the boundary.

Unreachable or a 5xx -> BackendUnavailable naming the CMDB URL; 401/403 -> a ToolFailure naming the token
settings; 404 -> NotFound naming what was asked for; another 4xx -> a ToolFailure with the API's own message.
"""

from __future__ import annotations

import json
from typing import Any

from mcpfleet_servers.base.http import ERROR_TEXT_LIMIT, HttpOptions, JsonHttpBackend, clip, read_token_file
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.redact import redact_text
from mcpfleet_servers.base.toolkit import ToolFailure
from mcpfleet_servers.cmdb.settings import CmdbSettings


def api_message(body: bytes) -> str:
    """The API's own error text ({"detail"}, {"message"} or {"error"} as NetBox and most CMDBs answer), bounded."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = text
    if isinstance(data, dict):
        found = data.get("detail") or data.get("message") or data.get("error")
        message = str(found) if found else json.dumps(data)[:ERROR_TEXT_LIMIT]
    elif isinstance(data, str):
        message = data
    return clip(redact_text(message.strip() or "no message"))


def _options(settings: CmdbSettings) -> HttpOptions:
    return HttpOptions(
        request_timeout_seconds=settings.request_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        user_agent="mcpfleet-cmdb",
        too_large_advice="narrow the call or raise CMDB_MAX_RESPONSE_BYTES",
        credentials_advice=(
            "check CMDB_TOKEN or CMDB_TOKEN_FILE (spec.config.cmdb.tokenSecret) "
            f"and CMDB_AUTH_SCHEME (now {settings.scheme})"
        ),
        tls_verify=settings.tls_verify,
        ca_file=settings.ca_file,
    )


class CmdbHttp(JsonHttpBackend):
    """The rest or netbox backend's HTTP client: a Bearer or NetBox ``Token`` header; 429 means "try later"."""

    unavailable_statuses = frozenset({429})

    def __init__(self, settings: CmdbSettings, name: str) -> None:
        super().__init__(name, settings.url or "", _options(settings))
        self.settings = settings

    async def status(self, path: str) -> BackendStatus:
        timeout = self.settings.probe_timeout_seconds
        try:
            await self.request("GET", path, "the API", params=[("limit", "1")], deadline_seconds=timeout)
        except ToolFailure as exc:
            return BackendStatus(self.label, False, str(exc))
        return BackendStatus(self.label, True, "answers")

    async def authorization(self) -> dict[str, str]:
        token: str | None = None
        if self.settings.token is not None:
            token = self.settings.token.get_secret_value()
        elif self.settings.token_file is not None:
            # Read on every request: mounted Secrets are rotated in place.
            fix = "fix CMDB_TOKEN_FILE or the Secret named by spec.config.cmdb.tokenSecret"
            token = await read_token_file(self.settings.token_file, "CMDB", fix)
        if not token:
            return {}
        return {"Authorization": f"{'Token' if self.settings.scheme == 'token' else 'Bearer'} {token}"}

    def error_message(self, body: bytes) -> str:
        return api_message(body)


def fit_budget(sizes: list[int], max_bytes: int) -> int:
    """How many of the leading items (of these serialized sizes) fit in ``max_bytes``; at least one."""
    used = 0
    for index, size in enumerate(sizes):
        if index and used + size > max_bytes:
            return index
        used += size
    return len(sizes)


def text_of(value: Any) -> str | None:
    """A scalar as text; NetBox's {"value", "label"} choices and {"name"|"slug"} references by their value."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        for key in ("value", "slug", "name", "display"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return None
    if isinstance(value, list):
        return None
    return str(value)
