"""The hand check of button presses (`shape.plainly_valid`) never accepts a body the schema refuses."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.acks import slack_click
from bot.handlers.slack import shape

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                    max_leaves=6)
FIELDS = sorted({*shape.PAYLOAD_SCHEMA["properties"], "state", "ssl_check"})


def _click() -> dict[str, Any]:
    body, _ = slack_click(7, "T0000BENCH", "U0000N000001", 1, {"channel": "DU0000N000001", "ts": "1.000001"},
                          "http://127.0.0.1:9/")
    return json.loads(dict(parse_qsl(body))["payload"])


def test_a_real_click_takes_the_hand_check() -> None:
    payload = _click()
    assert shape.plainly_valid(payload) and shape._VALIDATOR.is_valid(payload)


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), junk, max_size=4),
       action_changes=st.dictionaries(st.sampled_from(["action_id", "type", "value", "block_id", "selected_option",
                                                       "selected_options", "other"]), junk, max_size=3),
       dropped=st.sets(st.sampled_from(["team", "user", "actions", "type"]), max_size=2))
def test_the_hand_check_accepts_nothing_the_schema_refuses(changes: dict, action_changes: dict, dropped: set) -> None:
    payload = _click()
    payload["actions"][0].update(action_changes)
    payload.update(changes)
    for key in dropped:
        payload.pop(key, None)
    if shape.plainly_valid(payload):
        assert shape._VALIDATOR.is_valid(payload), payload
