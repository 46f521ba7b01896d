"""Turn pydantic validation errors into messages that say which field to change."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(exc: ValidationError, root: str = "") -> str:
    """One line per problem: ``spec.replicas: Input should be less than or equal to 50``."""
    lines = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in (root, *error["loc"]) if part != "")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        lines.append(f"{location or root}: {message}")
    return "; ".join(lines)
