"""Rolling out the winning variant of an A/B test to the recipients held back by `share:`.

One conditional update sets the experiment's winner, and the held rows turn into pending rows of
that variant in the same transaction; so a replayed command, or two replicas running it at once,
release each held row once, and a second, different winner is refused. The held row is the
member's only delivery row on that platform (a unique key), so nobody ever gets two variants.
Released rows are marked `rolled_out`, so the A/B comparison (`ab_results.py`) keeps counting the
experiment's members only and shows the rollout apart. A member who left the notice's topic since
the first share (and whom its importance lets leave) is not sent the winner: their held row is
cancelled (`LEFT_TOPIC`), as publish would have left them out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, UserError
from bot.core.compliance.audit import PendingEvent, audit_event, record
from bot.core.directory.quiet_hours import quiet_hours_ends
from bot.core.notices.revisions import authorise_change
from bot.core.notices.sending import opted_out_members
from bot.core.notices.variants import labels_of
from bot.core.notices.views import format_time
from bot.topics import TopicCatalog, parse_importance
from storage.models import (
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeExperiment,
    NoticeStatus,
    Staff,
)

_LIVE = (NoticeStatus.SENDING.value, NoticeStatus.SENT.value)
LEFT_TOPIC = "left the topic before the rollout"


@dataclass(frozen=True)
class RolloutResult:
    notice: Notice
    variant: str
    released: int  # held rows now on their way with the chosen variant
    already: bool  # this variant had been rolled out before: nothing new was released


async def roll_out(notice_id: int, variant: str, staff: Staff | None, *, catalog: TopicCatalog, now: datetime,
                   operator: str = "") -> RolloutResult:
    """Send `variant` to everyone held back from the notice's first share."""
    notice, actor = await authorise_change(notice_id, staff, operator)
    variant = variant.strip().upper()
    labels = await labels_of(notice.id)
    if not labels:
        raise UserError(f"notice #{notice.id} has no variants to roll out")
    if variant not in labels:
        raise UserError(f"notice #{notice.id} has variants {', '.join(labels)}, not {variant}")
    experiment = await NoticeExperiment.get_or_none(notice_id=notice.id)
    if experiment is None:
        raise NotFound(f"notice #{notice.id} has no A/B test")
    if notice.status not in _LIVE:
        raise UserError(f"notice #{notice.id} is {notice.status}; only a sent notice can be rolled out")
    async with in_transaction() as conn:
        claimed = await NoticeExperiment.filter(id=experiment.id, winner="").using_db(conn).update(
            winner=variant, rolled_out_at=now, rolled_out_by=actor)
        if not claimed:
            current = await NoticeExperiment.get(id=experiment.id).using_db(conn)
            if current.winner != variant:
                when = format_time(current.rolled_out_at) if current.rolled_out_at else "earlier"
                raise UserError(f"notice #{notice.id} rolled out variant {current.winner} at {when}; "
                                "a second variant would reach people who already have one")
            return RolloutResult(notice, variant, 0, already=True)
        # members since removed from the directory are not sent the winner (their held rows were
        # cancelled when they were removed; this covers rows of an older Herald)
        held = await Delivery.filter(notice_id=notice.id, status=DeliveryStatus.HELD.value,
                                     member__active=True).using_db(conn).values("id", "member_id", "platform", "kind")
        held, left = await _cancel_left_topic(notice, catalog, held, now=now, using_db=conn)
        released = await _release(notice, held, variant, now=now, using_db=conn)
        if released and notice.status == NoticeStatus.SENT.value:
            await Notice.filter(id=notice.id, status=NoticeStatus.SENT.value).using_db(conn).update(
                status=NoticeStatus.SENDING.value, completed_at=None)
        members = sorted({row["member_id"] for row in held})
        await record([audit_event("notice.rolled_out", now=now, actor=actor, notice_id=notice.id, variant=variant,
                                  released=released, members=len(members),
                                  **({"opted_out": len({e.member_id for e in left})} if left else {})),
                      *left,
                      *(audit_event("notice.variant_assigned", now=now, notice_id=notice.id, member_id=m,
                                    variant=variant, held=False, rollout=True) for m in members)], using_db=conn)
    return RolloutResult(await Notice.get(id=notice.id), variant, released, already=False)


async def _release(notice: Notice, held: list[dict], variant: str, *, now: datetime, using_db: object) -> int:
    """Held rows -> pending rows of `variant`, due now or when the member's quiet hours end, marked
    `rolled_out`: their members were not in the experiment, and the comparison leaves them out."""
    policy = parse_importance(notice.importance)
    member_ids = sorted({row["member_id"] for row in held})
    ends = await quiet_hours_ends(member_ids, now) if policy.respects_quiet_hours else {}
    by_moment: dict[datetime, list[int]] = defaultdict(list)
    for row in held:
        by_moment[ends.get(row["member_id"], now)].append(row["id"])
    released = 0
    for moment, ids in by_moment.items():
        for start in range(0, len(ids), 1000):
            released += await Delivery.filter(id__in=ids[start:start + 1000], status=DeliveryStatus.HELD.value).using_db(
                using_db).update(status=DeliveryStatus.PENDING.value, variant=variant, rolled_out=True,
                                 next_attempt_at=moment, due_since=moment)
    return released


async def _cancel_left_topic(notice: Notice, catalog: TopicCatalog, held: list[dict], *, now: datetime,
                             using_db: object) -> tuple[list[dict], list[PendingEvent]]:
    """Cancel the held rows of members who left the notice's topic since the first share, when its
    importance and the topic let them (publish's rule, `opted_out_members`); returns the rows still
    to release and a `delivery.cancelled` event for each cancelled one. A topic no longer in the
    catalog cannot say whether it may be left: nobody is taken out."""
    topic = catalog.topics.get(notice.topic)
    if topic is None or not held:
        return held, []
    left = await opted_out_members(sorted({row["member_id"] for row in held}), topic,
                                   parse_importance(notice.importance))
    if not left:
        return held, []
    gone = [row for row in held if row["member_id"] in left]
    for start in range(0, len(gone), 1000):  # under the experiment's claim: no other rollout changes them
        await Delivery.filter(id__in=[row["id"] for row in gone[start:start + 1000]],
                              status=DeliveryStatus.HELD.value).using_db(using_db).update(
                                  status=DeliveryStatus.CANCELLED.value, error=LEFT_TOPIC)
    events = [audit_event("delivery.cancelled", now=now, notice_id=notice.id, member_id=row["member_id"],
                          platform=row["platform"], delivery_id=row["id"], copy=row["kind"], reason=LEFT_TOPIC)
              for row in gone]
    return [row for row in held if row["member_id"] not in left], events
