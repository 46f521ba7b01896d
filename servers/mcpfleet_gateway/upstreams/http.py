"""Streamable HTTP upstreams: JSON-RPC over pooled aiohttp connections, no SDK session objects on the hot path.

Two protocol revisions are spoken:

- **2026-07-28** (stateless): every request is one self-contained POST carrying the per-request envelope in
  ``params._meta`` and the routing headers (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``, and
  ``Mcp-Param-*`` for tool arguments a tool's schema marks with ``x-mcp-header``). No handshake, no session.
- **handshake** (2024-11-05 … 2025-11-25): ``initialize`` once, keep the ``Mcp-Session-Id`` the server
  assigns, send it and ``MCP-Protocol-Version`` on every request; a 404 for that session means it expired, and
  the upstream is initialised again once before the request is repeated (the request was not processed).

``protocol: auto`` probes ``server/discover`` once and uses 2026-07-28 when the server offers it, the handshake
otherwise. A response is either ``application/json`` or ``text/event-stream``; on a stream, everything but the
response to our request id (notifications, server-to-client requests) is ignored — a gateway does not answer
an upstream's requests. No standalone GET stream is opened, so an HTTP upstream's list_changed announcements are
not observed (2026-07-28 delivers them only to ``subscriptions/listen`` streams anyway); the gateway re-lists on
its own schedule. Only the headers of the upstream's own ``auth`` config are sent: a client's token never reaches
an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from typing import Any, Final, Literal

import aiohttp
import mcp_types as types
import orjson
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    HEADER_MISMATCH,
    PROTOCOL_VERSION_META_KEY,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

from mcpfleet_gateway.upstreams.base import CLIENT_INFO, ResultT, Upstream
from mcpfleet_gateway.upstreams.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRPCError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpfleet_gateway.upstreams.metrics import UpstreamMetrics
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

logger = logging.getLogger(__name__)

Mode = Literal["modern", "handshake"]

SESSION_ID_HEADER: Final = "mcp-session-id"
KEEPALIVE_SECONDS: Final = 4.0
"""Idle pooled connections are dropped after this; below common server idle timeouts (uvicorn: 5 s) so a request
rarely picks a connection the server is closing at that moment."""
_UNAVAILABLE_STATUSES: Final = frozenset({502, 503, 504})
_AUTH_STATUSES: Final = frozenset({401, 403})
_MAX_SSE_BUFFER: Final = 64 * 1024 * 1024
_DELETE_TIMEOUT: Final = 2.0


class _Exchange:
    """What one POST produced: status, headers, and the JSON-RPC message answering it (if any)."""

    __slots__ = ("headers", "message", "status")

    def __init__(self, status: int, headers: Mapping[str, str], message: Any) -> None:
        self.status = status
        self.headers = headers
        self.message = message


class _SessionExpired(Exception):
    """The server no longer knows our Mcp-Session-Id (HTTP 404 to a request carrying it)."""


class StreamableHTTPUpstream(Upstream, transport="streamable-http"):
    def __init__(self, name: str, spec: UpstreamSpec, metrics: UpstreamMetrics | None = None) -> None:
        super().__init__(name, spec, metrics)
        assert spec.url is not None  # the spec validator requires it
        self._url = spec.url
        self._http: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self._mode: Mode | None = {"auto": None, "2026-07-28": "modern", "handshake": None}[spec.protocol]
        self._negotiation = asyncio.Lock()
        self._session_id: str | None = None
        self._handshake_version = LATEST_HANDSHAKE_VERSION
        self._session_generation = 0
        self._param_headers: dict[str, dict[tuple[str, ...], str]] = {}
        client_info = CLIENT_INFO.model_dump(by_alias=True, mode="json", exclude_none=True)
        self._meta: dict[str, Any] = {
            PROTOCOL_VERSION_META_KEY: LATEST_MODERN_VERSION,
            CLIENT_INFO_META_KEY: client_info,
            CLIENT_CAPABILITIES_META_KEY: {},
        }
        self._client_info = client_info

    @property
    def protocol_mode(self) -> Mode | None:
        """The revision in use: modern (2026-07-28), handshake, or None before the first request decided it."""
        return self._mode

    @property
    def session_id(self) -> str | None:
        return self._session_id

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def _open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.spec.pool.max_connections, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=30
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            headers={
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
                **self.spec.auth.http_headers(),
            },
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.spec.timeouts.connect),
        )

    async def _close(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        if self._mode == "handshake" and self._session_id is not None:
            # Courtesy: let the server free the session now rather than at its idle timeout.
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.delete(
                    self._url,
                    headers=self._handshake_headers(),
                    timeout=aiohttp.ClientTimeout(total=_DELETE_TIMEOUT),
                    allow_redirects=False,
                ):
                    pass
        self._session_id = None
        await http.close()

    # -- requests ----------------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        params: dict[str, Any] | None,
        result_type: type[ResultT],
        seconds: float,
        *,
        capabilities: dict[str, Any] | None = None,
    ) -> ResultT:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        raw = await self._rpc(method, params, deadline, capabilities)
        if method == "tools/list" and self._mode == "modern" and isinstance(raw, dict):
            raw = self._absorb_tool_listing(raw)
        return self._validate(method, raw, result_type)

    async def _probe(self, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        mode = self._mode or await self._negotiate(deadline)
        # ping does not exist at 2026-07-28; discover is its cheapest request.
        await self._rpc("server/discover" if mode == "modern" else "ping", None, deadline)

    async def _rpc(
        self, method: str, params: dict[str, Any] | None, deadline: float, capabilities: dict[str, Any] | None = None
    ) -> Any:
        """Send a request in the negotiated revision and return its raw ``result``."""
        mode = self._mode or await self._negotiate(deadline)
        if mode == "handshake":
            return await self._handshake_rpc(method, params, deadline)
        try:
            return await self._modern_rpc(method, params, deadline, capabilities)
        except UpstreamRPCError as exc:
            if exc.code == UNSUPPORTED_PROTOCOL_VERSION and self.spec.protocol == "auto":
                # The server behind the URL changed (e.g. rolled back to a handshake-only release).
                logger.info("upstream %s no longer speaks %s; negotiating again", self.name, LATEST_MODERN_VERSION)
                # The rejection came before dispatch, so the request was not processed: resending is safe.
                self._mode = None
                if await self._negotiate(deadline) == "handshake":
                    return await self._handshake_rpc(method, params, deadline)
                return await self._modern_rpc(method, params, deadline, capabilities)
            if exc.code == HEADER_MISMATCH and method == "tools/call" and params is not None:
                # The tool's x-mcp-header declarations are not known yet (it was never listed): learn them, retry.
                name = params.get("name")
                if isinstance(name, str) and name not in self._param_headers:
                    await self._refresh_param_headers(deadline)
                    if name in self._param_headers:
                        return await self._modern_rpc(method, params, deadline, capabilities)
            raise

    async def _negotiate(self, deadline: float) -> Mode:
        async with self._negotiation:
            if self._mode is not None:
                return self._mode
            if self.spec.protocol == "auto":
                try:
                    discovered = await self._modern_rpc("server/discover", None, deadline)
                except (UpstreamRPCError, UpstreamProtocolError) as exc:
                    logger.info("upstream %s: no %s (%s); using the handshake", self.name, LATEST_MODERN_VERSION, exc)
                else:
                    versions = discovered.get("supportedVersions") if isinstance(discovered, dict) else None
                    if isinstance(versions, list) and LATEST_MODERN_VERSION in versions:
                        self._mode = "modern"
                        return "modern"
            await self._initialize(deadline)
            self._mode = "handshake"
            return "handshake"

    # -- 2026-07-28 --------------------------------------------------------------------------------------------

    async def _modern_rpc(
        self, method: str, params: dict[str, Any] | None, deadline: float, capabilities: dict[str, Any] | None = None
    ) -> Any:
        request_id = next(self._ids)
        wire_params = dict(params) if params else {}
        wire_params["_meta"] = (
            self._meta if capabilities is None else {**self._meta, CLIENT_CAPABILITIES_META_KEY: capabilities}
        )
        headers = {MCP_PROTOCOL_VERSION_HEADER: LATEST_MODERN_VERSION, MCP_METHOD_HEADER: method}
        name_key = NAME_BEARING_METHODS.get(method)
        if name_key is not None and isinstance(name := wire_params.get(name_key), str):
            headers[MCP_NAME_HEADER] = encode_header_value(name)
            if method == "tools/call" and (header_map := self._param_headers.get(name)):
                headers.update(mcp_param_headers(header_map, wire_params.get("arguments") or {}))
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": wire_params})
        exchange = await self._post(body, headers, request_id, method, deadline)
        return self._result(exchange, request_id, method)

    def _absorb_tool_listing(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Learn each tool's x-mcp-header map; drop tools whose annotations are invalid (a 2026-07-28 MUST)."""
        tools = raw.get("tools")
        if not isinstance(tools, list):
            return raw
        kept: list[Any] = []
        for tool in tools:
            if not isinstance(tool, dict):
                kept.append(tool)
                continue
            schema = tool.get("inputSchema")
            name = tool.get("name")
            reason = find_invalid_x_mcp_header(schema)
            if reason is not None:
                logger.warning("upstream %s: dropping tool %r: invalid x-mcp-header (%s)", self.name, name, reason)
                continue
            if isinstance(name, str):
                header_map = x_mcp_header_map(schema)
                if header_map:
                    self._param_headers[name] = header_map
                else:
                    self._param_headers.pop(name, None)
            kept.append(tool)
        if len(kept) != len(tools):
            raw = {**raw, "tools": kept}
        return raw

    async def _refresh_param_headers(self, deadline: float) -> None:
        cursor: str | None = None
        for _ in range(100):
            raw = await self._modern_rpc("tools/list", {"cursor": cursor} if cursor else None, deadline)
            if not isinstance(raw, dict):
                return
            self._absorb_tool_listing(raw)
            cursor = raw.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                return

    # -- handshake revisions ---------------------------------------------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        headers = {MCP_PROTOCOL_VERSION_HEADER: self._handshake_version}
        if self._session_id is not None:
            headers[SESSION_ID_HEADER] = self._session_id
        return headers

    async def _initialize(self, deadline: float) -> None:
        request_id = next(self._ids)
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "initialize",
                "params": {
                    "protocolVersion": LATEST_HANDSHAKE_VERSION,
                    "capabilities": {},
                    "clientInfo": self._client_info,
                },
            }
        )
        exchange = await self._post(body, {}, request_id, "initialize", deadline)
        result = self._result(exchange, request_id, "initialize")
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if version not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise UpstreamProtocolError(self.name, f"initialize negotiated an unknown protocol version {version!r}")
        self._handshake_version = version
        self._session_id = exchange.headers.get(SESSION_ID_HEADER)
        self._session_generation += 1
        notification = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await self._post(notification, self._handshake_headers(), None, "notifications/initialized", deadline)
        logger.info(
            "upstream %s: initialized (%s, %s)",
            self.name,
            version,
            f"session {self._session_id[:8]}…" if self._session_id else "no session",
        )

    async def _handshake_rpc(self, method: str, params: dict[str, Any] | None, deadline: float) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 0, "method": method}
        if params:
            message["params"] = params
        for attempt in range(2):
            request_id = next(self._ids)
            message["id"] = request_id
            generation = self._session_generation
            had_session = self._session_id is not None
            try:
                exchange = await self._post(
                    orjson.dumps(message), self._handshake_headers(), request_id, method, deadline
                )
                if exchange.status == 404 and had_session and not self._answers(exchange.message, request_id):
                    raise _SessionExpired
                return self._result(exchange, request_id, method)
            except _SessionExpired:
                if attempt:
                    raise UpstreamProtocolError(self.name, "a fresh session was rejected as unknown") from None
                await self._reinitialize(generation, deadline)
            except UpstreamTimeout:
                self._cancel_in_background(request_id)
                raise
        raise AssertionError("unreachable")

    async def _reinitialize(self, generation: int, deadline: float) -> None:
        async with self._negotiation:
            if self._session_generation != generation:
                return  # another request already replaced the session
            logger.info("upstream %s: session expired; initializing again", self.name)
            self._session_id = None
            await self._initialize(deadline)

    def _cancel_in_background(self, request_id: int) -> None:
        """Tell a session-based upstream to stop working on a request we gave up on (best effort)."""
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "timed out at the gateway"},
            }
        )
        deadline = asyncio.get_running_loop().time() + _DELETE_TIMEOUT

        async def send() -> None:
            with contextlib.suppress(UpstreamError):
                await self._post(body, self._handshake_headers(), None, "notifications/cancelled", deadline)

        task = asyncio.create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the wire ----------------------------------------------------------------------------------------------

    async def _post(
        self, body: bytes, headers: dict[str, str], request_id: int | None, method: str, deadline: float
    ) -> _Exchange:
        http = self._http
        if http is None:
            raise UpstreamUnavailable(self.name, "not started (or already closed)")
        timeout = deadline - asyncio.get_running_loop().time()
        if timeout <= 0:
            raise UpstreamTimeout(self.name, method, 0)
        try:
            async with http.post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                # sock_connect bounds dialling a new connection; waiting for a free pooled one counts against the
                # request's own deadline (a saturated pool is slowness, not unreachability).
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, self.spec.timeouts.connect)),
            ) as response:
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                if content_type.startswith("text/event-stream"):
                    if request_id is None:
                        return _Exchange(status, response.headers, None)
                    message = await self._read_stream(response, request_id, method)
                    return _Exchange(status, response.headers, message)
                payload = await response.read()
                if content_type.startswith("application/json") and payload:
                    try:
                        message = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        raise UpstreamProtocolError(self.name, f"{method}: the response is not valid JSON") from None
                    return _Exchange(status, response.headers, message)
                return _Exchange(status, response.headers, None)
        except aiohttp.ConnectionTimeoutError:
            raise UpstreamUnavailable(self.name, f"no connection to {self._url} within the connect timeout") from None
        except TimeoutError:
            raise UpstreamTimeout(self.name, method, round(timeout, 3)) from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(self.name, f"cannot connect to {self._url}: {exc.os_error}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(self.name, f"{method}: connection failed: {exc or type(exc).__name__}") from None

    async def _read_stream(self, response: aiohttp.ClientResponse, request_id: int, method: str) -> Any:
        """Read an SSE response until the event answering ``request_id``; skip everything else."""
        buffer = bytearray()
        data: list[bytes] = []
        event = b"message"
        async for chunk in response.content.iter_any():
            buffer += chunk
            if len(buffer) > _MAX_SSE_BUFFER:
                raise UpstreamProtocolError(self.name, f"{method}: an event stream line exceeds the size limit")
            start = 0
            while (end := buffer.find(b"\n", start)) != -1:
                line = bytes(buffer[start:end]).rstrip(b"\r")
                start = end + 1
                if not line:
                    if data and event == b"message":
                        message = self._decode_event(b"\n".join(data), method)
                        if self._answers(message, request_id):
                            return message
                    data = []
                    event = b"message"
                    continue
                if line.startswith(b":"):
                    continue  # comment / keep-alive ping
                field, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if field == b"data":
                    data.append(value)
                elif field == b"event":
                    event = value
            del buffer[:start]
        raise UpstreamUnavailable(self.name, f"{method}: the response stream ended before the answer")

    def _decode_event(self, payload: bytes, method: str) -> Any:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(self.name, f"{method}: an event on the response stream is not JSON") from None

    @staticmethod
    def _answers(message: Any, request_id: int) -> bool:
        return (
            isinstance(message, dict)
            and message.get("id") == request_id
            and ("result" in message or "error" in message)
        )

    def _result(self, exchange: _Exchange, request_id: int, method: str) -> Any:
        """The ``result`` of the response, or the classified failure."""
        message = exchange.message
        status = exchange.status
        if isinstance(message, dict):
            if message.get("id") == request_id and "result" in message:
                return message["result"]
            error = message.get("error")
            if isinstance(error, dict) and (message.get("id") in (request_id, None)):
                if message.get("id") is None and status in _UNAVAILABLE_STATUSES:
                    raise UpstreamUnavailable(self.name, f"HTTP {status}: {error.get('message')}")
                code = error.get("code")
                if not isinstance(code, int):
                    raise UpstreamProtocolError(self.name, f"{method}: a JSON-RPC error without an integer code")
                return self._raise_rpc(code, error)
        if status in _UNAVAILABLE_STATUSES:
            raise UpstreamUnavailable(self.name, f"{method}: HTTP {status}")
        if status in _AUTH_STATUSES:
            raise UpstreamProtocolError(self.name, f"{method}: HTTP {status}; the upstream refused the credentials")
        if status < 300 and message is None:
            raise UpstreamProtocolError(
                self.name, f"{method}: HTTP {status} from {self._url} without a JSON-RPC response"
            )
        raise UpstreamProtocolError(self.name, f"{method}: unexpected HTTP {status} response from {self._url}")

    def _raise_rpc(self, code: int, error: dict[str, Any]) -> Any:
        message = error.get("message")
        raise UpstreamRPCError(code, message if isinstance(message, str) else "", error.get("data"), upstream=self.name)


__all__ = ["StreamableHTTPUpstream", "types"]
