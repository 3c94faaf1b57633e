"""The platform-neutral command language: `/herald ...` in Slack, the same words typed in Teams.

Parsing only; no database access. Handlers turn a parsed command into core calls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from urllib.parse import urlsplit

from bot.common.errors import UserError


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
    variants: tuple[tuple[str, str], ...] = ()  # A/B: (title, body) of variants B, C, D; A is title/body
    share: int | None = None  # A/B: percent of the audience sent first; the rest is held for the rollout


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
class RolloutCommand:
    notice_id: int
    variant: str


@dataclass(frozen=True)
class VariantsCommand:
    notice_id: int


@dataclass(frozen=True)
class SurveyComposeCommand:
    """`survey` with no arguments: open the survey form."""


@dataclass(frozen=True)
class SurveyCommand:
    topic: str
    audience: str
    question: str
    answers: tuple[str, ...]  # one `scale:...` term or the option labels
    follow_up: str = ""
    anonymous: bool = False
    closes_at: datetime | None = None
    scheduled_at: datetime | None = None
    importance: str = "need-to-know"


@dataclass(frozen=True)
class SurveyResultsCommand:
    notice_id: int


@dataclass(frozen=True)
class SurveyCloseCommand:
    notice_id: int


@dataclass(frozen=True)
class SurveyStagesCommand:
    """Results of the surveys journeys send, per journey stage."""


@dataclass(frozen=True)
class ConsoleCommand:
    """A single-use sign-in link to the web console."""


@dataclass(frozen=True)
class HelpCommand:
    unknown: str = ""  # the word we did not understand, if any


Command = (ComposeCommand | SendCommand | StatusCommand | ScheduledCommand | CancelCommand | EditCommand
           | RetractCommand | ReportCommand | PauseCommand | ResumeCommand | QuestionsCommand | ProgressCommand
           | RolloutCommand | VariantsCommand | SurveyComposeCommand | SurveyCommand | SurveyResultsCommand
           | SurveyCloseCommand | SurveyStagesCommand | ConsoleCommand | HelpCommand)


def command_hint(platform: str, words: str) -> str:
    """How someone on `platform` types the command `words`, for a message that names it: the
    slash command in Slack (as code), the bare words typed to Herald in Teams, whose cards show
    text as written (backticks would show, and `/herald` is not a Teams command)."""
    return f"{words}" if platform == "teams" else f"`/herald {words}`"


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
    if verb == "survey":
        return parse_survey(rest)
    if verb == "rollout":
        return parse_rollout(rest)
    if verb == "variants":
        return VariantsCommand(_required_id(rest, "variants"))
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
    first, *others = text.split("||")
    command = _parse_one_send(first)
    share = command.share
    if share is not None and not others:
        raise UserError("share: holds part of the audience back for a winning variant; add variants with "
                        "`|| <title B> | <body B>`")
    if not others:
        return command
    variants = []
    for number, other in enumerate(others, 2):
        title, bar, body = other.partition("|")
        if not bar or not title.strip() or not body.strip():
            raise UserError(f"variant {'ABCD'[min(number, 4) - 1]} needs a title and a body: `|| <title> | <body>`")
        variants.append((title.strip(), body.strip()))
    return replace(command, variants=tuple(variants))


def parse_share(value: str) -> int:
    """`share:20%` (or `share:20`): the percent of the audience an A/B test is sent to first."""
    cleaned = value.strip().rstrip("%").strip()
    if not cleaned.isdigit() or not 1 <= int(cleaned) <= 99:
        raise UserError(f"share '{value}' must be a percentage between 1% and 99%, e.g. share:20%")
    return int(cleaned)


def parse_rollout(text: str) -> RolloutCommand:
    words = text.split()
    if len(words) != 2:
        raise UserError("which notice and variant? `rollout <notice-id> <variant>`, e.g. `rollout 42 B`")
    variant = words[1].strip().upper()
    if variant not in ("A", "B", "C", "D"):
        raise UserError(f"'{words[1]}' is not a variant; variants are A, B, C and D")
    return RolloutCommand(parse_notice_id(words[0]), variant)


MAX_LINK = 1000  # Notice.link and NoticeRevision.link are CharField(max_length=1000)
_IMPORTANCE_WORDS = ("nice-to-know", "need-to-know", "must-know")


def parse_survey(text: str) -> Command:
    """`survey`, `survey results|close <id>`, `survey stages`, or an inline survey."""
    word, _, rest = text.strip().partition(" ")
    sub = word.lower()
    if not sub:
        return SurveyComposeCommand()
    if sub == "results":
        return SurveyResultsCommand(_required_id(rest, "survey results"))
    if sub == "close":
        return SurveyCloseCommand(_required_id(rest, "survey close"))
    if sub == "stages":
        return SurveyStagesCommand()
    parts = [p.strip() for p in text.split("|")]
    if len(parts) < 3:
        raise UserError("an inline survey needs parts separated by |: "
                        "`survey <topic> <audience> | <question> | <answers>`")
    words = parts[0].split()
    importance = words.pop(0).lower() if words and words[0].lower() in _IMPORTANCE_WORDS else "need-to-know"
    if len(words) < 2:
        raise UserError("before the first | give the topic and the audience, e.g. `survey support tier:gold`")
    topic, *terms = words
    anonymous, closes_at, scheduled_at, audience = False, None, None, []
    for term in terms:
        key, _, value = term.partition(":")
        if term.lower() == "anonymous":
            anonymous = True
        elif key.lower() == "closes" and value:
            closes_at = parse_close_date(value)
        elif key.lower() == "at" and value:
            scheduled_at = parse_time(value, what="send time")
        else:
            audience.append(term)
    if not audience:
        raise UserError("the audience is missing: add terms like tier:gold, or all")
    follow_up, answers = "", []
    for part in parts[2:]:
        key, colon, value = part.partition(":")
        if colon and key.strip().lower().replace(" ", "-") in ("follow-up", "followup"):
            follow_up = value.strip()
        else:
            answers.append(part)
    return SurveyCommand(topic=topic, audience=" ".join(audience), question=parts[1], answers=tuple(answers),
                         follow_up=follow_up, anonymous=anonymous, closes_at=closes_at, scheduled_at=scheduled_at,
                         importance=importance)


def _parse_one_send(text: str) -> SendCommand:
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
    link, deadline, scheduled_at, reminder_hours, share, audience_terms = "", None, None, None, None, []
    for term in terms:
        key, _, value = term.partition(":")
        if key.lower() == "share" and value:
            share = parse_share(value)
        elif key.lower() == "link" and value:
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
                       reminder_hours=reminder_hours, share=share)


def parse_notice_id(text: str) -> int:
    cleaned = text.strip().lstrip("#")
    if not cleaned.isdigit():
        raise UserError(f"'{text.strip()}' is not a notice id (a number, e.g. 42)")
    return int(cleaned)


def parse_link(value: str) -> str:
    value = value.strip().strip("<>").split("|", 1)[0]
    check_link_length(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in value for c in " <>\"'"):
        raise UserError(f"link '{value}' must be a plain http(s) URL")
    return value


def check_link_length(link: str) -> None:
    """A link longer than Notice.link can store (a pre-signed download, a SafeLinks-wrapped
    address) is refused here, not by the database on save."""
    if len(link) > MAX_LINK:
        raise UserError(f"the link is {len(link):,} characters; keep it to {MAX_LINK:,} "
                        "(a shortened link or the document's plain address)")


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


def parse_close_date(value: str) -> datetime:
    """A survey's close date: like a deadline, a bare date is the end of that day, UTC."""
    return parse_time(value, what="close date", bare_date=time(23, 59))


def parse_time(value: str, *, what: str, bare_date: time = time(0, 0)) -> datetime:
    """An ISO-8601 date or time as an aware datetime in UTC (no offset: UTC; a bare date at
    `bare_date`). Typed with another offset (`2026-01-06T09:00+01:00`), it is the same moment in
    UTC: times are stored, compared and shown in UTC."""
    value = value.strip()
    try:
        if len(value) == 10:
            return datetime.combine(datetime.fromisoformat(value).date(), bare_date, tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{what} '{value}' is not an ISO-8601 date or time (e.g. 2026-12-01 or 2026-12-01T17:00Z)") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
