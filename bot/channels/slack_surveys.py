"""Block Kit for pulse surveys beyond the message itself (`slack_blocks.survey_blocks`): the
follow-up comment modal, the survey form and the survey preview. User text goes through `escape`
wherever Slack reads mrkdwn; modal labels are plain_text, which Slack never turns into mentions."""

from __future__ import annotations

from typing import Any

from bot.channels.slack_blocks import CANCEL_ACTION, SECTION_TEXT, SEND_ACTION, cut_mrkdwn, escape, option, topic_select
from bot.channels.survey_lines import survey_preview_lines
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


def comment_modal(notice_id: int, follow_up: str, current: str = "") -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 2000}
    if current:
        element["initial_value"] = current[:2000]
    return {
        "type": "modal", "callback_id": SURVEY_COMMENT_CALLBACK, "private_metadata": str(notice_id),
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
