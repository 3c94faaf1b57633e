"""Composing, previewing, sending and cancelling notices.

A preview is a stored draft; **Send** turns the draft into one delivery row per recipient (the
outbox) in the same transaction, so nothing is lost if the process dies right after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from tortoise import connections
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.commands.parser import SendCommand, check_link_length
from bot.core.compliance.audit import audit_event, record
from bot.core.compliance.crosscheck import text_digests
from bot.core.delivery.messages import Target, enqueue
from bot.core.directory.audiences import (
    Audience,
    count_recipients_and_without_account,
    parse_audience,
    recipient_ids,
    unmatched_value_warnings,
)
from bot.core.directory.permissions import require_sender
from bot.core.directory.preferences import opt_outs_apply
from bot.core.directory.quiet_hours import quiet_hours_ends
from bot.core.directory.reach import choose_account, staff_recipient, unreachable_workspaces
from bot.core.directory.slack_orgs import installs_of
from bot.core.notices import variants as ab_variants
from bot.core.notices.unreached import audit_fields as unreached_audit_fields
from bot.core.notices.unreached import unreached_organisations
from bot.core.notices.views import format_time
from bot.core.ports import Channel, DirectMessage
from bot.topics import ImportancePolicy, Topic, TopicCatalog, parse_importance
from bot.topics.importance import Importance
from storage import db as storage_db
from storage.models import (
    AuditEvent,
    DeliveryKind,
    DeliveryStatus,
    Member,
    MessagePurpose,
    Notice,
    NoticeExperiment,
    NoticeStatus,
    NoticeVariant,
    Platform,
    Staff,
    StaffRole,
)

log = logging.getLogger(__name__)

MAX_TITLE = 150
MAX_BODY = 2800  # Slack section text allows 3,000 characters; leave room for markup
NO_ACCOUNT = "no Slack or Teams account on file for this member (add their ids to the directory)"


@dataclass(frozen=True)
class Preview:
    notice: Notice
    topic: Topic
    policy: ImportancePolicy
    recipients: int
    warnings: list[str]
    variants: tuple[tuple[str, str, str], ...] = ()  # A/B: (label, title, body), A first
    share: int | None = None  # A/B: percent of the audience sent first


@dataclass(frozen=True)
class SendResult:
    notice: Notice
    recipients: int
    already: bool  # the draft had been sent (or cancelled) before: nothing new was written
    queued: bool = False  # `request_send`: the send is stored, its outbox rows are still to be written


class Resolved(NamedTuple):
    """What `validate` resolved from a SendCommand: a caller that checks for a retried command
    before drafting (`herald send`) resolves once and passes it to both."""

    topic: Topic
    policy: ImportancePolicy
    audience: Audience


def validate(command: SendCommand, catalog: TopicCatalog, *, now: datetime) -> Resolved:
    policy = parse_importance(command.importance)
    topic = catalog.get(command.topic)
    audience = parse_audience(command.audience, roles=catalog.roles)
    if not command.title.strip():
        raise UserError("the title is empty")
    if len(command.title) > MAX_TITLE:
        raise UserError(f"the title is {len(command.title)} characters; keep it under {MAX_TITLE}")
    if not command.body.strip():
        raise UserError("the body is empty")
    if len(command.body) > MAX_BODY:
        raise UserError(f"the body is {len(command.body)} characters; keep it under {MAX_BODY}")
    check_link_length(command.link)
    if command.scheduled_at is not None and command.scheduled_at <= now:
        raise UserError("the send time is in the past")
    if command.reminder_hours and policy.level is not Importance.MUST:
        raise UserError("only must-know notices have reminders")
    if command.deadline is not None:
        if policy.level is not Importance.MUST:
            raise UserError("only must-know notices take a deadline")
        if command.deadline <= (command.scheduled_at or now):
            raise UserError("the deadline is in the past" if command.scheduled_at is None
                            else "the deadline is before the send time")
    ab_variants.validate_variants(command, policy, max_title=MAX_TITLE, max_body=MAX_BODY)
    return Resolved(topic, policy, audience)


async def create_draft(author: Staff | None, command: SendCommand, catalog: TopicCatalog, *, now: datetime,
                       operator: str = "", resolved: Resolved | None = None) -> Preview:
    """Validate, resolve the audience and store a draft the author can send or cancel.

    `operator` names a trusted command-line operator (shell access to the server) acting
    without a staff record; chat users always need the cam or admin role. `resolved`: what
    `validate` already returned for this command at `now` (it is not validated again).
    """
    if not operator:
        author = require_sender(author)
    resolved = resolved if resolved is not None else validate(command, catalog, now=now)
    recipients, warnings = await _audience_counted(resolved)
    async with in_transaction() as conn:
        notice = await _store_draft(conn, author, operator, command, resolved, recipients, now=now)
    return _preview(notice, command, resolved, recipients, warnings)


async def _audience_counted(resolved: Resolved) -> tuple[int, list[str]]:
    """The preview's recipient count and the audience's warnings."""
    topic, policy, audience = resolved
    recipients, without = await count_recipients_and_without_account(audience, topic, policy)
    warnings = await unmatched_value_warnings(audience)
    if without:
        warnings.append(without_account_warning(without))
    return recipients, warnings


def without_account_warning(count: int) -> str:
    """The preview's line for recipients who cannot be reached yet (their copies fail: NO_ACCOUNT)."""
    them = "1 of them has" if count == 1 else f"{count} of them have"
    return f"{them} no Slack or Teams account on file yet: {'its copy' if count == 1 else 'their copies'} will fail"


