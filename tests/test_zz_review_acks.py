"""Review (area: acks): acknowledgements as members meet them in Slack and Teams.

Each test fails on the current code for the reason its docstring states, and passes once fixed."""

from __future__ import annotations

import asyncio

from storage.models import Acknowledgement, Delivery, DeliveryStatus

from bot.core.commands.parser import SendCommand
from bot.core.notices import sending as notices
from bot.core.notices.views import ACK_ACTION
from tests.support import SlackHarness, listeners_done, wait_until
from tests.teams_support import TeamsRig, actions_of, card_of, texts_of


async def _broadcast(herald, clock, audience: str, *, title: str = "Recall", body: str = "Stop selling LX-200",  # noqa: ANN001
                     variants: tuple = ()) -> int:
    command = SendCommand(importance="must-know", topic="announcements", audience=audience, title=title, body=body,
                          variants=variants)
    preview = await notices.create_draft(None, command, herald.catalog, now=clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, herald.catalog, now=clock.now(), operator="test")
    return preview.notice.id


async def _updates_pushed(herald) -> None:  # noqa: ANN001
    """Every click written, the clicks' own pushes of their copies' updates done (Herald.acknowledged
    starts them as tasks), and then whatever else is due now sent (the outbox, as its worker would)."""
    await herald.settle()
    while herald._pushes:
        await asyncio.wait(list(herald._pushes))
    await herald.outbox.drain()


def _ack_value(message: dict) -> str:
    return next(e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == ACK_ACTION)


# ---- 6. a material edit near (or after) the deadline: nobody is asked, yet everyone is escalated --

async def test_a_material_edit_asks_members_who_had_acknowledged_before_they_are_escalated(rig) -> None:  # noqa: ANN001
    """Monday 09:00 UTC a recall goes out with a deadline of Thursday 09:00 UTC; Anna acknowledges
    at once. Wednesday 10:00 UTC (11:00 in Berlin, her working hours) the CAM corrects it
    materially ("and LX-300 too"): README, "`material` on a must-know notice asks everyone to
    acknowledge again".

    Now: the only thing that reaches Anna is a silent chat.update of her Monday message (in-place
    updates do not notify); the first reminder is planned for the edit + 24 h, which is past the
    deadline, so none is ever sent. At the deadline her CAM is escalated that Anna "has not
    acknowledged it", though nobody ever asked her to. SPEC (must-know): "direct message now ...
    reminders on a schedule until acknowledged; escalation to the partner's CAM when the deadline
    passes": a member must be asked before being escalated."""
    from datetime import timedelta

    from bot.core.notices import acks
    from bot.core.notices.revisions import edit_notice
    from storage.models import Escalation, Member
    from tests.support import TEAM

    monday = rig.clock.now()
    assert monday.weekday() == 0 and monday.hour == 9
    notice_id = await rig.broadcast("member:anna@acme.example", deadline=monday + timedelta(days=3))
    await rig.herald.outbox.drain()
    result = await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=monday)
    await rig.herald.update_acknowledged_copies(result)

    def posts_of_the_notice() -> list:
        return [c for c in rig.fake.calls_to("chat.postMessage") if c.channel == "DUANNA" and c.ok
                and ((c.args.get("metadata") or {}).get("event_payload") or {}).get("notice_id") == notice_id]
    posts_before = len(posts_of_the_notice())
    assert posts_before == 1  # the notice itself

    rig.clock.set(monday + timedelta(days=2, hours=1))  # Wednesday 10:00 UTC
    edit = await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                             body="Stop selling LX-200 and LX-300", material=True)
    assert edit.reacknowledge
    while rig.clock.now() < monday + timedelta(days=3, minutes=1):  # hourly ticks up to just past the deadline
        await rig.herald.tick()
        await rig.herald.outbox.drain()
        rig.clock.advance(hours=1)
    await rig.herald.tick()
    await rig.herald.outbox.drain()

    anna = await Member.get(email="anna@acme.example")
    escalated = [e for e in await Escalation.filter(notice_id=notice_id) if anna.id in e.member_ids]
    asked = posts_of_the_notice()[posts_before:]
    assert not escalated or asked, (
        "Anna was escalated to her CAM as not having acknowledged the corrected recall, but after the material "
        f"edit nothing was posted to her (only in-place updates: {len(rig.fake.calls_to('chat.update'))} chat.update)")
