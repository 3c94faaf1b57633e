"""Notice buttons: Send / Cancel on a preview, Acknowledge on a must-know notice, and the
escalation's Remind now / Open report."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from bot.channels.slack_blocks import CANCEL_ACTION, SEND_ACTION
from bot.common.errors import UserError
from bot.core.notices import acks, sending
from bot.core.notices.escalations import (
    OPEN_REPORT_ACTION,
    REMIND_NOW_ACTION,
    remind_organisation_now,
)
from bot.core.notices.views import ACK_ACTION
from bot.handlers.slack.common import SORRY, record_id, respond_or_explain, send_previewed, staff_of
from bot.handlers.slack.replies import SlackCommands
from bot.service import Herald
from storage.models import Platform

log = logging.getLogger(__name__)


def register(app: AsyncApp, herald: Herald) -> None:
    commands = SlackCommands(herald)

    @app.action(SEND_ACTION)
    async def on_send(ack, body, respond) -> None:  # noqa: ANN001
        await ack()
        await respond_or_explain(respond, send_previewed(herald, body["actions"][0].get("value"), body))

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
        # "<notice id>:<revision the copy shows>"; a bare notice id on buttons drawn before that
        notice_id, _, revision = str(body["actions"][0].get("value") or "").partition(":")
        try:
            result = await acks.acknowledge(record_id(notice_id), platform=Platform.SLACK.value,
                                            workspace_id=body["team"]["id"], user_id=body["user"]["id"],
                                            now=herald.clock.now(), seen_revision=record_id(revision) if revision else None)
        except UserError as exc:
            await respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        except Exception:  # the member must not believe it was recorded: say so, as other buttons do
            log.exception("could not record an acknowledgement")
            await respond(text=SORRY, response_type="ephemeral", replace_original=False)
            return
        herald.acknowledged(result)

    @app.action(REMIND_NOW_ACTION)
    async def on_remind_now(ack, body, respond) -> None:  # noqa: ANN001
        await ack()

        async def work():
            notice_id, _, org_id = (body["actions"][0].get("value") or "").partition(":")
            queued = await remind_organisation_now(record_id(notice_id), org_id, await staff_of(body), now=herald.clock.now())
            herald.outbox.wake()
            return {"replace_original": False,
                    "text": f":bell: Queued {queued} reminder{'s' if queued != 1 else ''} for notice #{notice_id}."}
        await respond_or_explain(respond, work())

    @app.action(OPEN_REPORT_ACTION)
    async def on_open_report(ack, body, respond, client) -> None:  # noqa: ANN001
        await ack()

        async def work():
            reply = await commands.report(record_id(body["actions"][0].get("value")), await staff_of(body), client=client,
                                          user_id=body["user"]["id"])
            return {"replace_original": False, **reply}
        await respond_or_explain(respond, work())
