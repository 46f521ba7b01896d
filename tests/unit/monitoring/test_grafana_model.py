"""Grafana dashboards made small and built: pure functions over Grafana's JSON model."""

from __future__ import annotations

import pytest

from mcpfleet_servers.monitoring.grafana import (
    GRID_COLUMNS,
    PanelQuery,
    absolute_url,
    build_dashboard,
    dashboard_summary,
    datasource,
    flatten_panels,
    grid_position,
)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 24])
def test_panels_tile_the_grid_without_overlap(count: int) -> None:
    cells: set[tuple[int, int]] = set()
    for index in range(count):
        grid = grid_position(index, count)
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS
        covered = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, (index, grid)
        cells |= covered
    rows = {y for _, y in cells}
    assert all(len({x for x, y in cells if y == row}) == GRID_COLUMNS for row in rows)  # no gaps


def test_built_dashboard_has_one_panel_per_query() -> None:
    ref = {"type": "prometheus", "uid": "p1"}
    long_expr = "sum(" * 30 + "up" + ")" * 30
    model = build_dashboard(
        "Checkout", [PanelQuery(expr="up", unit="percent"), PanelQuery(expr=long_expr, title=None)], ref, ["a"]
    )
    assert "id" not in model
    assert "uid" not in model
    assert isinstance(model["schemaVersion"], int)
    assert [p["id"] for p in model["panels"]] == [1, 2]
    assert model["panels"][0]["targets"] == [{"refId": "A", "datasource": ref, "expr": "up", "range": True}]
    assert model["panels"][0]["fieldConfig"]["defaults"] == {"unit": "percent"}
    assert model["panels"][1]["fieldConfig"]["defaults"] == {}
    assert len(model["panels"][1]["title"]) == 80
    assert model["panels"][1]["title"].endswith("…")


def test_flatten_covers_rows_collapsed_rows_and_old_rows() -> None:
    dashboard = {
        "panels": [
            {"id": 1, "type": "graph", "title": "top", "targets": [{"refId": "A", "expr": "up"}]},
            {"id": 2, "type": "row", "title": "R", "collapsed": True, "panels": [{"id": 3, "type": "stat"}]},
            {"id": 4, "type": "table", "targets": [{"refId": "A", "rawSql": "SELECT 1"}, {"refId": "B"}]},
        ],
        "rows": [{"title": "old", "panels": [{"id": 5, "type": "singlestat", "datasource": "graphite"}]}],
    }
    panels = flatten_panels(dashboard)
    assert [(p.id, p.row) for p in panels] == [(1, None), (3, "R"), (4, "R"), (5, "old")]
    assert [(q.field, q.expression) for q in panels[2].queries] == [("rawSql", "SELECT 1")]
    assert panels[3].datasource is not None
    assert panels[3].datasource.name == "graphite"


def test_summary_is_bounded_and_long_queries_are_cut() -> None:
    panels = [{"id": i, "type": "stat", "targets": [{"refId": "A", "expr": "x" * 5000}]} for i in range(10)]
    summary = dashboard_summary({"dashboard": {"uid": "u", "title": "t", "panels": panels}, "meta": {}}, "http://g", 3)
    assert summary.total_panels == 10
    assert len(summary.panels) == 3
    assert summary.truncated is True
    assert summary.note is not None
    assert "3 of 10" in summary.note
    assert len(summary.panels[0].queries[0].expression) == 2001


def test_datasource_keeps_no_credentials() -> None:
    raw = {
        "name": "P",
        "uid": "u",
        "type": "prometheus",
        "url": "http://p",
        "isDefault": True,
        "password": "x",
        "basicAuthPassword": "y",
        "secureJsonData": {"token": "z"},
        "jsonData": {"httpHeaderName1": "A"},
    }
    assert datasource(raw).model_dump() == {
        "name": "P",
        "uid": "u",
        "type": "prometheus",
        "url": "http://p",
        "is_default": True,
    }


def test_absolute_url() -> None:
    assert absolute_url("http://g:3000/grafana", "/d/u/s") == "http://g:3000/grafana/d/u/s"
    assert absolute_url("http://g", "https://elsewhere/d/u") == "https://elsewhere/d/u"
    assert absolute_url("http://g", "") == ""
