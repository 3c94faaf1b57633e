"""`herald qa ...`: the onboarding assistant."""

from __future__ import annotations

import json

import click

from bot.cli.base import main, run


@main.group(help="The onboarding assistant.")
def qa() -> None:
    pass


@qa.command("unanswered", help="Questions the knowledge base could not answer or answered unhelpfully.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True)
def qa_unanswered(as_json: bool, limit: int) -> None:
    from bot.core.onboarding.assistant import unanswered_questions

    questions = run(lambda: unanswered_questions(limit))
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