async def _store_draft(conn: Any, author: Staff | None, operator: str, command: SendCommand, resolved: Resolved,
                       recipients: int, *, now: datetime) -> Notice:
    """The draft, its A/B variants and `notice.created`, in the caller's transaction."""
    topic, policy, audience = resolved
    notice = await Notice.create(
        topic=topic.key, importance=policy.level.value, title=command.title.strip(),
        body=command.body.strip(), link=command.link, deadline=command.deadline,
        audience=audience.describe(), author=author, status=NoticeStatus.DRAFT.value,
        recipient_count=recipients, scheduled_at=command.scheduled_at, created_at=now,
        reminder_hours={"after_hours": list(command.reminder_hours)} if command.reminder_hours else None,
        using_db=conn,
    )
    variant_count = await ab_variants.store_variants(notice, command, now=now, using_db=conn)
    extra = {"variants": variant_count, "share_percent": command.share} if variant_count else {}
    await record([audit_event("notice.created", now=now, actor=_actor(author, operator), notice_id=notice.id,
                              topic=topic.key, importance=policy.level.value,
                              audience=notice.audience, deadline=notice.deadline, title=notice.title,
                              recipients_previewed=recipients, **extra,
                              **await text_digests(notice.id, using_db=conn))], using_db=conn)
    return notice


def _preview(notice: Notice, command: SendCommand, resolved: Resolved, recipients: int,
             warnings: list[str]) -> Preview:
    topic, policy, _ = resolved
    texts = [(notice.title, notice.body), *command.variants] if command.variants else []
    if texts and command.share is not None and recipients * command.share // 100 < len(texts):
        warnings.append(f"share:{command.share}% of {recipients} recipients is fewer than one per variant")
    return Preview(notice, topic, policy, recipients, warnings,
                   tuple((label, t, b) for label, (t, b) in zip(ab_variants.LABELS, texts, strict=False)),
                   command.share if texts else None)


# How far back `identical_recent_notice` looks: a retried cron job or a lost SSH session is minutes
IDENTICAL_WINDOW = timedelta(minutes=10)
NOT_OUT = (NoticeStatus.DRAFT.value, NoticeStatus.CANCELLED.value, NoticeStatus.FAILED.value)


async def identical_recent_notice(author: Staff, command: SendCommand, resolved: Resolved, *,
                                  now: datetime) -> Notice | None:
    """The notice `author` sent or scheduled in the last IDENTICAL_WINDOW from the same command
    (topic, importance, audience, title, body, link, deadline, reminders, variants and share, send
    time), if any: a script's retry (a cron job retried after a timeout, a lost SSH session) would
    otherwise send everything again, reminders and escalations included. Drafts, cancelled and
    failed notices never went out, so they do not count. Reads the author's few recent notices
    (index: notice (author_id, created_at)). `resolved`: `validate(command, ...)`."""
    topic, policy, audience = resolved
    wanted = {"topic": topic.key, "importance": policy.level.value, "audience": audience.describe(),
              "title": command.title.strip(), "body": command.body.strip(), "link": command.link,
              "deadline": command.deadline,
              "reminder_hours": {"after_hours": list(command.reminder_hours)} if command.reminder_hours else None}
    recent = await Notice.filter(author_id=author.id, created_at__gte=now - IDENTICAL_WINDOW).exclude(
        status__in=NOT_OUT).order_by("-id")
    for notice in recent:
        if all(getattr(notice, name) == value for name, value in wanted.items()) \
                and _same_send_time(notice, command.scheduled_at, now) and await _same_variants(notice, command):
            return notice
    return None


