"""How the gateway refuses a call, in JSON-RPC (MCP clients) and HTTP (the REST facade) terms alike."""

from __future__ import annotations

from typing import Any

import mcp_types as types

# Codes from the JSON-RPC server-error range, one per refusal a client can act on differently.
FORBIDDEN = -32003
USER_INPUT_REQUIRED = -32004
RATE_LIMITED = -32029
UNAUTHENTICATED = -32001


class GatewayError(Exception):
    code: int = types.INTERNAL_ERROR
    http_status: int = 500

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}


class UnknownTool(GatewayError):
    code = types.INVALID_PARAMS
    http_status = 404


class InvalidArguments(GatewayError):
    code = types.INVALID_PARAMS
    http_status = 400


class Forbidden(GatewayError):
    code = FORBIDDEN
    http_status = 403


class RateLimited(GatewayError):
    code = RATE_LIMITED
    http_status = 429

    def __init__(self, message: str, retry_after: float, data: dict[str, Any] | None = None) -> None:
        super().__init__(message, {"retryAfterSeconds": round(retry_after, 3), **(data or {})})
        self.retry_after = retry_after


class UnknownResource(GatewayError):
    code = types.INVALID_PARAMS
    http_status = 404


class PassThrough(GatewayError):
    """An upstream's own JSON-RPC error, forwarded unchanged."""

    http_status = 502

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data if isinstance(data, dict) else ({"data": data} if data is not None else None))
        self.code = code
        self.http_status = 400 if code == types.INVALID_PARAMS else 502


class UserInputRequired(GatewayError):
    """The tool needs the user's answer (a confirmation) and the caller has no way to be asked (the REST facade)."""

    code = USER_INPUT_REQUIRED
    http_status = 409
