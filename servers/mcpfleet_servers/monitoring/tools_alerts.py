"""Alerts (from Alertmanager when configured, else Prometheus) and Alertmanager silences.

Creating and expiring a silence changes what people are paged for: MEDIUM risk, never destructive (a silence
ends by itself and can be expired or recreated).
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.paging import Budget, Page, paginate, query_fingerprint
from mcpfleet_servers.base.toolkit import InvalidArgument, NotFound, Toolset
from mcpfleet_servers.monitoring.client import BackendRejected, HttpBackend
from mcpfleet_servers.monitoring.models import AlertSummary, Matcher, SilenceCreated, SilenceExpired, SilenceSummary
from mcpfleet_servers.monitoring.timeparse import TIME_HELP, isoformat, parse_duration, parse_time
from mcpfleet_servers.monitoring.tools_prometheus import ContinueArg, LimitArg, prometheus_data

# Alertmanager keeps silences for as long as asked; a week is plenty for an incident and bounds mistakes.
MAX_SILENCE_SECONDS = 7 * 86400
_SILENCE_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
_AM_STATES = {"active": "firing", "suppressed": "suppressed", "unprocessed": "unprocessed"}
_STATE_ORDER = {"firing": 0, "pending": 1, "suppressed": 2, "unprocessed": 3}

AlertState = Literal["firing", "pending", "suppressed", "unprocessed"]
SeverityArg = Annotated[str | None, Field(max_length=64, description="Only alerts with this severity label.")]
LabelsArg = Annotated[
    dict[str, str] | None, Field(description='Only alerts carrying all these label values, e.g. {"job": "api"}.')
]


def _strings(raw: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in (raw or {}).items()}


def alertmanager_alert(raw: dict[str, Any]) -> AlertSummary:
    labels = _strings(raw.get("labels"))
    status = raw.get("status") or {}
    return AlertSummary(
        name=labels.get("alertname", ""),
        state=_AM_STATES.get(str(status.get("state")), str(status.get("state", "unknown"))),
        severity=labels.get("severity"),
        labels=labels,
        annotations=_strings(raw.get("annotations")),
        starts_at=raw.get("startsAt"),
        ends_at=raw.get("endsAt"),
        silenced_by=[str(s) for s in status.get("silencedBy") or []],
        inhibited_by=[str(s) for s in status.get("inhibitedBy") or []],
        source="alertmanager",
    )


def prometheus_alert(raw: dict[str, Any]) -> AlertSummary:
    labels = _strings(raw.get("labels"))
    return AlertSummary(
        name=labels.get("alertname", ""),
        state=str(raw.get("state", "unknown")),
        severity=labels.get("severity"),
        labels=labels,
        annotations=_strings(raw.get("annotations")),
        starts_at=raw.get("activeAt"),
        source="prometheus",
    )


def filter_alerts(
    alerts: list[AlertSummary], severity: str | None, state: str | None, labels: dict[str, str] | None
) -> list[AlertSummary]:
    """Alerts matching every given filter, firing first, then by name."""
    wanted = [
        alert
        for alert in alerts
        if (severity is None or alert.severity == severity)
        and (state is None or alert.state == state)
        and all(alert.labels.get(key) == value for key, value in (labels or {}).items())
    ]
    wanted.sort(key=lambda alert: (_STATE_ORDER.get(alert.state, 9), alert.name, sorted(alert.labels.items())))
    return wanted


def silence_summary(raw: dict[str, Any]) -> SilenceSummary:
    return SilenceSummary(
        id=str(raw.get("id", "")),
        state=str((raw.get("status") or {}).get("state", "unknown")),
        matchers=[
            Matcher(
                name=str(m.get("name", "")),
                value=str(m.get("value", "")),
                is_regex=bool(m.get("isRegex", False)),
                is_equal=bool(m.get("isEqual", True)),
            )
            for m in raw.get("matchers") or []
        ],
        starts_at=str(raw.get("startsAt", "")),
        ends_at=str(raw.get("endsAt", "")),
        created_by=str(raw.get("createdBy", "")),
        comment=str(raw.get("comment", "")),
    )


def silence_window(duration: str | None, ends_at: str | None, now: float) -> float:
    """When a new silence ends: after ``duration`` or at ``ends_at`` (one of them), within a week."""
    if duration is not None and ends_at is not None:
        raise InvalidArgument("ends_at", "give either duration or ends_at, not both")
    if ends_at is not None:
        end = parse_time(ends_at, "ends_at", now)
        if end <= now:
            raise InvalidArgument("ends_at", f"{ends_at!r} is not in the future")
        field = "ends_at"
    else:
        end = now + parse_duration(duration or "1h", "duration")
        field = "duration"
    if end - now > MAX_SILENCE_SECONDS:
        raise InvalidArgument(field, "a silence may last at most 7 days; create a new one when it ends")
    return end


def register_alerts(
    toolset: Toolset, prometheus: HttpBackend, alertmanager: HttpBackend | None, budget: Budget
) -> None:
    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Get alerts")
    async def get_alerts(
        severity: Annotated[
            str | None, Field(max_length=64, description="Only alerts with this severity label.")
        ] = None,
        state: Annotated[
            AlertState | None,
            Field(description="firing, pending (Prometheus only), suppressed (silenced or inhibited), unprocessed."),
        ] = None,
        labels: LabelsArg = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[AlertSummary]:
        """Current alerts, firing first: from Alertmanager when configured (with silences and inhibitions),
        otherwise from Prometheus (with pending alerts). Paged."""
        if labels is not None and len(labels) > 20:
            raise InvalidArgument("labels", "at most 20 label filters")
        if alertmanager is not None:
            answer = await alertmanager.request("GET", "/api/v2/alerts")
            alerts = [alertmanager_alert(raw) for raw in answer or []]
        else:
            data, _ = await prometheus_data(prometheus, "/api/v1/alerts", [], "state")
            alerts = [prometheus_alert(raw) for raw in (data or {}).get("alerts") or []]
        return paginate(
            filter_alerts(alerts, severity, state, labels),
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(v=severity, s=state, l=labels),
        )

    if alertmanager is None:
        return
    am = alertmanager

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="List silences")
    async def list_silences(
        state: Annotated[
            Literal["active", "pending", "expired"] | None, Field(description="Only silences in this state.")
        ] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[SilenceSummary]:
        """Alertmanager's silences, active first, each with its matchers, author, comment and end. Paged."""
        answer = await am.request("GET", "/api/v2/silences")
        silences = [silence_summary(raw) for raw in answer or []]
        if state is not None:
            silences = [silence for silence in silences if silence.state == state]
        order = {"active": 0, "pending": 1, "expired": 2}
        silences.sort(key=lambda s: (order.get(s.state, 3), s.ends_at if s.state != "expired" else "", s.id))
        return paginate(
            silences, limit=limit, token=continue_token, budget=budget, fingerprint=query_fingerprint(s=state)
        )

    @toolset.tool(risk=Risk.MEDIUM, read_only=False, title="Create a silence")
    async def create_silence(
        matchers: Annotated[
            list[Matcher],
            Field(min_length=1, max_length=20, description="Alerts matching all of these are silenced."),
        ],
        author: Annotated[str, Field(min_length=1, max_length=256, description="Who silences (name or email).")],
        comment: Annotated[str, Field(min_length=1, max_length=2048, description="Why, e.g. the incident or ticket.")],
        duration: Annotated[
            str | None, Field(max_length=32, description="How long, e.g. '2h'. Default 1h; at most 7d.")
        ] = None,
        ends_at: Annotated[
            str | None, Field(max_length=64, description=f"When it ends instead of a duration: {TIME_HELP}.")
        ] = None,
    ) -> SilenceCreated:
        """Silence alerts in Alertmanager from now until duration or ends_at passes (MEDIUM: notifications for
        matching alerts stop). Refused when the matchers would match every alert."""
        now = time.time()
        end = silence_window(duration, ends_at, now)
        body = {
            "matchers": [
                {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal} for m in matchers
            ],
            "startsAt": isoformat(now),
            "endsAt": isoformat(end),
            "createdBy": author,
            "comment": comment,
        }
        try:
            answer = await am.request("POST", "/api/v2/silences", json_body=body)
        except BackendRejected as exc:
            if exc.status == 400:
                raise InvalidArgument("matchers", f"Alertmanager rejected the silence: {exc.message}") from exc
            raise
        silence_id = str((answer or {}).get("silenceID", ""))
        return SilenceCreated(
            silence_id=silence_id,
            starts_at=body["startsAt"],
            ends_at=body["endsAt"],
            matchers=matchers,
            note=f"silence {silence_id} is active until {body['endsAt']}; expire_silence ends it earlier",
        )

    @toolset.tool(risk=Risk.MEDIUM, read_only=False, idempotent=True, title="Expire a silence")
    async def expire_silence(
        silence_id: Annotated[str, Field(min_length=1, max_length=64, description="The silence's id.")],
    ) -> SilenceExpired:
        """End a silence now (MEDIUM: matching alerts notify again). Expiring an expired silence changes nothing."""
        if not _SILENCE_ID.match(silence_id):
            raise InvalidArgument("silence_id", f"{silence_id!r} is not a silence id; list_silences shows them")
        try:
            current = await am.request("GET", f"/api/v2/silence/{silence_id}")
        except NotFound as exc:
            raise NotFound(f"no silence {silence_id} in Alertmanager; list_silences shows the existing ones") from exc
        if str((current or {}).get("status", {}).get("state")) == "expired":
            return SilenceExpired(silence_id=silence_id, expired=False, note="the silence had already expired")
        await am.request("DELETE", f"/api/v2/silence/{silence_id}")
        return SilenceExpired(silence_id=silence_id, expired=True, note="expired now; matching alerts notify again")