async def draft_unless_repeated(author: Staff, command: SendCommand, catalog: TopicCatalog, *, now: datetime,
                                confirmed: bool) -> Preview | Notice:
    """`herald send` without --again: the notice an identical recent command already sent or
    scheduled (`identical_recent_notice`), or a new draft. A cron job and its retry may run at the
    same instant: the author's runs take turns (an advisory lock on PostgreSQL; SQLite's one
    writer, the check being read inside the write transaction), the check and the draft in one
    transaction. `confirmed` (--yes: no question is asked) stores the send in that transaction
    too, scheduled or requested now as `request_send` stores it, so the run that comes next finds
    a notice that is going out, not a draft (which the check ignores); `send_draft` then finishes
    it, or `publish_due` does if this process dies. A draft for nobody, sent now, stays a draft."""
    author = require_sender(author)
    resolved = validate(command, catalog, now=now)
    recipients, warnings = await _audience_counted(resolved)
    async with in_transaction() as conn:
        await storage_db.take_turns(conn, storage_db.SCRIPT_SEND_LOCK_CLASS, of=author.id)
        if earlier := await identical_recent_notice(author, command, resolved, now=now):
            return earlier
        notice = await _store_draft(conn, author, "", command, resolved, recipients, now=now)
        if confirmed and (recipients or command.scheduled_at is not None):
            await _claim_draft(conn, notice, author.email, now=now)
    return _preview(notice, command, resolved, recipients, warnings)


def _same_send_time(notice: Notice, scheduled_at: datetime | None, now: datetime) -> bool:
    """"Now" matches a notice sent straight away (chat's Send stores its moment as the send time);
    a time matches that time."""
    if scheduled_at is None:
        return notice.scheduled_at is None or notice.scheduled_at <= now
    return notice.scheduled_at == scheduled_at


async def _same_variants(notice: Notice, command: SendCommand) -> bool:
    """The A/B variants after A (the notice's own text) and the share sent first, as `command` has them."""
    stored = await NoticeVariant.filter(notice_id=notice.id).exclude(label="A").order_by("label").values_list(
        "title", "body")
    if [tuple(v) for v in stored] != [(t.strip(), b.strip()) for t, b in command.variants]:
        return False
    experiment = await NoticeExperiment.get_or_none(notice_id=notice.id)
    return (experiment.share_percent if experiment else None) == (command.share if command.variants else None)


def _actor(staff: Staff | None, operator: str) -> str:
    return staff.email if staff is not None else f"operator:{operator}"


async def _own_draft(notice_id: int, actor: Staff | None) -> Notice:
    notice = await Notice.get_or_none(id=notice_id)
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    if actor is not None and notice.author_id != actor.id and actor.role != StaffRole.ADMIN.value:  # type: ignore[attr-defined]
        raise PermissionDenied("only the notice's author or an admin can send or cancel it")
    return notice


def _refuse_passed_deadline(notice: Notice, now: datetime) -> None:
    """A draft's deadline was checked when it was made, but a preview can stay open for hours: a
    must-know notice sent past its deadline would be escalated to every partner at the next tick."""
    if notice.status == NoticeStatus.DRAFT.value and notice.deadline is not None and notice.deadline <= now:
        raise UserError(f"notice #{notice.id}'s deadline ({format_time(notice.deadline)}) has passed since the "
                        "preview; compose it again with a new deadline")


async def send_draft(notice_id: int, actor: Staff | None, catalog: TopicCatalog, *, now: datetime,
                     operator: str = "", platform_policy: str = "preferred") -> SendResult:
    """Write the outbox for a draft (or schedule it). Idempotent: a second click finds it done."""
    if not operator:
        actor = require_sender(actor)
    notice = await _own_draft(notice_id, actor)
    _refuse_passed_deadline(notice, now)
    if notice.scheduled_at is not None and notice.scheduled_at > now:
        return await _schedule(notice, _actor(actor, operator), now=now)
    # a draft whose send was stored with it (`draft_unless_repeated`) is due: finish it
    stored = NoticeStatus.SCHEDULED if notice.status == NoticeStatus.SCHEDULED.value else NoticeStatus.DRAFT
    return await publish(notice, catalog, actor=_actor(actor, operator), now=now, from_status=stored,
                         platform_policy=platform_policy)


