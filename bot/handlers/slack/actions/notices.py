"""Notice buttons: Send / Cancel on a preview, Acknowledge on a must-know notice, and the
escalation's Remind now / Open report."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import CANCEL_ACTION, SEND_ACTION, escape, notice_blocks, notice_fallback_text
from bot.common.errors import UserError
from bot.core.notices import acks, sending
from bot.core.notices.escalations import (
    OPEN_REPORT_ACTION,
    REMIND_NOW_ACTION,
    remind_partner_now,
)
from bot.core.notices.views import ACK_ACTION
from bot.handlers.slack.common import (
    SORRY,
    directory_ids,
    pressed_message_ts,
    record_id,
    respond_or_explain,
    send_previewed,
    staff_of,
)
from bot.handlers.slack.replies import SlackCommands
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)
ACKNOWLEDGED = "Notice #{id} acknowledged by {by}. Your message will show it in a moment."


async def _acknowledge(herald: Herald, body: dict[str, Any]) -> acks.AckResult:
    # "<notice id>:<revision the copy shows>"; a bare notice id on buttons drawn before that
    notice_id, _, revision = str(body["actions"][0].get("value") or "").partition(":")
    return await acks.acknowledge(record_id(notice_id), platform=Platform.SLACK.value,
                                  **await directory_ids(body),
                                  now=herald.clock.now(), seen_revision=record_id(revision) if revision else None)


async def _show_acknowledged(herald: Herald, result: acks.AckResult, respond,  # noqa: ANN001
                             message_ts: str = "") -> None:
    """The pressed message turns into its acknowledged form at once, through the interaction's
    response_url (which spends none of chat.update's budget, Tier 3: past it, the outbox's update
    of a busy workspace's copies comes seconds to minutes later). Once Slack has taken the
    replacement, that copy's pending update is marked done (acks.shown_acknowledged), so the
    outbox does not send it the same view again out of that budget, unless an edit or a retraction
    flagged it since its state was read here; the member's other copies (a reminder) are updated
    by the outbox.

    A copy still in doubt is not touched: the outbox finds it by what Herald posted (its
    metadata) before recording it, so the member is told in a reply of their own instead."""
    pressed = None
    if result.in_doubt:
        by = result.member.name or result.member.email
        reply = {"text": f":white_check_mark: {escape(ACKNOWLEDGED.format(id=result.notice.id, by=by))}",
                 "response_type": "ephemeral", "replace_original": False}
    else:
        # read before the form is drawn: a flag raised after this read is for a change it may not show
        pressed = await acks.pressed_copy(result, Platform.SLACK.value, message_ts)
        view = await acks.acknowledged_view(result, herald.catalog, tracker=herald.outbox.link_tracker,
                                            extras=herald.outbox.fixed_extras, now=herald.clock.now())
        reply = {"text": notice_fallback_text(view), "blocks": notice_blocks(view), "replace_original": True}
    try:
        answer = await respond(**reply)
    except Exception:  # noqa: BLE001 - recorded, and the outbox's update shows it
        log.warning("could not show notice %s acknowledged through the response_url", result.notice.id, exc_info=True)
        return
    if getattr(answer, "status_code", 200) != 200:  # bolt's respond returns Slack's answer, refused or not
        log.warning("Slack refused notice %s's acknowledged form through the response_url (HTTP %s)",
                    result.notice.id, answer.status_code)
        return
    if pressed is not None:
        await acks.shown_acknowledged(pressed, herald.clock.now())


def register(app: AsyncApp, herald: Herald) -> None:
    commands = SlackCommands(herald)

    @app.action(SEND_ACTION)
    async def on_send(ack, body, respond) -> None:  # noqa: ANN001
        # acknowledged inside, once the send is stored (a kill after the ack must not lose it)
        await respond_or_explain(respond, send_previewed(herald, body["actions"][0].get("value"), body, ack))

    @app.action(CANCEL_ACTION)
    async def on_cancel(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            notice = await sending.cancel_draft(record_id(body["actions"][0].get("value")), await staff_of(body),
                                                now=herald.clock.now())
            verb = "cancelled" if notice.status == "cancelled" else f"already {notice.status}"
            return {"replace_original": True, "text": f"Notice #{notice.id} {verb}."}
        await respond_or_explain(respond, work())

    @app.action(ACK_ACTION)
    async def on_acknowledge(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        try:
            result = await _acknowledge(herald, body)
        except UserError as exc:
            await respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        except Exception:  # the member must not believe it was recorded: say so, as other buttons do
            log.exception("could not record an acknowledgement")
            await respond(text=SORRY, response_type="ephemeral", replace_original=False)
            return
        # the pressed copy first (response_url), then the outbox for the copies still to update,
        # so it is not sent the same update the replacement already showed
        await _show_acknowledged(herald, result, respond, pressed_message_ts(body))
        herald.acknowledged(result)

    @app.action(REMIND_NOW_ACTION)
    async def on_remind_now(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            notice_id, _, org_id = (body["actions"][0].get("value") or "").partition(":")
            reminded = await remind_partner_now(record_id(notice_id), org_id, await staff_of(body), now=herald.clock.now())
            herald.outbox.wake()
            return {"replace_original": False, "text": f":bell: {escape(reminded.text())}"}
        await respond_or_explain(respond, work())

    @app.action(OPEN_REPORT_ACTION)
    async def on_open_report(ack, body, respond, client) -> None:  # noqa: ANN001
        await ack()

        async def work():
            reply = await commands.report(record_id(body["actions"][0].get("value")), await staff_of(body), client=client,
                                          user_id=body["user"]["id"])
            return {"replace_original": False, **reply}
        await respond_or_explain(respond, work())
