"""The HTTP client of the rest and netbox backends; failures classified here, at the boundary.

Unreachable or a 5xx -> BackendUnavailable naming the CMDB URL; 401/403 -> a ToolFailure naming the token
settings; 404 -> NotFound naming what was asked for; another 4xx -> a ToolFailure with the API's own message.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.redact import redact_text
from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, ToolFailure
from mcpfleet_servers.cmdb.settings import CmdbSettings

_ERROR_TEXT_LIMIT = 500
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


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
        message = str(found) if found else json.dumps(data)[:_ERROR_TEXT_LIMIT]
    elif isinstance(data, str):
        message = data
    message = redact_text(message.strip() or "no message")
    return message[:_ERROR_TEXT_LIMIT] + ("…" if len(message) > _ERROR_TEXT_LIMIT else "")


def _ssl_context(settings: CmdbSettings) -> ssl.SSLContext | bool:
    if not settings.tls_verify:
        return False
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return True


def _read_token(path: Path) -> str:
    return path.read_text().strip()


class CmdbHttp:
    """An aiohttp session on the CMDB's base URL, created by start() and closed by close()."""

    def __init__(self, settings: CmdbSettings, name: str) -> None:
        self.settings = settings
        self.url = settings.url or ""
        self.label = f"{name} at {self.url}"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        tls = await asyncio.to_thread(_ssl_context, self.settings)  # reading a CA file blocks
        self._session = aiohttp.ClientSession(
            headers={"Accept": "application/json", "User-Agent": "mcpfleet-cmdb"},
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_seconds),
            connector=aiohttp.TCPConnector(ssl=tls, limit=20),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def status(self, path: str) -> BackendStatus:
        timeout = self.settings.probe_timeout_seconds
        try:
            await self.request("GET", path, "the API", params=[("limit", "1")], deadline_seconds=timeout)
        except ToolFailure as exc:
            return BackendStatus(self.label, False, str(exc))
        return BackendStatus(self.label, True, "answers")

    async def _authorization(self) -> dict[str, str]:
        token: str | None = None
        if self.settings.token is not None:
            token = self.settings.token.get_secret_value()
        elif self.settings.token_file is not None:
            # Read on every request: mounted Secrets are rotated in place.
            try:
                token = await asyncio.to_thread(_read_token, self.settings.token_file)
            except OSError as exc:
                raise ToolFailure(
                    f"cannot read the CMDB token file {self.settings.token_file}: {exc.strerror or exc}; "
                    "fix CMDB_TOKEN_FILE or the Secret named by spec.config.cmdb.tokenSecret"
                ) from exc
        if not token:
            return {}
        return {"Authorization": f"{'Token' if self.settings.scheme == 'token' else 'Bearer'} {token}"}

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
        deadline_seconds: float | None = None,
    ) -> Any:
        """The decoded JSON answer; ``what`` names the object asked for in messages (``asset 42``)."""
        if self._session is None:
            raise BackendUnavailable(self.label, "the client is not started")
        headers = await self._authorization()
        timeout = aiohttp.ClientTimeout(total=deadline_seconds) if deadline_seconds is not None else None
        try:
            async with self._session.request(
                method, f"{self.url}{path}", params=params, json=json_body, headers=headers, timeout=timeout
            ) as response:
                body = await self._read_bounded(response)
                status = response.status
        except _NETWORK_ERRORS as exc:
            reason = (
                f"no answer within {deadline_seconds or self.settings.request_timeout_seconds}s"
                if isinstance(exc, TimeoutError)
                else redact_text(str(exc) or type(exc).__name__)
            )
            raise BackendUnavailable(self.label, reason) from None
        if status >= 400:
            raise self._failure(status, body, what)
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise BackendUnavailable(self.label, f"answered {status} with something that is not JSON") from None

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ToolFailure(
                    f"{self.label} answered with more than {limit} bytes; narrow the call or raise "
                    "CMDB_MAX_RESPONSE_BYTES"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _failure(self, status: int, body: bytes, what: str) -> ToolFailure:
        message = api_message(body)
        if status >= 500 or status == 429:
            return BackendUnavailable(self.label, f"answered {status}: {message}")
        if status in (401, 403):
            return ToolFailure(
                f"{self.label} refused the credentials ({status}): {message}; check CMDB_TOKEN or CMDB_TOKEN_FILE "
                f"(spec.config.cmdb.tokenSecret) and CMDB_AUTH_SCHEME (now {self.settings.scheme})"
            )
        if status == 404:
            return NotFound(f"{what} not found ({message})")
        return ToolFailure(f"{self.label} rejected the request for {what} ({status}): {message}")


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
