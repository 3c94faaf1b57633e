"""The Block Kit limits the fake Slack API enforces on messages (chat.postMessage, chat.update,
chat.postEphemeral, response_url), as Slack documents them; Slack refuses a message that breaks
one with ``{"ok": false, "error": "invalid_blocks"}``:

* at most 50 blocks in a message; a block_id at most 255 characters (every block);
* a text object at least 1 character; a header's plain_text at most 150 characters; a section's
  text at most 3,000, its fields at most 10 of at most 2,000 each (a section needs text or fields);
  a context element's text at most 3,000;
* an actions block at most 25 elements, a context block at most 10;
* an element's action_id at most 255 characters and unique within its block;
* a button's text at most 75 characters, its value at most 2,000, its url at most 3,000;
* an option's value at most 150 characters, a placeholder at most 150.

and on views (views.open, views.update, views.push, views.publish), refused with
``invalid_arguments``:

* at most 100 blocks in a modal or a Home tab; a modal's title, submit and close at most 24
  characters; private_metadata at most 3,000 characters, callback_id at most 255;
* an input block's label at most 2,000 characters, its hint at most 2,000; a plain_text_input's
  max_length at most 3,000;
* in both: checkboxes and radio buttons at most 10 options, a static select at most 100 (or at
  most 100 option groups of at most 100), an option's text at most 75 characters, a group's label
  at most 75.

Slack keeps a message's top-level ``text`` up to 40,000 characters and silently truncates the rest
(chat.postMessage, "Truncating content"): :data:`MAX_MESSAGE_TEXT`, applied by the fake on store.

Sources: api.slack.com/reference/block-kit/blocks (message blocks, actions, context, header,
input, section) and /block-elements (button, plain_text_input, checkboxes, radio buttons and
static select), /composition-objects (text, option, option group), /reference/surfaces/views
(blocks, title, submit, close, private_metadata, callback_id).
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
MAX_BLOCK_ID = 255
MAX_HEADER = 150
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_TEXT = 3000
MAX_ACTIONS = 25
MAX_CONTEXT = 10
MAX_ACTION_ID = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_OPTION_VALUE = 150
MAX_PLACEHOLDER = 150
MAX_VIEW_BLOCKS = 100
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255
MAX_INPUT_LABEL = 2000
MAX_INPUT_HINT = 2000
MAX_INPUT_LENGTH = 3000
MAX_OPTIONS = {"checkboxes": 10, "radio_buttons": 10, "static_select": 100, "multi_static_select": 100}
MAX_OPTION_GROUPS = 100
MAX_OPTION_TEXT = 75
MAX_MESSAGE_TEXT = 40_000
TEXT_TYPES = ("plain_text", "mrkdwn")


def _text(value: Any) -> str:
    return str(value.get("text", "")) if isinstance(value, dict) else ""


def _text_object(value: Any, where: str, limit: int) -> list[str]:
    """A text object: 1 to `limit` characters."""
    text = _text(value)
    if not text:
        return [f"{where} text must be at least 1 character"]
    return [f"{where} text longer than {limit}"] if len(text) > limit else []


def _check_options(element: dict[str, Any], where: str) -> list[str]:
    limit = MAX_OPTIONS.get(str(element.get("type")))
    if limit is None:
        return []
    problems = []
    groups = element.get("option_groups") or []
    if len(groups) > MAX_OPTION_GROUPS:
        problems.append(f"{where}: more than {MAX_OPTION_GROUPS} option groups")
    if any(len(_text(g.get("label"))) > MAX_OPTION_TEXT for g in groups if isinstance(g, dict)):
        problems.append(f"{where}: an option group's label longer than {MAX_OPTION_TEXT}")
    in_groups = [g.get("options") or [] for g in groups if isinstance(g, dict)]
    if any(len(options) > limit for options in in_groups):
        problems.append(f"{where}: an option group with more than {limit} options")
    options = element.get("options") or []
    if len(options) > limit:
        problems.append(f"{where}: {element['type']} with more than {limit} options")
    every = [o for o in options + [o for group in in_groups for o in group] if isinstance(o, dict)]
    if any(len(_text(o.get("text"))) > MAX_OPTION_TEXT for o in every):
        problems.append(f"{where}: an option's text longer than {MAX_OPTION_TEXT}")
    if any(len(str(o.get("value", ""))) > MAX_OPTION_VALUE for o in every):
        problems.append(f"{where}: an option's value longer than {MAX_OPTION_VALUE}")
    return problems


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
    problems += _check_options(element, where)
    if element.get("placeholder") is not None and len(_text(element["placeholder"])) > MAX_PLACEHOLDER:
        problems.append(f"{where}: placeholder longer than {MAX_PLACEHOLDER}")
    for bound in ("max_length", "min_length"):
        if isinstance(element.get(bound), int) and element[bound] > MAX_INPUT_LENGTH:
            problems.append(f"{where}: {bound} above {MAX_INPUT_LENGTH}")
    if element.get("type") == "button":
        if len(_text(element.get("text"))) > MAX_BUTTON_TEXT:
            problems.append(f"{where}: button text longer than {MAX_BUTTON_TEXT}")
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append(f"{where}: button value longer than {MAX_BUTTON_VALUE}")
        if len(str(element.get("url", ""))) > MAX_URL:
            problems.append(f"{where}: button url longer than {MAX_URL}")
    return problems


def _check_section(block: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    fields = block.get("fields")
    if block.get("text") is None and not fields:
        return [f"{where}: a section needs text or fields"]
    problems = []
    if block.get("text") is not None:
        problems += _text_object(block["text"], f"{where}.text", MAX_SECTION_TEXT)
    if fields is not None:
        if len(fields) > MAX_SECTION_FIELDS:
            problems.append(f"{where}: more than {MAX_SECTION_FIELDS} fields")
        for index, field in enumerate(fields):
            problems += _text_object(field, f"{where}.fields[{index}]", MAX_FIELD_TEXT)
    if block.get("accessory") is not None:
        problems += _check_element(block["accessory"], f"{where}.accessory", seen)
    return problems


def _check_input(block: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    problems = _text_object(block.get("label"), f"{where}.label", MAX_INPUT_LABEL)
    if block.get("hint") is not None:
        problems += _text_object(block["hint"], f"{where}.hint", MAX_INPUT_HINT)
    if block.get("element") is not None:
        problems += _check_element(block["element"], f"{where}.element", seen)
    return problems


def _check_elements(block: dict[str, Any], kind: str, where: str, seen: set[str]) -> list[str]:
    elements = block.get("elements") or []
    limit = MAX_ACTIONS if kind == "actions" else MAX_CONTEXT
    problems = []
    if not elements or len(elements) > limit:
        problems.append(f"{where}: {kind} needs 1 to {limit} elements, got {len(elements)}")
    for index, element in enumerate(elements):
        if kind == "context" and isinstance(element, dict) and element.get("type") in TEXT_TYPES:
            problems += _text_object(element, f"{where}.elements[{index}]", MAX_CONTEXT_TEXT)
        else:
            problems += _check_element(element, f"{where}.elements[{index}]", seen)
    return problems


def _check_block(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or not block.get("type"):
        return [f"{where} has no type"]
    kind, problems, seen = block["type"], [], set()
    if len(str(block.get("block_id", ""))) > MAX_BLOCK_ID:
        problems.append(f"{where}: block_id longer than {MAX_BLOCK_ID}")
    if kind == "header":
        problems += _text_object(block.get("text"), f"{where}: header", MAX_HEADER)
    if kind == "section":
        problems += _check_section(block, where, seen)
    if kind == "input":
        problems += _check_input(block, where, seen)
    if kind in ("actions", "context"):
        problems += _check_elements(block, kind, where, seen)
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
    if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
        problems.append(f"private_metadata longer than {MAX_PRIVATE_METADATA}")
    if len(str(view.get("callback_id", ""))) > MAX_CALLBACK_ID:
        problems.append(f"callback_id longer than {MAX_CALLBACK_ID}")
    for index, block in enumerate(blocks):
        problems += _check_block(block, f"blocks[{index}]")
    return problems


def as_slack_keeps(text: str) -> str:
    """A message's top-level text as Slack stores it: the first 40,000 characters."""
    return text[:MAX_MESSAGE_TEXT]
