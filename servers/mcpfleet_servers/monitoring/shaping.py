"""Prometheus answers cut to the output budget, saying what was dropped and how to narrow. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcpfleet_servers.monitoring.models import InstantSeries, RangeSeries, Sample

NARROW_ADVICE = 'narrow with label matchers (e.g. {job="api"}) or aggregate (sum by (job) (...), topk(10, ...))'


def _sample(pair: Any) -> Sample:
    stamp, value = pair
    return Sample(time=float(stamp), value=str(value))


def _labels(raw: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in (raw or {}).items()}


@dataclass(frozen=True)
class Shaped:
    series: list[Any]
    total: int
    truncated: bool
    note: str | None


def shape_vector(data: dict[str, Any], max_series: int) -> Shaped:
    """An instant query's data (vector, scalar or string) as at most max_series series."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type in ("scalar", "string"):
        return Shaped([InstantSeries(labels={}, value=_sample(result))], 1, False, None)
    items = list(result or [])
    kept = [
        InstantSeries(labels=_labels(item.get("metric")), value=_sample(item["value"])) for item in items[:max_series]
    ]
    if len(items) <= max_series:
        return Shaped(kept, len(items), False, None)
    note = f"showing {max_series} of {len(items)} series; {len(items) - max_series} dropped; {NARROW_ADVICE}"
    return Shaped(kept, len(items), True, note)


def downsample(values: list[Any], max_points: int) -> list[Any]:
    """max_points evenly spaced points, the first and the newest always among them."""
    if len(values) <= max_points:
        return values
    if max_points == 1:
        return [values[-1]]
    last = len(values) - 1
    return [values[round(i * last / (max_points - 1))] for i in range(max_points)]


def shape_matrix(data: dict[str, Any], max_series: int, max_points: int, step: str) -> Shaped:
    """A range query's matrix within max_series series of at most max_points points each."""
    items = list(data.get("result") or [])
    notes = []
    if len(items) > max_series:
        notes.append(f"showing {max_series} of {len(items)} series; {len(items) - max_series} dropped; {NARROW_ADVICE}")
    series = []
    thinned = 0
    longest = 0
    for item in items[:max_series]:
        values = list(item.get("values") or [])
        longest = max(longest, len(values))
        kept = downsample(values, max_points)
        if len(kept) < len(values):
            thinned += 1
        series.append(RangeSeries(labels=_labels(item.get("metric")), values=[_sample(pair) for pair in kept]))
    if thinned:
        notes.append(
            f"{thinned} series downsampled from up to {longest} to {max_points} evenly spaced points (the first "
            f"and the newest kept); pass a larger step than {step} or a shorter range for full resolution"
        )
    return Shaped(series, len(items), bool(notes), "; ".join(notes) or None)
