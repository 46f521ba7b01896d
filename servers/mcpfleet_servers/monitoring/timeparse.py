"""Times and durations as the tools accept them: RFC 3339, Unix seconds, ``now``, ``now-1h`` or ``-1h``."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from mcpfleet_servers.base.toolkit import InvalidArgument

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
# Steps a chosen step is rounded up to, so answers line up with what people read on dashboards.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TIME_HELP = "RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, 'now', 'now-1h' or '-30m'"


def parse_duration(value: str, field: str) -> float:
    """Seconds in a Prometheus duration (``90s``, ``1h30m``) or a plain number of seconds; positive."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION.match(text):
            raise InvalidArgument(field, f"{value!r} is not a duration; use e.g. '30s', '5m', '1h30m'") from None
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(field, f"{value!r} must be a positive duration")
    return seconds


def parse_time(value: str, field: str, now: float) -> float:
    """Unix seconds of a time given as RFC 3339, Unix seconds, ``now``, ``now-<duration>`` or ``-<duration>``."""
    text = value.strip()
    if text == "now":
        return now
    relative = text.removeprefix("now")
    if relative.startswith("-") and len(relative) > 1 and not relative[1:].replace(".", "").isdigit():
        return now - parse_duration(relative[1:], field)
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise InvalidArgument(field, f"{value!r} is not a time; use {TIME_HELP}")
        return seconds
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not a time; use {TIME_HELP}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def choose_step(start: float, end: float, max_points: int) -> float:
    """The smallest 'nice' step that keeps a series of [start, end] within max_points."""
    needed = (end - start) / max(1, max_points - 1)
    for step in _NICE_STEPS:
        if step >= needed:
            return float(step)
    return float(math.ceil(needed / 86400) * 86400)


def format_duration(seconds: float) -> str:
    """A duration as Prometheus writes it (``90s`` → ``1m30s``), whole seconds."""
    remaining = max(1, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def isoformat(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
