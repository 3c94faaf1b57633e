"""Adaptive Card (schema 1.5) rendering for Teams, the counterpart of `slack_blocks`.

Every card is built as plain dicts, never from string templates, so user text can only ever be
the value of a `text` field. TextBlocks interpret a Markdown subset (bold, italic, lists, links),
so every piece of user text also goes through `escape` first: a title such as
`[click](http://evil)` is shown literally instead of becoming a disguised link.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.core.notices import formatting
from bot.core.notices.views import NoticeView, SurveyView, local_stamps
from bot.core.ports import DirectMessage
from bot.topics.importance import Importance

ACK_VERB = "herald.ack"
SURVEY_ANSWER_VERB = "herald.survey_answer"
SURVEY_COMMENT_VERB = "herald.survey_comment"
COMMENT_INPUT = "comment"
MAX_ACTIONS_PER_SET = 6  # Teams draws at most six actions in a row (its host config's maxActions)
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
# Teams refuses bot messages over ~100 KB with 413 MessageSizeTooBig, and it measures the whole
# activity encoded as UTF-16 (earlier tenants saw 40 KB). Keep well under it, counted the same way.
MAX_ACTIVITY_BYTES = 80_000

_COLOR = {Importance.MUST: "Attention", Importance.NEED: "Warning", Importance.NICE: "Accent"}
_BUTTON_STYLE = {"primary": "positive", "danger": "destructive"}
_ELLIPSIS = "…"
_MAX_LINE = 4_000
_MAX_TITLE = 1_000

Card = dict[str, Any]

# Markdown control characters Adaptive Card hosts act on anywhere in a line, the backslash
# included; one regex pass, so the backslashes it adds are not escaped again.
_INLINE = re.compile(r"([\\\[\]()*_~`#<>])")
# Block syntax that only counts at the start of a line: bullets, rules and setext underlines,
# numbered lists.
_LIST_BULLET = re.compile(r"^(\s*)([-+=])", re.MULTILINE)
_NUMBERED = re.compile(r"^(\s*\d+)([.)])(?=\s|$)", re.MULTILINE)


def escape(text: str) -> str:
    """Backslash-escape Markdown so user text renders literally in a TextBlock.

    Teams (desktop, web and current mobile clients) honour CommonMark-style backslash escapes.
    Line breaks are doubled because a TextBlock, being Markdown, joins single newlines.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INLINE.sub(r"\\\1", text)
    text = _LIST_BULLET.sub(r"\1\\\2", text)
    text = _NUMBERED.sub(r"\1\\\2", text)
    return text.replace("\n", "\n\n")


def formatted(text: str) -> str:
    """A CAM's text (Herald's formatting language, `bot.core.notices.formatting`) as TextBlock
    Markdown: bold, italics, bullets and links become Markdown; every other character is
    backslash-escaped, so nothing else a CAM types turns into markup."""
    return "\n\n".join(_markdown_block(block) for block in formatting.parse(text))


def _markdown_block(block: formatting.Block) -> str:
    if isinstance(block, formatting.Paragraph):
        # a TextBlock joins single newlines, so a line break is a new paragraph (as in `escape`)
        return "\n\n".join(_markdown_line(line) for line in block.lines)
    return "\n".join("- " + _markdown_line(item) for item in block.items)


def _markdown_line(parts: formatting.Line) -> str:
    return "".join(_markdown_inline(part) for part in parts)


def _markdown_inline(part: formatting.Inline) -> str:
    if isinstance(part, formatting.Text):
        return escape(part.text)
    inner = _markdown_line(part.children)
    if isinstance(part, formatting.Strong):
        return f"**{inner}**"
    if isinstance(part, formatting.Emphasis):
        return f"_{inner}_"
    return f"[{inner}]({_link_target(part.url)})"


