"""Block Kit rendering. Every piece of user text goes through `escape` first."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.channels.status_lines import status_lines
from bot.common.replies import ReplyBudget
from bot.core.commands.help import HelpWording, partner_help, staff_help
from bot.core.commands.parser import MAX_LINK
from bot.core.directory.preferences import NO_QUIET_HOURS
from bot.core.notices import formatting
from bot.core.notices.status import NoticeStatusReport
from bot.core.notices.views import (
    ACK_ACTION,
    LINK_ACTION,
    SURVEY_ANSWER_ACTION,
    SURVEY_COMMENT_ACTION,
    NoticeView,
    SurveyView,
    format_time,
    local_stamps,
)
from bot.core.ports import DirectMessage
from bot.topics import IMPORTANCE, TopicCatalog
from bot.topics.importance import Importance
from storage.models import Notice

SEND_ACTION = "herald_send"
CANCEL_ACTION = "herald_cancel"
COMPOSE_CALLBACK = "herald_compose"
PREVIEW_CALLBACK = "herald_preview"
EDIT_CALLBACK = "herald_edit"
REPLY_CALLBACK = "herald_qa_reply_submit"

MAX_SLACK_TEXT = 40_000  # Slack truncates a message's text beyond this, silently (chat.postMessage)
SLACK_REPLY = ReplyBudget(limit=MAX_SLACK_TEXT)  # a command's text reply

_EMOJI = {Importance.MUST: ":rotating_light:", Importance.NEED: ":large_orange_diamond:",
          Importance.NICE: ":information_source:"}

Blocks = list[dict[str, Any]]


def escape(text: str) -> str:
    """Escape mrkdwn control characters so user text cannot mention, link or inject markup.

    Slack turns `<!channel>`, `<@U123>` and `<http://x|label>` into pings and links only when
    the angle brackets reach it unescaped.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def reader_time(moment: datetime) -> str:
    """`moment` in the reader's own time zone: a date token Slack draws in each member's zone and
    format, with the UTC text as its fallback (notifications, clients that cannot draw it)."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{format_time(moment)}>"


def formatted(text: str) -> str:
    """A CAM's text (Herald's formatting language, `bot.core.notices.formatting`) as mrkdwn:
    bold, italics, bullets and links become Slack's own; every other character is escaped."""
    return "\n\n".join(_mrkdwn_block(block) for block in formatting.parse(text))


def _mrkdwn_block(block: formatting.Block) -> str:
    if isinstance(block, formatting.Paragraph):
        return "\n".join(_mrkdwn_line(line) for line in block.lines)
    return "\n".join("• " + _mrkdwn_line(item) for item in block.items)


def _mrkdwn_line(parts: formatting.Line) -> str:
    return "".join(_mrkdwn_inline(part) for part in parts)


def _mrkdwn_inline(part: formatting.Inline) -> str:
    if isinstance(part, formatting.Text):
        return escape(part.text)
    inner = _mrkdwn_line(part.children)
    if isinstance(part, formatting.Strong):
        return f"*{inner}*"
    if isinstance(part, formatting.Emphasis):
        return f"_{inner}_"
    return f"<{escape(part.url)}|{inner}>"


SECTION_TEXT = 3000  # Block Kit: a section's text, at most 3,000 characters


def formatted_sections(text: str) -> Blocks:
    """A CAM's text as section blocks: one, or several when the mrkdwn exceeds a section's
    3,000 characters. The body's limit counts the CAM's characters; escaping (& is &amp;) and
    links (<url|text>) make the mrkdwn longer, so a paragraph or list can outgrow a section on its
    own: it is split too (`_split_mrkdwn`), never cut."""
    sections: list[str] = []
    for block in formatting.parse(text) or (formatting.Paragraph(((formatting.Text(""),),)),):
        for piece in _split_mrkdwn(_mrkdwn_block(block)):
            if sections and len(sections[-1]) + 2 + len(piece) <= SECTION_TEXT:
                sections[-1] += "\n\n" + piece
            else:
                sections.append(piece)
    return [{"type": "section", "text": _mrkdwn(piece)} for piece in sections]


