"""A staff command typed by someone without a staff role, outside the slash command.

A partner who types `send must-know ...` to the bot (a Teams chat, a Slack DM) meant a command,
not a question for the assistant. They get the refusal `/herald` gives them in Slack (the
permission check of that very command: who may do it), after what they tried.
"""

from __future__ import annotations

from bot.common.errors import PermissionDenied, UserError
from bot.core.commands.parser import ComposeCommand, EditCommand, HelpCommand, SurveyComposeCommand, parse_command
from bot.core.commands.runner import StaffCommands
from bot.core.directory.permissions import require_sender

STAFF_VERBS = {"send", "cancel", "edit", "retract", "pause", "resume", "rollout", "survey",
               "status", "scheduled", "report", "questions", "progress", "variants"}


def staff_command_verb(text: str) -> str | None:
    """The staff verb `text` starts with, if it is meant as a command: it parses as one, or has
    the inline form's `|` separators though a part is wrong. "status of my rebate?" stays a
    question for the assistant."""
    words = text.strip().split(maxsplit=1)
    verb = words[0].lower() if words else ""
    if verb not in STAFF_VERBS:
        return None
    try:
        return None if isinstance(parse_command(text), HelpCommand) else verb
    except UserError:
        return verb if "|" in text else None


async def refusal(text: str, commands: StaffCommands) -> str:
    """What a person with no staff role is told for the staff command `text`."""
    verb = staff_command_verb(text) or "that"
    try:
        command = parse_command(text)
    except UserError:
        command = ComposeCommand()  # a malformed send/survey: the senders' rule applies
    try:
        # the forms (`/herald send`, `survey`, `edit <id>` without text) check who may send before opening
        if isinstance(command, (ComposeCommand, SurveyComposeCommand)) or (
                isinstance(command, EditCommand) and not command.inline):
            require_sender(None)
        else:
            await commands.run(command, None)
    except PermissionDenied as denied:
        return f"You tried `{verb}`, a Herald staff command. {denied}"
    except UserError as refused:  # refused before its permission check (e.g. no such survey), as `/herald` says
        return f"You tried `{verb}`, a Herald staff command. {refused}"
    return f"You tried `{verb}`, a Herald staff command."
