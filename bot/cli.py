"""The `herald` command-line program."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.core.clock import SystemClock
from bot.core.errors import UserError
from config.settings import ConfigError, Settings, load_settings

T = TypeVar("T")
CLOCK = SystemClock()


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(2)


def _run(work: Callable[[], Awaitable[T]], *, migrate: bool = True) -> T:
    """Connect to the database, run `work`, disconnect; person-facing errors become one line."""
    from storage import db as storage_db

    settings = _settings()

    async def runner() -> T:
        await storage_db.connect(settings.tortoise_db_url, run_migrations=migrate)
        try:
            return await work()
        finally:
            await storage_db.close()

    try:
        return asyncio.run(runner())
    except UserError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(1)
    except (OSError, ConnectionError) as exc:
        click.echo(f"herald: cannot reach the database ({exc})", err=True)
        sys.exit(2)


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


@click.group(help="Herald: partner notices with acknowledgement, in Slack and Microsoft Teams.")
def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every tick at INFO


# ---- server & database ----------------------------------------------------------------------

@main.command(help="Run the HTTP server (Slack, Teams, health, API). Migrates the database first.")
@click.option("--host", default=None, help="Interface to listen on (default HERALD_HOST or 0.0.0.0).")
@click.option("--port", default=None, type=int, help="Port (default HERALD_PORT or 3978).")
def serve(host: str | None, port: int | None) -> None:
    from aiohttp import web

    from bot.app import build_app

    settings = _settings()
    logging.getLogger().setLevel(settings.log_level.upper())
    try:
        web.run_app(build_app(settings), host=host or settings.host, port=port or settings.port,
                    print=lambda msg: click.echo(f"herald: {msg}"))
    except (OSError, ConnectionError) as exc:
        click.echo(f"herald: cannot start: {exc}", err=True)
        sys.exit(2)


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply pending schema migrations.")
def db_upgrade() -> None:
    from storage import db as storage_db

    settings = _settings()
    try:
        asyncio.run(storage_db.upgrade(settings.tortoise_db_url))
    except (OSError, ConnectionError) as exc:
        click.echo(f"herald: cannot reach the database ({exc})", err=True)
        sys.exit(2)
    click.echo("database is up to date")


# ---- directory & staff ----------------------------------------------------------------------

@main.group(help="The partner directory.")
def directory() -> None:
    pass


@directory.command("import", help="Import partner organisations and members from a CSV file.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.option("--deactivate-missing", is_flag=True, help="Mark members absent from the file inactive.")
def directory_import(file: Path, dry_run: bool, deactivate_missing: bool) -> None:
    from bot.core.directory import import_directory

    text = file.read_text(encoding="utf-8-sig")
    result = _run(lambda: import_directory(text, now=CLOCK.now(), actor=f"operator:{_operator()}",
                                           dry_run=dry_run, deactivate_missing=deactivate_missing))
    for error in result.rejected:
        click.echo(f"line {error.line}: {error.reason}", err=True)
    prefix = "dry run: would have " if dry_run else ""
    click.echo(f"{prefix}created {result.created}, updated {result.updated}, unchanged {result.unchanged}, "
               f"deactivated {result.deactivated}, rejected {len(result.rejected)}")


@main.group(help="Vendor staff and their roles.")
def staff() -> None:
    pass


@staff.command("add", help="Add or update a staff member (cam, compliance or admin).")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["cam", "compliance", "admin"]))
@click.option("--name", default="")
@click.option("--slack-user", default="", help="Their Slack user id (U...).")
@click.option("--slack-team", default="", help="Their Slack workspace id (T...).")
@click.option("--teams-aad", default="", help="Their Microsoft Entra (AAD) object id, for Teams.")
def staff_add(email: str, role: str, name: str, slack_user: str, slack_team: str, teams_aad: str) -> None:
    from bot.core.staff import add_staff

    person, created = _run(lambda: add_staff(email, role, name=name, slack_user=slack_user,
                                             slack_team=slack_team, teams_aad=teams_aad, now=CLOCK.now(),
                                             actor=f"operator:{_operator()}"))
    click.echo(f"{'added' if created else 'updated'} {person.email} as {person.role}")


@staff.command("list", help="List staff.")
def staff_list() -> None:
    from bot.core.staff import list_staff

    for person in _run(list_staff):
        slack = f"{person.slack_team_id}/{person.slack_user_id}" if person.slack_user_id else "-"
        state = "" if person.active else " (inactive)"
        click.echo(f"{person.email:40} {person.role:11} {person.name or '-':24} slack:{slack}{state}")


# ---- workspaces -----------------------------------------------------------------------------

@main.group(help="Slack workspaces.")
def slack() -> None:
    pass


@slack.command("add-workspace", help="Store the bot token of another Slack workspace.")
@click.argument("team_id")
@click.option("--token", required=True, help="The workspace's bot token (xoxb-...).")
@click.option("--name", default="")
def slack_add_workspace(team_id: str, token: str, name: str) -> None:
    from bot.core.workspaces import add_slack_workspace

    if not token.startswith("xoxb-"):
        click.echo("herald: a Slack bot token starts with xoxb-", err=True)
        sys.exit(1)
    created = _run(lambda: add_slack_workspace(team_id, token, name=name, now=CLOCK.now(),
                                               actor=f"operator:{_operator()}"))
    click.echo(f"{'added' if created else 'updated'} Slack workspace {team_id}")


# ---- notices --------------------------------------------------------------------------------

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
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def send(topic: str, importance: str, audience: str, title: str, body: str, link: str, deadline: str,
         send_at: str, reminders: str, yes: bool) -> None:
    from bot.core import notices
    from bot.core.commands import SendCommand, parse_deadline, parse_link, parse_reminders, parse_time
    from bot.topics import load_catalog

    settings = _settings()
    catalog = load_catalog(settings.topics_file)
    operator = _operator()

    async def work() -> tuple[int, int, bool]:
        command = SendCommand(importance=importance, topic=topic, audience=audience, title=title, body=body,
                              link=parse_link(link) if link else "",
                              deadline=parse_deadline(deadline) if deadline else None,
                              scheduled_at=parse_time(send_at, what="send time") if send_at else None,
                              reminder_hours=parse_reminders(reminders) if reminders else None)
        preview = await notices.create_draft(None, command, catalog, now=CLOCK.now(), operator=operator)
        for warning in preview.warnings:
            click.echo(f"warning: {warning}", err=True)
        question = (f"Send {preview.policy.level.value} notice #{preview.notice.id} "
                    f"'{preview.notice.title}' to {preview.recipients} recipients?")
        if not yes and not await asyncio.to_thread(click.confirm, question):
            await notices.cancel_draft(preview.notice.id, None, now=CLOCK.now(), operator=operator)
            return preview.notice.id, 0, False
        result = await notices.send_draft(preview.notice.id, None, catalog, now=CLOCK.now(), operator=operator)
        return result.notice.id, result.recipients, True

    notice_id, recipients, sent = _run(work)
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
    from bot.core.revisions import edit_notice
    from bot.topics import load_catalog

    catalog = load_catalog(_settings().topics_file)
    result = _run(lambda: edit_notice(notice_id, None, catalog, now=CLOCK.now(), title=title, body=body, link=link,
                                      material=material, operator=_operator()))
    extra = "; everyone is asked to acknowledge it again" if result.reacknowledge else ""
    click.echo(f"notice {notice_id} is now revision {result.revision.revision}; "
               f"{result.copies_to_update} delivered copies will be updated{extra}")


@main.command(help="Withdraw a notice: every copy becomes 'Retracted: <reason>'.")
@click.argument("notice_id", type=int)
@click.option("--reason", required=True)
def retract(notice_id: int, reason: str) -> None:
    from bot.core.revisions import retract_notice

    notice, copies, cancelled = _run(lambda: retract_notice(notice_id, None, reason=reason, now=CLOCK.now(),
                                                            operator=_operator()))
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

    rows = _run(work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:>6}  {r['status']:9}  {r['importance']:12}  {r['topic']:16}  "
                   f"{r['recipients']:>6}  {r['title']}")


@main.command(help="Delivery and acknowledgement counts for a notice.")
@click.argument("notice_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def status(notice_id: int, as_json: bool) -> None:
    from bot.core.status import notice_status

    report = _run(lambda: notice_status(notice_id))
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"notice {data['notice_id']}: {data['title']} ({data['importance']}, {data['topic']}, {data['status']})")
    click.echo("recipients {recipients}  delivered {delivered}  failed {failed}  pending {pending}  "
               "acknowledged {acknowledged}  digest {digest}".format(**data))
    for reason in data["failure_reasons"]:
        click.echo(f"  {reason['count']} x {reason['reason']}")


from bot.cli_audit import audit  # noqa: E402
main.add_command(audit)


from bot.cli_reports import report, token  # noqa: E402

main.add_command(report)
main.add_command(token)


from bot.cli_workspaces import manifest, workspaces  # noqa: E402

slack.add_command(manifest)
main.add_command(workspaces)


@main.group(help="The onboarding assistant.")
def qa() -> None:
    pass


@qa.command("unanswered", help="Questions the knowledge base could not answer or answered unhelpfully.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True)
def qa_unanswered(as_json: bool, limit: int) -> None:
    from bot.core.onboarding.assistant import unanswered_questions

    questions = _run(lambda: unanswered_questions(limit))
    rows = [{"id": q.id, "asked_at": q.asked_at.isoformat(), "question": q.text,
             "why": "not helpful" if q.feedback == "not_helpful" else "no answer",
             "suggested": q.entry_id or None, "role": q.member.role, "tier": q.member.organisation.tier,
             "handoff": q.handoff_status or None} for q in questions]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no unanswered questions")
    for r in rows:
        click.echo(f"{r['asked_at'][:16]}  {r['why']:11}  {r['role']:10}  {r['question']}")


@main.group(help="Microsoft Teams.")
def teams() -> None:
    pass


@teams.command("package", help="Write the Teams app package (manifest + icons) to upload in Teams.")
@click.option("--url", "public_url", required=True, help="Herald's public https URL.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("herald-teams.zip"),
              show_default=True)
@click.option("--app-id", default="", help="The bot's Microsoft app id (default HERALD_TEAMS_APP_ID).")
@click.option("--version", "app_version", default="1.0.0", show_default=True)
def teams_package(public_url: str, out: Path, app_id: str, app_version: str) -> None:
    from bot.teams_package import write_package

    app_id = app_id or _settings().teams_app_id or ""
    if not app_id:
        click.echo("herald: give --app-id or set HERALD_TEAMS_APP_ID (the bot's Microsoft app id)", err=True)
        sys.exit(2)
    try:
        write_package(out, app_id=app_id, public_url=public_url, version=app_version)
    except UserError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out} (manifest {app_version}, validated against the Teams 1.17 schema)")


if __name__ == "__main__":
    main()
