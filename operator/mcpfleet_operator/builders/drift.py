"""Does a live object still say what the operator wants it to say?

The operator owns only the fields it sets (server-side apply semantics):
defaults the API server adds, fields other controllers own and status are
not drift. A field the operator sets that differs, or is missing, is.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]i?|Ki)?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def quantity_value(value: str | int) -> Decimal | None:
    """The number a Kubernetes quantity stands for (0.5 == 500m), or None if it is not one."""
    if isinstance(value, int):
        return Decimal(value)
    match = _QUANTITY.match(value)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, KeyError):
        return None


def _same_scalar(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    if isinstance(desired, (str, int)) and isinstance(live, (str, int)) and not isinstance(desired, bool):
        left, right = quantity_value(desired), quantity_value(live)
        return left is not None and left == right
    return False


def drifted_paths(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths of the fields in ``desired`` that ``live`` does not match (empty when in sync)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."] if desired else []
        found: list[str] = []
        for key, value in desired.items():
            if key == "status" and not path:
                continue
            found.extend(drifted_paths(value, live.get(key), f"{path}.{key}"))
        return found
    if isinstance(desired, list):
        if not desired:
            return [] if not live else [path]
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found.extend(drifted_paths(want, have, f"{path}[{index}]"))
        return found
    return [] if _same_scalar(desired, live) else [path]


def in_sync(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    return not drifted_paths(desired, live)
