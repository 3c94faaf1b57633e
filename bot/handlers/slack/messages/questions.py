"""A direct message to the bot: a partner's question for the onboarding assistant (or `help`). Staff who write
there are pointed to `/herald`; anyone else is told how to be added to the partner directory."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import escape, partner_help_text, staff_in_messages
from bot.common.errors import UserError
from bot.core.commands.help import asks_for_help
from bot.core.commands.parser import HelpCommand, parse_command
from bot.core.commands.refusals import refusal, staff_command_verb
from bot.core.commands.runner import StaffCommands
from bot.core.directory.staff import staff_for_slack
from bot.core.onboarding.assistant import FILES_NOT_READ, member_for
from bot.core.ports import Recipient
from bot.handlers.slack.common import FROM_ELSEWHERE, NOT_A_MEMBER, slack_person, typed_text
from bot.service import Herald
from storage.models import Platform


# The message subtypes that are a person writing to Herald (Slack's message subtypes): a file
# shared with or without words, and a thread reply also sent to the conversation. Edits
# (message_changed), deletions, bot and system messages are not questions.
_WRITTEN = (None, "file_share", "thread_broadcast")


def _command_words(text: str) -> str:
    """The words, if they read as a Herald command (a known verb, even with a mistake after it); ""
    for anything else ("thanks!")."""
    words = " ".join(text.split())
    try:
        command = parse_command(words)
    except UserError:
        return words
    return "" if isinstance(command, HelpCommand) and (command.unknown or not words) else words


def register(app: AsyncApp, herald: Herald) -> None:
    commands = StaffCommands(herald.catalog, herald.clock, wake_outbox=herald.outbox.wake, platform="slack")

    @app.event("message")
    async def on_direct_message(event: dict, context, client) -> None:  # noqa: ANN001
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype") not in _WRITTEN:
            return
        user, channel = event.get("user", ""), event.get("channel", "")
        thread = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else ""
        # a Slack Connect user's event names their home team in `user_team`
        person = await slack_person(team_id=context.team_id, enterprise_id=context.enterprise_id,
                                    org_wide=context.is_enterprise_install, user_id=user,
                                    home_team=event.get("user_team") if isinstance(event.get("user_team"), str) else None)
        recipient = Recipient(workspace_id=person.install, user_id=user, dm_channel=channel, thread_id=thread)

        async def say(reply: str) -> None:
            """Herald's reply where the person wrote: in the thread, if they wrote in one."""
            await client.chat_postMessage(channel=channel, text=reply, **({"thread_ts": thread} if thread else {}))

        if person.foreign:
            await say(FROM_ELSEWHERE)
            return
        member = await member_for(Platform.SLACK.value, person.workspace, user)
        text = typed_text(event.get("text", ""))
        if member is None:
            staff = await staff_for_slack(person.workspace, user)
            await say(staff_in_messages(_command_words(text)) if staff else NOT_A_MEMBER)
            return
        if not text.strip() and event.get("files"):
            await say(FILES_NOT_READ)
            return
        if staff_command_verb(text):
            await say(f":no_entry: {escape(await refusal(text, commands))}")
            return
        if asks_for_help(text):  # what Herald does for them, not a question for the assistant
            await say(partner_help_text())
            return
        await herald.answer_question(member, text, platform=Platform.SLACK.value, recipient=recipient)
