"""Digests: nice-to-know notices are kept (Delivery status "digest") and sent as one message per
member per period, in the member's morning: daily, or weekly on Mondays.

A period's digest lists the member's digest rows written before that period's digest moment
(09:00 local, moved to the end of the member's quiet hours if they cover it); rows written later
wait for the next period. Nothing is sent when there is nothing to list.

Once per member per period, across replicas: the `DigestRun` row (unique per member and period)
is written, with the digest's message queued in the outbox (bot.core.delivery.messages) in the same
transaction; the outbox sends it in the workspace's lane after any notices, under the platform's
limits, and `_digest_result` records the outcome. When the outbox gets to it, which may be long
after (it waits behind the lane's notice copies), `_digest_now` renders it again from its rows:
notices retracted meanwhile, or of a topic the member has left, are left out, and with nothing
left it is not sent. A digest that could not be sent is marked
failed with the reason and its notices roll into the member's next digest; so do the notices of a
digest interrupted by a crash (sent at most once), or of a run left pending without a message.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.functions import Min
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot.common.budget import TimeBudget
from bot.common.schedule import member_zone, next_working_moment
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.messages import (
    ClaimVerdict,
    MessageResult,
    ResultKind,
    Target,
    enqueue,
    message_json,
    on_result,
    rendered_by,
)
from bot.core.directory.reach import choose_account, unreachable_workspaces
from bot.core.ports import Channel, DirectMessage
from bot.topics import TopicCatalog
from storage.models import (
    Delivery,
    DeliveryStatus,
    DigestRun,
    Member,
    MessagePurpose,
    Notice,
    NoticeStatus,
    OutboundMessage,
)

log = logging.getLogger(__name__)

DIGEST_HOUR = 9  # local time
TITLE = "Your Herald digest"
MAX_LISTED = 100  # notices in one digest; any more wait for the next one
BATCH = 200  # digests queued per run at least; more while the tick's time budget lasts
PAGE = 1000  # members with digest rows read at a time (keyset on member id)
STALE_AFTER = timedelta(hours=1)  # a run still pending this long was interrupted
_LIVE = (NoticeStatus.SENDING.value, NoticeStatus.SENT.value)
NOTHING_LEFT = "not sent: its notices were retracted or their topics left while it waited in the outbox"


@dataclass(frozen=True)
class DigestPeriod:
    key: str  # 2026-01-05 (daily) or 2026-W02 (weekly): DigestRun.period
    due_at: datetime  # when this period's digest goes out (aware, in the member's zone)


def digest_period(now: datetime, zone: str, frequency: str, *, quiet_start: int | None = None,
                  quiet_end: int | None = None) -> DigestPeriod:
    """The member's current digest period at `now` and when its digest is due."""
    tz = member_zone(zone)
    local = now.astimezone(tz)
    if frequency == "weekly":
        year, week, _ = local.isocalendar()
        day, key = date.fromisocalendar(year, week, 1), f"{year}-W{week:02d}"
    else:
        day = local.date()
        key = day.isoformat()
    morning = datetime.combine(day, time(DIGEST_HOUR), tzinfo=tz)
    due = next_working_moment(morning, zone, quiet_start=quiet_start, quiet_end=quiet_end, skip_weekends=False)
    return DigestPeriod(key, due)


async def run_digests(channels: dict[str, Channel], catalog: TopicCatalog, now: datetime, *,
                      budget: TimeBudget | None = None) -> dict[str, int]:
    """Queue the digests that are due now, a page of members at a time, until none are left or
    the tick's time budget is used (at least BATCH a run); the outbox sends them. Safe on every
    replica at once.

    Returns counts: queued, failed (nowhere to send it), empty (only retracted notices were
    waiting), interrupted (stale runs closed).
    """
    budget = budget or TimeBudget()
    counts = {"queued": 0, "failed": 0, "empty": 0, "interrupted": await _close_interrupted(now)}
    handled = 0
    after: int | None = 0
    while after is not None:
        due, after = await _due_page(now, after)
        for member, period in due:
            if handled >= BATCH and budget.spent():
                return counts  # the rest on the next tick
            handled += 1
            try:
                result = await _digest_one(member, period, channels, catalog, now)
            except Exception:  # noqa: BLE001 - one member's problem must not hold up everyone's digest
                log.exception("digest for member %s (%s) failed", member.id, period.key)
                continue
            if result in counts:
                counts[result] += 1
    return counts


