"""Teams renderings of command results: preview and compose cards, and Markdown text replies.

Mirrors `bot/handlers/slack/replies.py` + `slack_blocks.py`; user text always goes through
`escape` and cards are built as dicts, never from string templates.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from bot.channels.report_lines import report_text
from bot.channels.status_lines import status_lines
from bot.channels.survey_lines import experiment_text
from bot.channels.teams_cards import (
    CARD_CONTENT_TYPE,
    CARD_VERSION,
    MAX_ACTIVITY_BYTES,
    SCHEMA_URL,
    activity_size,
    direct_message_card,
    escape,
    formatted,
    reader_time,
)
from bot.common.replies import ReplyBudget
from bot.core.commands.help import HelpWording, partner_help, staff_help
from bot.core.commands.parser import MAX_LINK
from bot.core.directory.preferences import NO_QUIET_HOURS
from bot.core.commands.runner import (
    CONSOLE_HINT,
    Cancelled,
    Handoffs,
    Paused,
    Progress,
    ReportReady,
    Resumed,
    Retracted,
    Scheduled,
    handoffs_text,
    progress_text,
    scheduled_more,
)
from bot.core.notices.revisions import EditResult
from bot.core.notices.sending import MAX_BODY, MAX_TITLE, Preview
from bot.core.notices.status import NoticeStatusReport
from bot.core.notices.views import format_time
from bot.core.ports import DirectMessage
from bot.topics import IMPORTANCE, TopicCatalog
from bot.topics.importance import Importance
from storage.models import Notice

SEND_VERB = "herald.send"
CANCEL_VERB = "herald.cancel"
COMPOSE_VERB = "herald.compose"
EDIT_VERB = "herald.edit"
REPLY_SUBMIT_VERB = "herald.qa_reply_submit"

Card = dict[str, Any]


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None, fallback: str = "Herald") -> Card:
    result: Card = {"type": "AdaptiveCard", "$schema": SCHEMA_URL, "version": CARD_VERSION,
                    "fallbackText": fallback, "body": body}
    if actions:
        result["actions"] = actions
    return result


def card_activity(content: Card, summary: str = "") -> dict[str, Any]:
    return {"type": "message", "summary": summary[:500],
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": content}]}


def text_activity(markdown: str) -> dict[str, Any]:
    return {"type": "message", "textFormat": "markdown", "text": markdown}


# a command's Markdown reply, measured as Teams measures the activity that carries it
TEAMS_REPLY = ReplyBudget(limit=MAX_ACTIVITY_BYTES, join="\n\n", measure=lambda text: activity_size(text_activity(text)))
TOO_LARGE_REPLY = ("That answer is too long for one Teams message. The console has it in full "
                   f"({CONSOLE_HINT}).")


TEAMS_HELP = HelpWording(
    edit="`edit <notice-id>` — correct a sent notice (form); inline: `edit <id> [material] | <title> | <body>`",
    report="summary here, and a link to the CSV for 15 minutes when Herald has a public URL",
    questions="ask Herald here, in your own words",
    preferences="type `preferences`",
    commands="The other commands in Herald's menu are for your vendor's channel account managers.",
)
_SLACK_BOLD = re.compile(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])")


def help_markdown(unknown: str = "") -> str:
    """The staff's commands."""
    prefix = f"I don't know the command `{escape(unknown)}`.\n\n" if unknown else ""
    return prefix + _help_markdown(staff_help(TEAMS_HELP))


def partner_help_markdown() -> str:
    """What Herald does for a partner (their `help`)."""
    return _help_markdown(partner_help(TEAMS_HELP))


def _help_markdown(text: str) -> str:
    """The help texts are our own wording in Slack's markup: its *bold* becomes Markdown **bold**,
    and each line a paragraph of its own (Teams joins lines)."""
    return _SLACK_BOLD.sub(r"**\1**", text).replace("\n", "\n\n")


