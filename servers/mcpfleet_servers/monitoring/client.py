"""One HTTP client per backend (Prometheus, Alertmanager, Grafana); failures classified here, at the boundary.

Unreachable or a 5xx → BackendUnavailable naming the backend and its URL; 401/403 → a ToolFailure saying which
credential to check; 404 → NotFound; another 4xx → BackendRejected carrying the backend's own message, which
the tools turn into InvalidArgument naming the field when they can tell which one it was.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, ToolFailure
from mcpfleet_servers.monitoring.settings import BackendConfig, MonitoringSettings

_ERROR_TEXT_LIMIT = 500
# Decoding a large answer takes a while; above this it runs in a worker thread, not on the event loop.
_DECODE_IN_THREAD_BYTES = 1024 * 1024
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


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
    message = message.strip() or "no message"
    if len(message) > _ERROR_TEXT_LIMIT:
        message = message[:_ERROR_TEXT_LIMIT] + "…"
    return message, error_type


def ssl_context(settings: MonitoringSettings) -> ssl.SSLContext | bool:
    """Blocking when a CA file is read: build it in start(), off the event loop."""
    if not settings.tls_verify:
        return False
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return True


def _read_token(path: Path) -> str:
    return path.read_text().strip()


class HttpBackend:
    """An aiohttp session on one backend's base URL, created by start() and closed by close()."""

    def __init__(self, config: BackendConfig, settings: MonitoringSettings) -> None:
        self.config = config
        self.name = config.name
        self.url = config.url
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def label(self) -> str:
        return f"{self.name} at {self.url}"

    async def start(self, tls: ssl.SSLContext | bool) -> None:
        headers = {"Accept": "application/json", "User-Agent": "mcpfleet-monitoring"}
        if self.config.auth.org_id is not None:
            headers["X-Grafana-Org-Id"] = str(self.config.auth.org_id)
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_seconds),
            connector=aiohttp.TCPConnector(ssl=tls, limit=20),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _authorization(self) -> dict[str, str]:
        auth = self.config.auth
        if auth.token is not None:
            return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
        if auth.token_file is not None:
            # Read on every request: mounted tokens are rotated in place.
            try:
                token = await asyncio.to_thread(_read_token, auth.token_file)
            except OSError as exc:
                raise ToolFailure(
                    f"cannot read the {self.name} token file {auth.token_file}: {exc.strerror or exc}; "
                    f"fix MON_{self.name.upper()}_TOKEN_FILE or the mounted Secret"
                ) from exc
            return {"Authorization": f"Bearer {token}"}
        if auth.username is not None and auth.password is not None:
            return {"Authorization": aiohttp.encode_basic_auth(auth.username, auth.password.get_secret_value())}
        return {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
        form: list[tuple[str, str]] | None = None,
        deadline_seconds: float | None = None,
    ) -> Any:
        """The decoded JSON answer of one request; raises the classified failures described above."""
        if self._session is None:
            raise BackendUnavailable(self.label, "the client is not started")
        headers = await self._authorization()
        request_timeout = aiohttp.ClientTimeout(total=deadline_seconds) if deadline_seconds is not None else None
        try:
            async with self._session.request(
                method,
                f"{self.url}{path}",
                params=params,
                json=json_body,
                data=form,
                headers=headers,
                timeout=request_timeout,
            ) as response:
                body = await self._read_bounded(response)
                status = response.status
        except _NETWORK_ERRORS as exc:
            reason = (
                f"no answer within {deadline_seconds or self.settings.request_timeout_seconds}s"
                if isinstance(exc, TimeoutError)
                else (str(exc) or type(exc).__name__)
            )
            raise BackendUnavailable(self.label, reason) from exc
        if status >= 400:
            self._raise_for(status, body)
        if not body.strip():
            return None
        try:
            if len(body) > _DECODE_IN_THREAD_BYTES:
                return await asyncio.to_thread(json.loads, body)
            return json.loads(body)
        except ValueError as exc:
            raise BackendUnavailable(self.label, f"answered {status} with something that is not JSON") from exc

    async def request_form(self, path: str, form: list[tuple[str, str]]) -> Any:
        """A POST with form-encoded parameters: long PromQL expressions do not fit in a URL."""
        return await self.request("POST", path, form=form)

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ToolFailure(
                    f"{self.label} answered with more than {limit} bytes; narrow the query "
                    "(label matchers, a shorter range, aggregation) or raise MON_MAX_RESPONSE_BYTES"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _raise_for(self, status: int, body: bytes) -> None:
        message, error_type = backend_message(body)
        if status >= 500:
            raise BackendUnavailable(self.label, f"answered {status}: {message}")
        if status in (401, 403):
            raise ToolFailure(
                f"{self.label} refused the credentials ({status}): {message}; check MON_{self.name.upper()}_TOKEN, "
                f"MON_{self.name.upper()}_TOKEN_FILE or MON_{self.name.upper()}_USERNAME/PASSWORD"
            )
        if status == 404:
            raise NotFound(f"{self.name}: {message}")
        raise BackendRejected(self.name, status, message, error_type)
