"""The answers of the monitoring tools: compact, bounded, and saying what was left out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Sample(BaseModel):
    """One value at one time."""

    time: float = Field(description="Unix seconds.")
    value: str = Field(description="The value as Prometheus writes it ('NaN', '+Inf' stay strings).")


class InstantSeries(BaseModel):
    labels: dict[str, str] = Field(description="The series' labels, __name__ included when present.")
    value: Sample


class RangeSeries(BaseModel):
    labels: dict[str, str]
    values: list[Sample] = Field(description="Points in time order, at most the per-series budget.")


class InstantResult(BaseModel):
    """An instant query's answer."""

    query: str
    time: float = Field(description="Evaluation time, Unix seconds.")
    result_type: Literal["vector", "scalar", "string", "matrix"]
    series: list[InstantSeries] = Field(description="Series of a vector (or the one value of a scalar/string).")
    total_series: int = Field(description="How many series the query returned in all.")
    truncated: bool = Field(description="True when series were left out.")
    note: str | None = Field(default=None, description="What was left out and how to narrow the query.")
    warnings: list[str] = Field(default_factory=list, description="Warnings Prometheus attached to the answer.")


class RangeResult(BaseModel):
    """A range query's answer, within the series and points budget."""

    query: str
    start: float
    end: float
    step: str = Field(description="The resolution Prometheus evaluated at, e.g. '15s'.")
    step_chosen: bool = Field(description="True when the server chose the step from the range.")
    series: list[RangeSeries]
    total_series: int
    truncated: bool = Field(description="True when series were dropped or points downsampled.")
    note: str | None = None
    warnings: list[str] = Field(default_factory=list)


class TargetSummary(BaseModel):
    job: str
    instance: str
    health: str = Field(description="up, down or unknown.")
    scrape_url: str
    last_error: str = ""
    last_scrape: str | None = None
    last_scrape_duration_seconds: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class RuleSummary(BaseModel):
    group: str
    file: str
    name: str
    type: Literal["alerting", "recording"]
    query: str
    health: str
    last_error: str = ""
    state: str | None = Field(default=None, description="Alerting rules: inactive, pending or firing.")
    active_alerts: int = 0
    duration_seconds: float | None = Field(default=None, description="Alerting rules: the 'for' duration.")
    labels: dict[str, str] = Field(default_factory=dict)


class AlertSummary(BaseModel):
    name: str
    state: str = Field(description="firing, pending (Prometheus) or suppressed, unprocessed (Alertmanager).")
    severity: str | None = None
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str | None = None
    ends_at: str | None = None
    silenced_by: list[str] = Field(default_factory=list)
    inhibited_by: list[str] = Field(default_factory=list)
    source: Literal["alertmanager", "prometheus"]


class Matcher(BaseModel):
    """One label matcher of a silence: name = value, or name =~ regex; negated with is_equal false."""

    name: str = Field(min_length=1, max_length=256, description="Label name, e.g. alertname.")
    value: str = Field(max_length=1024, description="Label value, or a regular expression when is_regex.")
    is_regex: bool = Field(default=False, description="Treat value as a regular expression.")
    is_equal: bool = Field(default=True, description="False negates the matcher (!= or !~).")


class SilenceSummary(BaseModel):
    id: str
    state: str = Field(description="active, pending or expired.")
    matchers: list[Matcher]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str


class SilenceCreated(BaseModel):
    silence_id: str
    starts_at: str
    ends_at: str
    matchers: list[Matcher]
    note: str


class SilenceExpired(BaseModel):
    silence_id: str
    expired: bool
    note: str
