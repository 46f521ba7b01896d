"""Questions an upstream asks the user (MCP elicitation), carried through the gateway.

A server that needs the user's answer before a call runs (the built-in servers' confirmations) answers the
2026-07-28 way, with an ``InputRequiredResult``: the questions, and an opaque ``requestState`` to send back with
the answers. The gateway gets the answers from its own client in one of two ways:

- **pass-through** (a 2026-07-28 client): the result goes to the client unchanged except for the state, which the
  gateway wraps (below); the client asks the user and calls again with ``inputResponses`` and ``requestState``.
- **ask** (a handshake-era client with elicitation and a channel for server requests): the gateway sends each
  question itself as ``elicitation/create`` and calls the upstream again with the answers, at most
  :data:`MAX_ROUNDS` times, all within the call's timeout.

Only elicitation is relayed. Sampling and roots are refused: the gateway does not let servers prompt its
clients' models or read their file roots.

The wrapped state (:class:`StateSeal`) binds the upstream's state to the caller, the tool and the arguments with
an HMAC under a key of this process. A retry that carries a state this gateway sealed for the same call is the
second half of a call already counted against the rate limits, so it is not counted again; any other state (forged,
expired, or sealed by another replica) is unwrapped and forwarded, and the retry is counted like a new call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import mcp_types as types
import orjson

from mcpfleet_gateway.config import ConfirmationSettings

MAX_ROUNDS: Final = 4
"""Questions rounds the gateway asks on a handshake-era client's behalf before giving up on a call."""
STATE_PREFIX: Final = "mcpfleet1."
STATE_TTL_SECONDS: Final = 600
_NO_STATE: Final = "-"
_STATE: Final = "s"

Asker = Callable[[types.ElicitRequest], Awaitable[types.ElicitResult]]
"""Sends one elicitation request to the calling client and returns its answer (handshake era)."""
Mode = Literal["pass-through", "ask", "none", "refuse"]
"""``none``: an MCP client that cannot be asked (the call ends in a tool error); ``refuse``: a caller outside MCP
(the REST facade), refused with :class:`~mcpfleet_gateway.errors.UserInputRequired`."""


@dataclass(frozen=True, slots=True)
class Downstream:
    """How the calling client can answer a server's questions, and what it sent back on a retry."""

    mode: Mode = "none"
    ask: Asker | None = None
    elicitation_url: bool = False
    """Whether the client also handles URL-mode elicitation (form mode is what confirmations use)."""
    input_responses: dict[str, Any] | None = None
    request_state: str | None = None

    @property
    def can_answer(self) -> bool:
        return self.mode in ("pass-through", "ask")

    @property
    def is_retry(self) -> bool:
        return self.input_responses is not None or self.request_state is not None


NO_DOWNSTREAM: Final = Downstream()
REST_DOWNSTREAM: Final = Downstream(mode="refuse")


class StateSeal:
    """Wraps an upstream's ``requestState`` so the gateway can tell its own continuations from anything else."""

    def __init__(self, key: bytes | None = None, ttl_seconds: int = STATE_TTL_SECONDS) -> None:
        self._key = key or os.urandom(32)
        self._ttl = ttl_seconds

    @classmethod
    def for_settings(cls, settings: ConfirmationSettings) -> StateSeal:
        """The configured shared key (every replica recognises every replica's seals), else a random one."""
        secret = settings.state_secret
        return cls(secret.get_secret_value().encode() if secret else None, settings.state_ttl_seconds)

    def seal(self, subject: str, tool: str, arguments: Mapping[str, Any], state: str | None) -> str:
        expires = int(time.time()) + self._ttl
        inner = _STATE + state if state is not None else _NO_STATE
        return f"{STATE_PREFIX}{expires}.{self._mac(subject, tool, arguments, expires, inner)}.{inner}"

    def open(self, subject: str, tool: str, arguments: Mapping[str, Any], wire: str) -> tuple[str | None, bool]:
        """The upstream's state inside ``wire``, and whether this gateway sealed it for this very call.

        A value the gateway did not wrap is the upstream's own (or a forgery): it is forwarded unchanged, for the
        upstream to judge.
        """
        if not wire.startswith(STATE_PREFIX):
            return wire, False
        expires_text, _, rest = wire[len(STATE_PREFIX) :].partition(".")
        mac, _, inner = rest.partition(".")
        if not expires_text.isdigit() or not inner or inner[0] not in (_STATE, _NO_STATE[0]):
            return wire, False
        state = inner[1:] if inner[0] == _STATE else None
        expires = int(expires_text)
        genuine = expires >= time.time() and hmac.compare_digest(
            mac, self._mac(subject, tool, arguments, expires, inner)
        )
        return state, genuine

    def _mac(self, subject: str, tool: str, arguments: Mapping[str, Any], expires: int, inner: str) -> str:
        digest = hashlib.sha256(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)).hexdigest()
        message = "\0".join((str(expires), subject, tool, digest, inner)).encode()
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def unsupported_request(result: types.InputRequiredResult, downstream: Downstream) -> str | None:
    """Why the client cannot be given these questions (None: it can): only elicitation is relayed, URL-mode
    elicitation only to a client that declared it."""
    for request in (result.input_requests or {}).values():
        if isinstance(request, types.CreateMessageRequest):
            return "it asks the client's model to sample a message, which the gateway does not relay"
        if isinstance(request, types.ListRootsRequest):
            return "it asks for the client's file roots, which the gateway does not relay"
        if isinstance(request.params, types.ElicitRequestURLParams) and not downstream.elicitation_url:
            return "it asks the user to open a URL, which this client cannot show"
    return None


def unanswerable_message(tool: str, rest: bool = False) -> str:
    """The refusal for a client that cannot show a question; worded like the built-in servers' own refusal."""
    where = "the REST facade cannot ask the user" if rest else "this client cannot show one"
    how = "no MCP elicitation" if rest else "no MCP elicitation support on this connection"
    return (
        f"{tool} needs the user's confirmation, but {where} ({how}); nothing was done. Use an MCP client that "
        "supports elicitation, or have the operator set MCP_ALLOW_UNCONFIRMED=true on the server."
    )
