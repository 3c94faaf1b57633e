"""Inbound Microsoft Teams: `POST /api/messages`, turned into core calls.

The Microsoft 365 Agents SDK validates the Bot Framework JWT (`jwt_authorization_decorator`:
a missing or bad token gets 401 and nothing runs) and parses the activity; Herald dispatches it
itself and answers through `TeamsChannel`, the same client the outbox uses, so replies and
proactive sends share one connector client, one token provider and one service-URL guard.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.aiohttp import jwt_authorization_decorator
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration
from pydantic import ValidationError

from bot.channels.base import Recipient
from bot.channels.teams import TeamsChannel, UntrustedServiceUrl
from bot.channels.teams_cards import ACK_VERB, notice_card
from bot.channels.teams_replies import (
    CANCEL_VERB, COMPOSE_VERB, PREFERENCES_VERB, REPLY_SUBMIT_VERB, SEND_VERB, card_activity, compose_card,
    help_markdown, note_card, preferences_card, preview_card, reply_card, report_markdown, result_markdown,
    sent_markdown, text_activity,
)
from bot.core import acks, notices
from bot.core.commands import ComposeCommand, HelpCommand, SendCommand, parse_command, parse_deadline, parse_link
from bot.core.errors import UserError
from bot.core.escalations import OPEN_REPORT_ACTION, REMIND_NOW_ACTION, remind_organisation_now
from bot.core.linking import TeamsIdentity, link_teams_identity, staff_for_teams
from bot.core.onboarding.journeys import DONE_ACTION as JOURNEY_DONE_ACTION
from bot.core.onboarding.journeys import complete_step
from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION, HELPFUL_ACTION, NOT_HELPFUL_ACTION, REPLY_ACTION, give_feedback, member_for,
)
from bot.core.permissions import require_sender
from bot.core.preferences import preferences_for, update_preferences
from bot.core.staff_commands import ReportReady, StaffCommands
from bot.core.views import notice_view
from bot.service import Herald
from storage.models import Platform, PlatformAccount, Staff

log = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on Herald's side. The details are in its log."
NOT_A_MEMBER = ("I deliver your vendor's partner notices here. I don't recognise you as a partner contact yet; "
                "ask your channel account manager to add you to the partner directory.")
WELCOME = ("Hi, I'm Herald. Notices from your vendor's partner team will arrive here; critical ones have an "
           "**Acknowledge** button.")
CARD_RESPONSE = "application/vnd.microsoft.card.adaptive"
MESSAGE_RESPONSE = "application/vnd.microsoft.activity.message"


def auth_configuration(herald: Herald) -> AgentAuthConfiguration:
    settings = herald.settings
    if not settings.teams_app_id:
        log.warning("HERALD_TEAMS_APP_ID is not set: /api/messages accepts UNAUTHENTICATED requests. "
                    "Use this for local testing only.")
        return AgentAuthConfiguration(anonymous_allowed=True)
    return AgentAuthConfiguration(client_id=settings.teams_app_id, tenant_id=settings.teams_tenant_id,
                                  anonymous_allowed=False)


def add_teams_routes(app: web.Application, herald: Herald) -> None:
    with warnings.catch_warnings():  # the SDK's JWT check reads this plain string key
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["agent_configuration"] = auth_configuration(herald)
    handler = TeamsHandler(herald)
    app.router.add_post("/api/messages", jwt_authorization_decorator(handler.handle))


@dataclass(frozen=True)
class Turn:
    """The parts of an inbound activity Herald uses."""

    activity: Activity
    tenant_id: str
    aad_object_id: str
    user_id: str
    conversation_id: str
    service_url: str
    name: str

    @property
    def recipient(self) -> Recipient:
        return Recipient(workspace_id=self.tenant_id, user_id=self.aad_object_id, dm_channel=self.conversation_id,
                         service_url=self.service_url)


class TeamsHandler:
    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        channel = herald.channels.get(Platform.TEAMS.value)
        if not isinstance(channel, TeamsChannel):
            raise RuntimeError("the Teams channel is not configured")
        self.channel = channel
        self.commands = StaffCommands(herald.catalog, herald.clock, wake_outbox=herald.outbox.wake)

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
        except (ValueError, ValidationError):
            return not_an_activity
        turn = _turn(activity)
        if turn is None:
            return web.Response(status=202)  # nothing we act on (no user, conversation or service URL)
        if self.channel.allowed_service_hosts is not None:
            try:
                self.channel._check_service_url(turn.service_url)
            except UntrustedServiceUrl:
                log.warning("refused an activity with an untrusted serviceUrl")
                return web.json_response({"error": "untrusted serviceUrl"}, status=403)
        try:
            if activity.type == "invoke":
                return await self.on_invoke(turn)
            if activity.type in ("conversationUpdate", "installationUpdate"):
                await self.on_install(turn)
            elif activity.type == "message":
                await self.on_message(turn)
        except Exception:  # noqa: BLE001 - never a 500 with a trace to the connector
            log.exception("Teams %s activity failed", activity.type)
            if activity.type == "invoke":
                return _invoke_message(SORRY)
            await self.reply(turn, text_activity(SORRY))
        return web.Response(status=200)

    # ---- conversation lifecycle -------------------------------------------------------------

    async def link(self, turn: Turn) -> tuple[Staff | None, bool]:
        """Store the conversation reference; returns (staff if the sender is staff, member linked)."""
        known = await PlatformAccount.filter(platform=Platform.TEAMS.value, workspace_external_id=turn.tenant_id,
                                             user_id=turn.aad_object_id).exists()
        staff = await staff_for_teams(turn.tenant_id, turn.aad_object_id)
        email = ""
        if not known and staff is None:
            email = await self.channel.member_email(turn.service_url, turn.conversation_id, turn.user_id)
        result = await link_teams_identity(TeamsIdentity(
            tenant_id=turn.tenant_id, aad_object_id=turn.aad_object_id, conversation_id=turn.conversation_id,
            service_url=turn.service_url, email=email, name=turn.name), now=self.herald.clock.now())
        return result.staff, result.member is not None

    async def on_install(self, turn: Turn) -> None:
        activity = turn.activity
        if activity.type == "installationUpdate" and (activity.action or "").startswith("remove"):
            return  # uninstalled: deliveries to this person will fail with a clear reason from now on
        added = [m.id for m in (activity.members_added or [])]
        if activity.type == "conversationUpdate" and added and turn.user_id not in added:
            return  # the bot itself was added; the user's own update carries their id
        await self.link(turn)
        await self.reply(turn, text_activity(WELCOME))

    async def on_message(self, turn: Turn) -> None:
        staff, is_member = await self.link(turn)
        text = _plain_text(turn.activity.text or "")
        if staff is not None:
            await self.reply(turn, await self.command_reply(text, staff))
            return
        member = await member_for(Platform.TEAMS.value, turn.tenant_id, turn.aad_object_id) if is_member else None
        if member is None:
            await self.reply(turn, text_activity(NOT_A_MEMBER))
            return
        if text.lower() in ("preferences", "settings"):
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
            result = await self.commands.run(command, staff)
        except UserError as exc:
            return text_activity(f"⚠ {exc}")
        if isinstance(result, notices.Preview):
            return card_activity(preview_card(result), f"Preview of notice #{result.notice.id}")
        if isinstance(result, ReportReady):
            return text_activity(report_markdown(result, await self.herald.report_link(result)))
        return text_activity(result_markdown(result))

    async def reply(self, turn: Turn, activity: dict[str, Any]) -> None:
        outcome = await self.channel.send_activity(turn.recipient, activity)
        if outcome.kind.value != "delivered":
            log.warning("could not reply in Teams: %s", outcome.reason)

    # ---- card actions (Action.Execute) ------------------------------------------------------

    async def on_invoke(self, turn: Turn) -> web.Response:
        activity = turn.activity
        if activity.name != "adaptiveCard/action":
            return web.json_response({}, status=200)
        action = (activity.value or {}).get("action", {}) if isinstance(activity.value, dict) else {}
        verb, data = action.get("verb", ""), action.get("data") or {}
        try:
            if verb == ACK_VERB:
                return await self.acknowledge(turn, data)
            staff, _ = await self.link(turn)
            if verb == SEND_VERB:
                result = await notices.send_draft(int(data.get("notice_id", 0)), staff, self.herald.catalog,
                                                  now=self.herald.clock.now(),
                                                  platform_policy=self.herald.settings.platform_policy)
                self.herald.outbox.wake()
                return _invoke_card(note_card(sent_markdown(result.notice, result.recipients, result.already)))
            if verb == CANCEL_VERB:
                notice = await notices.cancel_draft(int(data.get("notice_id", 0)), staff, now=self.herald.clock.now())
                return _invoke_card(note_card(f"Notice #{notice.id} {notice.status}."))
            if verb == COMPOSE_VERB:
                return await self.compose(data, staff)
            if verb == REMIND_NOW_ACTION:
                notice_id, _, org_id = str(data.get("value", "")).partition(":")
                queued = await remind_organisation_now(int(notice_id or 0), org_id, staff, now=self.herald.clock.now())
                self.herald.outbox.wake()
                return _invoke_message(f"Queued {queued} reminders for notice #{notice_id}.")
            if verb in (HELPFUL_ACTION, NOT_HELPFUL_ACTION, ASK_CAM_ACTION):
                return await self.question_feedback(turn, verb, int(data.get("value", 0)))
            if verb == JOURNEY_DONE_ACTION:
                step = await complete_step(int(data.get("value", 0)), platform=Platform.TEAMS.value,
                                           workspace_id=turn.tenant_id, user_id=turn.aad_object_id,
                                           now=self.herald.clock.now(), channels=self.herald.channels)
                return _invoke_message(f"Marked done: {step.step_key}.")
            if verb == PREFERENCES_VERB:
                return await self.save_preferences(turn, data)
            if verb == REPLY_ACTION:
                return _invoke_card(reply_card(int(data.get("value", 0))))
            if verb == REPLY_SUBMIT_VERB:
                await self.herald.relay_reply(int(data.get("question_id", 0)), staff, str(data.get("reply", "")))
                return _invoke_card(note_card("Your answer was sent to the partner."))
            if verb == OPEN_REPORT_ACTION:
                ready = await self.commands.report(int(data.get("value", 0)), staff)
                await self.reply(turn, text_activity(report_markdown(ready, await self.herald.report_link(ready))))
                return _invoke_message("The report is in this chat.")
        except UserError as exc:
            return _invoke_message(str(exc))
        except ValueError:
            return _invoke_message("That button's data is not valid any more.")
        return _invoke_message("This button is not supported.")

    async def save_preferences(self, turn: Turn, data: dict[str, Any]) -> web.Response:
        member = await member_for(Platform.TEAMS.value, turn.tenant_id, turn.aad_object_id)
        if member is None:
            return _invoke_message(NOT_A_MEMBER)
        catalog = self.herald.catalog
        subscriptions = {key.removeprefix("topic:"): str(value).lower() == "true"
                         for key, value in data.items() if key.startswith("topic:")}
        try:
            prefs = await update_preferences(
                member.id, catalog, now=self.herald.clock.now(), subscriptions=subscriptions or None,
                timezone=str(data["timezone"]).strip() if data.get("timezone") else None,
                quiet_start=int(data["quiet_start"]) if str(data.get("quiet_start", "")).isdigit() else None,
                quiet_end=int(data["quiet_end"]) if str(data.get("quiet_end", "")).isdigit() else None,
                digest_frequency=str(data["digest_frequency"]) if data.get("digest_frequency") else None)
            note = "Saved."
        except UserError as exc:
            prefs, note = await preferences_for(member.id, catalog), f"⚠ Not saved: {exc}"
        return _invoke_card(preferences_card(prefs, catalog, note=note))

    async def question_feedback(self, turn: Turn, verb: str, question_id: int) -> web.Response:
        member = await member_for(Platform.TEAMS.value, turn.tenant_id, turn.aad_object_id)
        if verb == ASK_CAM_ACTION:
            return _invoke_message(await self.herald.hand_off_question(question_id, member))
        helpful = verb == HELPFUL_ACTION
        await give_feedback(question_id, member, helpful=helpful, now=self.herald.clock.now())
        return _invoke_message("Thanks, glad it helped." if helpful else
                               "Thanks for telling me. Press Ask my CAM if you'd like a person to answer.")

    async def acknowledge(self, turn: Turn, data: dict[str, Any]) -> web.Response:
        result = await acks.acknowledge(int(data.get("notice_id", 0)), platform=Platform.TEAMS.value,
                                        workspace_id=turn.tenant_id, user_id=turn.aad_object_id,
                                        now=self.herald.clock.now())
        await self.herald.update_acknowledged_copies(result)  # every copy, here and in Slack
        view = notice_view(result.notice, self.herald.catalog).with_ack(
            result.member.name or result.member.email, result.acknowledgement.acknowledged_at)
        return _invoke_card(notice_card(view))

    async def compose(self, data: dict[str, Any], staff: Staff | None) -> web.Response:
        values = {k: str(v).strip() for k, v in data.items() if isinstance(v, (str, int))}
        try:
            command = SendCommand(
                importance=values.get("importance", ""), topic=values.get("topic", ""),
                audience=values.get("audience", ""), title=values.get("title", ""), body=values.get("body", ""),
                link=parse_link(values["link"]) if values.get("link") else "",
                deadline=parse_deadline(values["deadline"]) if values.get("deadline") else None)
            preview = await notices.create_draft(staff, command, self.herald.catalog, now=self.herald.clock.now())
        except UserError as exc:
            return _invoke_card(compose_card(self.herald.catalog, error=str(exc), values=values))
        return _invoke_card(preview_card(preview))


def _turn(activity: Activity) -> Turn | None:
    sender, conversation = activity.from_property, activity.conversation
    if sender is None or conversation is None or not activity.service_url:
        return None
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = ((channel_data.get("tenant") or {}).get("id") or conversation.tenant_id or "").lower()
    aad = (sender.aad_object_id or "").lower()
    if not tenant or not aad:
        return None
    return Turn(activity, tenant, aad, sender.id or "", conversation.id or "", activity.service_url, sender.name or "")


def _plain_text(text: str) -> str:
    """Teams wraps mentions as <at>Herald</at> and may send HTML entities; keep the words."""
    import html
    import re

    return html.unescape(re.sub(r"<at>.*?</at>", "", text)).strip()


def _invoke_card(content: dict[str, Any]) -> web.Response:
    return web.json_response({"statusCode": 200, "type": CARD_RESPONSE, "value": content})


def _invoke_message(text: str) -> web.Response:
    return web.json_response({"statusCode": 200, "type": MESSAGE_RESPONSE, "value": text})
