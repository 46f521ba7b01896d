"""The Prometheus tools (SAFE): instant and range queries, metric and label listing, series, targets, rules."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.paging import Budget, Page, paginate, query_fingerprint
from mcpfleet_servers.base.toolkit import InvalidArgument, Toolset
from mcpfleet_servers.monitoring.client import BackendRejected, HttpBackend
from mcpfleet_servers.monitoring.models import InstantResult, RangeResult, RuleSummary, TargetSummary
from mcpfleet_servers.monitoring.settings import MonitoringSettings
from mcpfleet_servers.monitoring.shaping import shape_matrix, shape_vector
from mcpfleet_servers.monitoring.timeparse import (
    TIME_HELP,
    choose_step,
    format_duration,
    parse_duration,
    parse_time,
)

# Prometheus refuses a range query of more than 11,000 points per series.
PROMETHEUS_MAX_POINTS = 11000
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Prometheus names the parameter it could not use: 'invalid parameter "query": 1:5: parse error: ...'.
_BAD_PARAMETER = re.compile(r'invalid parameter "([^"]+)"')
_PARAMETER_FIELDS = {"query": "query", "time": "time", "start": "start", "end": "end", "step": "step"}

QueryArg = Annotated[str, Field(min_length=1, max_length=16384, description='PromQL expression, e.g. up{job="api"}.')]
TimeArg = Annotated[str | None, Field(max_length=64, description=f"Evaluation time: {TIME_HELP}. Default now.")]
StartArg = Annotated[str, Field(max_length=64, description=f"Start of the range: {TIME_HELP}.")]
EndArg = Annotated[str, Field(max_length=64, description=f"End of the range: {TIME_HELP}.")]
StepArg = Annotated[
    str | None,
    Field(max_length=32, description="Resolution, e.g. '15s', '5m'. Default: chosen so each series fits the budget."),
]
MatchArg = Annotated[
    str | None, Field(max_length=4096, description='Series selector to restrict to, e.g. {job="api"} or up.')
]
SelectorArg = Annotated[str, Field(min_length=1, max_length=4096, description='Series selector, e.g. up{job="api"}.')]
LimitArg = Annotated[int | None, Field(ge=1, description="Items per page (capped by the server's page size).")]
ContinueArg = Annotated[str | None, Field(max_length=4096, description="continue_token of the previous page.")]


def field_error(exc: BackendRejected, default_field: str) -> InvalidArgument | BackendRejected:
    """A 400 bad_data names the parameter Prometheus could not use: the caller's field, with Prometheus' words."""
    if exc.status != 400:
        return exc
    named = _BAD_PARAMETER.search(exc.message)
    field = _PARAMETER_FIELDS.get(named.group(1), default_field) if named else default_field
    return InvalidArgument(field, f"Prometheus rejected it: {exc.message}")


async def prometheus_data(
    backend: HttpBackend, path: str, params: list[tuple[str, str]], default_field: str, method: str = "GET"
) -> tuple[Any, list[str]]:
    """The ``data`` of a Prometheus API answer and its warnings."""
    try:
        if method == "POST":
            answer = await backend.request_form(path, params)
        else:
            answer = await backend.request("GET", path, params=params)
    except BackendRejected as exc:
        raise field_error(exc, default_field) from exc
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise InvalidArgument(default_field, f"Prometheus did not answer with data: {str(answer)[:300]}")
    return answer.get("data"), [str(w) for w in answer.get("warnings") or []][:20]


def _match_params(match: str | None) -> list[tuple[str, str]]:
    return [("match[]", match)] if match else []


def _check_label(label: str) -> None:
    if not _LABEL_NAME.match(label):
        raise InvalidArgument("label", f"{label!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")


def _target_summary(raw: dict[str, Any]) -> TargetSummary:
    labels = {str(k): str(v) for k, v in (raw.get("labels") or raw.get("discoveredLabels") or {}).items()}
    return TargetSummary(
        job=str(raw.get("scrapePool") or labels.get("job", "")),
        instance=labels.get("instance", labels.get("__address__", "")),
        health=str(raw.get("health", "unknown")),
        scrape_url=str(raw.get("scrapeUrl", "")),
        last_error=str(raw.get("lastError", "")),
        last_scrape=raw.get("lastScrape"),
        last_scrape_duration_seconds=raw.get("lastScrapeDuration"),
        labels=labels,
    )


def _rule_summaries(groups: list[dict[str, Any]]) -> list[RuleSummary]:
    rules = []
    for group in groups:
        for rule in group.get("rules") or []:
            alerting = rule.get("type") == "alerting"
            rules.append(
                RuleSummary(
                    group=str(group.get("name", "")),
                    file=str(group.get("file", "")),
                    name=str(rule.get("name", "")),
                    type="alerting" if alerting else "recording",
                    query=str(rule.get("query", "")),
                    health=str(rule.get("health", "unknown")),
                    last_error=str(rule.get("lastError", "")),
                    state=rule.get("state") if alerting else None,
                    active_alerts=len(rule.get("alerts") or []),
                    duration_seconds=rule.get("duration") if alerting else None,
                    labels={str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                )
            )
    return rules


def register_prometheus(
    toolset: Toolset, prometheus: HttpBackend, settings: MonitoringSettings, budget: Budget
) -> None:
    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Query metrics (instant)")
    async def query_metrics(query: QueryArg, time: TimeArg = None) -> InstantResult:
        """Evaluate a PromQL expression at one instant (default now). Answers at most the page size of series;
        aggregate or add label matchers when the answer says series were dropped."""
        now = _now()
        at = round(parse_time(time, "time", now) if time else now, 3)
        data, warnings = await prometheus_data(
            prometheus, "/api/v1/query", [("query", query), ("time", f"{at:.3f}")], "query", method="POST"
        )
        shaped = shape_vector(data or {}, budget.max_items)
        return InstantResult(
            query=query,
            time=at,
            result_type=(data or {}).get("resultType", "vector"),
            series=shaped.series,
            total_series=shaped.total,
            truncated=shaped.truncated,
            note=shaped.note,
            warnings=warnings,
        )

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Query metrics over a range")
    async def query_range(
        query: QueryArg, start: StartArg = "-1h", end: EndArg = "now", step: StepArg = None
    ) -> RangeResult:
        """Evaluate a PromQL expression over a time range. Without a step, one is chosen so each series fits the
        point budget; series beyond the budget are dropped and long series downsampled, with a note saying so."""
        now = _now()
        start_at = parse_time(start, "start", now)
        end_at = parse_time(end, "end", now)
        if end_at <= start_at:
            raise InvalidArgument("end", f"must be after start ({end!r} is not after {start!r})")
        if step is None:
            step_seconds = choose_step(start_at, end_at, settings.max_points_per_series)
        else:
            step_seconds = parse_duration(step, "step")
            if (end_at - start_at) / step_seconds > PROMETHEUS_MAX_POINTS:
                raise InvalidArgument(
                    "step",
                    f"{step} gives more than {PROMETHEUS_MAX_POINTS} points per series over this range; "
                    f"use at least {format_duration((end_at - start_at) / PROMETHEUS_MAX_POINTS)} or omit step",
                )
        step_text = format_duration(step_seconds) if step_seconds >= 1 else f"{step_seconds}s"
        data, warnings = await prometheus_data(
            prometheus,
            "/api/v1/query_range",
            [("query", query), ("start", f"{start_at:.3f}"), ("end", f"{end_at:.3f}"), ("step", str(step_seconds))],
            "query",
            method="POST",
        )
        shaped = shape_matrix(data or {}, settings.max_series, settings.max_points_per_series, step_text)
        return RangeResult(
            query=query,
            start=start_at,
            end=end_at,
            step=step_text,
            step_chosen=step is None,
            series=shaped.series,
            total_series=shaped.total,
            truncated=shaped.truncated,
            note=shaped.note,
            warnings=warnings,
        )

    register_catalog(toolset, prometheus, budget)


def register_catalog(toolset: Toolset, prometheus: HttpBackend, budget: Budget) -> None:
    """What Prometheus knows: metric names, label values, series, targets, rules."""

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="List metric names")
    async def list_metrics(
        match: MatchArg = None, limit: LimitArg = None, continue_token: ContinueArg = None
    ) -> Page[str]:
        """Metric names Prometheus knows, sorted, optionally only those of series matching a selector. Paged."""
        data, _ = await prometheus_data(prometheus, "/api/v1/label/__name__/values", _match_params(match), "match")
        names = sorted(str(name) for name in data or [])
        return paginate(names, limit=limit, token=continue_token, budget=budget, fingerprint=query_fingerprint(m=match))

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="List label values")
    async def list_label_values(
        label: Annotated[str, Field(min_length=1, max_length=256, description="Label name, e.g. job, instance.")],
        match: MatchArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[str]:
        """The values of one label, sorted, optionally only on series matching a selector. Paged."""
        _check_label(label)
        data, _ = await prometheus_data(prometheus, f"/api/v1/label/{label}/values", _match_params(match), "match")
        values = sorted(str(value) for value in data or [])
        return paginate(
            values, limit=limit, token=continue_token, budget=budget, fingerprint=query_fingerprint(l=label, m=match)
        )

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Get series")
    async def get_series(
        match: SelectorArg,
        start: Annotated[str | None, Field(max_length=64, description=f"Only series seen after: {TIME_HELP}.")] = None,
        end: Annotated[str | None, Field(max_length=64, description=f"Only series seen before: {TIME_HELP}.")] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[dict[str, str]]:
        """The label sets of series matching a selector (default: the last hour). Paged."""
        now = _now()
        start_at = parse_time(start, "start", now) if start else now - 3600
        end_at = parse_time(end, "end", now) if end else now
        if end_at <= start_at:
            raise InvalidArgument("end", "must be after start")
        data, _ = await prometheus_data(
            prometheus,
            "/api/v1/series",
            [("match[]", match), ("start", f"{start_at:.3f}"), ("end", f"{end_at:.3f}")],
            "match",
            method="POST",
        )
        series = [{str(k): str(v) for k, v in item.items()} for item in data or []]
        series.sort(key=lambda labels: sorted(labels.items()))
        return paginate(
            series,
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(m=match, s=start, e=end),
        )

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Get scrape targets")
    async def get_targets(
        state: Annotated[
            Literal["active", "dropped", "any"], Field(description="Active targets, dropped ones, or both.")
        ] = "active",
        health: Annotated[
            Literal["up", "down", "unknown"] | None, Field(description="Only active targets of this health.")
        ] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[TargetSummary]:
        """Prometheus' scrape targets: job, instance, health, last error. Paged."""
        data, _ = await prometheus_data(prometheus, "/api/v1/targets", [("state", state)], "state")
        raw = [*(data or {}).get("activeTargets", []), *(data or {}).get("droppedTargets", [])]
        targets = [_target_summary(item) for item in raw]
        if health is not None:
            targets = [target for target in targets if target.health == health]
        targets.sort(key=lambda target: (target.job, target.instance))
        return paginate(
            targets, limit=limit, token=continue_token, budget=budget, fingerprint=query_fingerprint(s=state, h=health)
        )

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Get rules")
    async def get_rules(
        type: Annotated[
            Literal["alert", "record"] | None, Field(description="Only alerting or only recording rules.")
        ] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[RuleSummary]:
        """Prometheus' alerting and recording rules with their health, state and number of active alerts. Paged."""
        data, _ = await prometheus_data(prometheus, "/api/v1/rules", [("type", type)] if type else [], "type")
        rules = _rule_summaries((data or {}).get("groups") or [])
        return paginate(rules, limit=limit, token=continue_token, budget=budget, fingerprint=query_fingerprint(t=type))


def _now() -> float:
    return time.time()