def _split_mrkdwn(text: str, limit: int = SECTION_TEXT) -> list[str]:
    """Pieces of at most `limit` characters, split at a line break, else at a space, never inside a
    <link|label> (escaped text has no other '<'; an &entity; holds no space)."""
    pieces = []
    while len(text) > limit:
        cut = _break_before(text, limit)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*pieces, text]


def _break_before(text: str, limit: int) -> int:
    lines, spaces, link_start = [], [], -1
    for i, char in enumerate(text[:limit + 1]):
        if char == "<":
            link_start = i
        elif char == ">":
            link_start = -1
        elif link_start < 0 and char == "\n":
            lines.append(i)
        elif link_start < 0 and char == " ":
            spaces.append(i)
    for found in (lines, spaces):
        if found and found[-1] > 0:
            return found[-1]
    return link_start if 0 < link_start <= limit else limit


def shortened(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _plain(text: str, limit: int = 150) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut_mrkdwn(text, SECTION_TEXT)}


def cut_mrkdwn(text: str, limit: int) -> str:
    """`text` (escaped mrkdwn) in at most `limit` characters, an ellipsis marking a cut, which
    never falls inside an escaped character (`&amp;`) or a `<link|label>`: a half "&am" or an
    unclosed "<" would show as garbage or swallow the rest."""
    if len(text) <= limit:
        return text
    cut = limit - 1
    entity, link = text.rfind("&", 0, cut), text.rfind("<", 0, cut)
    if entity >= 0 and ";" not in text[entity:cut]:
        cut = entity
    if link >= 0 and ">" not in text[link:cut]:
        cut = min(cut, link)
    return text[:cut] + "…"


def notice_fallback_text(view: NoticeView) -> str:
    if view.retracted_reason is not None:
        return escape(f"Retracted: {view.retracted_reason}")
    if view.survey is not None:
        return escape(f"[Survey] {view.title}")
    prefix = "Reminder: please acknowledge" if view.asks_again else view.policy.label
    return escape(f"[{prefix}] {view.title}")


MAX_HEADER = 150  # Block Kit: a header's text


def header_blocks(text: str) -> Blocks:
    """A header; a text longer than a header holds is shortened there and shown whole in a section
    below it, so its end always reaches the reader."""
    if len(text) <= MAX_HEADER:
        return [{"type": "header", "text": _plain(text)}]
    return [{"type": "header", "text": _plain(shortened(text, MAX_HEADER))},
            {"type": "section", "text": _mrkdwn(f"*{escape(text)}*")}]


def _marker(view: NoticeView) -> str:
    if view.asks_again:
        return "Reminder"
    return view.policy.badge if view.policy.critical else ""


def _title_blocks(view: NoticeView) -> Blocks:
    """The header ("CRITICAL: <title>", "Reminder: <title>") and the context line. A title of up
    to MAX_TITLE (150) fills a header on its own: when the marker would push its end out, the
    marker opens the context line instead, and the title is shown whole."""
    marker = _marker(view)
    heading = f"{marker}: {view.title}" if marker else view.title
    if len(heading) <= MAX_HEADER or not marker:
        return [*header_blocks(heading), {"type": "context", "elements": [_mrkdwn(_context(view))]}]
    return [*header_blocks(view.title), {"type": "context", "elements": [_mrkdwn(_context(view, marker))]}]


def _context(view: NoticeView, marker: str = "") -> str:
    parts = [f"{_EMOJI[view.policy.level]} *{view.policy.label}*", escape(view.topic_title), f"Notice #{view.notice_id}"]
    if marker:
        parts.insert(0, f"*{marker.upper()}*")
    if view.revision > 1:
        parts.append(f"edited (revision {view.revision})")
    if view.deadline:
        parts.append(f"Acknowledge by *{reader_time(view.deadline)}*")
    return "  ·  ".join(parts)


def retracted_blocks(view: NoticeView) -> Blocks:
    return [
        *header_blocks(f"Retracted: {view.retracted_reason}"),  # a reason may be 500 characters
        {"type": "context", "elements": [_mrkdwn(
            f"Notice #{view.notice_id} ({escape(view.title)}) was withdrawn by the sender. Please disregard it.")]},
    ]


