"""`/herald <words>`: parsed by the platform-neutral command language, run with the sender's role."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import compose_modal, edit_modal, help_text, partner_help_text
from bot.channels.slack_surveys import survey_compose_modal
from bot.common.errors import UserError
from bot.core.commands.parser import (
    ComposeCommand,
    EditCommand,
    HelpCommand,
    SurveyComposeCommand,
    parse_command,
)
from bot.core.directory.permissions import require_sender
from bot.core.directory.staff import staff_for_slack
from bot.core.notices import revisions
from bot.core.onboarding.assistant import member_for
from bot.handlers.slack.common import NOT_A_MEMBER, command_person, open_form, problem_text, respond_or_explain, typed_text
from bot.handlers.slack.replies import SlackCommands
from bot.service import Herald
from storage.models import Platform


def register(app: AsyncApp, herald: Herald) -> None:
    commands = SlackCommands(herald)

    @app.command("/herald")
    async def on_command(ack, body, respond, client) -> None:  # noqa: ANN001 - bolt injects these
        try:
            command = parse_command(typed_text(body.get("text", "")))
        except UserError as exc:
            await ack(text=problem_text(":warning:", exc))
            return
        person = await command_person(body)  # an org-wide install's CAM may be filed under the org's id
        staff = await staff_for_slack(person.workspace, person.user)
        if isinstance(command, HelpCommand):
            await ack(text=await _help(staff, person.workspace, person.user, command.unknown))
            return
        if isinstance(command, (ComposeCommand, SurveyComposeCommand)) or (
                isinstance(command, EditCommand) and not command.inline):
            await _open_form(ack, client, body["trigger_id"], staff, command, respond)
            return
        await ack()
        await respond_or_explain(respond, commands.run(command, staff, client=client, user_id=body["user_id"]))

    async def _help(staff, team: str, user: str, unknown: str) -> str:  # noqa: ANN001
        """Each person's own help: staff get the commands, partner contacts what they can do."""
        if staff is not None:
            return help_text(unknown)
        if await member_for(Platform.SLACK.value, team, user) is not None:
            return partner_help_text(unknown)
        return NOT_A_MEMBER

    async def _open_form(ack, client, trigger_id, staff, command, respond) -> None:  # noqa: ANN001
        """Modals need the trigger id within 3 s, so the checks run before the ack."""
        try:
            require_sender(staff)
            if isinstance(command, EditCommand):
                notice = await revisions.editable_notice(command.notice_id, staff)
                view = edit_modal(notice, material=command.material)
            elif isinstance(command, SurveyComposeCommand):
                view = survey_compose_modal(herald.catalog)
            else:
                view = compose_modal(herald.catalog)
        except UserError as exc:
            await ack(text=problem_text(":no_entry:", exc))
            return
        await ack()
        await open_form(client, trigger_id, view, respond)