# ---- who is due --------------------------------------------------------------------------------

async def _due_page(now: datetime, after: int) -> tuple[list[tuple[Member, DigestPeriod]], int | None]:
    """Of the next PAGE members (by id, after `after`) with digest rows: those whose rows were
    written before their current period's digest moment, past that moment, outside their quiet
    hours, and without a run for the period. Also the id to read on from (None: the last page)."""
    rows = await Delivery.filter(
        status=DeliveryStatus.DIGEST.value, member__active=True, member_id__gt=after).annotate(
        oldest=Min("created_at")).group_by("member_id").order_by("member_id").limit(PAGE).values(
        "member_id", "oldest")
    if not rows:
        return [], None
    oldest = {row["member_id"]: row["oldest"] for row in rows}
    following = rows[-1]["member_id"] if len(rows) == PAGE else None
    candidates: list[tuple[Member, DigestPeriod]] = []
    for member in await Member.filter(id__in=list(oldest), active=True).order_by("id"):
        period = digest_period(now, member.timezone, member.digest_frequency,
                               quiet_start=member.quiet_start_hour, quiet_end=member.quiet_end_hour)
        quiet_now = next_working_moment(now, member.timezone, quiet_start=member.quiet_start_hour,
                                        quiet_end=member.quiet_end_hour, skip_weekends=False) > now
        if now >= period.due_at and not quiet_now and _as_aware(oldest[member.id]) < period.due_at:
            candidates.append((member, period))
    if not candidates:
        return [], following
    done = set(await DigestRun.filter(member_id__in=[m.id for m, _ in candidates],
                                      period__in=sorted({p.key for _, p in candidates})).values_list(
        "member_id", "period"))
    return [(m, p) for m, p in candidates if (m.id, p.key) not in done], following


