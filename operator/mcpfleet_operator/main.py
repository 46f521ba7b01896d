"""Run the operator: settings in, kopf loop until a signal arrives."""

from __future__ import annotations

import asyncio
import logging

import kopf

from mcpfleet_operator.handlers import OperatorState, build_registry
from mcpfleet_operator.settings import OperatorSettings


def run(settings: OperatorSettings, *, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose or settings.log_level == "DEBUG")
    # The MCP client logs every request with its full URL at INFO (a query may carry a credential), and
    # transport tracebacks at ERROR that the tool sync already reports, classified, as one line.
    for noisy in ("httpx", "httpx2", "mcp.client"):
        logging.getLogger(noisy).setLevel(logging.WARNING if noisy != "mcp.client" else logging.CRITICAL)
    state = OperatorState(settings=settings, defaults=settings.build_defaults())
    liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
    asyncio.run(
        kopf.operator(
            registry=build_registry(state),
            clusterwide=settings.clusterwide,
            namespaces=settings.namespaces,
            standalone=settings.peering is None,
            peering_name=settings.peering,
            liveness_endpoint=liveness,
        )
    )
