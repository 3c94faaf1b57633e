"""`herald survey ...` (send, results, close, list, stages), `herald variants` and `herald rollout`:
pulse surveys and A/B tests from scripts. `survey send` acts `--as` a staff member, as `herald send`
does (a survey is a notice: it needs an accountable sender); for the others the operator at the
server's shell acts as an admin."""

from __future__ import annotations

import json
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


@main.group(help="Pulse surveys: send one, read its results, close it.")
def survey() -> None:
    pass


@survey.command("send", help="Send a survey: a question with 2 to 5 --option answers or a --scale.")
@click.option("--topic", required=True)
@click.option("--audience", required=True, help='Segment, e.g. "tier:gold region:emea" or "all".')
@click.option("--question", required=True)
@click.option("--option", "options", multiple=True, help="An answer (repeat 2 to 5 times).")
@click.option("--scale", type=click.Choice(["1-5", "0-10"]), default=None, help="A scale instead of options.")
@click.option("--follow-up", "follow_up", default="", help="An optional free-text question.")
@click.option("--anonymous", is_flag=True, help="No names in the results; no group under 5 answers.")
@click.option("--closes", default="", help="Stop taking answers then: ISO-8601 date or time.")
@click.option("--at", "send_at", default="", help="Send later: ISO-8601 time.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@as_option
def survey_send(topic: str, audience: str, question: str, options: tuple[str, ...], scale: str | None,
                follow_up: str, anonymous: bool, closes: str, send_at: str, yes: bool, as_email: str) -> None:
    from bot.core.commands.parser import SurveyCommand, parse_deadline, parse_time
    from bot.core.notices import sending
    from bot.core.surveys.creating import create_survey_draft
    from bot.topics import load_catalog

    if bool(options) == bool(scale):
        raise click.UsageError("give either --scale or 2 to 5 --option answers")
    catalog = load_catalog(get_settings().topics_file)

    refuse_unconfirmable_send(yes, "survey")

    async def draft() -> tuple[int, str]:
        staff = await acting_staff(as_email)
        command = SurveyCommand(topic=topic, audience=audience, question=question,
                                answers=(f"scale:{scale}",) if scale else options, follow_up=follow_up,
                                anonymous=anonymous, closes_at=parse_deadline(closes) if closes else None,
                                scheduled_at=parse_time(send_at, what="send time") if send_at else None)
        preview = await create_survey_draft(staff, command, catalog, now=CLOCK.now())
        for warning in preview.warnings:
            click.echo(f"warning: {warning}", err=True)
        return preview.notice.id, (f"Send survey #{preview.notice.id} '{preview.spec.question}' "
                                   f"to {preview.recipients} recipients?")

    async def cancel(survey_id: int) -> None:
        await sending.cancel_draft(survey_id, await acting_staff(as_email), now=CLOCK.now())

    async def send_it(survey_id: int) -> sending.SendResult:
        return await sending.send_draft(survey_id, await acting_staff(as_email), catalog, now=CLOCK.now())

    survey_id, ask = run(draft)
    if not yes and not confirmed(ask):  # asked outside the event loop, so Ctrl-C is a plain "no"
        run(lambda: cancel(survey_id))
        click.echo(f"survey {survey_id} cancelled")
        sys.exit(1)
    recipients = run(lambda: send_it(survey_id)).recipients
    click.echo(f"survey {survey_id} {'scheduled' if send_at else 'queued'} for {recipients} recipients")


@survey.command("results", help="Response rate, distribution, NPS and breakdowns (anonymity rules applied).")
@click.argument("survey_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
def survey_results_command(survey_id: int, as_json: bool, fmt: str) -> None:
    from bot.core.surveys.results import results_csv, survey_results

    fmt = "json" if as_json else fmt
    results = run(lambda: survey_results(survey_id, None, operator=True,  # text and CSV show figures only
                                         answers_listed=None if fmt == "json" else 0))
    if fmt == "json":
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        click.echo(results_csv(results), nl=False)
    else:
        click.echo(_plain(results))


def _plain(results: dict[str, Any]) -> str:
    from bot.channels.survey_lines import survey_result_lines

    lines = survey_result_lines(results, bold=lambda t: t, escape=lambda t: t, bullet="-")
    return "\n".join(lines).replace("\u2026", "...")


@survey.command("close", help="Stop taking answers now.")
@click.argument("survey_id", type=ROW_ID)
@as_option
def survey_close(survey_id: int, as_email: str) -> None:
    from bot.core.surveys.answers import close_survey

    async def work():  # noqa: ANN202
        return await close_survey(survey_id, await acting_staff(as_email), now=CLOCK.now())

    result = run(work)
    click.echo(f"survey {survey_id} {'was already closed' if result.already else 'closed'}")


@survey.command("list", help="Surveys, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=50, show_default=True, type=LIMIT)
def survey_list(as_json: bool, limit: int) -> None:
    from storage.models import Survey

    async def work() -> list[dict[str, Any]]:
        rows = await Survey.all().select_related("notice").order_by("-id").limit(limit)
        return [{"id": s.notice.id, "question": s.question, "kind": s.kind, "anonymous": s.anonymous,
                 "status": s.notice.status, "open": s.closed_at is None, "journey_step": s.key.split(":")[1] if s.key else None,
                 "recipients": s.notice.recipient_count} for s in rows]

    rows = run(work)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no surveys yet")
    for r in rows:
        state = "open" if r["open"] else "closed"
        click.echo(f"{r['id']:>6}  {state:6}  {r['status']:9}  {r['recipients']:>6}  {r['question']}")


@survey.command("stages", help="Results of the journeys' surveys, per journey stage.")
@click.option("--json", "as_json", is_flag=True)
def survey_stages_command(as_json: bool) -> None:
    from bot.channels.survey_lines import stages_lines
    from bot.core.surveys.stages import survey_stages

    stages = run(lambda: survey_stages(None, operator=True))
    if as_json:
        click.echo(json.dumps(stages, indent=2, ensure_ascii=False))
        return
    click.echo("\n".join(stages_lines(stages, bold=lambda t: t, escape=lambda t: t, bullet="-")))


@main.command(help="Compare an A/B test's variants: acknowledgement rate, button presses, time to acknowledge.")
@click.argument("notice_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True)
def variants(notice_id: int, as_json: bool) -> None:
    from bot.channels.survey_lines import variant_lines
    from bot.core.notices.ab_results import variant_results

    results = run(lambda: variant_results(notice_id, None, operator=True))
    if as_json:
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
        return
    click.echo("\n".join(variant_lines(results, bold=lambda t: t, escape=lambda t: t, bullet="-")))


@main.command(help="Send the chosen variant of an A/B test to everyone held back by its share.")
@click.argument("notice_id", type=ROW_ID)
@click.argument("variant", type=click.Choice(["A", "B", "C", "D"], case_sensitive=False))
@as_option
def rollout(notice_id: int, variant: str, as_email: str) -> None:
    from bot.core.notices.rollout import roll_out
    from bot.topics import load_catalog

    catalog = load_catalog(get_settings().topics_file)

    async def work():  # noqa: ANN202
        return await roll_out(notice_id, variant, await acting_staff(as_email), catalog=catalog, now=CLOCK.now())

    result = run(work)
    if result.already:
        click.echo(f"variant {result.variant} of notice {notice_id} was already rolled out; nothing new was queued")
        return
    click.echo(f"variant {result.variant} of notice {notice_id} queued for {result.released} held-back recipients")
