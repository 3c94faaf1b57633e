"""Notice cards: Acknowledge, the compose card's Preview, the preview's Send / Cancel, and the
escalation's Remind now / Open report."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot.channels.teams_cards import ACK_VERB, notice_card
from bot.channels.teams_replies import (
    CANCEL_VERB,
    COMPOSE_VERB,
    EDIT_VERB,
    SEND_VERB,
    compose_card,
    edit_card,
    note_card,
    out_markdown,
    preview_card,
    report_markdown,
    result_markdown,
    sent_markdown,
    text_activity,
)
from bot.common.errors import UserError
from bot.core.commands.parser import SendCommand, parse_deadline, parse_link
from bot.core.notices import acks, revisions, sending
from bot.core.notices.escalations import (
    OPEN_REPORT_ACTION,
    REMIND_NOW_ACTION,
    remind_partner_now,
)
from bot.handlers.teams.turn import Invoke, VerbHandler, card_response, message_response
from storage.models import Platform

log = logging.getLogger(__name__)


async def acknowledge(invoke: Invoke) -> web.Response:
    """The click's answer shows the pressed card acknowledged at once. That answer is a view for
    the presser only, which Teams may draw again from the stored message later (a reload, another
    device: botbuilder-js issue 4635), so the pressed copy is updated through the outbox too, unlike
    Slack's response_url, which replaces the stored message (acks.shown_acknowledged)."""
    herald, turn = invoke.herald, invoke.turn
    result = await acks.acknowledge(invoke.number("notice_id"), platform=Platform.TEAMS.value,
                                    workspace_id=turn.tenant_id, user_id=turn.aad_object_id, now=herald.clock.now(),
                                    seen_revision=invoke.number("revision") if "revision" in invoke.data else None)
    herald.acknowledged(result)  # every copy, here and in Slack, through the outbox
    view = await acks.acknowledged_view(result, herald.catalog, tracker=herald.outbox.link_tracker,
                                        extras=herald.outbox.fixed_extras, now=herald.clock.now())
    return card_response(notice_card(view))


async def send(invoke: Invoke) -> web.Response:
    """The preview's Send. Teams waits 15 s for the answer, and writing the outbox rows of a large
    audience takes seconds (bench/publish.py), more on a busy host: only the send itself is stored
    before the answer (`request_send`, idempotent against a second press); the rows are written
    after it (`finish_send`), as Slack's Send does around its ack, and the CAM is told in the chat
    when the notice is out. Should the process die in between, the tick publishes it and tells the CAM."""
    herald = invoke.herald
    result = await sending.request_send(invoke.number("notice_id"), invoke.staff, now=herald.clock.now())
    if result.queued and not result.already:
        herald.after_answer(_finish_send(invoke, result.notice.id))
    return card_response(note_card(sent_markdown(result.notice, result.recipients, result.already, result.queued)))


async def _finish_send(invoke: Invoke, notice_id: int) -> None:
    herald = invoke.herald
    try:
        result = await sending.finish_send(notice_id, herald.catalog, actor=invoke.staff.email,  # type: ignore[union-attr]
                                           now=herald.clock.now(), platform_policy=herald.settings.platform_policy)
    except Exception:  # noqa: BLE001 - the notice stays due: the tick publishes it, or fails it and says why
        log.exception("writing the outbox of notice %s after the Send was answered failed", notice_id)
        await invoke.reply(text_activity(f"Notice #{notice_id} could not be queued just now; Herald tries again "
                                         "at its next tick and tells you when it is out, or why not."))
        return
    herald.outbox.wake()
    if result.already:  # the tick got there first, or it was cancelled in between
        text = f"Notice #{notice_id} is {result.notice.status}. Follow it with `status {notice_id}`."
    else:
        text = out_markdown(result.notice, result.recipients)
    await invoke.reply(text_activity(text))


async def cancel(invoke: Invoke) -> web.Response:
    notice = await sending.cancel_draft(invoke.number("notice_id"), invoke.staff, now=invoke.herald.clock.now())
    verb = "cancelled" if notice.status == "cancelled" else f"already {notice.status}"  # as Slack's Cancel says
    return card_response(note_card(f"Notice #{notice.id} {verb}."))


async def compose(invoke: Invoke) -> web.Response:
    """The compose card's Preview: a stored draft and its preview card, or the card again with the error."""
    herald, staff = invoke.herald, invoke.staff
    values: dict[str, Any] = {k: str(v).strip() for k, v in invoke.data.items() if isinstance(v, (str, int))}
    try:
        command = SendCommand(
            importance=values.get("importance", ""), topic=values.get("topic", ""),
            audience=values.get("audience", ""), title=values.get("title", ""), body=values.get("body", ""),
            link=parse_link(values["link"]) if values.get("link") else "",
            deadline=parse_deadline(values["deadline"]) if values.get("deadline") else None)
        preview = await sending.create_draft(staff, command, herald.catalog, now=herald.clock.now())
    except UserError as exc:
        return card_response(compose_card(herald.catalog, error=str(exc), values=values))
    return card_response(preview_card(preview))


async def edit(invoke: Invoke) -> web.Response:
    """The edit card's Update (Slack's edit modal): every delivered copy is updated in place. An
    emptied link removes it; a refusal shows the card again with why, keeping what was typed."""
    herald, staff, notice_id = invoke.herald, invoke.staff, invoke.number("notice_id")
    values = {key: str(invoke.data.get(key) or "").strip() for key in ("title", "body", "link", "material")}
    material = values["material"].lower() == "true"
    try:
        result = await revisions.edit_notice(notice_id, staff, herald.catalog, now=herald.clock.now(),
                                             title=values["title"], body=values["body"], link=values["link"],
                                             material=material)
    except UserError as exc:
        notice = await revisions.editable_notice(notice_id, staff)  # refused as the edit was, if it may not be edited
        return card_response(edit_card(notice, material=material, error=str(exc), values=values))
    herald.outbox.wake()
    return card_response(note_card(result_markdown(result)))


async def remind_now(invoke: Invoke) -> web.Response:
    herald, staff = invoke.herald, invoke.staff
    notice_id, _, org_id = str(invoke.data.get("value", "")).partition(":")
    reminded = await remind_partner_now(int(notice_id or 0), org_id, staff, now=herald.clock.now())
    herald.outbox.wake()
    return message_response(reminded.text())


async def open_report(invoke: Invoke) -> web.Response:
    ready = await invoke.commands.report(invoke.number("value"), invoke.staff)
    report = text_activity(report_markdown(ready, await invoke.herald.report_link(ready)))
    # The press is answered first: its answer is the HTTP response, which Teams waits for only
    # seconds, and the report is a message of its own, which a throttled or failing Bot Connector
    # may hold up to a minute (TeamsHandler.reply), as the Slack side answers before it posts.
    invoke.herald.after_answer(invoke.reply(report))
    return message_response("The report is on its way to this chat.")


VERBS: dict[str, VerbHandler] = {
    ACK_VERB: acknowledge, SEND_VERB: send, CANCEL_VERB: cancel, COMPOSE_VERB: compose,
    EDIT_VERB: edit, REMIND_NOW_ACTION: remind_now, OPEN_REPORT_ACTION: open_report,
}
