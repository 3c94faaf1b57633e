"""`herald send`, `edit`, `retract`, `notices list` and `status`: notices from scripts."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from bot.cli.base import CLOCK, get_settings, main, operator_name, run


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
def send(topic: str, importance: str, audience: str, title: str, body: str, link: str, deadline: str,
         send_at: str, reminders: str, variants: tuple[str, ...], share: int | None, yes: bool) -> None:
    from bot.core.commands.parser import (
        SendCommand,
        parse_deadline,
        parse_link,
        parse_reminders,
        parse_time,
    )
    from bot.core.notices import sending
    from bot.topics import load_catalog

    settings = get_settings()
    catalog = load_catalog(settings.topics_file)
    operator = operator_name()
    texts = []
    for variant in variants:
        variant_title, bar, variant_body = variant.partition("|")
        if not bar or not variant_title.strip() or not variant_body.strip():
            raise click.UsageError("--variant takes 'TITLE | BODY'")
        texts.append((variant_title.strip(), variant_body.strip()))

    async def work() -> tuple[int, int, bool]:
        command = SendCommand(importance=importance, topic=topic, audience=audience, title=title, body=body,
                              link=parse_link(link) if link else "",
                              deadline=parse_deadline(deadline) if deadline else None,
                              scheduled_at=parse_time(send_at, what="send time") if send_at else None,
                              reminder_hours=parse_reminders(reminders) if reminders else None,
                              variants=tuple(texts), share=share)
        preview = await sending.create_draft(None, command, catalog, now=CLOCK.now(), operator=operator)
        for warning in preview.warnings:
            click.echo(f"warning: {warning}", err=True)
        question = (f"Send {preview.policy.level.value} notice #{preview.notice.id} "
                    f"'{preview.notice.title}' to {preview.recipients} recipients?")
        if not yes and not await asyncio.to_thread(click.confirm, question):
            await sending.cancel_draft(preview.notice.id, None, now=CLOCK.now(), operator=operator)
            return preview.notice.id, 0, False
        result = await sending.send_draft(preview.notice.id, None, catalog, now=CLOCK.now(), operator=operator)
        return result.notice.id, result.recipients, True

    notice_id, recipients, sent = run(work)
    if not sent:
        click.echo(f"notice {notice_id} cancelled")
        sys.exit(1)
    if send_at:
        click.echo(f"notice {notice_id} scheduled for {send_at}")
        return
    click.echo(f"notice {notice_id} queued for {recipients} recipients")


@main.command(help="Correct a sent notice: every delivered copy is updated in place.")
@click.argument("notice_id", type=int)
@click.option("--title", default=None)
@click.option("--body", default=None)
@click.option("--link", default=None, help="New link ('' removes it).")
@click.option("--material", is_flag=True, help="Must-know: ask everyone to acknowledge again.")
def edit(notice_id: int, title: str | None, body: str | None, link: str | None, material: bool) -> None:
    from bot.core.notices.revisions import edit_notice
    from bot.topics import load_catalog

    catalog = load_catalog(get_settings().topics_file)
    result = run(lambda: edit_notice(notice_id, None, catalog, now=CLOCK.now(), title=title, body=body, link=link,
                                      material=material, operator=operator_name()))
    extra = "; everyone is asked to acknowledge it again" if result.reacknowledge else ""
    click.echo(f"notice {notice_id} is now revision {result.revision.revision}; "
               f"{result.copies_to_update} delivered copies will be updated{extra}")


@main.command(help="Withdraw a notice: every copy becomes 'Retracted: <reason>'.")
@click.argument("notice_id", type=int)
@click.option("--reason", required=True)
def retract(notice_id: int, reason: str) -> None:
    from bot.core.notices.revisions import retract_notice

    notice, copies, cancelled = run(lambda: retract_notice(notice_id, None, reason=reason, now=CLOCK.now(),
                                                            operator=operator_name()))
    click.echo(f"notice {notice.id} retracted: {copies} copies will be updated, {cancelled} pending sends cancelled")


@main.group(help="Notices.")
def notices() -> None:
    pass


@notices.command("list", help="List notices, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=50, show_default=True)
def notices_list(as_json: bool, limit: int) -> None:
    from storage.models import Notice

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
@click.argument("notice_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--follow", is_flag=True, help="Show delivered and acknowledged counts live until delivery completes.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between looks with --follow.")
def status(notice_id: int, as_json: bool, follow: bool, interval: float) -> None:
    from bot.cli.progress import Reporter
    from bot.core.notices.status import notice_status

    if follow:
        with Reporter(f"notice {notice_id}", enabled=not as_json) as progress:
            data = run(lambda: _follow(notice_id, interval, progress))
    else:
        data = run(lambda: notice_status(notice_id)).as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"notice {data['notice_id']}: {data['title']} ({data['importance']}, {data['topic']}, {data['status']})")
    click.echo("recipients {recipients}  delivered {delivered}  failed {failed}  pending {pending}  "
               "acknowledged {acknowledged}  digest {digest}".format(**data))
    for reason in data["failure_reasons"]:
        click.echo(f"  {reason['count']} x {reason['reason']}")


async def follow_sleep(seconds: float) -> None:
    """The pause between looks (a seam for tests, which let deliveries happen in it)."""
    await asyncio.sleep(seconds)


def _settled(data: dict[str, Any]) -> bool:
    return data["pending"] == 0 and data["status"] not in ("draft", "scheduled", "sending")


async def _follow(notice_id: int, interval: float, progress: Any) -> dict[str, Any]:
    """Look at the notice every `interval` seconds until nothing is pending; report each look."""
    from bot.core.notices.status import notice_status

    while True:
        data = (await notice_status(notice_id)).as_dict()
        to_send = max(data["recipients"] - data["digest"], 0)
        progress("settled", data["delivered"] + data["failed"], to_send)
        if data["importance"] == "must-know":
            progress("acknowledged", data["acknowledged"], data["delivered"])
        if _settled(data):
            return data
        await follow_sleep(interval)
