"""A JSON-over-HTTP backend (Prometheus, Grafana, a CMDB); failures classified here, at the boundary.

Unreachable, too slow, a 5xx (or a status the backend uses for "try later") or an answer that is not JSON ->
BackendUnavailable naming the backend and its URL; 401/403 -> a ToolFailure saying which credential to check;
404 -> NotFound; another 4xx -> a ToolFailure with the backend's own message. An answer larger than the limit
is a ToolFailure saying how to ask for less. Subclasses supply the credentials, how the backend words its
errors and what their settings are called.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from mcpfleet_servers.base.redact import redact_text
from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, ToolFailure

ERROR_TEXT_LIMIT = 500
# Decoding a large answer takes a while; above this it runs in a worker thread, not on the event loop.
_DECODE_IN_THREAD_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_CONNECTIONS = 20
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


def clip(message: str) -> str:
    """A backend's message bounded to ERROR_TEXT_LIMIT characters, marked when cut."""
    return message[:ERROR_TEXT_LIMIT] + ("…" if len(message) > ERROR_TEXT_LIMIT else "")


def ssl_context(tls_verify: bool, ca_file: Path | None) -> ssl.SSLContext | bool:
    """Blocking when a CA file is read: call it through asyncio.to_thread."""
    if not tls_verify:
        return False
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return True


def _read_token(path: Path) -> str:
    return path.read_text().strip()


async def read_token_file(path: Path, owner: str, fix: str) -> str:
    """The token in a mounted file, read off the event loop; ``fix`` says which setting or Secret to correct."""
    try:
        return await asyncio.to_thread(_read_token, path)
    except OSError as exc:
        raise ToolFailure(f"cannot read the {owner} token file {path}: {exc.strerror or exc}; {fix}") from exc


@dataclass(frozen=True)
class HttpOptions:
    """How to talk to one backend; the advice strings name the settings a user changes to fix a failure."""

    request_timeout_seconds: float
    max_response_bytes: int
    user_agent: str
    # After "answered with more than N bytes; ": how to ask for less, or which limit to raise.
    too_large_advice: str
    # After "refused the credentials (401): <message>; ": which credential settings to check.
    credentials_advice: str
    tls_verify: bool = True
    ca_file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class JsonHttpBackend:
    """An aiohttp session on one backend's base URL, created by start() and closed by close().

    Hooks for subclasses: authorization() (headers of each request), error_message() (the backend's own text
    in an error answer), not_found() and rejected() (the failure for a 404 and for another 4xx).
    """

    # 4xx statuses this backend uses for "overloaded, try later" rather than "the request was wrong".
    unavailable_statuses: ClassVar[frozenset[int]] = frozenset()

    def __init__(self, name: str, url: str, options: HttpOptions) -> None:
        self.name = name
        self.url = url
        self.options = options
        self._session: aiohttp.ClientSession | None = None

    @property
    def label(self) -> str:
        return f"{self.name} at {self.url}"

    async def start(self, tls: ssl.SSLContext | bool | None = None) -> None:
        """Open the session; ``tls`` shares one context between backends, None builds it from the options."""
        if tls is None:
            tls = await asyncio.to_thread(ssl_context, self.options.tls_verify, self.options.ca_file)
        self._session = aiohttp.ClientSession(
            headers={"Accept": "application/json", "User-Agent": self.options.user_agent, **self.options.headers},
            timeout=aiohttp.ClientTimeout(total=self.options.request_timeout_seconds),
            connector=aiohttp.TCPConnector(ssl=tls, limit=_CONNECTIONS),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        what: str | None = None,
        *,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
        form: list[tuple[str, str]] | None = None,
        deadline_seconds: float | None = None,
    ) -> Any:
        """The decoded JSON answer (None when empty); ``what`` names the object asked for in messages."""
        status, body = await self._exchange(
            method, path, params=params, json_body=json_body, form=form, deadline_seconds=deadline_seconds
        )
        if status >= 400:
            raise self.failure(status, body, what)
        if not body.strip():
            return None
        try:
            if len(body) > _DECODE_IN_THREAD_BYTES:
                return await asyncio.to_thread(json.loads, body)
            return json.loads(body)
        except ValueError:
            raise BackendUnavailable(self.label, f"answered {status} with something that is not JSON") from None

    async def authorization(self) -> dict[str, str]:
        """Headers carrying the credentials, built per request so rotated token files take effect."""
        return {}

    def error_message(self, body: bytes) -> str:
        """The backend's own text in an error answer, bounded."""
        return clip(redact_text(body.decode("utf-8", errors="replace").strip() or "no message"))

    def not_found(self, message: str, what: str | None) -> ToolFailure:
        return NotFound(f"{what or 'the object'} not found ({message})")

    def rejected(self, status: int, message: str, body: bytes, what: str | None) -> ToolFailure:
        """A 4xx other than 401/403/404: the request was wrong."""
        target = f" for {what}" if what else ""
        return ToolFailure(f"{self.label} rejected the request{target} ({status}): {message}")

    def failure(self, status: int, body: bytes, what: str | None) -> ToolFailure:
        message = self.error_message(body)
        if status >= 500 or status in self.unavailable_statuses:
            return BackendUnavailable(self.label, f"answered {status}: {message}")
        if status in (401, 403):
            return ToolFailure(
                f"{self.label} refused the credentials ({status}): {message}; {self.options.credentials_advice}"
            )
        if status == 404:
            return self.not_found(message, what)
        return self.rejected(status, message, body, what)

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None,
        json_body: Any,
        form: list[tuple[str, str]] | None,
        deadline_seconds: float | None,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise BackendUnavailable(self.label, "the client is not started")
        headers = await self.authorization()
        timeout = aiohttp.ClientTimeout(total=deadline_seconds) if deadline_seconds is not None else None
        try:
            async with self._session.request(
                method,
                f"{self.url}{path}",
                params=params,
                json=json_body,
                data=form,
                headers=headers,
                timeout=timeout,
            ) as response:
                return response.status, await self._read_bounded(response)
        except _NETWORK_ERRORS as exc:
            reason = (
                f"no answer within {deadline_seconds or self.options.request_timeout_seconds}s"
                if isinstance(exc, TimeoutError)
                else redact_text(str(exc) or type(exc).__name__)
            )
            # The cause is dropped: its text may carry the URL's credentials, which the reason has redacted.
            raise BackendUnavailable(self.label, reason) from None

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.options.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise ToolFailure(
                    f"{self.label} answered with more than {limit} bytes; {self.options.too_large_advice}"
                )
            chunks.append(chunk)
        return b"".join(chunks)