async def request_send(notice_id: int, actor: Staff | None, *, now: datetime) -> SendResult:
    """The first half of a Send that must be answered within a platform's deadline (Teams' invoke:
    15 s) whatever the audience's size: the same checks as `send_draft`, then only the intent is
    stored, in one short transaction: the draft becomes a notice scheduled for `now`
    (`notice.send_requested` in the audit trail). A second press finds it no longer a draft
    (`already`). `finish_send`, run after the answer, writes the outbox rows (`publish`: seconds
    for 100,000 recipients, bench/publish.py); if the process dies before it does, the next tick's
    `publish_due` finds the notice due, publishes it and tells its author it is out: nothing is
    lost (once the request is older than `requested_send_grace`). A notice scheduled for later is
    scheduled as by `send_draft` (`queued` False). Slack's
    Send calls it before its ack() (3 s), Teams' before the invoke's answer (15 s)."""
    actor = require_sender(actor)
    notice = await _own_draft(notice_id, actor)
    _refuse_passed_deadline(notice, now)
    if notice.scheduled_at is not None and notice.scheduled_at > now:
        return await _schedule(notice, _actor(actor, ""), now=now)
    async with in_transaction() as conn:
        claimed = await _claim_draft(conn, notice, _actor(actor, ""), now=now)
    current = await Notice.get(id=notice.id)
    being_sent = current.status == NoticeStatus.SCHEDULED.value and current.scheduled_at is not None \
        and current.scheduled_at <= now
    return SendResult(current, current.recipient_count, already=not claimed, queued=being_sent)


async def finish_send(notice_id: int, catalog: TopicCatalog, *, actor: str, now: datetime,
                      platform_policy: str = "preferred") -> SendResult:
    """The second half of `request_send`, after the platform was answered: the outbox rows
    (`publish` from scheduled). `already` when the tick (this replica or another) published it
    first, or it was cancelled in between."""
    notice = await Notice.get(id=notice_id)
    return await publish(notice, catalog, actor=actor, now=now, from_status=NoticeStatus.SCHEDULED,
                         platform_policy=platform_policy)


async def _schedule(notice: Notice, actor: str, *, now: datetime) -> SendResult:
    async with in_transaction() as conn:
        claimed = await _claim_draft(conn, notice, actor, now=now)
    current = await Notice.get(id=notice.id)
    return SendResult(current, current.recipient_count, already=not claimed)


async def _claim_draft(conn: Any, notice: Notice, actor: str, *, now: datetime) -> bool:
    """In the caller's transaction, a draft's send stored, once: scheduled for its later time
    (`notice.scheduled`), or due now (`notice.send_requested`: `finish_send` or the tick publishes
    it). False if it was no longer a draft."""
    later = notice.scheduled_at is not None and notice.scheduled_at > now
    claimed = await Notice.filter(id=notice.id, status=NoticeStatus.DRAFT.value).using_db(conn).update(
        status=NoticeStatus.SCHEDULED.value, **({} if later else {"scheduled_at": now}))
    if claimed and later:
        await record([audit_event("notice.scheduled", now=now, actor=actor, notice_id=notice.id,
                                  scheduled_at=notice.scheduled_at)], using_db=conn)
    elif claimed:
        await record([audit_event("notice.send_requested", now=now, actor=actor, notice_id=notice.id)],
                     using_db=conn)
    return bool(claimed)


@dataclass(frozen=True)
class AuthorNote:
    """Where `publish` tells a notice's author that it is out (a staff note in the outbox)."""

    staff_id: int
    target: Target


