"""WebSocket upstreams: JSON-RPC messages as text frames on a socket negotiated with subprotocol ``mcp``.

The SDK has no WebSocket client, so this module provides the transport — aiohttp's ``ws_connect`` bridged to the
read/write streams an SDK ``ClientSession`` runs on: one JSON-RPC message per text frame in each direction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final

import aiohttp
import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcpfleet_gateway.upstreams.metrics import UpstreamMetrics
from mcpfleet_gateway.upstreams.session import SessionUpstream
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

logger = logging.getLogger(__name__)

SUBPROTOCOL: Final = "mcp"
HEARTBEAT_SECONDS: Final = 30.0
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024


class WebSocketProtocolError(Exception):
    """The server accepted the socket but not the ``mcp`` subprotocol."""


@asynccontextmanager
async def websocket_client(
    http: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None, *, connect_timeout: float = 5.0
) -> AsyncIterator[TransportStreams]:
    """Connect to ``url`` and yield the (read, write) streams of the SDK's transport contract.

    The read stream ends when the socket closes, which is how a session learns its connection is gone.
    """
    ws = await http.ws_connect(
        url,
        protocols=(SUBPROTOCOL,),
        headers=dict(headers or {}),
        heartbeat=HEARTBEAT_SECONDS,
        max_msg_size=MAX_MESSAGE_BYTES,
        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=connect_timeout),
    )
    if ws.protocol != SUBPROTOCOL:
        await ws.close()
        raise WebSocketProtocolError(f"{url} did not accept the {SUBPROTOCOL!r} subprotocol")

    read_writer: MemoryObjectSendStream[SessionMessage | Exception]
    read_stream: MemoryObjectReceiveStream[SessionMessage | Exception]
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream: MemoryObjectSendStream[SessionMessage]
    write_reader: MemoryObjectReceiveStream[SessionMessage]
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_frames() -> None:
        async with read_writer:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(frame.data, by_name=False)
                    except ValidationError as exc:
                        await read_writer.send(exc)
                        continue
                    await read_writer.send(SessionMessage(message))
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    await read_writer.send(ValueError("binary WebSocket frame; MCP messages are text frames"))
                else:  # ERROR (CLOSE/CLOSING/CLOSED end the iteration)
                    logger.debug("websocket %s: %s", url, ws.exception())
                    break

    async def write_frames() -> None:
        async with write_reader:
            async for session_message in write_reader:
                text = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    await ws.send_str(text)
                except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                    # The socket is going away; closing it ends the reader, and the session sees the end.
                    logger.debug("websocket %s: send failed: %r", url, exc)
                    await ws.close()
                    return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_frames)
            tg.start_soon(write_frames)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await ws.close()
        for stream in (read_stream, write_stream):
            await stream.aclose()


class WebSocketUpstream(SessionUpstream, transport="websocket"):
    def __init__(self, name: str, spec: UpstreamSpec, metrics: UpstreamMetrics | None = None) -> None:
        super().__init__(name, spec, metrics)
        self._http: aiohttp.ClientSession | None = None

    async def _open(self) -> None:
        self._http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.spec.timeouts.connect),
        )
        await super()._open()

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            if self._http is not None:
                await self._http.close()
                self._http = None

    async def _connect(self, stack: AsyncExitStack) -> TransportStreams:
        assert self.spec.url is not None  # the spec validator requires it
        assert self._http is not None
        return await stack.enter_async_context(
            websocket_client(
                self._http, self.spec.url, self.spec.auth.http_headers(), connect_timeout=self.spec.timeouts.connect
            )
        )