def _link_target(url: str) -> str:
    """A URL safe inside `(...)`: the parser admits no spaces or brackets; encode them anyway."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def reader_time(moment: datetime) -> str:
    """`moment` in the reader's own time zone: the DATE() and TIME() functions Teams evaluates in a
    TextBlock's text (only there) on the reader's device. They take RFC 3339 with seconds; Z for UTC."""
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{{{{DATE({stamp}, SHORT)}}}} {{{{TIME({stamp})}}}}"


def _text(text: str, **style: Any) -> dict[str, Any]:
    """A wrapping TextBlock; `text` must already be escaped (or be our own fixed wording)."""
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]], fallback: str) -> Card:
    card: Card = {"type": "AdaptiveCard", "$schema": SCHEMA_URL, "version": CARD_VERSION,
                  "fallbackText": fallback, "msteams": {"width": "Full"}, "body": body}
    if actions:
        card["actions"] = actions
    return card


def _safe_url(link: str) -> str | None:
    """Only http(s) links become buttons; anything else (javascript:, data:, ...) is dropped."""
    try:
        parts = urlsplit(link.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return link.strip()
    return None


# ---- notices ------------------------------------------------------------------------------

def notice_summary(view: NoticeView) -> str:
    """Plain text for notifications and clients that cannot draw the card (never Markdown)."""
    if view.retracted_reason is not None:
        return f"Retracted: {view.retracted_reason}"[:500]
    if view.survey is not None:
        return f"[Survey] {view.title}"[:500]
    prefix = "Reminder: please acknowledge" if view.asks_again else view.policy.label
    return f"[{prefix}] {view.title}"[:500]


def _heading(view: NoticeView) -> str:
    title = escape(view.title[:_MAX_TITLE])
    if view.asks_again:
        return f"Reminder: {title}"
    return f"{view.policy.badge}: {title}" if view.policy.critical else title


def _badge_line(view: NoticeView) -> str:
    parts = [f"**{view.policy.label}**", escape(view.topic_title), f"Notice #{view.notice_id}"]
    if view.revision > 1:
        parts.append(f"edited (revision {view.revision})")
    return "  ·  ".join(parts)


def _retracted_card(view: NoticeView) -> Card:
    body = [
        {"type": "Container", "style": "warning", "items": [
            _text(f"Retracted: {escape(view.retracted_reason or '')}", size="Large", weight="Bolder")]},
        _text(f"Notice #{view.notice_id} ({escape(view.title)}) was withdrawn by the sender. "
              "Please disregard it.", isSubtle=True),
    ]
    return _card(body, [], notice_summary(view))


def _notice_card(view: NoticeView, body_text: str) -> Card:
    if view.retracted_reason is not None:
        return _retracted_card(view)
    color = _COLOR[view.policy.level]
    header_items = [
        _text(_badge_line(view), color=color, size="Small", spacing="None"),
        _text(_heading(view), size="Large", weight="Bolder", color=color if view.policy.critical else "Default"),
    ]
    header: dict[str, Any] = {"type": "Container", "items": header_items, "bleed": True}
    if view.policy.critical:
        header["style"] = "attention"
    body: list[dict[str, Any]] = [header]
    if view.deadline:
        body.append(_text(f"Acknowledge by **{reader_time(view.deadline)}**", color=color, spacing="Small"))
    if view.asks_again:
        sent = f" sent {reader_time(view.sent_at)}" if view.sent_at else ""
        body.append(_text(f"You have not acknowledged notice #{view.notice_id}{sent} yet "
                          f"(reminder {view.reminder_number}).", weight="Bolder"))
    body.append(_text(formatted(body_text), spacing="Medium"))
    actions: list[dict[str, Any]] = []
    url = _safe_url(view.tracked_link or view.link) if view.link else None
    if url:
        actions.append({"type": "Action.OpenUrl", "title": "Open the details", "url": url})
    elif view.link:
        body.append(_text(f"Link: {escape(view.link)}", isSubtle=True))
    if view.acknowledged:
        body.append({"type": "Container", "style": "good", "items": [_text(
            f"✅ Acknowledged by **{escape(view.acknowledged.by)}** at {reader_time(view.acknowledged.at)}",
            color="Good")]})
    elif view.shows_ack_button:
        actions.insert(0, {"type": "Action.Execute", "title": "Acknowledge", "verb": ACK_VERB,
                           "data": {"notice_id": view.notice_id, "revision": view.revision},  # see acks.acknowledge
                           "style": "positive"})
    return _card(body, actions, notice_summary(view))


def notice_card(view: NoticeView) -> Card:
    """The notice as an Adaptive Card; the body is shortened if the card would be too large."""
    if view.survey is not None and view.retracted_reason is None:
        return survey_card(view)
    return _fit(lambda body: _notice_card(view, body), view.body)


# ---- pulse surveys ------------------------------------------------------------------------

def _answer_sets(view: NoticeView, survey: SurveyView) -> list[dict[str, Any]]:
    """One Action.Execute per answer, in rows of at most six (0-10 is two rows: 0-5 and 6-10)."""
    actions = [{"type": "Action.Execute", "title": label, "verb": SURVEY_ANSWER_VERB,
                "data": {"notice_id": view.notice_id, "value": value},
                **({"style": "positive"} if value == survey.answered else {})}
               for value, label in survey.choices]
    return [{"type": "ActionSet", "actions": actions[start:start + MAX_ACTIONS_PER_SET]}
            for start in range(0, len(actions), MAX_ACTIONS_PER_SET)]


def survey_card(view: NoticeView) -> Card:
    """A survey: the question, one button per answer and, if asked, a text box for the follow-up.
    `view.survey.answered` marks the member's answer (the card returned for their click)."""
    survey = view.survey
    assert survey is not None
    badge = ["**Survey**", escape(view.topic_title), f"Survey #{view.notice_id}"]
    if survey.anonymous:
        badge.append("anonymous")
    if survey.open and survey.closes_at:
        badge.append(f"open until **{reader_time(survey.closes_at)}**")
    body: list[dict[str, Any]] = [{"type": "Container", "bleed": True, "items": [
        _text("  ·  ".join(badge), color="Accent", size="Small", spacing="None"),
        _text(escape(view.title[:_MAX_TITLE]), size="Large", weight="Bolder")]}]
    chosen = survey.label(survey.answered)
    if not survey.open:
        closed = f"This survey closed at {reader_time(survey.closed_at)}. Thank you for taking part."  # type: ignore[arg-type]
        body.append(_text(closed + (f" Your answer: **{escape(chosen)}**" if chosen else ""), isSubtle=True))
        return _card(body, [], notice_summary(view))
    if chosen:
        until = f"until {reader_time(survey.closes_at)}" if survey.closes_at else "until the survey closes"
        body.append({"type": "Container", "style": "good", "items": [_text(
            f"✅ Your answer: **{escape(chosen)}**. You can change it {until}.", color="Good")]})
    body += _answer_sets(view, survey)
    if survey.scale:
        body.append(_text(f"{survey.scale[0]} = lowest · {survey.scale[1]} = highest", isSubtle=True, size="Small"))
    if survey.follow_up:
        comment: dict[str, Any] = {"type": "Input.Text", "id": COMMENT_INPUT, "label": survey.follow_up,
                                   "isMultiline": True, "maxLength": 2000}
        if survey.comment:
            comment["value"] = survey.comment[:2000]
        body += [comment, {"type": "ActionSet", "actions": [{
            "type": "Action.Execute", "title": "Send comment", "verb": SURVEY_COMMENT_VERB,
            "data": {"notice_id": view.notice_id}}]}]
    if survey.anonymous:
        body.append(_text("Anonymous: results never show who answered, nor any group of fewer than 5 people.",
                          isSubtle=True, size="Small"))
    return _card(body, [], notice_summary(view))