async def publish(notice: Notice, catalog: TopicCatalog, *, actor: str, now: datetime,
                  from_status: NoticeStatus, platform_policy: str = "preferred",
                  tell_author: AuthorNote | None = None) -> SendResult:
    """Resolve the audience now and write one outbox row per recipient, in one transaction.

    The conditional status change makes this happen once, whichever replica or click gets here first.
    `tell_author`: queue the author's note that the notice is out in the same transaction.
    """
    topic = catalog.get(notice.topic)
    policy = parse_importance(notice.importance)
    audience = parse_audience(notice.audience, roles=catalog.roles)
    async with in_transaction() as conn:
        claimed = await Notice.filter(id=notice.id, status=from_status.value).using_db(conn).update(
            status=NoticeStatus.SENDING.value, sent_at=now)
        if not claimed:
            current = await Notice.get(id=notice.id).using_db(conn)
            return SendResult(current, current.recipient_count, already=True)
        member_ids = await recipient_ids(audience, topic)
        opted_out = await opted_out_members(member_ids, topic, policy)
        if opted_out:  # they get no delivery row at all (must-know ignores opt-outs)
            member_ids = [m for m in member_ids if m not in opted_out]
        deliveries, events = await _outbox_rows(notice, policy, member_ids, now=now, platform_policy=platform_policy)
        events += await ab_variants.assign_rows(notice, deliveries, now=now, using_db=conn)
        await _insert_queued(conn, notice.id, deliveries, now)
        unreached = await unreached_organisations(audience, (d.organisation_id for d in deliveries), opted_out)
        await Notice.filter(id=notice.id).using_db(conn).update(recipient_count=len(member_ids),
                                                                unreached_organisations=unreached.by_reason)
        events.append(audit_event("notice.sent", now=now, actor=actor, notice_id=notice.id,
                                  recipients=len(member_ids), importance=policy.level.value,
                                  audience=notice.audience, deadline=notice.deadline, opted_out=len(opted_out),
                                  held_for_quiet_hours=sum(1 for d in deliveries if d.next_attempt_at > now
                                                           and d.status != DeliveryStatus.HELD.value),
                                  **_held_for_rollout(deliveries), **await unreached_audit_fields(unreached),
                                  **await text_digests(notice.id, using_db=conn)))  # the wording as sent
        await record(events, using_db=conn)
        if tell_author is not None:
            await enqueue(key=f"{MessagePurpose.STAFF_NOTE.value}:notice-out:{notice.id}",
                          purpose=MessagePurpose.STAFF_NOTE, reference=notice.id, target=tell_author.target,
                          message=_out_note(notice, len(member_ids)), now=now, staff_id=tell_author.staff_id,
                          using_db=conn)
    notice = await Notice.get(id=notice.id)
    return SendResult(notice, len(member_ids), already=False)


def _held_for_rollout(deliveries: list[QueuedDelivery]) -> dict[str, int]:
    held = sum(1 for d in deliveries if d.status == DeliveryStatus.HELD.value)
    return {"held_for_rollout": held} if held else {}


# How long after a Send was stored (`request_send`) the tick still leaves it to the process that
# answered the press, whose `finish_send` is about to write it: that process's lease (how long a
# live replica may be held up) and a margin. Only after that is the Send taken as interrupted.
REQUESTED_SEND_MARGIN = timedelta(seconds=5)


def requested_send_grace(lease_seconds: float) -> timedelta:
    return timedelta(seconds=lease_seconds) + REQUESTED_SEND_MARGIN


async def publish_due(catalog: TopicCatalog, *, now: datetime, platform_policy: str = "preferred",
                      channels: dict[str, Channel] | None = None, lease_seconds: float = 10) -> int:
    """Send every scheduled notice whose time has come. Safe on every replica at once.

    A notice that can no longer be published (its author may no longer send: inactive or no longer
    a cam or admin; or its topic or an audience role was removed from the catalog since it was
    scheduled) is marked failed with the reason, so it does not fail again on every tick; its
    author is told when they are still active and `channels` can reach them.

    A notice whose Send was pressed (`request_send`) but whose rows the process that answered the
    press did not write (killed, or the write failed) is published here too, once the request is
    older than `requested_send_grace(lease_seconds)` (before that, that process's `finish_send` is
    on its way: taking it here would tell the author of an interruption that did not happen); its
    author, who was told only that it is being sent, is then told that it is out
    (`_requested_send_note`)."""
    published = 0
    left_to_its_send = now - requested_send_grace(lease_seconds)
    due = await Notice.filter(status=NoticeStatus.SCHEDULED.value, scheduled_at__lte=now).order_by("scheduled_at")
    sends_requested = await _sends_requested([notice.id for notice in due])
    for notice in due:
        requested = notice.id in sends_requested
        if requested and notice.scheduled_at > left_to_its_send:  # type: ignore[operator]
            continue
        if refusal := await author_refusal(notice):
            await _fail_scheduled(notice, refusal, now=now, channels=channels or {},
                                  advice="Ask a CAM or an admin to send it if it is still needed.")
            continue
        try:
            note = await _requested_send_note(notice, channels or {}) if requested else None
            result = await publish(notice, catalog, actor="scheduler", now=now, from_status=NoticeStatus.SCHEDULED,
                                   platform_policy=platform_policy, tell_author=note)
        except UserError as exc:
            await _fail_scheduled(notice, str(exc), now=now, channels=channels or {})
            continue
        published += 0 if result.already else 1
    return published


