"""Pages and continuation tokens: count and byte budgets, tokens refused when tampered or reused elsewhere."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import BaseModel

from mcpfleet_servers.base.paging import (
    CONTINUE_FIELD,
    Budget,
    decode_token,
    encode_token,
    paginate,
    query_fingerprint,
)
from mcpfleet_servers.base.toolkit import InvalidArgument


class Row(BaseModel):
    name: str
    text: str = ""


ROWS = [Row(name=f"r{i}") for i in range(25)]
FP = query_fingerprint(namespace="default", selector=None)


def test_walks_every_item_once_through_tokens() -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = paginate(ROWS, limit=10, token=token, budget=Budget(), fingerprint=FP)
        seen += [row.name for row in page.items]
        pages += 1
        if not page.truncated:
            assert page.continue_token is None
            break
        assert page.note is not None
        assert "continue_token" in page.note
        token = page.continue_token
    assert seen == [row.name for row in ROWS]
    assert pages == 3


def test_limit_is_capped_by_the_budget() -> None:
    page = paginate(ROWS, limit=1000, token=None, budget=Budget(max_items=5), fingerprint=FP)
    assert len(page.items) == 5
    assert page.truncated
    assert page.total == 25
    assert len(paginate(ROWS, limit=None, token=None, budget=Budget(max_items=7), fingerprint=FP).items) == 7
    assert len(paginate(ROWS, limit=0, token=None, budget=Budget(), fingerprint=FP).items) == 1


def test_byte_budget_cuts_the_page_and_says_so() -> None:
    rows = [Row(name=f"r{i}", text="x" * 100) for i in range(20)]
    size = len(rows[0].model_dump_json())
    page = paginate(rows, limit=20, token=None, budget=Budget(max_bytes=size * 3 + 1), fingerprint=FP)
    assert len(page.items) == 3
    assert page.truncated
    assert page.note is not None
    assert "bytes" in page.note
    following = paginate(rows, limit=20, token=page.continue_token, budget=Budget(max_bytes=10**6), fingerprint=FP)
    assert following.items[0].name == "r3"


def test_one_oversized_item_still_makes_progress() -> None:
    rows = [Row(name="big", text="x" * 1000), Row(name="next")]
    page = paginate(rows, limit=10, token=None, budget=Budget(max_bytes=10), fingerprint=FP)
    assert [row.name for row in page.items] == ["big"]
    assert page.truncated


def test_token_from_another_query_is_refused() -> None:
    page = paginate(ROWS, limit=5, token=None, budget=Budget(), fingerprint=FP)
    other = query_fingerprint(namespace="kube-system", selector=None)
    with pytest.raises(InvalidArgument) as caught:
        paginate(ROWS, limit=5, token=page.continue_token, budget=Budget(), fingerprint=other)
    assert caught.value.field == CONTINUE_FIELD
    assert "other arguments" in caught.value.message


@pytest.mark.parametrize("token", ["garbage!!", "e30", base64.urlsafe_b64encode(b"[1,2]").decode(), "eyJwIjo"])
def test_tampered_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, FP)
    assert caught.value.field == CONTINUE_FIELD


@pytest.mark.parametrize("position", [-1, 26, "ten", None])
def test_tokens_pointing_outside_are_refused(position: object) -> None:
    token = encode_token(position, FP)
    if position is None:
        assert paginate(ROWS, limit=5, token=token, budget=Budget(), fingerprint=FP).items[0].name == "r0"
        return
    with pytest.raises(InvalidArgument, match=CONTINUE_FIELD):
        paginate(ROWS, limit=5, token=token, budget=Budget(), fingerprint=FP)


def test_edited_position_with_the_same_fingerprint_is_not_trusted_beyond_range() -> None:
    raw = json.loads(base64.urlsafe_b64decode(encode_token(5, FP) + "=="))
    raw["p"] = 10_000
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    with pytest.raises(InvalidArgument):
        paginate(ROWS, limit=5, token=forged, budget=Budget(), fingerprint=FP)


def test_fingerprint_is_order_independent_and_argument_sensitive() -> None:
    assert query_fingerprint(a=1, b=2) == query_fingerprint(b=2, a=1)
    assert query_fingerprint(a=1) != query_fingerprint(a=2)
    assert decode_token(None, FP) is None
    assert decode_token("", FP) is None


def test_empty_list() -> None:
    rows: list[Row] = []
    page = paginate(rows, limit=5, token=None, budget=Budget(), fingerprint=FP)
    assert page.items == []
    assert not page.truncated
    assert page.total == 0