def _as_aware(value: datetime | str) -> datetime:
    """An aggregate's datetime (SQLite may hand back the stored text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


# ---- one member's digest -----------------------------------------------------------------------

async def _digest_one(member: Member, period: DigestPeriod, channels: dict[str, Channel], catalog: TopicCatalog,
                      now: datetime) -> str:
    rows = await Delivery.filter(member_id=member.id, status=DeliveryStatus.DIGEST.value,
                                 created_at__lt=period.due_at).select_related("notice", "account").order_by(
        "notice_id", "id")
    if not rows:
        return "raced"  # another replica sent them meanwhile
    withdrawn, unwanted, notices = _listing(rows, _left_topics(member, catalog))
    account = choose_account([d.account for d in rows if d.notice.id in notices and d.account is not None],
                             preferred=member.preferred_platform, unreachable=await unreachable_workspaces())
    problem = ""
    if account is None:
        problem = "no Slack or Teams account on file for this member"
    elif account.platform not in channels:
        problem = f"{account.platform.title()} is not configured in Herald"
    try:
        async with in_transaction() as conn:
            run = await DigestRun.create(
                member_id=member.id, period=period.key, notice_ids=sorted(notices),
                status="pending" if notices else "empty", platform=account.platform if account else "",
                created_at=now, using_db=conn)
            await _cancel_unlisted(withdrawn, unwanted, conn)
            if notices and not problem:
                await enqueue(key=f"{MessagePurpose.DIGEST.value}:{run.id}", purpose=MessagePurpose.DIGEST,
                              reference=run.id, target=Target.of_account(account, display_name=member.name),  # type: ignore[arg-type]
                              message=digest_message(list(notices.values()), catalog), now=now, member_id=member.id,
                              using_db=conn)
    except IntegrityError:
        return "raced"  # another replica (or tick) has this period
    if not notices:
        return "empty"
    if problem:
        return await _finish(run, member, now, failed=problem)
    return "queued"


def _listing(rows: list[Delivery], left: set[str]) -> tuple[list[int], list[int], dict[int, Notice]]:
    """Of the member's digest rows (with their notices): those of retracted notices, those of
    topics the member has left, and the notices to list (at most MAX_LISTED, by id)."""
    withdrawn = [d.id for d in rows if d.notice.status not in _LIVE]
    unwanted = [d.id for d in rows if d.notice.status in _LIVE and d.notice.topic in left]
    notices: dict[int, Notice] = {}
    for d in rows:
        if d.notice.status in _LIVE and d.notice.topic not in left and len(notices) < MAX_LISTED:
            notices.setdefault(d.notice.id, d.notice)
    return withdrawn, unwanted, notices


async def _cancel_unlisted(withdrawn: list[int], unwanted: list[int], conn: BaseDBAsyncClient | None) -> None:
    """Cancel the digest rows left out of the digest, saying why (`conn` None: in the current
    transaction)."""
    if withdrawn:
        await Delivery.filter(id__in=withdrawn, status=DeliveryStatus.DIGEST.value).using_db(conn).update(
            status=DeliveryStatus.CANCELLED.value, error="retracted before the digest went out")
    if unwanted:
        await Delivery.filter(id__in=unwanted, status=DeliveryStatus.DIGEST.value).using_db(conn).update(
            status=DeliveryStatus.CANCELLED.value, error="the member left the topic before the digest went out")


def _left_topics(member: Member, catalog: TopicCatalog) -> set[str]:
    """The topics the member has left since (or before) their notices were kept for the digest:
    a nice-to-know notice is not pushed to someone who has said they no longer want its topic."""
    return {key for key in member.topic_opt_outs or []
            if (topic := catalog.topics.get(key)) is None or topic.opt_out}


@rendered_by(MessagePurpose.DIGEST)
async def _digest_now(message: OutboundMessage, catalog: TopicCatalog, now: datetime) -> ClaimVerdict | None:
    """The digest as it reads when the outbox gets to it: rendered again from its run's rows, so
    notices retracted since it was queued, or of a topic the member has left since, are not
    listed (their rows cancelled). Nothing left: the run is empty and the message cancelled.
    None while it reads as queued."""
    run = await DigestRun.get_or_none(id=message.reference)
    member = await Member.get_or_none(id=run.member_id) if run is not None else None  # type: ignore[attr-defined]
    if run is None or member is None or run.status != "pending":
        return None
    rows = await Delivery.filter(member_id=member.id, notice_id__in=run.notice_ids, status=DeliveryStatus.DIGEST.value
                                 ).select_related("notice").order_by("notice_id", "id")
    withdrawn, unwanted, notices = _listing(rows, _left_topics(member, catalog))
    text = digest_message(list(notices.values()), catalog) if notices else None
    if text is not None and message_json(text) == message.message and not withdrawn and not unwanted:
        return None

    async def record() -> None:  # in the transaction the outbox opened for the verdict
        await _cancel_unlisted(withdrawn, unwanted, None)
        if notices:
            await DigestRun.filter(id=run.id).update(notice_ids=sorted(notices))
        else:
            await DigestRun.filter(id=run.id).update(status="empty", error=NOTHING_LEFT)
    return ClaimVerdict.rerender(text, record, reason=NOTHING_LEFT)


@on_result(MessagePurpose.DIGEST)
async def _digest_result(message: OutboundMessage, result: MessageResult) -> None:
    """The outbox's outcome: the run and its notices' rows (delivered, or back into the next digest)."""
    run = await DigestRun.get_or_none(id=message.reference)
    member = await Member.get_or_none(id=run.member_id) if run is not None else None  # type: ignore[attr-defined]
    if run is None or member is None or run.status != "pending":
        return
    if result.kind is ResultKind.SENT and result.ref is not None:
        await _finish(run, member, result.now, ref=(result.ref.channel_id, result.ref.message_id),
                      platform=message.platform)
    else:
        reason = result.reason
        if result.kind is ResultKind.INTERRUPTED:
            reason = "interrupted before the result was recorded; its notices will be in the next digest"
        await _finish(run, member, result.now, failed=reason or "unknown error")


async def _finish(run: DigestRun, member: Member, now: datetime, *, ref: tuple[str, str] | None = None,
                  platform: str = "", failed: str = "") -> str:
    common = dict(now=now, member_id=member.id, period=run.period, digest_run_id=run.id, notices=run.notice_ids)
    async with in_transaction() as conn:
        if ref is not None:
            await DigestRun.filter(id=run.id).using_db(conn).update(
                status="sent", channel_id=ref[0], message_id=ref[1], sent_at=now, error="")
            listed = Delivery.filter(member_id=member.id, notice_id__in=run.notice_ids,
                                     status=DeliveryStatus.DIGEST.value)
            await listed.filter(platform=platform).using_db(conn).update(
                status=DeliveryStatus.DELIVERED.value, delivered_at=now, channel_id=ref[0], message_id=ref[1],
                attempts=1, error="", updated_at=now)
            # the member's copies on other platforms (platform policy "all"): the one digest covers them
            await listed.using_db(conn).update(status=DeliveryStatus.CANCELLED.value,
                                               error=f"included in the member's digest on {platform.title()}",
                                               updated_at=now)
            event = audit_event("digest.sent", platform=platform, channel=ref[0], message_id=ref[1], **common)
        else:
            await DigestRun.filter(id=run.id).using_db(conn).update(status="failed", error=failed)
            event = audit_event("digest.failed", reason=failed, **common)
        await record([event], using_db=conn)
    return "sent" if ref is not None else "failed"


def stale_runs(now: datetime) -> QuerySet[DigestRun]:
    """The next BATCH runs left pending past STALE_AFTER. Read every tick on every replica over a
    table that keeps a run per member per period: the index on (status, created_at) serves it
    (migration 0030), not a read of every run ever."""
    return DigestRun.filter(status="pending", created_at__lt=now - STALE_AFTER).order_by("id").limit(BATCH)


async def _close_interrupted(now: datetime) -> int:
    """Mark runs left pending without a message in the outbox (written before Herald queued
    digests there) as failed; their notices go into the next digest."""
    reason = "interrupted before the result was recorded; its notices will be in the next digest"
    closed = 0
    stale = await stale_runs(now)
    queued = set(await OutboundMessage.filter(purpose=MessagePurpose.DIGEST.value, reference__in=[
        r.id for r in stale]).values_list("reference", flat=True)) if stale else set()
    for run in (r for r in stale if r.id not in queued):
        async with in_transaction() as conn:
            closing = DigestRun.filter(id=run.id, status="pending").using_db(conn)
            if await closing.update(status="failed", error=reason):
                await record([audit_event("digest.failed", now=now, member_id=run.member_id,  # type: ignore[attr-defined]
                                          period=run.period, digest_run_id=run.id, notices=run.notice_ids,
                                          reason=reason)], using_db=conn)
                closed += 1
    return closed


# ---- the message -------------------------------------------------------------------------------

def digest_message(notices: list[Notice], catalog: TopicCatalog) -> DirectMessage:
    """One line per topic, then each notice (title and id) with its link on a line of its own.
    Lines are plain text: the renderers escape them."""
    by_topic: dict[str, list[Notice]] = defaultdict(list)
    for notice in sorted(notices, key=lambda n: n.id):
        by_topic[notice.topic].append(notice)
    order = [k for k in catalog.topics if k in by_topic] + sorted(k for k in by_topic if k not in catalog.topics)
    count = len(notices)
    lines = [f"{count} nice-to-know notice{'s' if count != 1 else ''} since your last digest:"]
    for key in order:
        topic = catalog.topics.get(key)
        lines.append(f"{topic.title if topic else key}:")
        for notice in by_topic[key]:
            lines.append(f"• {notice.title} (notice #{notice.id})")
            if notice.link:
                lines.append(f"  {notice.link}")
    lines.append("You can choose your topics and how often this digest comes in your Herald preferences.")
    return DirectMessage(title=TITLE, lines=tuple(lines))