async def _sends_requested(notice_ids: list[int]) -> set[int]:
    """Those of the notices that are due because their Send was pressed (`request_send`, which
    stored the press's time as `scheduled_at`), not because they were scheduled for later: one
    query for all the due notices."""
    if not notice_ids:
        return set()
    return set(await AuditEvent.filter(notice_id__in=notice_ids, kind="notice.send_requested")
               .values_list("notice_id", flat=True))


async def _requested_send_note(notice: Notice, channels: dict[str, Channel]) -> AuthorNote | None:
    """Where to tell the author that a notice whose Send they pressed is out, when `channels` can
    reach them; None otherwise."""
    if notice.author_id is None:  # type: ignore[attr-defined]
        return None
    author = await Staff.get_or_none(id=notice.author_id)  # type: ignore[attr-defined]
    found = await staff_recipient(author, channels) if author is not None and author.active else None
    if found is None:
        return None
    return AuthorNote(author.id, Target(found[0].platform, found[1]))  # type: ignore[union-attr]


def _out_note(notice: Notice, recipients: int) -> DirectMessage:
    return DirectMessage(
        title=f"Sent: {notice.title}"[:150],
        lines=(f"Your notice #{notice.id} \"{notice.title}\" is out: {recipients} recipients queued. "
               "Herald finished sending it after an interruption.",
               f"Follow it with `/herald status {notice.id}` in Slack or `status {notice.id}` in Teams."))


async def author_refusal(notice: Notice) -> str:
    """Why the notice's author may no longer send it, or "" if they may: `require_sender`, the
    rule applied when it was scheduled, checked again at its time (a CAM who left or became a
    compliance officer must not speak to partners through a notice queued before). A notice with
    no author (a trusted operator's, from the command line) is not checked."""
    if notice.author_id is None:  # type: ignore[attr-defined]
        return ""
    author = await Staff.get_or_none(id=notice.author_id)  # type: ignore[attr-defined]
    try:
        require_sender(author)
    except PermissionDenied:
        who = author.email if author is not None else "its author"
        state = ("was removed" if author is None else "is no longer active" if not author.active
                 else f"is now {author.role}, not a CAM or admin")
        return f"its author {who} {state} and may no longer send notices"
    return ""


async def _fail_scheduled(notice: Notice, reason: str, *, now: datetime, channels: dict[str, Channel],
                          advice: str = "", actor: str = "scheduler") -> None:
    """Take a scheduled notice that cannot be published out of the due set: status failed, the
    reason stored and audited, and a note to its author in the outbox (same transaction) when
    they are still active. `advice` replaces the note's default next step."""
    reason = reason[:500]
    author = await Staff.get_or_none(id=notice.author_id) if notice.author_id else None  # type: ignore[attr-defined]
    found = await staff_recipient(author, channels) if author is not None and author.active else None
    async with in_transaction() as conn:
        claimed = await Notice.filter(id=notice.id, status=NoticeStatus.SCHEDULED.value).using_db(conn).update(
            status=NoticeStatus.FAILED.value, failure_reason=reason)
        if not claimed:
            return  # another replica got there first
        await record([audit_event("notice.failed", now=now, actor=actor, notice_id=notice.id,
                                  scheduled_at=notice.scheduled_at, reason=reason,
                                  author_told=found is not None)], using_db=conn)
        if found is not None:
            await enqueue(key=f"{MessagePurpose.STAFF_NOTE.value}:notice-failed:{notice.id}",
                          purpose=MessagePurpose.STAFF_NOTE, reference=notice.id,
                          target=Target(found[0].platform, found[1]), message=_not_published(notice, reason, advice),
                          now=now, staff_id=author.id, using_db=conn)  # type: ignore[union-attr]
    log.warning("scheduled notice %s was not published and is marked failed: %s", notice.id, reason,
                extra={"notice_id": notice.id})


async def fail_scheduled_of(author: Staff, *, now: datetime, actor: str) -> list[int]:
    """Fail every scheduled notice of an author who may no longer send (offboarding), at once
    rather than at their time, each with `author_refusal`'s reason and its `notice.failed` event.
    Returns their ids. (`publish_due` would refuse them at their time anyway.)"""
    failed = []
    for notice in await Notice.filter(author_id=author.id, status=NoticeStatus.SCHEDULED.value).order_by("id"):
        if refusal := await author_refusal(notice):
            await _fail_scheduled(notice, refusal, now=now, channels={}, actor=actor)
            failed.append(notice.id)
    return failed


