"""Inbound Slack: slash command, buttons and modals, turned into core calls.

Bolt verifies every request's signature (bad or stale → 401, nothing runs). Each listener acks
first (Slack wants an answer within 3 s) and does the work afterwards.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.base import Recipient
from bot.channels.slack_blocks import (
    CANCEL_ACTION, COMPOSE_CALLBACK, EDIT_CALLBACK, PREF_DIGEST_ACTION, PREF_QUIET_END_ACTION,
    PREF_QUIET_START_ACTION, PREF_TIMEZONE_ACTION, PREF_TOPICS_ACTION, PREVIEW_CALLBACK, REPLY_CALLBACK, SEND_ACTION,
    compose_modal, edit_modal, escape, help_text, home_view, message_modal, not_a_member_home, preview_modal,
    reply_modal,
)
from bot.core import acks, notices, revisions
from bot.core.commands import (
    ComposeCommand, EditCommand, HelpCommand, SendCommand, parse_command, parse_deadline, parse_link,
)
from bot.core.errors import UserError
from bot.core.escalations import OPEN_REPORT_ACTION, REMIND_NOW_ACTION, remind_organisation_now
from bot.core.permissions import require_sender
from bot.core.preferences import preferences_for, update_preferences
from bot.core.staff import staff_for_slack
from bot.core.onboarding.journeys import DONE_ACTION as JOURNEY_DONE_ACTION
from bot.core.onboarding.journeys import complete_step
from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION, HELPFUL_ACTION, NOT_HELPFUL_ACTION, REPLY_ACTION, give_feedback, member_for,
)
from bot.core.views import ACK_ACTION, format_time

from bot.handlers.slack_commands import SlackCommands
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on Herald's side. The details are in its log."
NOT_A_MEMBER = ("I deliver your vendor's partner notices here. I don't recognise you as a partner contact yet; "
                "ask your channel account manager to add you to the partner directory.")


def build_slack_app(herald: Herald) -> AsyncApp:
    settings = herald.settings
    workspaces = herald.slack_workspaces

    async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult | None:
        token = await workspaces.token_for(team_id or "")
        if not token:
            return None
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = AsyncApp(
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else "",
        authorize=authorize,
        client=AsyncWebClient(base_url=settings.slack_api_url),
        process_before_response=False,
        user_facing_authorize_error_message="Herald is not connected to this Slack workspace yet.",
    )
    _register(app, herald)
    return app


def slack_route(app: AsyncApp):
    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))
    return handle


def _register(app: AsyncApp, herald: Herald) -> None:
    catalog = herald.catalog
    commands = SlackCommands(herald)

    @app.command("/herald")
    async def on_command(ack, body, respond, client) -> None:  # noqa: ANN001 - bolt injects these
        try:
            command = parse_command(body.get("text", ""))
        except UserError as exc:
            await ack(text=f":warning: {exc}")
            return
        if isinstance(command, HelpCommand):
            await ack(text=help_text(command.unknown))
            return
        staff = await staff_for_slack(body["team_id"], body["user_id"])
        if isinstance(command, ComposeCommand) or (isinstance(command, EditCommand) and not command.inline):
            await _open_form(ack, client, body["trigger_id"], staff, command)
            return
        await ack()
        await _respond_or_explain(respond, commands.run(command, staff, client=client, user_id=body["user_id"]))

    async def _open_form(ack, client, trigger_id, staff, command) -> None:  # noqa: ANN001
        """Modals need the trigger id within 3 s, so the checks run before the ack."""
        try:
            require_sender(staff)
            if isinstance(command, EditCommand):
                notice = await revisions.editable_notice(command.notice_id, staff)
                view = edit_modal(notice, material=command.material)
            else:
                view = compose_modal(catalog)
        except UserError as exc:
            await ack(text=f":no_entry: {exc}")
            return
        await ack()
        await client.views_open(trigger_id=trigger_id, view=view)

    @app.action(SEND_ACTION)
    async def on_send(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
            result = await notices.send_draft(int(body["actions"][0]["value"]), staff, catalog, now=herald.clock.now(),
                                               platform_policy=herald.settings.platform_policy)
            herald.outbox.wake()
            return {"replace_original": True, "text": _sent_text(result)}
        await _respond_or_explain(respond, work())

    @app.action(CANCEL_ACTION)
    async def on_cancel(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
            notice = await notices.cancel_draft(int(body["actions"][0]["value"]), staff, now=herald.clock.now())
            verb = "cancelled" if notice.status == "cancelled" else f"already {notice.status}"
            return {"replace_original": True, "text": f"Notice #{notice.id} {verb}."}
        await _respond_or_explain(respond, work())

    @app.action(ACK_ACTION)
    async def on_acknowledge(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        try:
            result = await acks.acknowledge(int(body["actions"][0]["value"]), platform=Platform.SLACK.value,
                                            workspace_id=body["team"]["id"], user_id=body["user"]["id"],
                                            now=herald.clock.now())
        except UserError as exc:
            await respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        await herald.update_acknowledged_copies(result)

    @app.action(REMIND_NOW_ACTION)
    async def on_remind_now(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
            notice_id, _, org_id = body["actions"][0]["value"].partition(":")
            queued = await remind_organisation_now(int(notice_id), org_id, staff, now=herald.clock.now())
            herald.outbox.wake()
            return {"replace_original": False,
                    "text": f":bell: Queued {queued} reminder{'s' if queued != 1 else ''} for notice #{notice_id}."}
        await _respond_or_explain(respond, work())

    @app.action(OPEN_REPORT_ACTION)
    async def on_open_report(ack, body, respond, client) -> None:  # noqa: ANN001
        await ack()

        async def work():
            staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
            reply = await commands.report(int(body["actions"][0]["value"]), staff, client=client,
                                          user_id=body["user"]["id"])
            return {"replace_original": False, **reply}
        await _respond_or_explain(respond, work())

    @app.view(EDIT_CALLBACK)
    async def on_edit(ack, body, view) -> None:  # noqa: ANN001
        values = view["state"]["values"]
        staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
        material = bool(values.get("material", {}).get("value", {}).get("selected_options"))
        try:
            link = _form_value(values, "link")
            result = await revisions.edit_notice(int(view["private_metadata"]), staff, catalog, now=herald.clock.now(),
                                                 title=_form_value(values, "title"), body=_form_value(values, "body"),
                                                 link=link, material=material)
        except UserError as exc:
            await ack(response_action="errors", errors={_field_of(str(exc), default="body"): str(exc)})
            return
        herald.outbox.wake()
        await ack(response_action="update", view=message_modal(
            "Edited", f"Notice #{result.notice.id} is now revision {result.revision.revision}; "
                      f"updating {result.copies_to_update} delivered copies."))

    @app.view(COMPOSE_CALLBACK)
    async def on_compose(ack, body, view) -> None:  # noqa: ANN001
        values = view["state"]["values"]
        try:
            command = _command_from_form(values)
        except _FieldError as exc:
            await ack(response_action="errors", errors={exc.field: str(exc)})
            return
        staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
        try:
            preview = await notices.create_draft(staff, command, catalog, now=herald.clock.now())
        except UserError as exc:
            await ack(response_action="errors", errors={_field_of(str(exc)): str(exc)})
            return
        await ack(response_action="update", view=preview_modal(
            preview.notice, preview.topic.title, preview.recipients, preview.warnings))

    @app.view(PREVIEW_CALLBACK)
    async def on_preview_send(ack, body, view) -> None:  # noqa: ANN001
        staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
        try:
            result = await notices.send_draft(int(view["private_metadata"]), staff, catalog, now=herald.clock.now(),
                                               platform_policy=herald.settings.platform_policy)
        except UserError as exc:
            await ack(response_action="update", view=message_modal("Not sent", f":warning: {exc}"))
            return
        herald.outbox.wake()
        await ack(response_action="update", view=message_modal("Sending", _sent_text(result)))

    @app.view_closed(PREVIEW_CALLBACK)
    async def on_preview_closed(ack, body, view) -> None:  # noqa: ANN001
        await ack()
        staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
        try:
            await notices.cancel_draft(int(view["private_metadata"]), staff, now=herald.clock.now())
        except UserError:
            log.info("preview closed for a notice the user cannot cancel")

    @app.error
    async def on_error(error: Exception, body: dict) -> None:
        log.error("unhandled Slack listener error", exc_info=error)

    # Herald removed from a workspace: deactivate it and fail what waits for it (bolt runs these
    # without authorizing, since the token is gone). Slack retries land here again; harmless.
    from bot.core import workspaces as workspace_core

    async def on_removed(body: dict, event: dict, context, request) -> None:  # noqa: ANN001
        team_id, kind = context.team_id or body.get("team_id") or "", event.get("type", "")
        if not team_id or (kind == "tokens_revoked" and not (event.get("tokens") or {}).get("bot")):
            return  # no workspace (org-wide event), or only users' tokens: Herald uses the bot token
        retry = (request.headers.get("x-slack-retry-num") or [""])[0]
        result = await workspace_core.deactivate_workspace(Platform.SLACK.value, team_id, reason=kind,
                                                           now=herald.clock.now(), actor=f"slack:{team_id}")
        herald.slack_workspaces.forget(team_id)
        log.warning("Slack %s for workspace %s%s: %s", kind, team_id, f" (retry {retry})" if retry else "",
                    f"deactivated, {result.failed_deliveries} deliveries failed" if result.changed
                    else "already inactive")

    app.event("app_uninstalled")(on_removed)
    app.event("tokens_revoked")(on_removed)

    @app.event("message")
    async def on_direct_message(event: dict, context, client) -> None:  # noqa: ANN001
        """A direct message to the bot: a partner's question for the onboarding assistant."""
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype"):
            return
        team, user, channel = context.team_id or "", event.get("user", ""), event.get("channel", "")
        recipient = Recipient(workspace_id=team, user_id=user, dm_channel=channel)
        member = await member_for(Platform.SLACK.value, team, user)
        if member is None:
            await client.chat_postMessage(channel=channel, text=NOT_A_MEMBER)
            return
        await herald.answer_question(member, event.get("text", ""), platform=Platform.SLACK.value, recipient=recipient)

    async def _asker(body: dict):  # noqa: ANN202
        return await member_for(Platform.SLACK.value, body["team"]["id"], body["user"]["id"])

    @app.action(HELPFUL_ACTION)
    @app.action(NOT_HELPFUL_ACTION)
    async def on_feedback(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        action = body["actions"][0]

        async def work():
            helpful = action["action_id"] == HELPFUL_ACTION
            await give_feedback(int(action["value"]), await _asker(body), helpful=helpful, now=herald.clock.now())
            text = "Thanks, glad it helped." if helpful else \
                "Thanks for telling me. Press *Ask my CAM* if you'd like a person to answer."
            return {"replace_original": False, "text": text}
        await _respond_or_explain(respond, work())

    @app.action(ASK_CAM_ACTION)
    async def on_ask_cam(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            text = await herald.hand_off_question(int(body["actions"][0]["value"]), await _asker(body))
            return {"replace_original": False, "text": escape(text)}
        await _respond_or_explain(respond, work())

    @app.action(JOURNEY_DONE_ACTION)
    async def on_journey_done(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            step = await complete_step(int(body["actions"][0]["value"]), platform=Platform.SLACK.value,
                                       workspace_id=body["team"]["id"], user_id=body["user"]["id"],
                                       now=herald.clock.now(), channels=herald.channels)
            return {"replace_original": False, "text": f":white_check_mark: Marked done: {escape(step.step_key)}."}
        await _respond_or_explain(respond, work())

    @app.action(REPLY_ACTION)
    async def on_reply_button(ack, body, client) -> None:  # noqa: ANN001
        await ack()
        question_id = int(body["actions"][0]["value"])
        await client.views_open(trigger_id=body["trigger_id"], view=reply_modal(question_id))

    @app.view(REPLY_CALLBACK)
    async def on_reply(ack, body, view) -> None:  # noqa: ANN001
        staff = await staff_for_slack(body["team"]["id"], body["user"]["id"])
        text = _form_value(view["state"]["values"], "reply")
        try:
            await herald.relay_reply(int(view["private_metadata"]), staff, text)
        except UserError as exc:
            await ack(response_action="errors", errors={"reply": str(exc)})
            return
        await ack(response_action="update", view=message_modal("Sent", "Your answer was sent to the partner."))

    @app.event("app_home_opened")
    async def on_home_opened(event: dict, context, client) -> None:  # noqa: ANN001
        if event.get("tab") not in (None, "home"):
            return
        await _publish_home(client, context.team_id or "", event["user"])

    async def _publish_home(client, team: str, user: str, note: str = "") -> None:  # noqa: ANN001
        member = await member_for(Platform.SLACK.value, team, user)
        if member is None:
            await client.views_publish(user_id=user, view=not_a_member_home())
            return
        prefs = await preferences_for(member.id, catalog)
        await client.views_publish(user_id=user, view=home_view(prefs, catalog, note=note))

    async def _save_preference(ack, body, client, **change) -> None:  # noqa: ANN001
        await ack()
        team, user = body["team"]["id"], body["user"]["id"]
        member = await member_for(Platform.SLACK.value, team, user)
        note = ""
        if member is not None:
            try:
                await update_preferences(member.id, catalog, now=herald.clock.now(), **change)
                note = "Saved."
            except UserError as exc:
                note = f"Not saved: {exc}"
        await _publish_home(client, team, user, note)

    @app.action(PREF_TOPICS_ACTION)
    async def on_pref_topics(ack, body, client) -> None:  # noqa: ANN001
        chosen = {o["value"] for o in body["actions"][0].get("selected_options", [])}
        offered = [b for b in body.get("view", {}).get("blocks", []) if b.get("accessory", {}).get("action_id") == PREF_TOPICS_ACTION]
        keys = [o["value"] for o in offered[0]["accessory"]["options"]] if offered else sorted(chosen)
        await _save_preference(ack, body, client, subscriptions={k: k in chosen for k in keys})

    @app.action(PREF_DIGEST_ACTION)
    async def on_pref_digest(ack, body, client) -> None:  # noqa: ANN001
        await _save_preference(ack, body, client, digest_frequency=body["actions"][0]["selected_option"]["value"])

    @app.action(PREF_QUIET_START_ACTION)
    async def on_pref_quiet_start(ack, body, client) -> None:  # noqa: ANN001
        await _save_preference(ack, body, client, quiet_start=int(body["actions"][0]["selected_option"]["value"]))

    @app.action(PREF_QUIET_END_ACTION)
    async def on_pref_quiet_end(ack, body, client) -> None:  # noqa: ANN001
        await _save_preference(ack, body, client, quiet_end=int(body["actions"][0]["selected_option"]["value"]))

    @app.action(PREF_TIMEZONE_ACTION)
    async def on_pref_timezone(ack, body, client) -> None:  # noqa: ANN001
        await _save_preference(ack, body, client, timezone=(body["actions"][0].get("value") or "").strip())


async def _respond_or_explain(respond, work) -> None:  # noqa: ANN001
    """Await `work` (a coroutine producing respond() kwargs); errors become a short message."""
    try:
        payload = await work
    except UserError as exc:
        await respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
        return
    except Exception:
        log.exception("Slack command failed")
        await respond(text=SORRY, response_type="ephemeral", replace_original=False)
        return
    await respond(response_type="ephemeral", **payload)


def _sent_text(result: notices.SendResult) -> str:
    n = result.notice
    if result.already:
        return f"Notice #{n.id} is already {n.status}; nothing new was sent. `/herald status {n.id}`"
    if n.status == "scheduled" and n.scheduled_at:
        return (f":calendar: Notice #{n.id} *{escape(n.title)}* is scheduled for {format_time(n.scheduled_at)}. "
                f"`/herald scheduled` lists it; `/herald cancel {n.id}` cancels it.")
    return (f":outbox_tray: Sending notice #{n.id} *{escape(n.title)}* to {result.recipients} recipients. "
            f"Follow it with `/herald status {n.id}`.")


class _FieldError(UserError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _form_value(values: dict, block: str) -> str:
    element = values.get(block, {}).get("value", {})
    if element.get("type") == "static_select":
        return (element.get("selected_option") or {}).get("value", "")
    return (element.get("value") or "").strip()


def _command_from_form(values: dict) -> SendCommand:
    link, deadline = _form_value(values, "link"), _form_value(values, "deadline")
    try:
        link = parse_link(link) if link else ""
    except UserError as exc:
        raise _FieldError("link", str(exc)) from None
    try:
        parsed_deadline = parse_deadline(deadline) if deadline else None
    except UserError as exc:
        raise _FieldError("deadline", str(exc)) from None
    return SendCommand(importance=_form_value(values, "importance"), topic=_form_value(values, "topic"),
                       audience=_form_value(values, "audience"), title=_form_value(values, "title"),
                       body=_form_value(values, "body"), link=link, deadline=parsed_deadline)


def _field_of(message: str, default: str = "audience") -> str:
    """Which form field a validation message is about (so Slack shows it under that input)."""
    for field, words in (("deadline", ("deadline",)), ("title", ("title",)), ("body", ("body",)),
                         ("topic", ("topic",)), ("importance", ("importance",)), ("link", ("link",))):
        if any(w in message for w in words):
            return field
    return default

