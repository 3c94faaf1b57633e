"""The Block Kit limits the fake Slack API enforces on messages (chat.postMessage, chat.update,
chat.postEphemeral, response_url), as Slack documents them; Slack refuses a message that breaks
one with ``{"ok": false, "error": "invalid_blocks"}``:

* at most 50 blocks in a message;
* a header's plain_text at most 150 characters; a section's text at most 3,000;
* an actions block at most 25 elements, a context block at most 10;
* an element's action_id at most 255 characters and unique within its block;
* a button's text at most 75 characters, its value at most 2,000, its url at most 3,000.

Sources: api.slack.com/reference/block-kit/blocks (message blocks, actions, context, header,
section) and /block-elements (button: text, action_id, url, value).
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION_TEXT = 3000
MAX_ACTIONS = 25
MAX_CONTEXT = 10
MAX_ACTION_ID = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000


def _text(value: Any) -> str:
    return str(value.get("text", "")) if isinstance(value, dict) else ""


def _check_element(element: Any, where: str, seen: set[str]) -> list[str]:
    if not isinstance(element, dict):
        return [f"{where} is not an object"]
    problems = []
    action_id = element.get("action_id")
    if action_id is not None:
        if len(str(action_id)) > MAX_ACTION_ID:
            problems.append(f"{where}: action_id longer than {MAX_ACTION_ID}")
        if action_id in seen:
            problems.append(f"{where}: action_id '{action_id}' already exists in the block")
        seen.add(action_id)
    if element.get("type") == "button":
        if len(_text(element.get("text"))) > MAX_BUTTON_TEXT:
            problems.append(f"{where}: button text longer than {MAX_BUTTON_TEXT}")
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append(f"{where}: button value longer than {MAX_BUTTON_VALUE}")
        if len(str(element.get("url", ""))) > MAX_URL:
            problems.append(f"{where}: button url longer than {MAX_URL}")
    return problems


def _check_block(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or not block.get("type"):
        return [f"{where} has no type"]
    kind, problems, seen = block["type"], [], set()
    if kind == "header" and len(_text(block.get("text"))) > MAX_HEADER:
        problems.append(f"{where}: header text longer than {MAX_HEADER}")
    if kind == "section":
        if len(_text(block.get("text"))) > MAX_SECTION_TEXT:
            problems.append(f"{where}: section text longer than {MAX_SECTION_TEXT}")
        if block.get("accessory") is not None:
            problems += _check_element(block["accessory"], f"{where}.accessory", seen)
    if kind in ("actions", "context"):
        elements = block.get("elements") or []
        limit = MAX_ACTIONS if kind == "actions" else MAX_CONTEXT
        if not elements or len(elements) > limit:
            problems.append(f"{where}: {kind} needs 1 to {limit} elements, got {len(elements)}")
        for index, element in enumerate(elements):
            problems += _check_element(element, f"{where}.elements[{index}]", seen)
    return problems


def block_problems(blocks: Any) -> list[str]:
    """What Slack would refuse in a message's `blocks` ([] = nothing)."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    problems = [] if len(blocks) <= MAX_BLOCKS else [f"more than {MAX_BLOCKS} blocks"]
    for index, block in enumerate(blocks):
        problems += _check_block(block, f"blocks[{index}]")
    return problems
