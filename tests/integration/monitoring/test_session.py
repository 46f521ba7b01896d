"""Every monitoring tool through a real MCP client session, against real Prometheus and Alertmanager processes."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.types import TextResourceContents

from mcpfleet_cli.devcluster.cluster import free_port
from tests.integration.conftest import eventually
from tests.integration.k8s_ops.session import Answers
from tests.integration.monitoring.conftest import MakeFleet, Session
from tests.prometheus_stack import ALERT_NAME, SERIES_COUNT, SERVICE_NAME, SERVICE_NAMESPACE, PrometheusStack

pytestmark = pytest.mark.integration

ALL_TOOLS = {
    "query_metrics",
    "query_range",
    "list_metrics",
    "list_label_values",
    "get_series",
    "get_targets",
    "get_rules",
    "get_alerts",
    "list_silences",
    "create_silence",
    "expire_silence",
    "health_check",
}


async def test_tools_are_listed_with_schemas_and_annotations(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == ALL_TOOLS
    for name, tool in tools.items():
        assert tool.output_schema is not None, name
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is (name not in {"create_silence", "expire_silence"}), name
        assert tool.annotations.destructive_hint is False, name


async def test_without_alertmanager_there_are_no_silence_tools(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(mon={"alertmanager_url": None})
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == ALL_TOOLS - {"list_silences", "create_silence", "expire_silence"}


async def test_instant_query_caps_series_with_a_note(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(max_items=100)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        answer = await session.ok("query_metrics", query="mcpfleet_test_series")
        assert answer["result_type"] == "vector"
        assert answer["total_series"] == SERIES_COUNT
        assert len(answer["series"]) == 100
        assert answer["truncated"] is True
        assert answer["note"].startswith(f"showing 100 of {SERIES_COUNT} series; {SERIES_COUNT - 100} dropped")
        assert "sum by" in answer["note"]

        small = await session.ok("query_metrics", query='mcpfleet_test_series{shard="00042"}')
        assert small["truncated"] is False
        assert small["note"] is None
        assert small["series"] == [
            {
                "labels": {
                    "__name__": "mcpfleet_test_series",
                    "shard": "00042",
                    "instance": f"127.0.0.1:{scraped.exporter_port}",
                    "job": "exporter",
                    "namespace": SERVICE_NAMESPACE,
                    "service": SERVICE_NAME,
                },
                "value": {"time": small["time"], "value": "42"},
            }
        ]
        scalar = await session.ok("query_metrics", query="1 + 1", time="now-5m")
        assert scalar["result_type"] == "scalar"
        assert scalar["series"][0]["value"]["value"] == "2"


async def test_range_query_chooses_the_step_and_caps_series(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(mon={"max_series": 20, "max_points_per_series": 10})
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        answer = await session.ok("query_range", query="mcpfleet_test_series", start="-1h", end="now")
        assert answer["step_chosen"] is True
        assert answer["step"] == "10m"  # an hour in at most 10 points: the next nice step above 400 s
        assert answer["total_series"] == SERIES_COUNT
        assert len(answer["series"]) == 20
        assert answer["truncated"] is True
        assert answer["note"].startswith(f"showing 20 of {SERIES_COUNT} series; {SERIES_COUNT - 20} dropped")
        for series in answer["series"]:
            assert 1 <= len(series["values"]) <= 10


async def test_range_query_downsamples_a_given_step_with_a_note(
    scraped: PrometheusStack, make_fleet: MakeFleet
) -> None:
    fleet = await make_fleet(mon={"max_points_per_series": 10})
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)

        async def long_enough() -> dict[str, object]:
            answer = await session.ok("query_range", query='up{job="exporter"}', start="-30s", end="now", step="1s")
            assert answer["series"], answer
            assert answer["truncated"], answer
            return answer

        answer = await eventually(long_enough, within=40, interval=1)
        assert answer["step_chosen"] is False
        assert answer["step"] == "1s"
        assert len(answer["series"]) == 1
        assert len(answer["series"][0]["values"]) == 10
        assert "downsampled" in answer["note"]
        assert "pass a larger step than 1s or a shorter range" in answer["note"]


async def test_range_query_arguments_are_named(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        error = await session.invalid("query_range", query="up", start="-1h", end="-2h")
        assert error.error.data["field"] == "end"
        assert "must be after start" in error.error.message
        error = await session.invalid("query_range", query="up", start="yesterday")
        assert error.error.data["field"] == "start"
        error = await session.invalid("query_range", query="up", start="-30d", step="1s")
        assert error.error.data["field"] == "step"
        assert "omit step" in error.error.message


async def test_bad_promql_is_named_with_prometheus_words(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        error = await session.invalid("query_metrics", query="sum(rate(up[5m])")
        assert error.error.data["field"] == "query"
        assert "Prometheus rejected it" in error.error.message
        assert "parse error" in error.error.message
        error = await session.invalid("query_range", query="rate(up)", start="-5m")
        assert error.error.data["field"] == "query"
        assert "range vector" in error.error.message


async def test_metric_and_label_listing(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        metrics = await session.ok("list_metrics", match='{job="exporter"}')
        assert "mcpfleet_test_series" in metrics["items"]
        assert "mcpfleet_test_requests_total" in metrics["items"]
        assert metrics["items"] == sorted(metrics["items"])

        first = await session.ok("list_label_values", label="shard", limit=100)
        assert first["items"][:2] == ["00000", "00001"]
        assert len(first["items"]) == 100
        assert first["total"] == SERIES_COUNT
        assert first["truncated"] is True
        second = await session.ok("list_label_values", label="shard", limit=100, continue_token=first["continue_token"])
        assert second["items"][0] == "00100"

        codes = await session.ok("list_label_values", label="code", match="mcpfleet_test_requests_total")
        assert codes["items"] == ["200", "500"]
        error = await session.invalid("list_label_values", label="not a label")
        assert error.error.data["field"] == "label"


async def test_get_series_is_paged(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(max_items=50)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        page = await session.ok("get_series", match="mcpfleet_test_series")
        assert page["total"] == SERIES_COUNT
        assert len(page["items"]) == 50
        assert page["truncated"] is True
        assert page["note"] == f"showing 1-50 of {SERIES_COUNT}; pass continue_token for more"
        assert page["items"][0]["shard"] == "00000"
        error = await session.invalid("get_series", match="up", start="-1h", end="-2h")
        assert error.error.data["field"] == "end"


async def test_targets_show_the_exporter_up(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        targets = await session.ok("get_targets")
        jobs = {target["job"]: target for target in targets["items"]}
        assert set(jobs) == {"exporter", "prometheus"}
        assert jobs["exporter"]["health"] == "up"
        assert jobs["exporter"]["instance"] == f"127.0.0.1:{scraped.exporter_port}"
        assert jobs["exporter"]["scrape_url"] == f"http://127.0.0.1:{scraped.exporter_port}/metrics"
        down = await session.ok("get_targets", health="down")
        assert down["items"] == []


async def test_rules_show_the_firing_alert_rule(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)

        async def firing() -> dict[str, object]:
            rules = await session.ok("get_rules", type="alert")
            assert [rule["state"] for rule in rules["items"]] == ["firing"], rules
            return rules

        rules = await eventually(firing, within=30, interval=0.5)
        rule = rules["items"][0]
        assert rule["name"] == ALERT_NAME
        assert rule["query"] == 'up{job="exporter"} == 1'
        assert rule["labels"] == {"severity": "info", "team": "platform"}
        assert rule["active_alerts"] == 1
        recording = await session.ok("get_rules", type="record")
        assert [(r["name"], r["type"]) for r in recording["items"]] == [("job:up:sum", "recording")]


async def test_alerts_from_alertmanager_and_from_prometheus(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)

        async def delivered() -> dict[str, object]:
            alerts = await session.ok("get_alerts", severity="info", labels={"job": "exporter"})
            assert alerts["items"], alerts
            return alerts

        alerts = await eventually(delivered, within=60, interval=0.5)
        alert = alerts["items"][0]
        assert alert["name"] == ALERT_NAME
        assert alert["source"] == "alertmanager"
        assert alert["annotations"] == {"summary": "the test exporter is up"}
        assert (await session.ok("get_alerts", severity="critical"))["items"] == []
        assert (await session.ok("get_alerts", labels={"job": "nothing"}))["items"] == []

    without_alertmanager = await make_fleet(mon={"alertmanager_url": None})
    async with Client(without_alertmanager.mcp, elicitation_callback=Answers("accept")) as client:
        alerts = await Session(client).ok("get_alerts", state="firing")
        assert [(a["name"], a["source"]) for a in alerts["items"]] == [(ALERT_NAME, "prometheus")]


async def test_silence_lifecycle(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        created = await session.ok(
            "create_silence",
            matchers=[{"name": "alertname", "value": ALERT_NAME}],
            author="oncall@example.com",
            comment="INC-42: exporter maintenance",
            duration="30m",
        )
        silence_id = created["silence_id"]
        assert silence_id
        active = await session.ok("list_silences", state="active")
        [silence] = [s for s in active["items"] if s["id"] == silence_id]
        assert silence["created_by"] == "oncall@example.com"
        assert silence["comment"] == "INC-42: exporter maintenance"
        assert silence["matchers"] == [{"name": "alertname", "value": ALERT_NAME, "is_regex": False, "is_equal": True}]

        async def suppressed() -> bool:
            alerts = await session.ok("get_alerts", state="suppressed")
            return any(silence_id in alert["silenced_by"] for alert in alerts["items"])

        await eventually(suppressed, within=30, interval=0.5)

        expired = await session.ok("expire_silence", silence_id=silence_id)
        assert expired["expired"] is True
        again = await session.ok("expire_silence", silence_id=silence_id)
        assert again == {"silence_id": silence_id, "expired": False, "note": "the silence had already expired"}
        states = {s["id"]: s["state"] for s in (await session.ok("list_silences"))["items"]}
        assert states[silence_id] == "expired"

        missing = await session.error("expire_silence", silence_id="00000000-0000-0000-0000-000000000000")
        assert "no silence 00000000-0000-0000-0000-000000000000 in Alertmanager" in missing


async def test_silence_arguments_are_named(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        base = {"author": "me", "comment": "why"}
        error = await session.invalid("create_silence", matchers=[], **base)
        assert error.error.data["field"] == "matchers"
        error = await session.invalid(
            "create_silence", matchers=[{"name": "job", "value": "x"}], duration="1h", ends_at="now-1h", **base
        )
        assert error.error.data["field"] == "ends_at"
        error = await session.invalid("create_silence", matchers=[{"name": "job", "value": "x"}], duration="8d", **base)
        assert error.error.data["field"] == "duration"
        # Alertmanager itself refuses a silence whose matchers all match the empty string.
        error = await session.invalid(
            "create_silence", matchers=[{"name": "job", "value": ".*", "is_regex": True}], **base
        )
        assert error.error.data["field"] == "matchers"
        assert "Alertmanager rejected the silence" in error.error.message
        error = await session.invalid("expire_silence", silence_id="../../x")
        assert error.error.data["field"] == "silence_id"


async def test_unreachable_backend_is_named_with_its_url(make_fleet: MakeFleet) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    fleet = await make_fleet(mon={"prometheus_url": nowhere, "alertmanager_url": nowhere})
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        message = await session.error("query_metrics", query="up")
        assert message.startswith(f"Error executing tool query_metrics: Prometheus at {nowhere} is unavailable: ")
        message = await session.error("list_silences")
        assert f"Alertmanager at {nowhere} is unavailable" in message
    status = await fleet.module.backend_status()
    assert status.reachable is False
    assert status.name == f"Prometheus at {nowhere}"


async def test_backend_status_and_alerts_resource(scraped: PrometheusStack, make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    status = await fleet.module.backend_status()
    assert status.reachable is True
    assert status.detail.startswith("Prometheus 2.")
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        contents = (await client.read_resource("monitoring://alerts")).contents
        assert isinstance(contents[0], TextResourceContents)
        assert '"items"' in contents[0].text
        prompt = await client.get_prompt("triage_incident", {"service": "checkout"})
        assert "checkout" in str(prompt.messages[0].content)


async def test_a_silence_is_confirmed_first_and_a_declined_one_is_not_created(
    scraped: PrometheusStack, make_fleet: MakeFleet
) -> None:
    fleet = await make_fleet()
    declined = Answers("decline")
    arguments = {
        "matchers": [{"name": "alertname", "value": ALERT_NAME}],
        "author": "oncall@example.com",
        "comment": "INC-43: should not happen",
        "duration": "10m",
    }
    async with Client(fleet.mcp, elicitation_callback=declined) as client:
        result = await client.call_tool("create_silence", arguments)
        assert result.is_error
        assert len(declined.questions) == 1
        assert "MEDIUM" in declined.questions[0]
        silences = (await Session(client).ok("list_silences"))["items"]
        assert not [s for s in silences if s["comment"] == "INC-43: should not happen"]
