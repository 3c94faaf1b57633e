"""The Block Kit limits the fake Slack API enforces on messages (chat.postMessage, chat.update,
chat.postEphemeral, response_url), as Slack documents them; Slack refuses a message that breaks
one with ``{"ok": false, "error": "invalid_blocks"}``:

* at most 50 blocks in a message;
* a header's plain_text at most 150 characters; a section's text at most 3,000;
* an actions block at most 25 elements, a context block at most 10;
* an element's action_id at most 255 characters and unique within its block;
* a button's text at most 75 characters, its value at most 2,000, its url at most 3,000.

and on views (views.open, views.update, views.push, views.publish), refused with
``invalid_arguments``:

* at most 100 blocks in a modal or a Home tab; a modal's title, submit and close at most 24
  characters;
* in both: checkboxes and radio buttons at most 10 options, a static select at most 100, an
  option's text at most 75 characters.

Sources: api.slack.com/reference/block-kit/blocks (message blocks, actions, context, header,
section) and /block-elements (button: text, action_id, url, value; checkboxes, radio buttons and
static select: options), /reference/surfaces/views (blocks, title, submit, close).
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
MAX_VIEW_BLOCKS = 100
MAX_VIEW_TITLE = 24
MAX_OPTIONS = {"checkboxes": 10, "radio_buttons": 10, "static_select": 100, "multi_static_select": 100}
MAX_OPTION_TEXT = 75


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
    limit = MAX_OPTIONS.get(str(element.get("type")))
    if limit is not None:
        options = element.get("options") or [o for g in element.get("option_groups") or [] for o in g.get("options", [])]
        if len(options) > limit:
            problems.append(f"{where}: {element['type']} with more than {limit} options")
        if any(len(_text(o.get("text"))) > MAX_OPTION_TEXT for o in options if isinstance(o, dict)):
            problems.append(f"{where}: an option's text longer than {MAX_OPTION_TEXT}")
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
    if kind == "input" and block.get("element") is not None:
        problems += _check_element(block["element"], f"{where}.element", seen)
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


def view_problems(view: Any) -> list[str]:
    """What Slack would refuse in a view (a modal or a Home tab) ([] = nothing)."""
    if not isinstance(view, dict):
        return ["view must be an object"]
    blocks = view.get("blocks") or []
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    problems = [] if len(blocks) <= MAX_VIEW_BLOCKS else [f"more than {MAX_VIEW_BLOCKS} blocks"]
    for part in ("title", "submit", "close"):
        if len(_text(view.get(part))) > MAX_VIEW_TITLE:
            problems.append(f"{part} longer than {MAX_VIEW_TITLE}")
    for index, block in enumerate(blocks):
        problems += _check_block(block, f"blocks[{index}]")
    return problems
