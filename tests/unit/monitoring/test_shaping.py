"""Times, steps, budget shaping and error mapping of the monitoring tools: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from mcpfleet_servers.base.toolkit import InvalidArgument
from mcpfleet_servers.monitoring.client import BackendRejected, backend_message
from mcpfleet_servers.monitoring.models import AlertSummary
from mcpfleet_servers.monitoring.shaping import downsample, shape_matrix, shape_vector
from mcpfleet_servers.monitoring.timeparse import choose_step, format_duration, parse_duration, parse_time
from mcpfleet_servers.monitoring.tools_alerts import MAX_SILENCE_SECONDS, filter_alerts, silence_window
from mcpfleet_servers.monitoring.tools_prometheus import field_error

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1h30m", 5400), ("90", 90), ("1.5", 1.5), ("2d", 172800), ("500ms", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "step") == seconds


@pytest.mark.parametrize("text", ["0s", "-5m", "5 minutes", "", "nan"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_duration(text, "step")
    assert caught.value.field == "step"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("now", NOW),
        ("now-1h", NOW - 3600),
        ("-30m", NOW - 1800),
        ("1700000000", 1_700_000_000),
        ("2026-01-02T03:04:05Z", 1767323045),
        ("2026-01-02T03:04:05", 1767323045),
    ],
)
def test_times(text: str, seconds: float) -> None:
    assert parse_time(text, "start", NOW) == seconds


def test_a_bad_time_says_what_is_accepted() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_time("yesterday", "end", NOW)
    assert caught.value.field == "end"
    assert "RFC 3339" in caught.value.message


def test_the_chosen_step_keeps_points_within_the_budget() -> None:
    assert choose_step(NOW - 3600, NOW, 250) == 15  # 3600/249 = 14.5 s → the next nice step
    assert choose_step(NOW - 60, NOW, 250) == 1
    assert choose_step(NOW - 30 * 86400, NOW, 250) == 10800  # 10,409 s needed
    assert choose_step(NOW - 3650 * 86400, NOW, 250) == 15 * 86400
    for span in (60, 3600, 86400, 30 * 86400):
        step = choose_step(NOW - span, NOW, 250)
        assert span / step + 1 <= 250
    assert format_duration(5400) == "1h30m"
    assert format_duration(15) == "15s"


def test_downsampling_keeps_first_and_newest() -> None:
    values = list(range(1000))
    kept = downsample(values, 10)
    assert len(kept) == 10
    assert kept[0] == 0
    assert kept[-1] == 999
    assert kept == sorted(kept)
    assert downsample(values[:5], 10) == values[:5]


def _vector(count: int) -> dict[str, Any]:
    return {
        "resultType": "vector",
        "result": [{"metric": {"i": str(i)}, "value": [NOW, str(i)]} for i in range(count)],
    }


def test_vector_cap_says_what_was_dropped() -> None:
    shaped = shape_vector(_vector(10_000), 200)
    assert len(shaped.series) == 200
    assert shaped.total == 10_000
    assert shaped.truncated is True
    assert shaped.note is not None
    assert shaped.note.startswith("showing 200 of 10000 series; 9800 dropped; narrow with label matchers")
    whole = shape_vector(_vector(3), 200)
    assert (len(whole.series), whole.truncated, whole.note) == (3, False, None)
    scalar = shape_vector({"resultType": "scalar", "result": [NOW, "2"]}, 200)
    assert scalar.series[0].value.value == "2"


def test_matrix_caps_series_and_points() -> None:
    data = {
        "resultType": "matrix",
        "result": [{"metric": {"i": str(i)}, "values": [[NOW + t, str(t)] for t in range(1000)]} for i in range(60)],
    }
    shaped = shape_matrix(data, 50, 250, "1s")
    assert len(shaped.series) == 50
    assert all(len(series.values) == 250 for series in shaped.series)
    assert shaped.note is not None
    assert "showing 50 of 60 series; 10 dropped" in shaped.note
    assert "50 series downsampled from up to 1000 to 250 evenly spaced points" in shaped.note
    assert "pass a larger step than 1s" in shaped.note


def test_backend_messages() -> None:
    prometheus = b'{"status":"error","errorType":"bad_data","error":"invalid parameter \\"query\\": parse error"}'
    assert backend_message(prometheus) == ('invalid parameter "query": parse error', "bad_data")
    assert backend_message(b'"silence not found"') == ("silence not found", None)
    assert backend_message(b'{"message":"Invalid API key"}') == ("Invalid API key", None)
    assert backend_message(b"") == ("no message", None)
    assert len(backend_message(b"x" * 5000)[0]) == 501


def test_a_prometheus_400_names_the_parameter_it_could_not_use() -> None:
    error = field_error(BackendRejected("Prometheus", 400, 'invalid parameter "start": cannot parse'), "query")
    assert isinstance(error, InvalidArgument)
    assert error.field == "start"
    unnamed = field_error(BackendRejected("Prometheus", 400, "something else"), "match")
    assert isinstance(unnamed, InvalidArgument)
    assert unnamed.field == "match"
    other = BackendRejected("Prometheus", 422, "execution: too many samples")
    assert field_error(other, "query") is other


def _alert(name: str, state: str, severity: str | None, **labels: str) -> AlertSummary:
    all_labels = {"alertname": name, **labels} | ({"severity": severity} if severity else {})
    return AlertSummary(name=name, state=state, severity=severity, labels=all_labels, source="prometheus")


def test_alert_filters_and_order() -> None:
    alerts = [
        _alert("B", "pending", "warning", job="api"),
        _alert("C", "firing", "critical", job="db"),
        _alert("A", "firing", "warning", job="api"),
    ]
    assert [a.name for a in filter_alerts(alerts, None, None, None)] == ["A", "C", "B"]
    assert [a.name for a in filter_alerts(alerts, "warning", None, None)] == ["A", "B"]
    assert [a.name for a in filter_alerts(alerts, None, "pending", None)] == ["B"]
    assert [a.name for a in filter_alerts(alerts, None, None, {"job": "db"})] == ["C"]


def test_silence_window() -> None:
    assert silence_window(None, None, NOW) == NOW + 3600
    assert silence_window("2h", None, NOW) == NOW + 7200
    assert silence_window(None, str(NOW + 60), NOW) == NOW + 60
    for duration, ends_at, field in [
        ("1h", str(NOW + 60), "ends_at"),
        (None, str(NOW - 60), "ends_at"),
        ("8d", None, "duration"),
        (None, str(NOW + MAX_SILENCE_SECONDS + 1), "ends_at"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            silence_window(duration, ends_at, NOW)
        assert caught.value.field == field
