"""Block Kit for pulse surveys beyond the message itself (`slack_blocks.survey_blocks`): the
follow-up comment modal, the survey form and the survey preview. User text goes through `escape`
wherever Slack reads mrkdwn; modal labels are plain_text, which Slack never turns into mentions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bot.channels.slack_blocks import (
    CANCEL_ACTION,
    SECTION_TEXT,
    SEND_ACTION,
    cut_mrkdwn,
    escape,
    notice_blocks,
    notice_fallback_text,
    option,
    topic_select,
)
from bot.channels.survey_lines import survey_preview_lines
from bot.core.surveys.answers import AnswerResult
from bot.core.surveys.creating import SurveyPreview
from bot.topics import TopicCatalog

SURVEY_COMPOSE_CALLBACK = "herald_survey_compose"
SURVEY_COMMENT_CALLBACK = "herald_survey_comment_submit"
SURVEY_PREVIEW_CALLBACK = "herald_preview"  # the notice preview modal: Send sends the survey's notice

Blocks = list[dict[str, Any]]


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut_mrkdwn(text, SECTION_TEXT)}


def answered_message(result: AnswerResult, catalog: TopicCatalog, *, now: datetime) -> dict[str, Any]:
    """respond() arguments replacing the pressed survey message with the member's answer (and
    comment) marked, still changeable."""
    view = result.view(catalog, now=now)
    return {"replace_original": True, "text": notice_fallback_text(view), "blocks": notice_blocks(view)}


# A response_url of Slack's is about 100 characters; the modal's private_metadata holds 3,000.
_MAX_RESPONSE_URL = 2000
_MESSAGE_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")


@dataclass(frozen=True)
class CommentOrigin:
    """What the comment modal carries in its private_metadata: the survey (`notice`, the id as
    text, for the handler's record_id) and, when **Add a comment** was pressed on the survey
    message, that message's ts and the press's response_url (Slack: valid 30 minutes, for 5 uses),
    through which the submission shows the saved comment on that message."""

    notice: str
    response_url: str = ""
    message_ts: str = ""


def comment_metadata(origin: CommentOrigin) -> str:
    fields = {"notice": origin.notice, "response_url": _response_url(origin.response_url),
              "ts": _message_ts(origin.message_ts)}
    return json.dumps({k: v for k, v in fields.items() if v}, separators=(",", ":"))


def read_comment_metadata(text: object) -> CommentOrigin:
    """The modal's private_metadata, parsed defensively: it comes back in a signed request, but a
    value that is not what comment_metadata wrote yields an empty field (an empty `notice` is
    refused as stale data), never an exception. A bare id is a modal opened before the message's
    response_url was carried."""
    if not isinstance(text, str) or len(text) > 3000:
        return CommentOrigin("")
    if text.strip().isdigit():
        return CommentOrigin(text.strip())
    try:
        fields = json.loads(text)
    except ValueError:
        return CommentOrigin("")
    if not isinstance(fields, dict):
        return CommentOrigin("")
    notice = fields.get("notice")
    return CommentOrigin(notice if isinstance(notice, str) else "", _response_url(fields.get("response_url")),
                         _message_ts(fields.get("ts")))


def _response_url(value: object) -> str:
    """An http(s) URL with a host, of a sensible length ("" for anything else)."""
    if not isinstance(value, str) or len(value) > _MAX_RESPONSE_URL or not value.isascii():
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme in ("https", "http") and parts.hostname else ""


def _message_ts(value: object) -> str:
    return value if isinstance(value, str) and _MESSAGE_TS.match(value) else ""


def comment_modal(origin: CommentOrigin, follow_up: str, current: str = "") -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 2000}
    if current:
        element["initial_value"] = current[:2000]
    return {
        "type": "modal", "callback_id": SURVEY_COMMENT_CALLBACK, "private_metadata": comment_metadata(origin),
        "title": _plain("Your comment", 24), "submit": _plain("Send", 24), "close": _plain("Cancel", 24),
        "blocks": [{"type": "input", "block_id": "comment", "label": _plain(follow_up, 2000), "element": element}],
    }


def survey_compose_modal(catalog: TopicCatalog) -> dict[str, Any]:
    text = {"type": "plain_text_input", "action_id": "value"}

    def field(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False, hint: str = "") -> dict:
        block = {"type": "input", "block_id": block_id, "label": _plain(label, 2000), "element": element,
                 "optional": optional}
        if hint:
            block["hint"] = _plain(hint, 2000)
        return block

    kinds = [("options", "Options (one per line)"), ("scale:1-5", "Scale 1–5"), ("scale:0-10", "Scale 0–10 (NPS)")]
    return {
        "type": "modal", "callback_id": SURVEY_COMPOSE_CALLBACK,
        "title": _plain("New survey", 24), "submit": _plain("Preview", 24), "close": _plain("Cancel", 24),
        "blocks": [
            field("topic", "Topic", topic_select(catalog)),
            field("audience", "Audience", {**text, "placeholder": _plain("tier:gold region:emea role:support", 150)},
                  hint="comma = any of, space = and; or all"),
            field("question", "Question", {**text, "max_length": 150}),
            field("kind", "Answers", {"type": "static_select", "action_id": "value",
                                      "initial_option": option(kinds[1][1], kinds[1][0]),
                                      "options": [option(t, v) for v, t in kinds]}),
            field("options", "Options", {**text, "multiline": True}, optional=True,
                  hint="2 to 5, one per line (only for Options)"),
            field("follow_up", "Follow-up question", {**text, "max_length": 150}, optional=True,
                  hint="a free-text question after the answer, e.g. What could be better?"),
            field("anonymous", "Anonymity", {"type": "checkboxes", "action_id": "value", "options": [
                option("Anonymous: no names in the results, no group under 5 answers", "anonymous")]}, optional=True),
            field("closes", "Closes", {**text, "placeholder": _plain("2026-12-01 or 2026-12-01T17:00Z", 150)},
                  optional=True),
        ],
    }


def survey_preview_text(preview: SurveyPreview) -> str:
    return "\n".join(survey_preview_lines(preview, bold=lambda t: f"*{t}*", escape=escape, bullet="•"))


def survey_preview_blocks(preview: SurveyPreview) -> Blocks:
    notice_id = preview.notice.id
    return [
        {"type": "section", "text": _mrkdwn(survey_preview_text(preview))},
        {"type": "actions", "block_id": f"preview-{notice_id}", "elements": [
            {"type": "button", "action_id": SEND_ACTION, "style": "primary", "value": str(notice_id),
             "text": _plain("Send")},
            {"type": "button", "action_id": CANCEL_ACTION, "value": str(notice_id), "text": _plain("Cancel")},
        ]},
    ]


def survey_preview_modal(preview: SurveyPreview) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": SURVEY_PREVIEW_CALLBACK, "private_metadata": str(preview.notice.id),
        "notify_on_close": True,
        "title": _plain("Preview", 24), "submit": _plain("Send", 24), "close": _plain("Cancel", 24),
        "blocks": [{"type": "section", "text": _mrkdwn(survey_preview_text(preview))}],
    }
