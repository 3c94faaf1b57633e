"""Review (reads at scale): periodic jobs and read paths whose work or answer grows with the
directory or the notice, for 100 tenants and notices to 100,000 recipients.

Each test fails on the current code for the reason in its docstring; bench/periodic_scale.py
prints the figures at 100,000 members.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


from bot.core.notices.digests import run_digests
from bot.core.notices.reminders import plan_reminders
from storage.models import (
    Delivery,
    Member,
    Notice,
    Organisation,
    OutboundMessage,
    PlatformAccount,
)
from tests.support import TEAM, Rig

MONDAY_10_UTC = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TUESDAY_8_UTC = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)  # 09:00 in Berlin: the daily digest's moment


async def _members(n: int, *, org_external_id: str = "bulk", platform_account: bool = True) -> list[int]:
    """`n` active members in Europe/Berlin of one new organisation (CAM cam@vendor.example), each
    with a Slack account in the rig's workspace. Returns their ids."""
    org = await Organisation.create(external_id=org_external_id, name="Bulk Partner GmbH", tier="gold",
                                    region="emea", cam_email="cam@vendor.example")
    await Member.bulk_create([
        Member(organisation_id=org.id, email=f"m{i:05d}@bulk.example", name=f"Member {i:05d}", role="sales",
               timezone="Europe/Berlin", joined_at=MONDAY_10_UTC - timedelta(days=400))
        for i in range(n)], batch_size=500)
    ids = [m for m in await Member.filter(organisation_id=org.id).order_by("id").values_list("id", flat=True)]
    if platform_account:
        await PlatformAccount.bulk_create([
            PlatformAccount(member_id=m, platform="slack", workspace_external_id=TEAM, user_id=f"UB{m}",
                            dm_channel=f"DUB{m}") for m in ids], batch_size=500)
    return ids


async def _notice(importance: str, *, sent_at: datetime, deadline: datetime | None = None) -> Notice:
    return await Notice.create(topic="announcements", importance=importance, title="At scale", body="b",
                               audience="all", status="sent", recipient_count=0, created_at=sent_at,
                               sent_at=sent_at, deadline=deadline)


# ---- 1. digests: 200 a tick ---------------------------------------------------------------------

async def test_one_tick_queues_every_digest_that_is_due(rig: Rig) -> None:
    """A nice-to-know notice to N members puts one digest row per member; at their digest moment
    (09:00 Berlin) every one of them is due. `run_digests` queues at most BATCH (200) a tick
    (60 s), so 100,000 members' "morning" digests take 500 ticks: the last go out after 17:20
    (bench/periodic_scale.py). The platforms are not the limit (the outbox sends 100k notices
    in minutes, bench/scale.py). README: nice-to-know notices "arrive as one digest per period,
    in the member's morning"."""
    n = 500
    ids = await _members(n)
    notice = await _notice("nice-to-know", sent_at=MONDAY_10_UTC)
    accounts = dict(await PlatformAccount.filter(member_id__in=ids).values_list("member_id", "id"))
    await Delivery.bulk_create([
        Delivery(notice_id=notice.id, member_id=m, platform="slack", status="digest", next_attempt_at=MONDAY_10_UTC,
                 created_at=MONDAY_10_UTC, workspace_external_id=TEAM, account_id=accounts[m]) for m in ids],
        batch_size=500)

    counts = await run_digests(rig.herald.channels, rig.herald.catalog, TUESDAY_8_UTC)

    queued = await OutboundMessage.filter(purpose="digest").count()
    assert counts["queued"] == n and queued == n, (
        f"one tick at the digest moment queued {queued} of {n} due digests; the rest wait a minute per 200")


# ---- 2. reminders: 500 a tick, three statements a row ------------------------------------------

async def test_one_tick_plans_every_reminder_that_is_due(rig: Rig) -> None:
    """A must-know notice delivered to N members within minutes has N first reminders due 24 h
    later within the same minutes. `plan_reminders` takes 500 a tick (60 s), each with its own
    acknowledgement query, conditional update and insert: the reminders of a 100,000-recipient
    notice's unacknowledged 40 % are planned over 80 minutes, and the last are sent well over an hour
    late (bench/periodic_scale.py). README: reminders "24 h and 72 h after delivery"."""
    n = 1000
    ids = await _members(n)
    sent = MONDAY_10_UTC
    notice = await _notice("must-know", sent_at=sent, deadline=sent + timedelta(days=5))
    due = sent + timedelta(hours=24)
    accounts = dict(await PlatformAccount.filter(member_id__in=ids).values_list("member_id", "id"))
    await Delivery.bulk_create([
        Delivery(notice_id=notice.id, member_id=m, platform="slack", status="delivered", next_attempt_at=sent,
                 created_at=sent, delivered_at=sent, next_reminder_at=due, workspace_external_id=TEAM,
                 account_id=accounts[m]) for m in ids], batch_size=500)

    planned = await plan_reminders(due + timedelta(minutes=1), rig.herald.catalog)

    assert planned == n, f"one tick planned {planned} of {n} reminders that were due"