def _not_published(notice: Notice, reason: str, advice: str = "") -> DirectMessage:
    when = f", scheduled for {format_time(notice.scheduled_at)}," if notice.scheduled_at else ""
    advice = advice or "Compose it again with a topic and audience that exist now (`send`)."
    return DirectMessage(
        title=f"Not sent: {notice.title}"[:150],
        lines=(f"Your notice #{notice.id} \"{notice.title}\"{when} could not be sent: {reason}.",
               f"It is marked failed and will not go out. {advice}"))


async def scheduled_notices(staff: Staff | None) -> list[Notice]:
    """Scheduled notices the person may see: a CAM their own, admins and compliance all."""
    if staff is None or not staff.active:
        raise PermissionDenied("Only Herald staff can list scheduled notices.")
    query = Notice.filter(status=NoticeStatus.SCHEDULED.value)
    if staff.role == StaffRole.CAM.value:
        query = query.filter(author_id=staff.id)
    return await query.order_by("scheduled_at")


@dataclass(slots=True)
class QueuedDelivery:
    """One outbox row `publish` writes: what varies per recipient (variants may still set
    `variant` and hold rows back). Plain values, inserted with one prepared statement: building
    100,000 ORM models took longer than the database took to store them (bench/scale.py)."""

    member_id: int
    organisation_id: int | None
    platform: str
    status: str
    next_attempt_at: datetime
    account_id: int | None = None
    workspace_external_id: str = ""
    error: str = ""
    variant: str = ""


_QUEUED_COLUMNS = ("notice_id", "member_id", "organisation_id", "platform", "account_id", "workspace_external_id",
                   "status", "error", "next_attempt_at", "due_since", "variant", "kind", "sequence", "attempts", "claimed_by",
                   "channel_id", "message_id", "rendered_revision", "update_pending", "reminders_sent",
                   "created_at", "updated_at")
_QUEUE_SQL = (f"INSERT INTO delivery ({', '.join(_QUEUED_COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(_QUEUED_COLUMNS))})")


async def _insert_queued(conn: Any, notice_id: int, rows: list[QueuedDelivery], now: datetime) -> None:
    """PostgreSQL: COPY (the publish transaction's own connection); SQLite: one prepared INSERT."""
    records = [(notice_id, r.member_id, r.organisation_id, r.platform, r.account_id, r.workspace_external_id,
                r.status, r.error, r.next_attempt_at, r.next_attempt_at, r.variant, DeliveryKind.NOTICE.value, 0, 0, "", "", "", 1,
                False, 0, now, now) for r in rows]
    if conn.capabilities.dialect == "postgres":
        async with conn.acquire_connection() as connection:
            await connection.copy_records_to_table("delivery", records=records, columns=_QUEUED_COLUMNS)
        return
    for start in range(0, len(records), 5000):
        await conn.execute_many(_QUEUE_SQL, records[start:start + 5000])


async def _outbox_rows(notice: Notice, policy: ImportancePolicy, member_ids: list[int], *, now: datetime,
                       platform_policy: str = "preferred"):
    organisations: dict[int, int] = {}
    accounts = await _target_accounts(member_ids, every_platform=platform_policy == "all", organisations=organisations)
    deliveries: list[QueuedDelivery] = []
    events = []
    status = DeliveryStatus.PENDING if policy.dm_now else DeliveryStatus.DIGEST
    # need-to-know: held until the member's quiet hours end (the outbox sends rows when next_attempt_at comes)
    held = await quiet_hours_ends(member_ids, now) if policy.dm_now and policy.respects_quiet_hours else {}
    for member_id in member_ids:
        targets = accounts.get(member_id)
        if not targets:
            deliveries.append(QueuedDelivery(member_id, organisations.get(member_id), "none",
                                             DeliveryStatus.FAILED.value, now, error=NO_ACCOUNT))
            events.append(audit_event("delivery.failed", now=now, notice_id=notice.id,
                                      member_id=member_id, reason=NO_ACCOUNT))
            continue
        for account in targets:
            deliveries.append(QueuedDelivery(member_id, organisations.get(member_id), account.platform,
                                             status.value, held.get(member_id, now), account_id=account.id,
                                             workspace_external_id=account.workspace_external_id))
    return deliveries, events