def preview_card(preview: Preview) -> Card:
    notice = preview.notice
    policy = IMPORTANCE[Importance(notice.importance)]
    recipients = preview.recipients
    body = [
        _text(f"Preview of notice #{notice.id}", weight="Bolder", size="Medium"),
        _text(f"**{policy.label}** · {escape(preview.topic.title)}"),
        _text(f"**{escape(notice.title)}**"),
        _text(formatted(notice.body)),
        _text(f"Audience {escape(notice.audience)} → **{recipients} recipient{'s' if recipients != 1 else ''}**"),
    ]
    if notice.scheduled_at:
        body.append(_text(f"Goes out at {reader_time(notice.scheduled_at)} (the audience is resolved again then)"))
    if notice.deadline:
        body.append(_text(f"Deadline: {reader_time(notice.deadline)}"))
    if preview.variants:
        split = (f"first to {preview.share}% of them (the rest wait for rollout)" if preview.share
                 else "to all of them")
        body.append(_text(f"**A/B test:** {len(preview.variants)} variants, split evenly within each partner, {split}"))
        body += [_text(f"- **{label}** {escape(title)}: {escape(text[:120])}{'…' if len(text) > 120 else ''}")
                 for label, title, text in preview.variants]
    body += [_text(f"⚠ {escape(w)}", color="Warning") for w in preview.warnings]
    if recipients == 0:
        body.append(_text("⚠ Nobody matches this audience; sending would reach no one.", color="Warning"))
    data = {"notice_id": notice.id}
    return card(body, [
        {"type": "Action.Execute", "title": "Send", "verb": SEND_VERB, "data": data, "style": "positive"},
        {"type": "Action.Execute", "title": "Cancel", "verb": CANCEL_VERB, "data": data},
    ], f"Preview of notice #{notice.id}")


def compose_card(catalog: TopicCatalog, *, error: str = "", values: dict[str, str] | None = None) -> Card:
    values = values or {}

    def choice(id_: str, label: str, options: list[tuple[str, str]], default: str) -> dict[str, Any]:
        return {"type": "Input.ChoiceSet", "id": id_, "label": label, "isRequired": True,
                "value": values.get(id_) or default,
                "choices": [{"title": title, "value": value} for value, title in options]}

    def text(id_: str, label: str, *, required: bool = True, multiline: bool = False, placeholder: str = "",
             max_length: int = 0) -> dict:
        field = {"type": "Input.Text", "id": id_, "label": label, "isRequired": required, "isMultiline": multiline,
                 "placeholder": placeholder, **({"maxLength": max_length} if max_length else {})}
        if values.get(id_):
            field["value"] = values[id_]
        return field

    body: list[dict[str, Any]] = [_text("New notice", weight="Bolder", size="Medium")]
    if error:
        body.append(_text(f"⚠ {escape(error)}", color="Attention"))
    body += [
        choice("topic", "Topic", [(t.key, t.title) for t in catalog.topics.values()], next(iter(catalog.topics))),
        choice("importance", "Importance", [(p.level.value, p.label) for p in IMPORTANCE.values()],
               Importance.NEED.value),
        text("audience", "Audience", placeholder="tier:gold region:emea role:support"),
        text("title", "Title"),
        text("body", "Message", multiline=True),
        text("link", "Link", required=False, placeholder="https://...", max_length=MAX_LINK),
        text("deadline", "Deadline (must-know only)", required=False, placeholder="2026-12-01 or 2026-12-01T17:00Z"),
    ]
    return card(body, [{"type": "Action.Execute", "title": "Preview", "verb": COMPOSE_VERB, "data": {}}], "New notice")


def edit_card(notice: Notice, *, material: bool = False, error: str = "",
              values: dict[str, str] | None = None) -> Card:
    """The form of `edit <id>` (Slack's edit modal): the title, the message and the link as they are
    (or as the CAM typed them, shown again with the error), and for a must-know notice the
    material-change toggle. Its Update sends them all; an emptied link removes the notice's link."""
    shown = {"title": notice.title, "body": notice.body, "link": notice.link or "",
             "material": "true" if material else "false", **(values or {})}

    def text(id_: str, label: str, *, required: bool = True, multiline: bool = False, max_length: int = 0,
             placeholder: str = "") -> dict[str, Any]:
        return {"type": "Input.Text", "id": id_, "label": label, "isRequired": required, "isMultiline": multiline,
                "placeholder": placeholder, "value": shown[id_], **({"maxLength": max_length} if max_length else {})}

    body: list[dict[str, Any]] = [
        _text(f"Edit notice #{notice.id}", weight="Bolder", size="Medium"),
        _text("Every delivered copy is updated in place and the change is kept as a new revision.", isSubtle=True),
    ]
    if error:
        body.append(_text(f"⚠ {escape(error)}", color="Attention"))
    body += [text("title", "Title", max_length=MAX_TITLE), text("body", "Message", multiline=True, max_length=MAX_BODY),
             text("link", "Link", required=False, max_length=MAX_LINK, placeholder="https://...")]
    if notice.importance == Importance.MUST.value:
        body.append({"type": "Input.Toggle", "id": "material",
                     "title": "Material change: ask everyone to acknowledge again",
                     "value": "true" if shown["material"] == "true" else "false",
                     "valueOn": "true", "valueOff": "false"})
    return card(body, [{"type": "Action.Execute", "title": "Update", "verb": EDIT_VERB,
                        "data": {"notice_id": notice.id}, "style": "positive"}], f"Edit notice #{notice.id}")