def notice_blocks(view: NoticeView) -> Blocks:
    if view.retracted_reason is not None:
        return retracted_blocks(view)
    if view.survey is not None:
        return survey_blocks(view)
    blocks = _title_blocks(view)
    if view.asks_again:
        sent = f" sent {reader_time(view.sent_at)}" if view.sent_at else ""
        blocks.append({"type": "section", "text": _mrkdwn(
            f"You have not acknowledged notice #{view.notice_id}{sent} yet (reminder {view.reminder_number}).")})
    blocks += formatted_sections(view.body)
    if view.link:  # a link button: Slack tells Herald about the press (counted for A/B tests)
        blocks.append({"type": "actions", "block_id": f"link-{view.notice_id}", "elements": [{
            "type": "button", "action_id": LINK_ACTION, "value": str(view.notice_id), "url": view.link,
            "text": _plain("Open the details")}]})
    if view.acknowledged:
        blocks.append({"type": "context", "elements": [_mrkdwn(
            f":white_check_mark: Acknowledged by *{escape(view.acknowledged.by)}* at {reader_time(view.acknowledged.at)}")]})
    elif view.shows_ack_button:
        blocks.append({"type": "actions", "block_id": f"ack-{view.notice_id}", "elements": [{
            "type": "button", "action_id": ACK_ACTION, "style": "danger",
            "value": f"{view.notice_id}:{view.revision}",  # the revision this copy shows: see acks.acknowledge
            "text": _plain("Acknowledge"),
        }]})
    return blocks


# ---- pulse surveys ---------------------------------------------------------------------------

def answer_action_id(value: int) -> str:
    return f"{SURVEY_ANSWER_ACTION}_{value}"


def scale_caption(survey: SurveyView) -> str:
    if not survey.scale:
        return ""
    low, high = survey.scale
    return f"{low} = lowest · {high} = highest"


def _state_line(view: NoticeView, survey: SurveyView) -> str:
    parts = [":bar_chart: *Survey*", escape(view.topic_title), f"Survey #{view.notice_id}"]
    if survey.anonymous:
        parts.append("anonymous")
    if survey.open and survey.closes_at:
        parts.append(f"open until *{reader_time(survey.closes_at)}*")
    return "  ·  ".join(parts)


def survey_blocks(view: NoticeView) -> Blocks:
    """A survey message; `view.survey.answered` marks the member's answer (their click's reply)."""
    survey = view.survey
    assert survey is not None
    blocks: Blocks = [*header_blocks(view.title), {"type": "context", "elements": [_mrkdwn(_state_line(view, survey))]}]
    chosen = survey.label(survey.answered)
    if not survey.open:
        closed = f"This survey closed at {reader_time(survey.closed_at)}. Thank you for taking part."  # type: ignore[arg-type]
        if chosen:
            closed += f" Your answer: *{escape(chosen)}*"
        blocks.append({"type": "section", "text": _mrkdwn(closed)})
        return blocks
    if chosen:
        until = f"until {reader_time(survey.closes_at)}" if survey.closes_at else "until the survey closes"
        blocks.append({"type": "section", "text": _mrkdwn(
            f":white_check_mark: Your answer: *{escape(chosen)}*. You can change it {until}.")})
    blocks.append({"type": "actions", "block_id": f"survey-{view.notice_id}", "elements": [
        {"type": "button", "action_id": answer_action_id(value), "value": f"{view.notice_id}:{value}",
         "text": _plain(label, 75), **({"style": "primary"} if value == survey.answered else {})}
        for value, label in survey.choices]})
    caption = scale_caption(survey)
    if caption:
        blocks.append({"type": "context", "elements": [_mrkdwn(caption)]})
    if survey.follow_up:
        text = f"*{escape(survey.follow_up)}*"
        if survey.comment:
            text += f"\nYour comment: {escape(survey.comment[:2500])}"
        blocks.append({"type": "section", "text": _mrkdwn(text), "accessory": {
            "type": "button", "action_id": SURVEY_COMMENT_ACTION, "value": str(view.notice_id),
            "text": _plain("Change your comment" if survey.comment else "Add a comment", 75)}})
    if survey.anonymous:
        blocks.append({"type": "context", "elements": [_mrkdwn(
            "Anonymous: results never show who answered, nor any group of fewer than 5 people.")]})
    return blocks


