"""The platform-neutral command language: `/herald ...` in Slack, the same words typed in Teams.

Parsing only; no database access. Handlers turn a parsed command into core calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from urllib.parse import urlsplit

from bot.core.errors import UserError

HELP_TEXT = """\
*Herald commands*
• `send` — open the compose form
• `send <importance> <topic> <audience> | <title> | <body>` — compose inline, e.g.
  `send must-know operations tier:gold region:emea deadline:2026-12-01 | Recall of LX-200 | Stop selling ...`
  importance: nice-to-know, need-to-know, must-know · optional `link:https://...` and `deadline:YYYY-MM-DD[THH:MM]`
  audience: `all`, or terms like `tier:gold,platinum region:emea role:support org:<id> member:<email>`
  (comma = any of, space = and)
• `status [notice-id]` — delivery and acknowledgement counts (default: your latest notice)
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


@dataclass(frozen=True)
class StatusCommand:
    notice_id: int | None = None


@dataclass(frozen=True)
class HelpCommand:
    unknown: str = ""  # the word we did not understand, if any


Command = ComposeCommand | SendCommand | StatusCommand | HelpCommand


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
    return HelpCommand(unknown=word)


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
    link, deadline, audience_terms = "", None, []
    for term in terms:
        key, _, value = term.partition(":")
        if key.lower() == "link" and value:
            link = parse_link(value)
        elif key.lower() == "deadline" and value:
            deadline = parse_deadline(value)
        else:
            audience_terms.append(term)
    if not audience_terms:
        raise UserError("the audience is missing: add terms like tier:gold, or all")
    return SendCommand(importance=importance, topic=topic, audience=" ".join(audience_terms),
                       title=title, body=body, link=link, deadline=deadline)


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


def parse_deadline(value: str) -> datetime:
    """ISO-8601 date or date-time; a bare date means the end of that day, UTC; naive means UTC."""
    value = value.strip()
    try:
        if len(value) == 10:
            return datetime.combine(datetime.fromisoformat(value).date(), time(23, 59), tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"deadline '{value}' is not an ISO-8601 date or time (e.g. 2026-12-01 or 2026-12-01T17:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
