"""`herald qa ...`: the onboarding assistant."""

from __future__ import annotations

import json
import sys

import click

from bot.cli.base import LIMIT, ROW_ID, get_settings, main, run


@main.group(help="The onboarding assistant.")
def qa() -> None:
    pass


@qa.command("unanswered", help="Questions the knowledge base could not answer or answered unhelpfully.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True, type=LIMIT)
def qa_unanswered(as_json: bool, limit: int) -> None:
    from bot.core.onboarding.assistant import unanswered_questions
    from bot.core.onboarding.learning import one_line, suggested_entry

    questions = run(lambda: unanswered_questions(limit))
    rows = [{"id": q.id, "asked_at": q.asked_at.isoformat(), "question": q.text,
             "why": "not helpful" if q.feedback == "not_helpful" else "no answer",
             "suggested": suggested_entry(q) or None, "role": q.member.role, "tier": q.member.organisation.tier,
             "handoff": q.handoff_status or None} for q in questions]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no unanswered questions")
    for r in rows:
        click.echo(f"{r['asked_at'][:16]}  {r['why']:11}  {r['role']:10}  {one_line(r['question'], 200)}")


@qa.command("ask", help="How the assistant answers a question and why: the entry or the abstention, the "
                        "confidence against the threshold, what the key-term check made of each word, the "
                        "closest entries. For whoever writes the knowledge base (HERALD_KB_DIR, with the "
                        "approved learned items, as the server loads it).")
@click.argument("question")
@click.option("--role", default=None, help="the asking member's directory role (default: every entry is for them)")
@click.option("--tier", default=None, help="the asking member's organisation tier (default: every entry is for them)")
@click.option("--json", "as_json", is_flag=True)
def qa_ask(question: str, role: str | None, tier: str | None, as_json: bool) -> None:
    from bot.core.onboarding.qa import ANY

    explained = _knowledge_base().explain(question, role=role or ANY, tier=tier or ANY)
    if as_json:
        click.echo(json.dumps(explained.as_dict(), indent=2))
        return
    for line in explained.summary():
        click.echo(line)


def _knowledge_base():  # noqa: ANN202 - qa.KnowledgeBase
    """The knowledge base as the server loads it: its files, the approved learned items, and the
    vectors from the cache or shipped with it (built here, once, if neither has them)."""
    from bot.core.onboarding import index
    from bot.core.onboarding.learning import approved_overlay
    from bot.core.onboarding.qa import KnowledgeBase, KnowledgeBaseError

    settings = get_settings()
    overlay = run(approved_overlay)
    try:
        if not settings.kb_semantic:
            return KnowledgeBase.load(settings.kb_dir, semantic=False, overlay=overlay)
        loaded = index.already_loaded(settings.kb_dir, overlay)
        if loaded is not None:
            return loaded
        cache = settings.cache_dir / "vectors"
        store = index.ready_store(settings.kb_dir, cache, overlay)
        if store is None:
            click.echo("building the knowledge base's vectors first (once; `herald qa build-index` does it "
                       "ahead)", err=True)
        return index.load_semantic(settings.kb_dir, store or cache, overlay)
    except KnowledgeBaseError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(1)


async def _admin(email: str):  # noqa: ANN202
    from storage.models import Staff

    staff = await Staff.get_or_none(email=email.strip().lower())
    if staff is None:
        from bot.common.errors import NotFound

        raise NotFound(f"no staff member {email}")
    return staff


@qa.command("pending", help="Knowledge-base proposals from CAMs waiting for an admin's approval.")
@click.option("--json", "as_json", is_flag=True)
def qa_pending(as_json: bool) -> None:
    from bot.core.onboarding.learning import one_line, pending

    proposals = run(lambda: pending(operator=True))
    rows = [{"id": p.id, "kind": p.kind, "entry": p.entry_id, "question": p.question_text, "answer": p.answer or None,
             "source": p.source, "proposed_by": p.proposed_by, "proposed_at": p.proposed_at.isoformat()}
            for p in proposals]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no pending proposals")
    for r in rows:
        what = f"phrasing of {r['entry']}" if r["kind"] == "phrasing" else f"new entry {r['entry']}"
        click.echo(f"#{r['id']:<5} {what:40}  {r['proposed_by']:28}  {one_line(r['question'], 60)}")
        if r["answer"]:
            click.echo(f"       answer: {one_line(r['answer'], 100)}")


def _decide(proposal_id: int, email: str, approve: bool) -> None:
    from bot.cli.base import operator_name
    from bot.common.clock import SystemClock
    from bot.core.onboarding.learning import decide

    async def work():  # noqa: ANN202
        return await decide(proposal_id, await _admin(email), approve=approve, now=SystemClock().now(),
                            kb_dir=get_settings().kb_dir, origin={"via": "cli", "os_user": operator_name()})

    proposal = run(work)
    click.echo(f"#{proposal.id} {proposal.status}: {proposal.kind} {proposal.entry_id}"
               + ("; the running service picks it up at its next tick" if approve else ""))


@qa.command("approve", help="Approve a knowledge-base proposal (admins).")
@click.argument("proposal_id", type=ROW_ID)
@click.option("--as", "email", required=True, help="the approving admin's email")
def qa_approve(proposal_id: int, email: str) -> None:
    _decide(proposal_id, email, True)


@qa.command("reject", help="Reject a knowledge-base proposal (admins).")
@click.argument("proposal_id", type=ROW_ID)
@click.option("--as", "email", required=True, help="the rejecting admin's email")
def qa_reject(proposal_id: int, email: str) -> None:
    _decide(proposal_id, email, False)


@qa.command("build-index", help="Compute the knowledge base's vectors (HERALD_KB_DIR) into HERALD_CACHE_DIR now, "
                                "as an image build does, so that the first start finds them and does not "
                                "spend a minute of CPU on them.")
@click.option("--ship", is_flag=True, help="Store them in the knowledge base's own vectors/ directory instead, "
                                           "to ship with its files (as config/kb does).")
def qa_build_index(ship: bool) -> None:
    from bot.core.onboarding import index

    settings = get_settings()
    store = index.shipped_store(settings.kb_dir) if ship else settings.cache_dir / "vectors"
    ready = None if ship else index.ready_store(settings.kb_dir, store)
    if ready is not None:
        click.echo(f"the vectors of {settings.kb_dir} are already in {ready}")
        return
    if ship:  # built afresh: the texts embedded may have changed with the code (the calibration's),
        # not only with the files; earlier versions' vectors would only weigh down the package
        for old in [*store.glob("*.npy"), *store.glob(f"index-*{index.MARKER_SUFFIX}")]:
            old.unlink()
    code = index.main(["--kb-dir", str(settings.kb_dir), "--store", str(store), "--niceness", "0"])
    if code:
        click.echo("herald: could not build the index (see above); the server will build it on start", err=True)
        sys.exit(code)
    click.echo(f"stored the vectors of {settings.kb_dir} in {store}")
