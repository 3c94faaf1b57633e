"""The platform-neutral command language: `/herald ...` in Slack, the same words typed in Teams.

Parsing only; no database access. Handlers turn a parsed command into core calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from urllib.parse import urlsplit

from bot.common.errors import UserError

HELP_TEXT = """\
*Herald commands*
• `send` — open the compose form
• `send <importance> <topic> <audience> | <title> | <body>` — compose inline, e.g.
  `send must-know operations tier:gold region:emea deadline:2026-12-01 | Recall of LX-200 | Stop selling ...`
  importance: nice-to-know, need-to-know, must-know · optional `link:https://...`, `deadline:YYYY-MM-DD[THH:MM]`
  and `reminders:8,24` (hours after delivery; default: the topic's schedule)
  audience: `all`, or terms like `tier:gold,platinum region:emea role:support org:<id> member:<email>`
  (comma = any of, space = and)
  add `at:2026-12-01T09:00Z` to schedule it
  formatting in the body: `**bold**`, `_italics_`, lines starting with `- ` for a list, `[text](https://...)`
• `status [notice-id]` — delivery and acknowledgement counts (default: your latest notice)
• `scheduled` — notices waiting for their send time · `cancel <notice-id>` — cancel one
• `edit <notice-id>` — correct a sent notice (form); inline: `edit <id> [material] | <title> | <body>`
  (an empty part keeps the old text; `material` asks for acknowledgement again)
• `retract <notice-id> <reason>` — withdraw a notice everywhere
• `report <notice-id>` — acknowledgement report (summary here, CSV in your DM)
• `pause <org-id> [until YYYY-MM-DD] [reason]` · `resume <org-id>` — stop or restart reminders for a partner
• `console` — a sign-in link to the web console (notices, reports, compose; works once, for 10 minutes)
• `questions` — partners' questions handed off to you · `progress [org-id]` — onboarding progress
• `help` — this message"""


@dataclass(frozen=True)
class ComposeCommand:
    """`send` with no arguments: open the compose form."""


@dataclass(frozen=True)
class SendCommand:
    importance: str
    topic: str
    audience: str
    title: str
    body: str
    link: str = ""
    deadline: datetime | None = None
    scheduled_at: datetime | None = None
    reminder_hours: tuple[float, ...] | None = None  # overrides the topic's reminder schedule


@dataclass(frozen=True)
class StatusCommand:
    notice_id: int | None = None


@dataclass(frozen=True)
class ScheduledCommand:
    """List scheduled notices."""


@dataclass(frozen=True)
class CancelCommand:
    notice_id: int


@dataclass(frozen=True)
class EditCommand:
    notice_id: int
    title: str | None = None  # None: keep; all None: open the edit form
    body: str | None = None
    material: bool = False

    @property
    def inline(self) -> bool:
        return self.title is not None or self.body is not None


@dataclass(frozen=True)
class RetractCommand:
    notice_id: int
    reason: str


@dataclass(frozen=True)
class ReportCommand:
    notice_id: int


@dataclass(frozen=True)
class PauseCommand:
    org_id: str
    until: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class ResumeCommand:
    org_id: str


@dataclass(frozen=True)
class QuestionsCommand:
    """Open hand-offs for the CAM."""


@dataclass(frozen=True)
class ProgressCommand:
    org_id: str | None = None


@dataclass(frozen=True)
class ConsoleCommand:
    """A single-use sign-in link to the web console."""


@dataclass(frozen=True)
class HelpCommand:
    unknown: str = ""  # the word we did not understand, if any


Command = (ComposeCommand | SendCommand | StatusCommand | ScheduledCommand | CancelCommand | EditCommand
           | RetractCommand | ReportCommand | PauseCommand | ResumeCommand | QuestionsCommand | ProgressCommand
           | ConsoleCommand | HelpCommand)


def parse_command(text: str) -> Command:
    text = text.strip()
    word, _, rest = text.partition(" ")
    verb = word.lower()
    if verb in ("", "help", "?"):
        return HelpCommand()
    if verb == "send":
        return parse_send(rest) if rest.strip() else ComposeCommand()
    if verb == "status":
        return StatusCommand(parse_notice_id(rest) if rest.strip() else None)
    if verb == "scheduled":
        return ScheduledCommand()
    if verb == "cancel":
        return CancelCommand(_required_id(rest, "cancel"))
    if verb == "edit":
        return parse_edit(rest)
    if verb == "retract":
        number, _, reason = rest.strip().partition(" ")
        if not reason.strip():
            raise UserError("say why: `retract <notice-id> <reason>`")
        return RetractCommand(parse_notice_id(number), reason.strip())
    if verb == "report":
        return ReportCommand(_required_id(rest, "report"))
    if verb == "pause":
        return parse_pause(rest)
    if verb == "resume":
        if not rest.strip():
            raise UserError("which partner? `resume <org-id>`")
        return ResumeCommand(rest.split()[0])
    if verb == "questions":
        return QuestionsCommand()
    if verb == "console":
        return ConsoleCommand()
    if verb == "progress":
        return ProgressCommand(rest.split()[0] if rest.strip() else None)
    return HelpCommand(unknown=word)


def _required_id(text: str, verb: str) -> int:
    if not text.strip():
        raise UserError(f"which notice? `{verb} <notice-id>`")
    return parse_notice_id(text.split()[0])


def parse_edit(text: str) -> EditCommand:
    head, bar, tail = text.partition("|")
    words = head.split()
    if not words:
        raise UserError("which notice? `edit <notice-id>`")
    notice_id = parse_notice_id(words[0])
    material = any(w.lower() == "material" for w in words[1:])
    if not bar:
        return EditCommand(notice_id, material=material)
    title, _, body = tail.partition("|")
    return EditCommand(notice_id, title=title.strip() or None, body=body.strip() or None, material=material)


def parse_pause(text: str) -> PauseCommand:
    words = text.split()
    if not words:
        raise UserError("which partner? `pause <org-id> [until YYYY-MM-DD] [reason]`")
    until = None
    rest = words[1:]
    if len(rest) >= 2 and rest[0].lower() == "until":
        until = parse_time(rest[1], what="pause end")
        rest = rest[2:]
    return PauseCommand(words[0], until, " ".join(rest))


def parse_send(text: str) -> SendCommand:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) < 3:
        raise UserError(
            "inline send needs three parts separated by |: "
            "`send <importance> <topic> <audience> | <title> | <body>`"
        )
    head, title, body = parts[0], parts[1], "|".join(parts[2:]).strip()
    words = head.split()
    if len(words) < 3:
        raise UserError("before the first | give the importance, the topic and the audience, "
                        "e.g. `must-know operations tier:gold`")
    importance, topic, *terms = words
    link, deadline, scheduled_at, reminder_hours, audience_terms = "", None, None, None, []
    for term in terms:
        key, _, value = term.partition(":")
        if key.lower() == "link" and value:
            link = parse_link(value)
        elif key.lower() == "deadline" and value:
            deadline = parse_deadline(value)
        elif key.lower() == "at" and value:
            scheduled_at = parse_time(value, what="send time")
        elif key.lower() == "reminders" and value:
            reminder_hours = parse_reminders(value)
        else:
            audience_terms.append(term)
    if not audience_terms:
        raise UserError("the audience is missing: add terms like tier:gold, or all")
    return SendCommand(importance=importance, topic=topic, audience=" ".join(audience_terms),
                       title=title, body=body, link=link, deadline=deadline, scheduled_at=scheduled_at,
                       reminder_hours=reminder_hours)


def parse_notice_id(text: str) -> int:
    cleaned = text.strip().lstrip("#")
    if not cleaned.isdigit():
        raise UserError(f"'{text.strip()}' is not a notice id (a number, e.g. 42)")
    return int(cleaned)


def parse_link(value: str) -> str:
    value = value.strip().strip("<>").split("|", 1)[0]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in value for c in " <>\"'"):
        raise UserError(f"link '{value}' must be a plain http(s) URL")
    return value


def parse_reminders(value: str) -> tuple[float, ...]:
    """`8,24,72`: reminder hours after delivery, increasing (then daily until the deadline)."""
    try:
        hours = tuple(float(h) for h in value.split(",") if h.strip())
    except ValueError:
        raise UserError(f"reminders '{value}' must be hours after delivery, e.g. reminders:8,24") from None
    if not hours or any(h <= 0 for h in hours) or list(hours) != sorted(set(hours)):
        raise UserError(f"reminders '{value}' must be increasing positive hours, e.g. reminders:8,24")
    return hours


def parse_deadline(value: str) -> datetime:
    """ISO-8601 date or date-time; a bare date means the end of that day, UTC; naive means UTC."""
    return parse_time(value, what="deadline", bare_date=time(23, 59))


def parse_time(value: str, *, what: str, bare_date: time = time(0, 0)) -> datetime:
    value = value.strip()
    try:
        if len(value) == 10:
            return datetime.combine(datetime.fromisoformat(value).date(), bare_date, tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{what} '{value}' is not an ISO-8601 date or time (e.g. 2026-12-01 or 2026-12-01T17:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
