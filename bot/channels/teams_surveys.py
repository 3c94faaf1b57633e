"""Adaptive Cards for pulse surveys beyond the message itself (`teams_cards.survey_card`): the survey
form a CAM fills in and the survey preview with Send / Cancel (the notice's own verbs, as a survey
is a notice). Cards are dicts; user text goes through `escape`."""

from __future__ import annotations

from typing import Any

from bot.channels.survey_lines import survey_preview_lines
from bot.channels.teams_cards import escape
from bot.channels.teams_replies import CANCEL_VERB, SEND_VERB, card
from bot.core.surveys.creating import SurveyPreview
from bot.topics import TopicCatalog

SURVEY_COMPOSE_VERB = "herald.survey_compose"
KINDS = (("scale:1-5", "Scale 1–5"), ("scale:0-10", "Scale 0–10 (NPS)"), ("options", "Options (one per line)"))


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def survey_compose_card(catalog: TopicCatalog, *, error: str = "", values: dict[str, str] | None = None) -> dict:
    values = values or {}

    def text(id_: str, label: str, *, required: bool = False, multiline: bool = False, placeholder: str = "",
             max_length: int | None = None) -> dict[str, Any]:
        field: dict[str, Any] = {"type": "Input.Text", "id": id_, "label": label, "isRequired": required,
                                 "isMultiline": multiline, "placeholder": placeholder}
        if max_length:
            field["maxLength"] = max_length
        if values.get(id_):
            field["value"] = values[id_]
        return field

    topics = [{"title": t.title, "value": t.key} for t in catalog.topics.values()]
    body: list[dict[str, Any]] = [_text("New survey", weight="Bolder", size="Medium")]
    if error:
        body.append(_text(f"⚠ {escape(error)}", color="Attention"))
    body += [
        {"type": "Input.ChoiceSet", "id": "topic", "label": "Topic", "isRequired": True,
         "value": values.get("topic") or topics[0]["value"], "choices": topics},
        text("audience", "Audience", required=True, placeholder="tier:gold region:emea role:support"),
        text("question", "Question", required=True, max_length=150),
        {"type": "Input.ChoiceSet", "id": "kind", "label": "Answers", "isRequired": True,
         "value": values.get("kind") or KINDS[0][0], "choices": [{"title": t, "value": v} for v, t in KINDS]},
        text("options", "Options (2 to 5, one per line; only for Options)", multiline=True),
        text("follow_up", "Follow-up question (optional)", max_length=150, placeholder="What could be better?"),
        {"type": "Input.Toggle", "id": "anonymous", "title": "Anonymous: no names, no group under 5 answers",
         "value": values.get("anonymous") or "false", "valueOn": "true", "valueOff": "false"},
        text("closes", "Closes (optional)", placeholder="2026-12-01 or 2026-12-01T17:00Z"),
    ]
    return card(body, [{"type": "Action.Execute", "title": "Preview", "verb": SURVEY_COMPOSE_VERB, "data": {}}],
                "New survey")


def survey_preview_card(preview: SurveyPreview) -> dict:
    lines = survey_preview_lines(preview, bold=lambda t: f"**{t}**", escape=escape, bullet="-")
    data = {"notice_id": preview.notice.id}
    return card([_text(line) for line in lines], [
        {"type": "Action.Execute", "title": "Send", "verb": SEND_VERB, "data": data, "style": "positive"},
        {"type": "Action.Execute", "title": "Cancel", "verb": CANCEL_VERB, "data": data},
    ], f"Preview of survey #{preview.notice.id}")