MAX_MESSAGE_BLOCKS = 50  # Block Kit: blocks in one message


def direct_message_blocks(message: DirectMessage) -> Blocks:
    """The title, the lines in sections of at most 3,000 characters (split between lines), and
    the buttons. Lines too many for the 50 blocks a message holds end with "… and N more lines";
    the buttons are always kept."""
    blocks: Blocks = header_blocks(message.title)
    actions: Blocks = [{"type": "actions", "elements": [
        {"type": "button", "action_id": b.action_id, "value": b.value, "text": _plain(b.label),
         **({"style": b.style} if b.style else {})} for b in message.buttons]}] if message.buttons else []
    sections = ReplyBudget(limit=MAX_MESSAGE_BLOCKS - len(blocks) - len(actions),
                           measure=lambda text: len(_split_mrkdwn(text)))
    text = sections.listing([], [local_stamps(escape(line), reader_time) for line in message.lines],
                            more=lambda n: f"… and {n} more lines, too many for one Slack message")
    if text:
        blocks += [{"type": "section", "text": _mrkdwn(piece)} for piece in _split_mrkdwn(text)]
    return blocks + actions


def variant_preview_lines(variants: tuple[tuple[str, str, str], ...], share: int | None) -> list[str]:
    """An A/B test's preview: who gets what first, then each variant's title and start of its body."""
    if not variants:
        return []
    split = f"first to {share}% of them (the rest wait for `rollout`)" if share else "to all of them"
    lines = [f"*A/B test:* {len(variants)} variants, split evenly within each partner, {split}"]
    lines += [f"• *{label}* {escape(title)}: {escape(body[:120])}{'…' if len(body) > 120 else ''}"
              for label, title, body in variants]
    return lines


def preview_summary(notice: Notice, topic_title: str, recipients: int, warnings: list[str], *,
                    variants: tuple[tuple[str, str, str], ...] = (), share: int | None = None) -> str:
    policy = IMPORTANCE[Importance(notice.importance)]
    lines = [
        f"*Preview of notice #{notice.id}*",
        f"{_EMOJI[policy.level]} *{policy.label}* · {escape(topic_title)}",
        f"*{escape(notice.title)}*",
        f"Audience `{escape(notice.audience)}` → *{recipients} recipient{'s' if recipients != 1 else ''}*",
    ]
    if notice.scheduled_at:
        lines.append(f"Goes out at {reader_time(notice.scheduled_at)} (the audience is resolved again then)")
    if notice.deadline:
        lines.append(f"Deadline: {reader_time(notice.deadline)}")
    lines += variant_preview_lines(variants, share)
    lines += [f":warning: {escape(w)}" for w in warnings]
    if recipients == 0:
        lines.append(":warning: Nobody matches this audience; sending would reach no one.")
    return "\n".join(lines)


def preview_blocks(notice: Notice, topic_title: str, recipients: int, warnings: list[str], *,
                   variants: tuple[tuple[str, str, str], ...] = (), share: int | None = None) -> Blocks:
    return [
        {"type": "section", "text": _mrkdwn(preview_summary(notice, topic_title, recipients, warnings,
                                                            variants=variants, share=share))},
        *formatted_sections(notice.body),
        {"type": "actions", "block_id": f"preview-{notice.id}", "elements": [
            {"type": "button", "action_id": SEND_ACTION, "style": "primary", "value": str(notice.id),
             "text": _plain("Send")},
            {"type": "button", "action_id": CANCEL_ACTION, "value": str(notice.id), "text": _plain("Cancel")},
        ]},
    ]


def status_text(report: NoticeStatusReport) -> str:
    return "\n".join(status_lines(report, bold=lambda text: f"*{text}*", escape=escape, bullet="•", when=reader_time))