def reply_card(question_id: int, handoff: DirectMessage) -> Card:
    """The CAM's answer form, which replaces the hand-off card when they press Reply: the hand-off
    (the question, the partner, the knowledge base's suggestion) stays in view above the input."""
    shown = direct_message_card(replace(handoff, buttons=()))["body"]
    return card([*shown, _text("Your answer to the partner", weight="Bolder", separator=True),
                 {"type": "Input.Text", "id": "reply", "isMultiline": True, "isRequired": True, "maxLength": 2800,
                  "label": "Answer"}],
                [{"type": "Action.Execute", "title": "Send", "verb": REPLY_SUBMIT_VERB,
                  "data": {"question_id": question_id}, "style": "positive"}], "Answer a partner")


# a `code` span of Herald's own (user text has its backticks escaped: teams_cards.escape)
_CODE_SPAN = re.compile(r"(?<!\\)`([^`\\]+)`")


def note_card(text: str) -> Card:
    """A small card that replaces a preview after Send/Cancel. Its text is a card's Markdown,
    which has no `code` (a TextBlock shows the backticks): Herald's command spans are bold."""
    text = _CODE_SPAN.sub(r"**\1**", text)
    return card([_text(text)], None, text[:200])


def status_markdown(report: NoticeStatusReport) -> str:
    return "\n\n".join(status_lines(report, bold=lambda text: f"**{text}**", escape=escape, bullet="-"))


def result_markdown(result: Any) -> str:  # noqa: PLR0911 - one branch per result type
    text = experiment_text(result, bold=lambda t: f"**{t}**", escape=escape, bullet="-", join="\n\n")
    if text is not None:
        return text
    if isinstance(result, NoticeStatusReport):
        return status_markdown(result)
    if isinstance(result, Scheduled):
        if not result.notices:
            return "No notices are scheduled."
        items = [f"- #{n.id} {format_time(n.scheduled_at)} · {n.importance} · {escape(n.topic)} · "  # type: ignore[arg-type]
                 f"**{escape(n.title)}** → {escape(n.audience)}" for n in result.notices]
        return TEAMS_REPLY.listing(["**Scheduled notices**"], items, more=scheduled_more)
    if isinstance(result, Cancelled):
        n = result.notice
        return f"Notice #{n.id} " + ("cancelled." if n.status == "cancelled" else f"is already {n.status}; nothing to cancel.")
    if isinstance(result, EditResult):
        extra = " Everyone is asked to acknowledge it again." if result.reacknowledge else ""
        return f"Notice #{result.notice.id} {result.summary}.{extra}"
    if isinstance(result, Retracted):
        return (f"Notice #{result.notice.id} retracted: {result.copies} delivered copies will show "
                f"\"Retracted: {escape(result.reason)}\"; {result.cancelled} pending messages cancelled.")
    if isinstance(result, Paused):
        org = result.organisation
        until = f" until {format_time(org.paused_until)}" if org.paused_until else " until you resume it"
        return (f"Reminders and nudges for **{escape(org.name)}** are paused{until}. "
                "Must-know notices are still delivered.")
    if isinstance(result, Resumed):
        return f"Reminders and nudges for **{escape(result.organisation.name)}** are back on."
    if isinstance(result, ReportReady):
        return report_markdown(result)
    if isinstance(result, Handoffs):
        return handoffs_text(result, bold="**", budget=TEAMS_REPLY, escape=escape)
    if isinstance(result, Progress):
        return progress_text(result, bold="**", budget=TEAMS_REPLY, escape=escape)
    raise TypeError(f"no Teams rendering for {type(result).__name__}")