async def opted_out_members(member_ids: list[int], topic: Topic, policy: ImportancePolicy) -> set[int]:
    """Members who left the topic, when the importance and the topic's catalog entry allow it
    (publish leaves them out; an A/B test's rollout too)."""
    if not opt_outs_apply(topic, policy):
        return set()
    found: set[int] = set()
    for start in range(0, len(member_ids), 5000):
        chunk = member_ids[start:start + 5000]
        for member_id, opt_outs in await Member.filter(id__in=chunk).values_list("id", "topic_opt_outs"):
            if topic.key in (opt_outs or []):
                found.add(member_id)
    return found


@dataclass(frozen=True, slots=True)
class TargetAccount:
    """What a delivery row needs of the member's platform account."""

    id: int
    member_id: int
    platform: str
    workspace_external_id: str
    app_removed_at: datetime | None = None  # the member removed Herald there (reach.choose_account)


async def _target_accounts(member_ids: list[int], *, every_platform: bool,
                           organisations: dict[int, int] | None = None) -> dict[int, list[TargetAccount]]:
    """The accounts each member gets the notice on: the one `reach.choose_account` picks (in a
    workspace Herald can still reach), or when `every_platform` one per platform, each picked by the
    same rule among that platform's accounts (a member in two Slack workspaces gets one Slack copy:
    the outbox holds one row per member and platform). Fills `organisations` (member id ->
    organisation id) when given. Plain values, not ORM models: 100,000 of those took seconds."""
    found: dict[int, list[TargetAccount]] = {}
    preferred: dict[int, str] = {}
    conn = connections.get("default")
    members, param = storage_db.in_ids("id", member_ids)
    for row in await conn.execute_query_dict(storage_db.placeholders(
            f"SELECT id, preferred_platform, organisation_id FROM member WHERE {members}"), [param]):
        if row["preferred_platform"]:
            preferred[row["id"]] = row["preferred_platform"]
        if organisations is not None:
            organisations[row["id"]] = row["organisation_id"]
    owned_by, param = storage_db.in_ids("member_id", member_ids)
    rows = await conn.execute_query_dict(storage_db.placeholders(
        f"SELECT id, member_id, platform, workspace_external_id, app_removed_at FROM platform_account "
        f"WHERE {owned_by} "
        f"ORDER BY id"), [param])
    # a workspace of an Enterprise Grid org served by the org-wide install: the org's lane (and token)
    orgs = await installs_of(r["workspace_external_id"] for r in rows if r["platform"] == Platform.SLACK.value)
    for row in rows:
        if row["platform"] == Platform.SLACK.value and row["workspace_external_id"] in orgs:
            row["workspace_external_id"] = orgs[row["workspace_external_id"]]
        found.setdefault(row["member_id"], []).append(TargetAccount(**row))
    unreachable = await unreachable_workspaces()
    chosen: dict[int, list[TargetAccount]] = {}
    for member_id, accounts in found.items():
        if every_platform:
            chosen[member_id] = _one_per_platform(accounts, unreachable)
        else:
            account = choose_account(accounts, preferred=preferred.get(member_id, ""), unreachable=unreachable)
            chosen[member_id] = [account] if account is not None else []
    return chosen


def _one_per_platform(accounts: list[TargetAccount], unreachable: frozenset[tuple[str, str]]) -> list[TargetAccount]:
    """HERALD_PLATFORM_POLICY=all: the account `choose_account` picks on each platform, by id."""
    by_platform: dict[str, list[TargetAccount]] = {}
    for account in accounts:
        by_platform.setdefault(account.platform, []).append(account)
    picked = (choose_account(group, unreachable=unreachable) for group in by_platform.values())
    return sorted((a for a in picked if a is not None), key=lambda a: a.id)


async def cancel_draft(notice_id: int, actor: Staff | None, *, now: datetime, operator: str = "") -> Notice:
    """Cancel a draft or a scheduled notice that has not gone out yet."""
    if not operator:
        actor = require_sender(actor)
    notice = await _own_draft(notice_id, actor)
    async with in_transaction() as conn:
        changed = await Notice.filter(id=notice.id, status__in=[
            NoticeStatus.DRAFT.value, NoticeStatus.SCHEDULED.value]).using_db(conn).update(
            status=NoticeStatus.CANCELLED.value)
        if changed:
            await record([audit_event("notice.cancelled", now=now, actor=_actor(actor, operator), notice_id=notice.id)],
                         using_db=conn)
    return await Notice.get(id=notice.id)


async def latest_notice_of(staff: Staff) -> Notice | None:
    return await Notice.filter(author_id=staff.id).exclude(
        status__in=[NoticeStatus.DRAFT.value, NoticeStatus.CANCELLED.value]).order_by("-id").first()
