"""Review (races): two things at once about the same thing, on PostgreSQL (several replicas, or
several tasks of one, each on its own pooled connection). Every test shows a double effect or a
crash a user sees; each passes once the defect it names is fixed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.core.commands.parser import SendCommand
from bot.core.notices import sending
from storage.models import AuditEvent, Staff
from tests.conftest import POSTGRES_ONLY
from tests.support import Rig
from tests.test_compliance import _posts_to


def _held_until_both(real: Any, parties: int = 2) -> Any:
    """`real` (a coroutine function) that returns to its callers only once `parties` calls of it have
    returned: the point where each concurrent caller has done its check, before it acts."""
    arrived = 0
    all_in = asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        found = await real(*args, **kwargs)
        arrived += 1
        if arrived >= parties:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return found
    return held


def _started_together(real: Any, parties: int = 2) -> Any:
    """`real` (a coroutine function), entered by each caller only once `parties` callers got to it."""
    arrived = 0
    all_in = asyncio.Event()

    async def together(*args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        arrived += 1
        if arrived >= parties:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return await real(*args, **kwargs)
    return together


# ---- 5. the tick of another replica between a Send's answer and its finish_send ----------------

@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_a_send_being_finished_is_not_reported_as_finished_after_an_interruption(rig: Rig) -> None:
    """A Send is stored (`request_send`: the notice due now), the platform answered, and the
    answering replica goes on to `finish_send`. Another replica's tick at that moment finds the
    notice due and publishes it itself, as if the answering process had died (`publish_due`: "its
    author ... is then told that it is out"): the CAM is sent "Herald finished sending it after an
    interruption" although nothing was interrupted, on top of the Send's own outcome ("Notice #N is
    sending"), and the audit trail says the scheduler, not the CAM, sent it. The window is every
    Send's (milliseconds to seconds for a large audience) on every replica's tick."""
    cam = await Staff.get(email="cam@vendor.example")
    command = SendCommand(importance="must-know", topic="announcements", audience="tier:gold", title="Recall",
                          body="Stop selling LX-200")
    preview = await sending.create_draft(cam, command, rig.herald.catalog, now=rig.clock.now())
    requested = await sending.request_send(preview.notice.id, cam, now=rig.clock.now())
    assert requested.queued and not requested.already

    other = rig.another_worker()  # its tick, in the moment between the answer and finish_send
    try:
        await other.tick()
    finally:
        await other.close()
    finished = await sending.finish_send(preview.notice.id, rig.herald.catalog, actor=cam.email, now=rig.clock.now())
    await rig.herald.outbox.drain()

    told = [c for c in _posts_to(rig, "DUCAM1") if "after an interruption" in str(c.args)]
    assert told == [], "the CAM was told Herald finished the send after an interruption; none happened"
    sent = await AuditEvent.get(notice_id=preview.notice.id, kind="notice.sent")
    assert sent.actor == cam.email and not finished.already, f"notice.sent by {sent.actor!r}"