def report_markdown(ready: ReportReady, download_url: str = "") -> str:
    """The summary the `report` reply shows (bot.channels.report_lines, as in Slack), then where
    the CSV is: a signed download link when Herald can make one."""
    where = (f"[Download the CSV report]({download_url}) (the link works for 15 minutes)" if download_url
             else "The full CSV: `herald report <id>` or the reports API.")
    return report_text(ready, bold=lambda t: f"**{t}**", escape=escape, bullet="-", budget=TEAMS_REPLY, tail=[where])


def console_link_markdown(url: str) -> str:
    """The link is a credential: a 1:1 chat shows it to the person who asked only."""
    return (f"[Open the Herald console]({url})\n\n"
            "The link works once, for 10 minutes, and signs **you** in: do not forward it.")


def sent_markdown(notice: Notice, recipients: int, already: bool, queued: bool = False) -> str:
    """The answer to Send. `queued`: the send is stored and its outbox rows are written after this
    answer (`sending.request_send`); `recipients` is then the preview's count."""
    if already:
        state = "being sent" if queued else notice.status
        return f"Notice #{notice.id} is already {state}; nothing new was sent."
    if queued:
        return (f"Sending notice #{notice.id} **{escape(notice.title)}** to {recipients} recipients. "
                f"I'll tell you here when every delivery is queued; follow it with `status {notice.id}`.")
    if notice.status == "scheduled" and notice.scheduled_at:
        return (f"Notice #{notice.id} **{escape(notice.title)}** is scheduled for {reader_time(notice.scheduled_at)}. "
                f"**scheduled** lists it; **cancel {notice.id}** cancels it.")  # bold: a card shows no `code`
    return f"Sending notice #{notice.id} **{escape(notice.title)}** to {recipients} recipients. Follow it with `status {notice.id}`."


def out_markdown(notice: Notice, recipients: int) -> str:
    """The note after a Teams Send's outbox rows are written (`sending.finish_send`)."""
    return (f"Notice #{notice.id} **{escape(notice.title)}** is out: {recipients} recipients queued. "
            f"Follow it with `status {notice.id}`.")


PREFERENCES_VERB = "herald.preferences_save"


def preferences_card(prefs, catalog: TopicCatalog, *, note: str = "") -> Card:  # noqa: ANN001
    hours = [{"title": f"{h:02d}:00", "value": str(h)} for h in range(24)]
    body: list[dict[str, Any]] = [_text("Your Herald preferences", weight="Bolder", size="Medium")]
    if note:
        body.append(_text(escape(note), color="Attention" if note.startswith("⚠") else "Good"))
    body.append(_text("Optional topics (must-know notices always reach you)", weight="Bolder"))
    body += [{"type": "Input.Toggle", "id": f"topic:{key}", "title": catalog.topics[key].title,
              "value": "true" if on else "false", "valueOn": "true", "valueOff": "false"}
             for key, on in prefs.subscribed.items()]
    body += [
        {"type": "Input.ChoiceSet", "id": "digest_frequency", "label": "Digest of nice-to-know notices",
         "value": prefs.digest_frequency, "choices": [{"title": "Daily", "value": "daily"},
                                                      {"title": "Weekly", "value": "weekly"}]},
        {"type": "Input.ChoiceSet", "id": "quiet_start", "label": "Quiet hours start", "value": str(prefs.quiet_start),
         "choices": hours},
        {"type": "Input.ChoiceSet", "id": "quiet_end", "label": "Quiet hours end", "value": str(prefs.quiet_end),
         "choices": hours},
        *([_text(NO_QUIET_HOURS, isSubtle=True)] if prefs.no_quiet_hours else []),
        {"type": "Input.Text", "id": "timezone", "label": "Time zone (e.g. Europe/Paris)", "value": prefs.timezone},
    ]
    return card(body, [{"type": "Action.Execute", "title": "Save", "verb": PREFERENCES_VERB, "data": {},
                        "style": "positive"}], "Your Herald preferences")
