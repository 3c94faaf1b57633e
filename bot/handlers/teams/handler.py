"""Teams activities: installs, messages (staff commands, partner questions, preferences) and card
actions, dispatched to the core; replies go out through `TeamsChannel`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from microsoft_agents.activity import Activity

from bot.channels.teams import TOO_LARGE, RosterEntry, TeamsChannel, UntrustedServiceUrl
from bot.channels.teams_cards import ACK_VERB
from bot.channels.teams_replies import (
    TOO_LARGE_REPLY,
    card_activity,
    compose_card,
    console_link_markdown,
    edit_card,
    help_markdown,
    partner_help_markdown,
    preferences_card,
    preview_card,
    report_markdown,
    result_markdown,
    text_activity,
)
from bot.channels.teams_surveys import survey_compose_card, survey_preview_card
from bot.common.errors import UserError
from bot.common.logs import bind_context
from bot.core.commands.help import asks_for_help
from bot.core.commands.parser import (
    ComposeCommand,
    EditCommand,
    HelpCommand,
    SurveyComposeCommand,
    parse_command,
)
from bot.core.commands.refusals import refusal, staff_command_verb
from bot.core.commands.runner import ReportReady, StaffCommands
from bot.core.directory.app_installs import app_added, app_removed
from bot.core.directory.console_access import SignInLink
from bot.core.directory.linking import (
    TeamsIdentity,
    link_teams_identity,
    staff_for_teams,
    vendor_tenants,
)
from bot.core.directory.permissions import require_sender
from bot.core.directory.workspaces import tenant_allowed
from bot.core.directory.preferences import adopt_device_timezone, preferences_for
from bot.core.notices import revisions, sending
from bot.core.onboarding.assistant import FILES_NOT_READ, member_for
from bot.core.ports import OutcomeKind
from bot.core.replays import TEAMS_WINDOW, first_sighting, request_key
from bot.core.surveys.creating import SurveyPreview
from bot.handlers.teams.cards import VERBS
from bot.handlers.teams.texts import NOT_A_MEMBER, ONE_TO_ONE, SORRY, WELCOME
from bot.handlers.teams.turn import (
    Invoke,
    InvokeAnswers,
    Turn,
    client_timezone,
    message_response,
    plain_text,
    turn_of,
)
from bot.service import Herald
from storage.models import Platform, PlatformAccount, Staff

log = logging.getLogger(__name__)

REPLY_ATTEMPTS = 4  # a reply the connector fails transiently: the first try and three more
MAX_REPLY_PAUSE = 30.0  # seconds; a longer Retry-After is cut to this
MAX_REPLY_WAIT = 60.0  # seconds of pauses in all for one reply; past that it is given up and logged
# the activities Herald acts on (links, greets, answers, records): each is acted on once, however
# often the Bot Connector delivers it (same id); others (typing, reactions) are ignored anyway
ACTED_ON = frozenset({"message", "invoke", "conversationUpdate", "installationUpdate"})
# Herald is a Teams app, but its Azure Bot also serves Web Chat and Direct Line (Web Chat is on for
# every Azure Bot resource), whose clients write `from` and `channelData` (so the tenant) as they
# like. Microsoft: the channel id is what a bot relies on to tell channels apart, and the token's
# key must be endorsed for it ("Authentication with the Bot Connector API", step 3:
# https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication).
TEAMS_CHANNEL_ID = "msteams"


def reply_pause(retry_after: float | None, attempt: int) -> float:
    """The pause before sending a reply again: what the connector asked for, else 1, 2, 4 s."""
    return min(retry_after if retry_after else 2.0 ** (attempt - 1), MAX_REPLY_PAUSE)


class TeamsHandler:
    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        channel = herald.channels.get(Platform.TEAMS.value)
        if not isinstance(channel, TeamsChannel):
            raise RuntimeError("the Teams channel is not configured")
        self.channel = channel
        self.commands = StaffCommands(herald.catalog, herald.clock, wake_outbox=herald.outbox.wake, platform="teams")
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests wait on an event instead
        self.invoke_answers = InvokeAnswers()

    async def handle(self, request: web.Request) -> web.Response:
        not_an_activity = web.json_response({"error": "the body is not a Bot Framework activity"}, status=400)
        try:
            body = await request.json()
        except ValueError:
            return not_an_activity
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return not_an_activity  # checked first: the SDK logs a traceback for bodies it cannot read
        try:
            activity = Activity.model_validate(body)
        except Exception as exc:  # noqa: BLE001 - ValidationError, or the SDK's own bare Exception
            log.warning("refused a Teams body that is not a valid activity (%s)", type(exc).__name__)
            return not_an_activity
        if activity.channel_id != TEAMS_CHANNEL_ID:
            log.warning("ignored an activity from channel %r: Herald acts on Microsoft Teams (msteams) only",
                        str(activity.channel_id or "")[:40])
            return web.Response(status=200)
        turn = turn_of(activity)
        if turn is None:
            return web.Response(status=202)  # nothing we act on (no user, conversation or service URL)
        bind_context(platform="teams", workspace=turn.tenant_id, user=turn.aad_object_id)
        if self.channel.allowed_service_hosts is not None:
            try:
                self.channel._check_service_url(turn.service_url)
            except UntrustedServiceUrl:
                log.warning("refused an activity with an untrusted serviceUrl")
                return web.json_response({"error": "untrusted serviceUrl"}, status=403)
        await self._tenant_allowed(turn)
        key = request_key("teams", turn.tenant_id, turn.conversation_id, activity.id) if activity.id else ""
        if key and activity.type in ACTED_ON and not await first_sighting(
                key, now=self.herald.clock.now(), window=TEAMS_WINDOW):
            log.warning("ignored a repeated Teams activity")
            # an invoke's answer is the response itself: the connector retries one whose answer it lost
            return self.invoke_answers.again(key) if activity.type == "invoke" else web.Response(status=200)
        if activity.type == "invoke":  # its answer is the HTTP response: a card or a message
            answer = await self.answer_invoke(turn)
            if key:
                self.invoke_answers.keep(key, answer)
            return answer
        if not turn.personal:
            return self.outside_a_personal_chat(turn)
        if activity.type in ("conversationUpdate", "installationUpdate"):
            self.herald.after_answer(self._replying_sorry(turn, self.on_install(turn)))
        elif activity.type == "message":
            self.herald.after_answer(self._replying_sorry(turn, self.on_message(turn)))
        # Answered at once, the work goes on: Teams gives a bot 15 s to answer the request, and
        # the replies go out through the Bot Connector, which may be slow or ask for a pause.
        return web.Response(status=200)

    def outside_a_personal_chat(self, turn: Turn) -> web.Response:
        """A group chat or a channel (the app is personal-scope only, but can be @mentioned or added to
        one): nothing is linked or stored, so notices and hand-offs keep going to the person's 1:1 chat.
        A message or a button press is told where Herald works; an install or a roster change there
        is nobody asking anything, so the group hears nothing."""
        log.info("ignored a Teams %s outside a 1:1 chat", turn.activity.type)
        if turn.activity.type == "invoke":
            return message_response(ONE_TO_ONE)
        if turn.activity.type == "message":
            self.herald.after_answer(self.reply(turn, text_activity(ONE_TO_ONE)))
        return web.Response(status=200)

    async def answer_invoke(self, turn: Turn) -> web.Response:
        if not turn.personal:
            return self.outside_a_personal_chat(turn)
        try:
            return await self.on_invoke(turn)
        except Exception:  # noqa: BLE001 - never a 500 with a trace to the connector
            log.exception("Teams invoke activity failed")
            return message_response(SORRY)

    async def _replying_sorry(self, turn: Turn, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:  # noqa: BLE001 - the person hears that something went wrong; the log says what
            log.exception("Teams %s activity failed", turn.activity.type)
            await self.reply(turn, text_activity(SORRY))

    async def _tenant_allowed(self, turn: Turn) -> None:
        """Any activity from a tenant shows Herald is allowed there: a tenant marked unreachable
        because its Teams admin blocked Herald is reached again, and what failed for it is sent
        (bot.core.directory.workspaces.tenant_allowed). A failure is logged; the next activity tries again."""
        try:
            if await tenant_allowed(turn.tenant_id, now=self.herald.clock.now()):
                self.herald.outbox.wake()
        except Exception:  # noqa: BLE001 - the activity itself is still answered
            log.exception("could not mark Teams tenant %s reachable again", turn.tenant_id)

    # ---- conversation lifecycle -------------------------------------------------------------

    async def link(self, turn: Turn) -> tuple[Staff | None, bool]:
        """Store the conversation reference; returns (staff if the sender is staff, member linked).
        A member taken for someone who removed Herald (`app_removed_at`) who writes to it or presses
        a button in their 1:1 chat has it installed: Teams' "add" was missed (Herald was down), so
        the removal ends here as it would have then (`installed`)."""
        removed = await PlatformAccount.filter(platform=Platform.TEAMS.value, workspace_external_id=turn.tenant_id,
                                               user_id=turn.aad_object_id).values_list("app_removed_at", flat=True)
        known = bool(removed)
        staff = await staff_for_teams(turn.tenant_id, turn.aad_object_id)
        roster, staff_tenants = RosterEntry(), frozenset[str]()
        if not known and staff is None:  # someone new: who they are by address, see bot/core/directory/linking.py
            roster = await self.channel.roster_entry(turn.service_url, turn.conversation_id, turn.user_id)
            staff_tenants = await vendor_tenants(self.herald.settings.teams_tenant_id)
        result = await link_teams_identity(TeamsIdentity(
            tenant_id=turn.tenant_id, aad_object_id=turn.aad_object_id, conversation_id=turn.conversation_id,
            service_url=turn.service_url, email=roster.email, upn=roster.upn, name=turn.name),
            now=self.herald.clock.now(), staff_tenants=staff_tenants)
        if any(at is not None for at in removed) and turn.activity.type in ("message", "invoke"):
            await self._app_added(turn)
        return result.staff, result.member is not None

    async def on_install(self, turn: Turn) -> None:
        """A personal install sends both a conversationUpdate (members added: the bot and the user)
        and an installationUpdate (action add): Microsoft's "Subscribe to conversation events".
        Either links the person; only the installationUpdate greets, so the greeting comes once.
        A conversationUpdate that adds nobody (members removed) is no arrival at all, and one
        removing the bot from a personal chat is deliberately not taken for the removal: Microsoft
        documents that uninstalling a bot sends an `installationUpdate` with action "remove" in
        every scope, and lists "the bot is uninstalled and removed from a conversation" as the case
        a bot-removed `membersRemoved` is sent in, i.e. the same uninstall, which the
        installationUpdate already records (Microsoft Learn, "Conversation events in your Teams
        bot": its sections Installation events and Members removed).
        An app upgrade that (re)adds the bot comes as `add-upgrade`: the person is linked as for an
        install, but greeted only once, at the install (`add`)."""
        activity = turn.activity
        if activity.type == "installationUpdate":
            # "remove" / "add" (and the SDKs' "remove-upgrade" / "add-upgrade", handled as they are)
            action = activity.action or ""
            if action.startswith("remove"):
                if (await app_removed(turn.tenant_id, turn.aad_object_id, now=self.herald.clock.now())).messages:
                    self.herald.outbox.wake()  # it fails the messages that waited for them, without a request
                return
            await self.installed(turn)
            if action == "add":  # a new version of the app is no new arrival: greeted once
                await self.reply(turn, text_activity(WELCOME))
            return
        added = [m.id for m in (activity.members_added or []) if isinstance(getattr(m, "id", None), str)]
        if turn.user_id in added:
            await self.installed(turn)

    async def installed(self, turn: Turn) -> None:
        """Link the person, and end a removal recorded before: what failed because Herald was not
        installed for them goes out again (bot.core.directory.app_installs)."""
        await self.link(turn)
        await self._app_added(turn)

    async def _app_added(self, turn: Turn) -> None:
        if (await app_added(turn.tenant_id, turn.aad_object_id, now=self.herald.clock.now())).deliveries:
            self.herald.outbox.wake()

    # ---- messages ---------------------------------------------------------------------------

    async def on_message(self, turn: Turn) -> None:
        staff, is_member = await self.link(turn)
        text = plain_text(turn.activity.text or "")
        if staff is not None:
            await self.reply(turn, await self.command_reply(text, staff))
            return
        member = await member_for(Platform.TEAMS.value, turn.tenant_id, turn.aad_object_id) if is_member else None
        if member is None:
            await self.reply(turn, text_activity(NOT_A_MEMBER))
            return
        if zone := client_timezone(turn.activity):
            await adopt_device_timezone(member, zone, now=self.herald.clock.now(), source="teams clientInfo")
        if not text and turn.activity.attachments:  # a picture or a file and no words, as Slack's file_share
            await self.reply(turn, text_activity(FILES_NOT_READ))
            return
        if staff_command_verb(text):
            await self.reply(turn, text_activity(f"⚠ {await refusal(text, self.commands)}"))
            return
        if asks_for_help(text):
            await self.reply(turn, text_activity(partner_help_markdown()))
        elif text.lower() in ("preferences", "settings"):
            prefs = await preferences_for(member.id, self.herald.catalog)
            await self.reply(turn, card_activity(preferences_card(prefs, self.herald.catalog), "Your preferences"))
        elif text:
            await self.herald.answer_question(member, text, platform=Platform.TEAMS.value, recipient=turn.recipient)

    async def command_reply(self, text: str, staff: Staff) -> dict[str, Any]:
        try:
            command = parse_command(text)
            if isinstance(command, HelpCommand):
                return text_activity(help_markdown(command.unknown))
            if isinstance(command, ComposeCommand):
                require_sender(staff)
                return card_activity(compose_card(self.herald.catalog), "New notice")
            if isinstance(command, SurveyComposeCommand):
                require_sender(staff)
                return card_activity(survey_compose_card(self.herald.catalog), "New survey")
            if isinstance(command, EditCommand) and not command.inline:  # the form, as Slack's modal
                notice = await revisions.editable_notice(command.notice_id, staff)
                return card_activity(edit_card(notice, material=command.material), f"Edit notice #{notice.id}")
            result = await self.commands.run(command, staff)
        except UserError as exc:
            return text_activity(f"⚠ {exc}")
        if isinstance(result, sending.Preview):
            return card_activity(preview_card(result), f"Preview of notice #{result.notice.id}")
        if isinstance(result, SurveyPreview):
            return card_activity(survey_preview_card(result), f"Preview of survey #{result.notice.id}")
        if isinstance(result, ReportReady):
            return text_activity(report_markdown(result, await self.herald.report_link(result)))
        if isinstance(result, SignInLink):
            return text_activity(console_link_markdown(self.herald.sign_in_url(result.token)))
        return text_activity(result_markdown(result))

    async def reply(self, turn: Turn, activity: dict[str, Any]) -> None:
        """Reply in the person's conversation. The request was answered already, so a reply the
        Bot Connector fails transiently is sent again instead of being lost: a 429 (e.g. a
        broadcast spent the tenant's budget) after the pause it asks for, and the codes Microsoft
        says to retry (412, 502, 503, 504: see `_RETRYABLE` in bot.channels.teams) or a network
        error after a short backoff; a few times, within MAX_REPLY_WAIT seconds in all. One it
        refuses as too large (413) is followed by a short note, so the person is never left with
        silence."""
        waited = 0.0
        for attempt in range(1, REPLY_ATTEMPTS + 1):
            outcome = await self.channel.send_activity(turn.recipient, activity)
            if outcome.kind is OutcomeKind.DELIVERED:
                return
            if outcome.kind is not OutcomeKind.RETRY or attempt == REPLY_ATTEMPTS:
                break
            pause = reply_pause(outcome.retry_after, attempt)
            if waited + pause > MAX_REPLY_WAIT:
                break
            await self.sleep(pause)
            waited += pause
        log.warning("could not reply in Teams: %s", outcome.reason)
        if outcome.reason == TOO_LARGE and activity.get("text") != TOO_LARGE_REPLY:
            await self.reply(turn, text_activity(TOO_LARGE_REPLY))

    # ---- card actions (Action.Execute) ------------------------------------------------------

    async def on_invoke(self, turn: Turn) -> web.Response:
        activity = turn.activity
        if activity.name != "adaptiveCard/action":
            return web.json_response({}, status=200)
        action = activity.value.get("action") if isinstance(activity.value, dict) else None
        action = action if isinstance(action, dict) else {}
        verb, data = action.get("verb"), action.get("data") or {}
        handler = VERBS.get(verb) if isinstance(verb, str) else None
        if handler is None:
            return message_response("This button is not supported.")
        if not isinstance(data, dict):
            return message_response("That button's data is not valid any more.")

        try:
            # every press refreshes the stored conversation, except Acknowledge (the hot path)
            staff = None if verb == ACK_VERB else (await self.link(turn))[0]
            invoke = Invoke(self.herald, turn, verb, data, self.commands, staff,
                            lambda activity: self.reply(turn, activity))
            return await handler(invoke)
        except UserError as exc:
            return message_response(str(exc))
        except ValueError:
            return message_response("That button's data is not valid any more.")