SLACK_HELP = HelpWording(
    edit="`edit <notice-id>` — correct a sent notice (form); inline: `edit <id> [material] | <title> | <body>`",
    report="summary here, CSV in your DM",
    questions="write to Herald in its *Messages* tab",
    preferences="Herald's *Home* tab",
    commands="The other `/herald` commands are for your vendor's channel account managers.",
)


def help_text(unknown: str = "") -> str:
    """`/herald help` for staff: every command."""
    return _unknown_prefix(unknown) + staff_help(SLACK_HELP)


def partner_help_text(unknown: str = "") -> str:
    """What a partner contact can do (their `/herald help`, or `help` written to Herald): the staff
    commands are not theirs."""
    return _unknown_prefix(unknown) + partner_help(SLACK_HELP)


def _unknown_prefix(unknown: str) -> str:
    return f"I don't know the command `{escape(unknown)}`.\n" if unknown else ""


MAX_OPTION_TEXT = 75  # Block Kit: an option's text (checkboxes, radio buttons, selects)
MAX_SELECT_OPTIONS = 100  # Block Kit: a static_select's options, and each of its at most 100 option groups


def option(label: str, value: str) -> dict[str, Any]:
    """An option object; Slack refuses the whole view or message if its text exceeds 75 characters."""
    return {"text": _plain(shortened(label, MAX_OPTION_TEXT), MAX_OPTION_TEXT), "value": value}


def _select(action_id: str, options: list[tuple[str, str]], initial: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "static_select", "action_id": action_id,
                               "options": [option(label, value) for value, label in options]}
    if initial:
        element["initial_option"] = next(o for o in element["options"] if o["value"] == initial)
    return element


def topic_select(catalog: TopicCatalog, action_id: str = "value") -> dict[str, Any]:
    """Every topic of the catalog in one menu. Slack takes at most 100 options in a static_select,
    so a larger catalog is shown in option groups of 100 ("Topics 101–200"); the menu filters as
    the CAM types either way, so a topic is found by name whichever group holds it."""
    options = [option(t.title, t.key) for t in catalog.topics.values()]
    if len(options) <= MAX_SELECT_OPTIONS:
        return {"type": "static_select", "action_id": action_id, "options": options}
    groups = [{"label": _plain(f"Topics {start + 1}–{min(start + MAX_SELECT_OPTIONS, len(options))}"),
               "options": options[start:start + MAX_SELECT_OPTIONS]}
              for start in range(0, len(options), MAX_SELECT_OPTIONS)]
    return {"type": "static_select", "action_id": action_id, "option_groups": groups}


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False, hint: str = "") -> dict[str, Any]:
    block = {"type": "input", "block_id": block_id, "label": _plain(label), "element": element, "optional": optional}
    if hint:
        block["hint"] = _plain(hint)
    return block


def compose_modal(catalog: TopicCatalog) -> dict[str, Any]:
    levels = [(p.level.value, p.label) for p in IMPORTANCE.values()]
    text = {"type": "plain_text_input"}
    return {
        "type": "modal", "callback_id": COMPOSE_CALLBACK,
        "title": _plain("New notice", 24), "submit": _plain("Preview", 24), "close": _plain("Cancel", 24),
        "blocks": [
            _input("topic", "Topic", topic_select(catalog)),
            _input("importance", "Importance", _select("value", levels, Importance.NEED.value)),
            _input("audience", "Audience", {**text, "action_id": "value", "placeholder": _plain("tier:gold region:emea role:support")},
                   hint="comma = any of, space = and; or all"),
            _input("title", "Title", {**text, "action_id": "value", "max_length": 150}),
            _input("body", "Message", {**text, "action_id": "value", "multiline": True, "max_length": 2800},
                   hint=f"Formatting: {formatting.FORMAT_HELP}"),
            _input("link", "Link", {**text, "action_id": "value", "max_length": MAX_LINK,
                                    "placeholder": _plain("https://...")}, optional=True),
            _input("deadline", "Deadline (must-know only)", {**text, "action_id": "value",
                   "placeholder": _plain("2026-12-01 or 2026-12-01T17:00Z")}, optional=True),
        ],
    }