def notice_activity(view: NoticeView, *, delivery_id: int | None = None) -> dict[str, Any]:
    """A Bot Connector message activity carrying the notice card.

    `summary` is the plain-text fallback Teams shows in notifications and the chat list; a
    `text` would be drawn above the card as a second copy of the title, so it is left out.
    `channelData.herald` tags the message with its delivery for logs and support; the connector
    has no read-back API, so it cannot be used to find an earlier send (see TeamsChannel).
    """
    channel_data: dict[str, Any] = {"herald": {"notice_id": view.notice_id}}
    if delivery_id is not None:
        channel_data["herald"]["delivery_id"] = delivery_id
    if view.policy.critical and view.retracted_reason is None and view.acknowledged is None:
        channel_data["notification"] = {"alert": True}  # also raise it in the activity feed
    return _activity(notice_card(view), notice_summary(view), channel_data)


def _activity(card: Card, summary: str, channel_data: dict[str, Any] | None = None) -> dict[str, Any]:
    activity: dict[str, Any] = {"type": "message", "summary": summary,
                                "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}]}
    if channel_data:
        activity["channelData"] = channel_data
    return activity


# ---- direct messages ----------------------------------------------------------------------

def _direct_card(message: DirectMessage, lines: list[str]) -> Card:
    body = [_text(escape(message.title[:_MAX_TITLE]), size="Medium", weight="Bolder")]
    body += [_text(local_stamps(escape(line), reader_time), spacing="Small") for line in lines]
    actions = [{"type": "Action.Execute", "title": b.label, "verb": b.action_id, "data": {"value": b.value},
                **({"style": _BUTTON_STYLE[b.style]} if b.style in _BUTTON_STYLE else {})}
               for b in message.buttons]
    return _card(body, actions, message.title[:500])


def direct_message_card(message: DirectMessage) -> Card:
    """A plain message (escalations, hand-offs) with Action.Execute buttons (verb = action id).

    A list too long for one card keeps its first lines and says how many were left out.
    """
    lines = [line[:_MAX_LINE] for line in message.lines]
    card = _direct_card(message, lines)
    kept = len(lines)
    while kept and _size(card) > MAX_ACTIVITY_BYTES:
        kept //= 2
        card = _direct_card(message, [*lines[:kept], f"{_ELLIPSIS} and {len(lines) - kept} more lines"])
    return card


def direct_message_activity(message: DirectMessage) -> dict[str, Any]:
    return _activity(direct_message_card(message), message.title[:500])


# ---- size ---------------------------------------------------------------------------------

def _size(card: Card) -> int:
    """Bytes as Teams counts them: the JSON encoded as UTF-16, plus room for the activity wrapper."""
    return activity_size(card)


def activity_size(payload: dict[str, Any]) -> int:
    """Bytes of a card or an activity as Teams counts them: the JSON encoded as UTF-16, plus room
    for what the Bot Connector client adds around it (ids, conversation, service URL)."""
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-16-le")) + 2_000


def _fit(render: Callable[[str], Card], text: str) -> Card:
    card, shown = render(text), text
    while shown and _size(card) > MAX_ACTIVITY_BYTES:
        # a raw character costs at least 2 UTF-16 bytes, so dropping excess/2 of them is enough
        excess = _size(card) - MAX_ACTIVITY_BYTES
        shown = shown[: max(len(shown) - excess // 2 - 64, 0)].rstrip()
        card = render(shown + _ELLIPSIS)
    return card
