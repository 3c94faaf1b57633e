"""What a Slack request body must look like before bolt and Herald's listeners read it.

Slack always sends these fields with these types; a correctly signed body that does not (a
replayed, hand-made or corrupted request) used to reach bolt's context builders and Herald's
listeners and crash them (`KeyError`, `TypeError`, HTTP 500 and a traceback). Checking the parts
that bolt and the listeners read, once, here, keeps the listeners plain: a body that passes has
every field they index, with the type they expect. Ids that do not exist are the core's concern
(`UserError`), not this module's.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from jsonschema import Draft202012Validator

_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_OPTION = {"type": "object", "properties": {"value": _STR}, "required": ["value"]}
_OPTIONS = {"type": "array", "items": _OPTION}
_ID_OBJECT = {"type": "object", "properties": {"id": _STR}, "required": ["id"]}
_TEAM = {"anyOf": [_ID_OBJECT, {"type": "null"}]}  # null: an org-wide install's press outside a workspace
_ELEMENT = {
    "type": "object",
    "properties": {"type": _STR, "value": _OPT_STR, "selected_option": {"anyOf": [_OPTION, {"type": "null"}]},
                   "selected_options": _OPTIONS, "action_id": _STR, "block_id": _STR},
}
_BLOCK = {
    "type": "object",
    "properties": {"type": _STR, "block_id": _STR,
                   "accessory": {"type": "object", "properties": {"action_id": _STR, "options": _OPTIONS}}},
}
_VIEW = {
    "type": "object",
    "properties": {
        "id": _STR, "callback_id": _STR, "private_metadata": _STR, "type": _STR, "hash": _STR,
        "blocks": {"type": "array", "items": _BLOCK},
        "state": {"type": "object", "properties": {
            "values": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": _ELEMENT}},
        }, "required": ["values"]},
    },
}
_EVENT = {
    "type": "object",
    "properties": {"type": _STR, "subtype": _STR, "user": _STR, "channel": _STR, "channel_type": _STR,
                   "text": _STR, "tab": _STR, "bot_id": _OPT_STR, "ts": _STR, "event_ts": _STR,
                   "tokens": {"type": "object", "properties": {"bot": {"type": "array"}, "oauth": {"type": "array"}}}},
    "required": ["type"],
}


def _requires(kind: str, *fields: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {"required": list(fields), **(extra or {})}}


PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": _STR, "token": _STR, "api_app_id": _STR, "trigger_id": _STR, "response_url": _STR,
        "team_id": _OPT_STR, "user_id": _STR, "enterprise_id": _OPT_STR, "command": _STR, "text": _STR,
        "channel_id": _STR, "event_id": _STR, "callback_id": _STR, "is_enterprise_install": {"type": ["boolean", "string"]},
        "team": {"anyOf": [_ID_OBJECT, {"type": "null"}]},
        "user": {"anyOf": [{**_ID_OBJECT, "properties": {"id": _STR, "team_id": _STR}}, _STR]},
        "enterprise": {"anyOf": [_ID_OBJECT, {"type": ["string", "null"]}]},
        "channel": {"anyOf": [_ID_OBJECT, {"type": ["string", "null"]}]},
        "container": {"type": "object"},
        "message": {"type": "object"},
        "authorizations": {"type": "array", "items": {"type": "object", "properties": {
            "team_id": _OPT_STR, "user_id": _OPT_STR, "enterprise_id": _OPT_STR,
            "is_enterprise_install": {"type": ["boolean", "null"]}}}},
        "actions": {"type": "array", "minItems": 1, "items": {**_ELEMENT, "required": ["action_id"]}},
        "view": _VIEW,
        "event": _EVENT,
    },
    "anyOf": [{"required": ["team_id"]}, {"required": ["team"]}, {"required": ["ssl_check"]},
              {"properties": {"type": {"const": "url_verification"}}, "required": ["type"]}],
    "allOf": [
        {"if": {"required": ["command"]}, "then": {"required": ["team_id", "user_id", "trigger_id", "response_url"]}},
        _requires("block_actions", "team", "user", "actions",
                  extra={"properties": {"team": _TEAM, "user": _ID_OBJECT}}),
        _requires("view_submission", "team", "user", "view", extra={"properties": {
            "team": _TEAM, "user": _ID_OBJECT, "view": {"required": ["callback_id", "type", "state"]}}}),
        _requires("view_closed", "team", "user", "view", extra={"properties": {
            "team": _TEAM, "user": _ID_OBJECT, "view": {"required": ["callback_id", "type"]}}}),
        # an org-wide install's interaction from outside any workspace of the org has `"team": null`
        # (bolt reads the user's team then): the user's team must be there
        {"if": {"properties": {"team": {"type": "null"}}, "required": ["team"]},
         "then": {"properties": {"user": {"type": "object", "required": ["id", "team_id"]}}}},
        _requires("event_callback", "event", "team_id"),
    ],
}
_VALIDATOR = Draft202012Validator(PAYLOAD_SCHEMA)


class Malformed(ValueError):
    """The body is not a request Slack sends; the message names the part, never its value."""


def parse(body: str, content_type: str | None) -> dict[str, Any]:
    """The body as bolt would read it (`slack_bolt.request.internals.parse_body`), but a failure
    is `Malformed` instead of whatever `json.loads` raises deep inside bolt."""
    try:
        if not body:
            return {}
        if content_type == "application/json" or body.lstrip().startswith(("{", "[")):
            parsed: Any = json.loads(body)
        else:
            form = dict(parse_qsl(body, keep_blank_values=True))
            parsed = json.loads(form["payload"]) if "payload" in form else form
    except ValueError:
        raise Malformed("the body is not JSON or a form Slack sends") from None
    if not isinstance(parsed, dict):
        raise Malformed("the body is not a JSON object")
    check(parsed)
    return parsed


def check(payload: dict[str, Any]) -> None:
    """Raise `Malformed` naming the first part of `payload` that Slack would never send."""
    if plainly_valid(payload):
        return
    error = next(iter(sorted(_VALIDATOR.iter_errors(payload), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "the body"
        raise Malformed(f"{where}: {error.validator} check failed")


# ---- the button press, checked by hand ------------------------------------------------------
# The schema check costs about as much CPU as recording an acknowledgement. A button press (the
# Acknowledge click, many a second after a must-know notice) is checked here by hand instead,
# field by field as PAYLOAD_SCHEMA says; anything this does not recognise at once, or any field
# whose rules are more involved (views, events, menus), goes through the full schema check.

def _str(v: Any) -> bool:
    return isinstance(v, str)


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _id_object(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("id"), str)


def _user(v: Any) -> bool:
    return _id_object(v) and ("team_id" not in v or isinstance(v["team_id"], str))


def _id_object_or_opt_str(v: Any) -> bool:
    return _id_object(v) or _opt_str(v)


def _action(v: Any) -> bool:
    return (isinstance(v, dict) and isinstance(v.get("action_id"), str)
            and "selected_option" not in v and "selected_options" not in v
            and all(_str(v[k]) for k in ("type", "block_id") if k in v)
            and ("value" not in v or _opt_str(v["value"])))


def _actions(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(_action(a) for a in v)


_PRESS_FIELDS = {
    "type": _str, "token": _str, "api_app_id": _str, "trigger_id": _str, "response_url": _str,
    "user_id": _str, "text": _str, "channel_id": _str, "event_id": _str, "callback_id": _str,
    "team_id": _opt_str, "enterprise_id": _opt_str,
    "is_enterprise_install": lambda v: isinstance(v, (bool, str)),
    "team": _id_object, "user": _user, "enterprise": _id_object_or_opt_str, "channel": _id_object_or_opt_str,
    "container": lambda v: isinstance(v, dict), "message": lambda v: isinstance(v, dict),
    "actions": _actions,
}
_SCHEMA_FIELDS = set(PAYLOAD_SCHEMA["properties"])


def plainly_valid(payload: dict[str, Any]) -> bool:
    """True only for a `block_actions` body that PAYLOAD_SCHEMA certainly accepts; False means
    "not sure", never "invalid" (the caller then runs the schema)."""
    if payload.get("type") != "block_actions" or not all(k in payload for k in ("team", "user", "actions")):
        return False
    for key, value in payload.items():
        rule = _PRESS_FIELDS.get(key)
        if rule is None:
            if key in _SCHEMA_FIELDS:
                return False  # a field with rules of its own (view, event, command...): the schema decides
            continue  # a field the schema leaves free
        if not rule(value):
            return False
    return True
