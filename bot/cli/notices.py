"""`herald send`, `edit`, `retract`, `cancel`, `pause`, `resume`, `notices list` and `status`: notices from
scripts. The six that change something act `--as` a staff member (see `as_option`)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import click

from bot.cli.base import (
    CLOCK,
    LIMIT,
    ROW_ID,
    acting_staff,
    as_option,
    confirmed,
    get_settings,
    main,
    refuse_unconfirmable_send,
    run,
)
from bot.common.errors import UserError
from storage.models import Notice, NoticeStatus

log = logging.getLogger(__name__)


@main.command(help="Send a notice from a script.")
@click.option("--topic", required=True)
@click.option("--importance", required=True, help="nice-to-know, need-to-know or must-know")
@click.option("--audience", required=True, help='Segment, e.g. "tier:gold region:emea" or "all".')
@click.option("--title", required=True)
@click.option("--body", required=True)
@click.option("--link", default="")
@click.option("--deadline", default="", help="ISO-8601 date or time (must-know only).")
@click.option("--at", "send_at", default="", help="Send later: ISO-8601 time (e.g. 2026-12-01T09:00Z).")
@click.option("--reminders", default="", help="Reminder hours after delivery, e.g. 8,24 (default: the topic's).")
@click.option("--variant", "variants", multiple=True, metavar="'TITLE | BODY'",
              help="A/B test: another variant (B, C, D in order); --title/--body are variant A.")
@click.option("--share", type=click.IntRange(1, 99), default=None,
              help="A/B test: percent of the audience sent first; the rest waits for `herald rollout`.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True, help="Send even if an identical command sent this notice in the last "
                                             "10 minutes (otherwise a retried command sends nothing).")
@as_option
def send(topic: str, importance: str, audience: str, title: str, body: str, link: str, deadline: str,
         send_at: str, reminders: str, variants: tuple[str, ...], share: int | None, yes: bool, again: bool,
         as_email: str) -> None:
    from bot.core.commands.parser import (
        SendCommand,
        parse_deadline,
        parse_link,
        parse_reminders,
        parse_time,
    )
    from bot.core.compliance.reports import iso
    from bot.core.notices import sending
    from bot.topics import load_catalog

    settings = get_settings()
    catalog = load_catalog(settings.topics_file)
    texts = []
    for variant in variants:
        variant_title, bar, variant_body = variant.partition("|")
        if not bar or not variant_title.strip() or not variant_body.strip():
            raise click.UsageError("--variant takes 'TITLE | BODY'")
        texts.append((variant_title.strip(), variant_body.strip()))

    refuse_unconfirmable_send(yes)

    async def draft() -> tuple[int, str] | Notice:
        staff = await acting_staff(as_email)
        command = SendCommand(importance=importance, topic=topic, audience=audience, title=title, body=body,
                              link=parse_link(link) if link else "",
                              deadline=parse_deadline(deadline) if deadline else None,
                              scheduled_at=parse_time(send_at, what="send time") if send_at else None,
                              reminder_hours=parse_reminders(reminders) if reminders else None,
                              variants=tuple(texts), share=share)
        if again:
            preview = await sending.create_draft(staff, command, catalog, now=CLOCK.now())
        else:
            preview = await sending.draft_unless_repeated(staff, command, catalog, now=CLOCK.now(), confirmed=yes)
            if isinstance(preview, Notice):
                return preview
        for warning in preview.warnings:
            click.echo(f"warning: {warning}", err=True)
        if preview.recipients == 0 and not send_at:  # a typo in the audience, most likely: see the warnings
            await sending.cancel_draft(preview.notice.id, staff, now=CLOCK.now())
            raise UserError(f"nobody is in this audience; nothing was sent (notice {preview.notice.id} cancelled)")
        return preview.notice.id, (f"Send {preview.policy.level.value} notice #{preview.notice.id} "
                                   f"'{preview.notice.title}' to {preview.recipients} recipients?")

    async def cancel(notice_id: int) -> None:
        await sending.cancel_draft(notice_id, await acting_staff(as_email), now=CLOCK.now())

    async def send_it(notice_id: int) -> sending.SendResult:
        return await sending.send_draft(notice_id, await acting_staff(as_email), catalog, now=CLOCK.now())

    drafted = run(draft)
    if isinstance(drafted, Notice):
        _not_again(drafted)
        return
    notice_id, question = drafted
    if not yes and not confirmed(question):  # asked outside the event loop, so Ctrl-C is a plain "no"
        run(lambda: cancel(notice_id))
        click.echo(f"notice {notice_id} cancelled")
        sys.exit(1)
    result = run(lambda: send_it(notice_id))
    if send_at:  # the moment stored, in UTC: not the operator's text, which may lack or use another zone
        click.echo(f"notice {notice_id} scheduled for {iso(result.notice.scheduled_at)}")
        return
    click.echo(f"notice {notice_id} queued for {result.recipients} recipients")


def _not_again(earlier: Notice) -> None:
    """A retried `send`: say which notice the identical command already sent, and send nothing (exit 0)."""
    from bot.core.compliance.reports import iso

    done = (f"scheduled for {iso(earlier.scheduled_at)}" if earlier.status == NoticeStatus.SCHEDULED.value
            else "sent")
    log.info("send refused: identical to notice %s (%s), made by the same author at %s",
                earlier.id, earlier.status, iso(earlier.created_at))
    click.echo(f"notice {earlier.id} was already {done} from an identical command at {iso(earlier.created_at)}; "
               "not sending it again (--again sends another)")


@main.command(help="Correct a sent notice: every delivered copy is updated in place.")
@click.argument("notice_id", type=ROW_ID)
@click.option("--title", default=None)
@click.option("--body", default=None)
@click.option("--link", default=None, help="New link ('' removes it).")
@click.option("--material", is_flag=True, help="Must-know: ask everyone to acknowledge again.")
@as_option
def edit(notice_id: int, title: str | None, body: str | None, link: str | None, material: bool, as_email: str) -> None:
    from bot.core.notices.revisions import edit_notice
    from bot.topics import load_catalog

    catalog = load_catalog(get_settings().topics_file)

    async def work():  # noqa: ANN202
        return await edit_notice(notice_id, await acting_staff(as_email), catalog, now=CLOCK.now(), title=title,
                                 body=body, link=link, material=material)

    result = run(work)
    extra = "; everyone is asked to acknowledge it again" if result.reacknowledge else ""
    click.echo(f"notice {notice_id} {result.summary}{extra}")


@main.command(help="Withdraw a notice: every copy becomes 'Retracted: <reason>'.")
@click.argument("notice_id", type=ROW_ID)
@click.option("--reason", required=True)
@as_option
def retract(notice_id: int, reason: str, as_email: str) -> None:
    from bot.core.compliance.reports import iso
    from bot.core.notices.revisions import AlreadyRetracted, retract_notice

    async def work():  # noqa: ANN202
        try:
            return await retract_notice(notice_id, await acting_staff(as_email), reason=reason, now=CLOCK.now())
        except AlreadyRetracted as done:  # run again (a retried script): what it asked for is so
            return done.notice

    outcome = run(work)
    if isinstance(outcome, Notice):
        click.echo(f"notice {outcome.id} already retracted at {iso(outcome.retracted_at)} "
                   f"(reason: {outcome.retract_reason}); nothing changed")
        return
    notice, copies, cancelled = outcome
    click.echo(f"notice {notice.id} retracted: {copies} copies will be updated, {cancelled} pending sends cancelled")


@main.command(help="Cancel a draft or scheduled notice before it is sent.")
@click.argument("notice_id", type=ROW_ID)
@as_option
def cancel(notice_id: int, as_email: str) -> None:
    from bot.core.notices.sending import cancel_draft

    async def work():  # noqa: ANN202
        return await cancel_draft(notice_id, await acting_staff(as_email), now=CLOCK.now())

    notice = run(work)
    if notice.status != "cancelled":
        click.echo(f"herald: notice {notice.id} is already {notice.status}, too late to cancel; "
                   f"`herald retract {notice.id} --reason ...` withdraws it", err=True)
        sys.exit(1)
    click.echo(f"notice {notice.id} cancelled")


@main.command(help="Stop automated reminders and nudges for a partner organisation (until a date, or until "
                   "resumed); notices and escalations still go out.")
@click.argument("org_id")
@click.option("--until", "until", default="", help="ISO-8601 date or time the pause ends.")
@click.option("--reason", default="")
@as_option
def pause(org_id: str, until: str, reason: str, as_email: str) -> None:
    from bot.core.commands.parser import parse_time
    from bot.core.directory.pauses import pause_organisation

    async def work():  # noqa: ANN202
        staff = await acting_staff(as_email)
        end = parse_time(until, what="pause end") if until else None
        return await pause_organisation(staff, org_id, until=end, reason=reason, now=CLOCK.now())

    organisation = run(work)
    click.echo(f"{organisation.name} paused" + (f" until {until}" if until else ""))


@main.command(help="Restart reminders and escalations for a paused partner organisation.")
@click.argument("org_id")
@as_option
def resume(org_id: str, as_email: str) -> None:
    from bot.core.directory.pauses import resume_organisation

    async def work():  # noqa: ANN202
        return await resume_organisation(await acting_staff(as_email), org_id, now=CLOCK.now())

    organisation = run(work)
    click.echo(f"{organisation.name} resumed")


@main.group(help="Notices.")
def notices() -> None:
    pass


@notices.command("list", help="List notices, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=50, show_default=True, type=LIMIT)
def notices_list(as_json: bool, limit: int) -> None:
    async def work() -> list[dict[str, Any]]:
        rows = await Notice.all().order_by("-id").limit(limit)
        return [{"id": n.id, "status": n.status, "importance": n.importance, "topic": n.topic,
                 "title": n.title, "audience": n.audience, "recipients": n.recipient_count,
                 "created_at": n.created_at.isoformat(), "sent_at": n.sent_at.isoformat() if n.sent_at else None}
                for n in rows]

    rows = run(work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:>6}  {r['status']:9}  {r['importance']:12}  {r['topic']:16}  "
                   f"{r['recipients']:>6}  {r['title']}")


@main.command(help="Delivery and acknowledgement counts for a notice; --follow watches them until every "
                   "delivery is settled.")
@click.argument("notice_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True)
@click.option("--follow", is_flag=True, help="Show delivered and acknowledged counts live until delivery completes.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between looks with --follow.")
def status(notice_id: int, as_json: bool, follow: bool, interval: float) -> None:
    from bot.cli.progress import Reporter
    from bot.core.notices.status import notice_status

    from bot.channels.status_lines import escalation_lines

    if follow:
        with Reporter(f"notice {notice_id}", enabled=not as_json) as progress:
            report = run(lambda: _follow(notice_id, interval, progress))
    else:
        report = run(lambda: notice_status(notice_id, now=CLOCK.now()))
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"notice {data['notice_id']}: {data['title']} ({data['importance']}, {data['topic']}, {data['status']})")
    click.echo("recipients {recipients}  delivered {delivered}  failed {failed}  pending {pending}  "
               "acknowledged {acknowledged}  digest {digest}".format(**data))
    for reason in data["failure_reasons"]:
        click.echo(f"  {reason['count']} x {reason['reason']}")
    if data["importance"] == "must-know":  # as chat's status: escalations sent or on their way, then the others
        click.echo("reminders sent {reminders_sent}  escalations: {escalations}".format(**data))
    for line in escalation_lines(report, bold=str, escape=str, bullet=" ", times="x"):
        click.echo(line)


async def follow_sleep(seconds: float) -> None:
    """The pause between looks (a seam for tests, which let deliveries happen in it)."""
    await asyncio.sleep(seconds)


def _settled(data: dict[str, Any]) -> bool:
    return data["pending"] == 0 and data["status"] not in ("draft", "scheduled", "sending")


async def _follow(notice_id: int, interval: float, progress: Any) -> Any:
    """Look at the notice every `interval` seconds until nothing is pending; report each look.
    Returns the last look (a NoticeStatusReport)."""
    from bot.core.notices.status import notice_status

    while True:
        report = await notice_status(notice_id, now=CLOCK.now())
        data = report.as_dict()
        to_send = max(data["recipients"] - data["digest"], 0)
        progress("settled", data["delivered"] + data["failed"], to_send)
        if data["importance"] == "must-know":
            progress("acknowledged", data["acknowledged"], data["delivered"])
        if _settled(data):
            return report
        await follow_sleep(interval)