def edit_modal(notice: Notice, *, material: bool = False) -> dict[str, Any]:
    text = {"type": "plain_text_input", "action_id": "value"}
    blocks = [
        _input("title", "Title", {**text, "max_length": 150, "initial_value": notice.title}),
        _input("body", "Message", {**text, "multiline": True, "max_length": 2800, "initial_value": notice.body}),
        _input("link", "Link", {**text, "max_length": MAX_LINK, **({"initial_value": notice.link} if notice.link else {})},
               optional=True),
    ]
    if notice.importance == Importance.MUST.value:
        material_option = option("Material change: ask everyone to acknowledge again", "material")
        element: dict[str, Any] = {"type": "checkboxes", "action_id": "value", "options": [material_option]}
        if material:
            element["initial_options"] = [material_option]
        blocks.append(_input("material", "Re-acknowledgement", element, optional=True))
    return {
        "type": "modal", "callback_id": EDIT_CALLBACK, "private_metadata": str(notice.id),
        "title": _plain(f"Edit notice #{notice.id}", 24), "submit": _plain("Update", 24), "close": _plain("Cancel", 24),
        "blocks": [{"type": "context", "elements": [_mrkdwn(
            "Every delivered copy is updated in place and the change is kept as a new revision.")]}, *blocks],
    }


def preview_modal(notice: Notice, topic_title: str, recipients: int, warnings: list[str]) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": PREVIEW_CALLBACK, "private_metadata": str(notice.id),
        "notify_on_close": True,
        "title": _plain("Preview", 24), "submit": _plain("Send", 24), "close": _plain("Cancel", 24),
        "blocks": [{"type": "section", "text": _mrkdwn(preview_summary(notice, topic_title, recipients, warnings))},
                   *formatted_sections(notice.body)],
    }


def reply_modal(question_id: int, handoff: DirectMessage | None = None) -> dict[str, Any]:
    """The CAM's answer form. `handoff`: the hand-off as it stands (`assistant.handoff_for`: the
    question, the partner, and the answer already sent and by whom), shown above the input as
    Teams' reply card shows it, so an answer a colleague or an admin sent is not sent again unseen."""
    shown = direct_message_blocks(replace(handoff, buttons=())) if handoff is not None else []
    return {
        "type": "modal", "callback_id": REPLY_CALLBACK, "private_metadata": str(question_id),
        "title": _plain("Answer a partner", 24), "submit": _plain("Send", 24), "close": _plain("Cancel", 24),
        "blocks": [*shown, _input("reply", "Your answer", {"type": "plain_text_input", "action_id": "value",
                                                            "multiline": True, "max_length": 2800})],
    }


def message_modal(title: str, text: str) -> dict[str, Any]:
    return {"type": "modal", "title": _plain(title, 24), "close": _plain("Close", 24),
            "blocks": [{"type": "section", "text": _mrkdwn(text)}]}


# ---- App Home: the member's preferences ----------------------------------------------------

PREF_TOPICS_ACTION = "herald_pref_topics"
PREF_DIGEST_ACTION = "herald_pref_digest"
PREF_QUIET_START_ACTION = "herald_pref_quiet_start"
PREF_QUIET_END_ACTION = "herald_pref_quiet_end"
PREF_TIMEZONE_ACTION = "herald_pref_timezone"


MAX_CHECKBOXES = 10  # Block Kit: a checkboxes element holds at most 10 options
PREF_TOPICS_BLOCK = "pref_topics_"  # + the group's number: the block a topics change came from


def _topic_blocks(options: list[dict[str, Any]], subscribed: dict[str, bool]) -> list[dict[str, Any]]:
    """The optional topics as checkboxes, ten to a block (more are refused by Slack, and the whole
    Home tab with them); a change names its block, so only that block's topics are saved."""
    blocks = []
    for start in range(0, len(options), MAX_CHECKBOXES):
        group = options[start:start + MAX_CHECKBOXES]
        element: dict[str, Any] = {"type": "checkboxes", "action_id": PREF_TOPICS_ACTION, "options": group}
        if checked := [o for o in group if subscribed[o["value"]]]:
            element["initial_options"] = checked
        text = "*Optional topics* (must-know notices always reach you)" if start == 0 else "*More optional topics*"
        blocks.append({"type": "section", "block_id": f"{PREF_TOPICS_BLOCK}{start // MAX_CHECKBOXES}",
                       "text": _mrkdwn(text), "accessory": element})
    return blocks


