"""What `help` shows: staff their commands, partners what Herald does for them.

The wording is Slack's markup (`*bold*`, `•` bullets; Teams' renderer turns it into Markdown).
The few lines where the platforms work differently (Slack sends a report's CSV by DM, Teams links
it; preferences live in Slack's Home tab and behind `preferences` in Teams) come from the platform's
`HelpWording`, so help never promises what the platform it is read in does not do.
"""

from __future__ import annotations

from dataclasses import dataclass

# A partner's message that asks what Herald can do, rather than a question for the assistant
# ("help me register a deal" is a question).
HELP_WORDS = frozenset({"help", "?", "help?", "commands"})


@dataclass(frozen=True)
class HelpWording:
    """A platform's own lines of the help texts."""

    edit: str  # the `edit` line of the staff's help, after its bullet
    report: str  # where `report`'s summary and CSV go, in the staff's help
    questions: str  # where a partner asks the assistant
    preferences: str  # how a partner opens their preferences
    commands: str  # what the platform's other commands are to a partner


_STAFF_HELP = """\
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
• {edit}
  (an empty part keeps the old text; `material` asks for acknowledgement again)
• `retract <notice-id> <reason>` — withdraw a notice everywhere
• `report <notice-id>` — acknowledgement report ({report})
• `pause <org-id> [until YYYY-MM-DD] [reason]` · `resume <org-id>` — stop or restart reminders for a partner
• `console` — a sign-in link to the web console (notices, reports, compose; works once, for 10 minutes)
• `questions` — partners' questions handed off to you · `progress [org-id]` — onboarding progress
• A/B test: add `|| <title B> | <body B>` (up to 4 variants, A to D) to an inline `send`, e.g.
  `send need-to-know incentives tier:gold share:20% | Q3 rebate | Details ... || Earn more in Q3 | Details ...`
  members are split evenly within each partner; `share:20%` sends to 20% first and holds the rest back
• `variants <notice-id>` — compare the variants: acknowledgement rate, button presses, time to acknowledge
• `rollout <notice-id> <variant>` — send the chosen variant to everyone held back
• `survey` — open the survey form; inline:
  `survey <topic> <audience> [anonymous] [closes:YYYY-MM-DD] | <question> | <answers> [| follow-up: <question>]`
  answers: `scale:1-5`, `scale:0-10`, or 2 to 5 options each after a `|`, e.g.
  `survey support tier:gold anonymous closes:2026-12-01 | How satisfied are you with onboarding? | scale:1-5 | follow-up: What could be better?`
  `survey announcements all | Which format do you prefer? | Webinar | Workshop | E-learning`
  members answer with one click and may change their answer until it closes
• `survey results <id>` — response rate, distribution, NPS (0-10), breakdown by tier, region, role, partner
• `survey close <id>` — stop taking answers · `survey stages` — results of the journeys' surveys
• `help` — this message"""

_PARTNER_HELP = """\
*Herald for partners*
• Your vendor's notices arrive in your chat with Herald; press *Acknowledge* on the ones that ask for it \
(until you do, Herald reminds you in your working hours).
• Questions: {questions}. The assistant answers from the partner knowledge base, \
and *Ask my CAM* passes the question to your channel account manager.
• Preferences (optional topics, digest, quiet hours, time zone): {preferences}.
• {commands}"""


def staff_help(wording: HelpWording) -> str:
    """The staff's commands, as `help` shows them."""
    return _STAFF_HELP.format(edit=wording.edit, report=wording.report)


def partner_help(wording: HelpWording) -> str:
    """What a partner can do with Herald, as their `help` shows it."""
    return _PARTNER_HELP.format(questions=wording.questions, preferences=wording.preferences,
                                commands=wording.commands)


def asks_for_help(text: str) -> bool:
    """Whether a partner's message asks what Herald can do (not a question for the assistant)."""
    return text.strip().lower() in HELP_WORDS
