"""The Grafana dashboards: the committed JSON is what the code generates, and every panel can be shown.

Whether each query parses and returns data is checked against a real Prometheus in
tests/e2e/test_dashboards.py; here only the structure is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helpers import REPO_ROOT, load_script

_module = load_script(REPO_ROOT / "hack" / "dashboards" / "dashboards.py", "mcpfleet_dashboards")
ALL_VALUE, BUILTIN_SERVERS, OUT_DIR = _module.ALL_VALUE, _module.BUILTIN_SERVERS, _module.OUT_DIR
build_dashboards, main, render = _module.build_dashboards, _module.main, _module.render

BUILTIN_VARIABLES = {"__rate_interval", "__interval"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    built: dict[str, dict[str, Any]] = build_dashboards()
    return built


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in document["panels"] if panel["type"] != "row"]


def test_the_committed_json_is_what_the_code_generates(dashboards: dict[str, dict[str, Any]]) -> None:
    assert OUT_DIR == REPO_ROOT / "charts" / "mcpfleet" / "dashboards"
    committed = {path.name: path.read_text() for path in OUT_DIR.glob("*.json")}
    assert set(committed) == set(dashboards), "run `make dashboards`: the files differ from the generated set"
    for name, document in dashboards.items():
        assert committed[name] == render(document), f"{name} is stale: run `make dashboards`"


def test_there_is_an_overview_an_operator_and_one_dashboard_per_builtin_server(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    expected = {"mcpfleet-overview.json", "mcpfleet-operator.json"}
    expected |= {f"mcpfleet-server-{server_type}.json" for server_type in BUILTIN_SERVERS}
    assert set(dashboards) == expected


def test_every_panel_reads_the_chosen_prometheus_and_has_a_query(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, document in dashboards.items():
        for panel in panels(document):
            where = f"{name}: panel {panel['title']!r}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], f"{where} has no query"
            refs = [target["refId"] for target in panel["targets"]]
            assert len(set(refs)) == len(refs), f"{where} repeats a refId: {refs}"
            for target in panel["targets"]:
                assert target["expr"].strip(), f"{where} has an empty query"
                assert target["datasource"] == panel["datasource"], where
            assert panel.get("description"), f"{where} says nothing about what it shows"


def test_uids_titles_and_panel_ids_are_unique_and_stable(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [document["uid"] for document in dashboards.values()]
    assert len(set(uids)) == len(uids)
    assert all(uid.startswith("mcpfleet-") and len(uid) <= 40 for uid in uids), uids
    titles = [document["title"] for document in dashboards.values()]
    assert len(set(titles)) == len(titles)
    for name, document in dashboards.items():
        assert document["uid"] == name.removesuffix(".json"), "the file is named after the uid"
        ids = [panel["id"] for panel in document["panels"]]
        assert ids == list(range(1, len(ids) + 1)), f"{name}: panel ids {ids}"
    assert build_dashboards() == dashboards, "generating twice gives the same dashboards"


def test_every_dashboard_is_tagged_and_lets_the_user_pick_the_data_source(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, document in dashboards.items():
        assert document["tags"] == ["mcpfleet"], name
        assert "id" not in document or document["id"] is None, f"{name}: an id ties it to one Grafana"
        variables = {variable["name"]: variable for variable in document["templating"]["list"]}
        source = variables["datasource"]
        assert (source["type"], source["query"]) == ("datasource", "prometheus"), name


def test_query_variables_default_to_all_which_matches_every_series(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, document in dashboards.items():
        for variable in document["templating"]["list"]:
            if variable["type"] != "query":
                continue
            where = f"{name}: ${variable['name']}"
            assert variable["includeAll"], where
            assert variable["allValue"] == ALL_VALUE, where
            assert variable["current"]["value"] == "$__all", f"{where} does not start at All"
            assert variable["query"].startswith("label_values("), where


def test_queries_use_only_the_variables_their_dashboard_defines(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, document in dashboards.items():
        defined = {variable["name"] for variable in document["templating"]["list"]} | BUILTIN_VARIABLES
        texts = [target["expr"] for panel in panels(document) for target in panel["targets"]]
        texts += [v["query"] for v in document["templating"]["list"] if v["type"] == "query"]
        for text in texts:
            used = {match.group(1) or match.group(2) for match in _VARIABLE.finditer(text)}
            assert used <= defined, f"{name}: {text!r} uses undefined {used - defined}"


def test_a_server_dashboard_shows_only_servers_of_its_type(dashboards: dict[str, dict[str, Any]]) -> None:
    for server_type in BUILTIN_SERVERS:
        document = dashboards[f"mcpfleet-server-{server_type}.json"]
        for panel in panels(document):
            for target in panel["targets"]:
                assert f'mcpfleet_server_info{{type="{server_type}"}}' in target["expr"], (
                    f"{server_type}: panel {panel['title']!r} does not select the server type: {target['expr']}"
                )


def test_panels_fit_the_grid_without_overlapping(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, document in dashboards.items():
        taken: set[tuple[int, int]] = set()
        for panel in document["panels"]:
            box = panel["gridPos"]
            assert box["x"] >= 0, f"{name}: {panel['title']!r} leaves the grid"
            assert box["x"] + box["w"] <= 24, f"{name}: {panel['title']!r} leaves the grid"
            cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
            assert not cells & taken, f"{name}: {panel['title']!r} overlaps another panel"
            taken |= cells


def test_check_names_a_stale_file_and_passes_once_regenerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), "--check"]) == 1, "missing files are stale"
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    capsys.readouterr()

    overview = tmp_path / "mcpfleet-overview.json"
    document = json.loads(overview.read_text())
    document["title"] = "edited by hand"
    overview.write_text(json.dumps(document))
    (tmp_path / "mcpfleet-retired.json").write_text("{}")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    errors = capsys.readouterr().err
    assert "mcpfleet-overview.json is stale" in errors
    assert "mcpfleet-retired.json is stale" in errors
    assert "mcpfleet-operator.json" not in errors

    assert main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "mcpfleet-retired.json").exists(), "a dashboard no longer generated is removed"
    assert main(["--out", str(tmp_path), "--check"]) == 0