def home_view(prefs, catalog: TopicCatalog, *, note: str = "") -> dict[str, Any]:  # noqa: ANN001
    """The App Home tab: each control saves as soon as it changes."""
    hours = [(str(h), f"{h:02d}:00") for h in range(24)]
    topic_options = [option(catalog.topics[k].title, k) for k in prefs.subscribed]
    fixed = ", ".join(catalog.topics[k].title for k in prefs.fixed_topics) or "none"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain("Your Herald preferences")},
        *(_topic_blocks(topic_options, prefs.subscribed) if topic_options else
          [{"type": "section", "text": _mrkdwn("No topics can be switched off.")}]),
        {"type": "context", "elements": [_mrkdwn(f"Always on: {escape(fixed)}")]},
        {"type": "section", "text": _mrkdwn("*Digest* of nice-to-know notices"),
         "accessory": _select(PREF_DIGEST_ACTION, [("daily", "Daily"), ("weekly", "Weekly")], prefs.digest_frequency)},
        {"type": "section", "text": _mrkdwn("*Quiet hours start*"),
         "accessory": _select(PREF_QUIET_START_ACTION, hours, str(prefs.quiet_start))},
        {"type": "section", "text": _mrkdwn("*Quiet hours end*"),
         "accessory": _select(PREF_QUIET_END_ACTION, hours, str(prefs.quiet_end))},
        *([{"type": "context", "elements": [_mrkdwn(NO_QUIET_HOURS)]}] if prefs.no_quiet_hours else []),
        {"type": "input", "block_id": "timezone", "dispatch_action": True, "label": _plain("Time zone"),
         "element": {"type": "plain_text_input", "action_id": PREF_TIMEZONE_ACTION, "initial_value": prefs.timezone,
                     "dispatch_action_config": {"trigger_actions_on": ["on_enter_pressed"]}},
         "hint": _plain("e.g. Europe/Berlin or America/Chicago, then press Enter")},
    ]
    if note:
        blocks.append({"type": "context", "elements": [_mrkdwn(escape(note))]})
    return {"type": "home", "blocks": blocks}


STAFF_HOME_LINES = (
    "Herald's commands run through the slash command, in the message box of any conversation:",
    "• `/herald send` — compose a notice · `/herald survey` — compose a survey",
    "• `/herald status` — delivery and acknowledgement counts of your latest notice",
    "• `/herald questions` — partners' questions handed off to you; press *Reply* under one in "
    "Herald's messages to answer it",
    "• `/herald console` — a sign-in link to the web console (notices, reports, directory)",
    "• `/herald help` — every command, with examples",
)


def staff_home() -> dict[str, Any]:
    """The App Home tab of vendor staff: they have no partner preferences; what they use is `/herald`."""
    return {"type": "home", "blocks": [
        {"type": "header", "text": _plain("Herald for vendor staff")},
        {"type": "section", "text": _mrkdwn("\n".join(STAFF_HOME_LINES))},
    ]}


def staff_in_messages(command: str = "") -> str:
    """What a member of staff who writes in Herald's Messages tab is told (`command`: the words,
    when they read as a Herald command). Messages there are partners' questions for the assistant;
    staff commands go through `/herald`, which can also open forms (a message event cannot)."""
    tip = (f"type `/herald {escape(command)}` in the message box to run it" if command and len(command) <= 200
           else "`/herald help` lists them")
    return (f":information_source: Your Herald commands go through the slash command: {tip}. To answer a "
            "partner's question handed off to you, press *Reply* under it (`/herald questions` lists the open ones).")


def not_a_member_home() -> dict[str, Any]:
    return {"type": "home", "blocks": [{"type": "section", "text": _mrkdwn(
        "Herald delivers your vendor's partner notices. Preferences appear here once your channel account "
        "manager has added you to the partner directory.")}]}
