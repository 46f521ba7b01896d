"""One HTTP client per backend (Prometheus, Alertmanager, Grafana), on mcpfleet_servers.base.http.

Failures are classified at the boundary: unreachable or a 5xx → BackendUnavailable naming the backend and its
URL; 401/403 → a ToolFailure saying which credential to check; 404 → NotFound; another 4xx → BackendRejected
carrying the backend's own message, which the tools turn into InvalidArgument naming the field when they can
tell which one it was.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from mcpfleet_servers.base.http import HttpOptions, JsonHttpBackend, clip, read_token_file
from mcpfleet_servers.base.toolkit import NotFound, ToolFailure
from mcpfleet_servers.monitoring.settings import BackendConfig, MonitoringSettings


class BackendRejected(ToolFailure):
    """The backend answered a 4xx other than 401/403/404: the request was wrong; the message is the backend's."""

    def __init__(self, backend: str, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(f"{backend} rejected the request ({status}): {message}")
        self.backend = backend
        self.status = status
        self.message = message
        self.error_type = error_type


def backend_message(body: bytes) -> tuple[str, str | None]:
    """The backend's own error text and type from an error answer, bounded.

    Prometheus answers {"status":"error","errorType","error"}, Alertmanager a JSON string or {"message"},
    Grafana {"message"}; anything else is shown as text.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message, error_type = text, None
    if isinstance(data, str):
        message = data
    elif isinstance(data, dict):
        found = data.get("error") or data.get("message")
        if found:
            message = str(found)
        raw_type = data.get("errorType")
        error_type = str(raw_type) if raw_type else None
    return clip(message.strip() or "no message"), error_type


def _options(config: BackendConfig, settings: MonitoringSettings) -> HttpOptions:
    prefix = f"MON_{config.name.upper()}"
    headers = {} if config.auth.org_id is None else {"X-Grafana-Org-Id": str(config.auth.org_id)}
    return HttpOptions(
        request_timeout_seconds=settings.request_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        user_agent="mcpfleet-monitoring",
        too_large_advice=(
            "narrow the query (label matchers, a shorter range, aggregation) or raise MON_MAX_RESPONSE_BYTES"
        ),
        credentials_advice=f"check {prefix}_TOKEN, {prefix}_TOKEN_FILE or {prefix}_USERNAME/PASSWORD",
        tls_verify=settings.tls_verify,
        ca_file=settings.ca_file,
        headers=headers,
    )


class HttpBackend(JsonHttpBackend):
    """Prometheus, Alertmanager or Grafana: bearer, token-file or basic auth; errors worded as each answers them."""

    def __init__(self, config: BackendConfig, settings: MonitoringSettings) -> None:
        super().__init__(config.name, config.url, _options(config, settings))
        self.config = config
        self.settings = settings

    async def authorization(self) -> dict[str, str]:
        auth = self.config.auth
        if auth.token is not None:
            return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
        if auth.token_file is not None:
            # Read on every request: mounted tokens are rotated in place.
            fix = f"fix MON_{self.name.upper()}_TOKEN_FILE or the mounted Secret"
            return {"Authorization": f"Bearer {await read_token_file(auth.token_file, self.name, fix)}"}
        if auth.username is not None and auth.password is not None:
            return {"Authorization": aiohttp.encode_basic_auth(auth.username, auth.password.get_secret_value())}
        return {}

    async def request_form(self, path: str, form: list[tuple[str, str]]) -> Any:
        """A POST with form-encoded parameters: long PromQL expressions do not fit in a URL."""
        return await self.request("POST", path, form=form)

    def error_message(self, body: bytes) -> str:
        return backend_message(body)[0]

    def not_found(self, message: str, what: str | None) -> ToolFailure:
        return NotFound(f"{self.name}: {message}")

    def rejected(self, status: int, message: str, body: bytes, what: str | None) -> ToolFailure:
        return BackendRejected(self.name, status, message, backend_message(body)[1])
