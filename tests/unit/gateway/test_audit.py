"""The audit chain: an intact trail verifies; an edit, a gap, a reorder or a cut-off end is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcpfleet_cli.main import app
from mcpfleet_gateway.audit import GENESIS, AuditChain, AuditEvent, AuditRecord, event, verify


def trail(count: int) -> list[str]:
    chain = AuditChain()
    lines = []
    for i in range(count):
        record = chain.append(
            event(
                request_id=f"r{i}",
                subject="alice",
                roles=("operator",),
                client_address="10.0.0.7",
                tool="k8s:scale_deployment",
                arguments={"name": "web", "replicas": i, "token": "s3cr3t-value"},
                decision="allowed" if i % 3 else "denied",
                status="ok",
                latency_ms=1.25 * i,
            )
        )
        lines.append(record.model_dump_json())
    return lines


def test_an_intact_trail_verifies_and_its_head_is_the_last_hash() -> None:
    lines = trail(10)
    result = verify(lines, expected_head=json.loads(lines[-1])["hash"])
    assert (result.ok, result.records) == (True, 10)
    assert json.loads(lines[0])["prev_hash"] == GENESIS


def test_secrets_in_arguments_never_reach_the_trail() -> None:
    assert all("s3cr3t-value" not in line for line in trail(3))


def test_an_edited_record_is_named() -> None:
    lines = trail(6)
    edited = json.loads(lines[3])
    edited["subject"] = "mallory"
    lines[3] = json.dumps(edited)
    assert verify(lines).problems == ["line 4: seq 4 was edited (its hash does not match its content)"]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    lines = trail(6)
    record = json.loads(lines[2])
    chain = AuditChain(seq=record["seq"] - 1, head=record["prev_hash"])
    content = {k: v for k, v in record.items() if k not in ("seq", "prev_hash", "hash")}
    forged = chain.append(AuditEvent.model_validate(content | {"subject": "mallory"}))
    lines[2] = forged.model_dump_json()
    assert verify(lines).problems == ["line 4: prev_hash does not match the hash of the record before it"]


def test_a_removed_record_is_a_gap() -> None:
    lines = trail(6)
    del lines[2]
    problems = verify(lines).problems
    assert problems == [
        "line 3: seq 4 where 3 was due: 1 record(s) missing before it",
        "line 3: prev_hash does not match the hash of the record before it",
    ]


def test_swapped_records_are_out_of_order() -> None:
    lines = trail(5)
    lines[1], lines[2] = lines[2], lines[1]
    problems = verify(lines).problems
    assert "line 2: seq 3 where 2 was due: 1 record(s) missing before it" in problems
    assert "line 3: seq 2 where 4 was due: out of order or repeated" in problems


def test_a_cut_off_end_is_caught_only_against_the_published_head() -> None:
    lines = trail(5)
    head = json.loads(lines[-1])["hash"]
    assert verify(lines[:-2]).ok
    (problem,) = verify(lines[:-2], expected_head=head).problems
    assert "records were removed from its end" in problem


def test_garbage_lines_are_reported_not_skipped() -> None:
    lines = [*trail(2), "not json"]
    assert verify(lines).problems[0].startswith("line 3: not an audit record")


def test_a_chain_resumes_after_the_last_record() -> None:
    lines = trail(3)
    chain = AuditChain.resume(AuditRecord.model_validate_json(lines[-1]))
    more = chain.append(event(request_id="r3", subject="bob", decision="rate-limited", tool="k8s:list_pods"))
    assert verify([*lines, more.model_dump_json()]).ok


@pytest.mark.parametrize(("tamper", "code"), [(False, 0), (True, 1)])
def test_cli_verify(tmp_path: Path, tamper: bool, code: int) -> None:
    lines = trail(4)
    if tamper:
        lines[1] = lines[1].replace('"alice"', '"eve"')
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == code, result.output
    assert ("intact" in result.output) is not tamper
    if tamper:
        assert "line 2: seq 2 was edited" in result.output
