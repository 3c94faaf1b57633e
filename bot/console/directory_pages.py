"""The directory, engagement and hand-off pages."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from bot.console.charts import bar_svg
from bot.console.filters import every, query
from bot.console.web import Page, page, whole_number
from bot.core.insights import directory, engagement
from bot.core.onboarding import learning
from bot.core.onboarding.assistant import answered_handoffs, open_handoffs_page
from bot.core.onboarding.journeys import JourneyConfigError, load_journeys
from bot.service import Herald
from storage.models import KBProposal, Question, StaffRole

WINDOWS = (30, 90, 365)


def add_directory_routes(app: web.Application, herald: Herald) -> None:
    async def directory_page(current: Page) -> web.StreamResponse:
        q = current.request.query
        wanted = directory.DirectoryFilter(text=q.get("q", "")[:100].strip(), tier=q.get("tier", "")[:50],
                                           region=q.get("region", "")[:50])
        result = await directory.organisations(current.me, wanted, offset=whole_number(q.get("offset", "")))
        return current.render("directory.html", result=result, wanted=wanted)

    async def organisation_page(current: Page) -> web.StreamResponse:
        offset = whole_number(current.request.query.get("offset", ""))
        org, members, next_offset = await directory.organisation(
            current.me, current.request.match_info["org"][:100], offset=offset)
        return current.render("organisation.html", org=org, members=members, next_offset=next_offset)

    async def engagement_page(current: Page) -> web.StreamResponse:
        days = whole_number(current.request.query.get("days", ""), 90)
        days = days if days in WINDOWS else 90
        figures = await _figures(current, since=herald.clock.now() - timedelta(days=days))
        return current.render("engagement.html", days=days, windows=WINDOWS, figures=figures,
                              topics=herald.catalog.topics, bar=bar_svg,
                              refreshed_every=every(herald.settings.tick_seconds))

    async def questions_page(current: Page) -> web.StreamResponse:
        answered = await answered_handoffs(current.me)
        after = whole_number(current.request.query.get("after", "")) or None
        waiting = await open_handoffs_page(current.me, after=after)
        proposals = await learning.proposals_of([q.id for q in answered])
        return current.render("questions.html", waiting=waiting, answered=answered, paged=after is not None,
                              proposals=proposals, note=await _taught_note(current.request.query, answered, proposals),
                              phrasing=learning.PHRASING, entry=learning.ENTRY,
                              suggested_entry=learning.suggested_entry)

    async def reply(current: Page) -> web.StreamResponse:
        form = await current.form()
        question_id = whole_number(current.request.match_info["id"])
        await herald.relay_reply(question_id, current.me, form.get("reply", ""))
        return current.redirect("/console/questions")

    async def learn(current: Page) -> web.StreamResponse:
        """The chat buttons under an answered hand-off, in the console: the question as a phrasing
        of the entry the assistant suggested, or as a new entry with the CAM's reply."""
        form = await current.form()
        question_id = whole_number(current.request.match_info["id"])
        proposal, created = await learning.propose(question_id, current.me, form.get("kind", ""),
                                                   now=herald.clock.now())
        # Post/Redirect/Get: the questions page says what was done, and a refresh proposes nothing
        said = {"taught": question_id, "kind": proposal.kind, "proposal": proposal.id, "already": "" if created else 1}
        return current.redirect(f"/console/questions{query({}, **said)}#answered-{question_id}")

    async def proposals_page(current: Page) -> web.StreamResponse:
        question = current.request.query.get("q", "")[:500].strip()
        tried = None
        if question:  # only then the knowledge base (a first call starts loading it)
            kb = await herald.knowledge_base()
            # off the event loop, as the assistant answers (about 20 ms of CPU with the embedding model)
            tried = await asyncio.to_thread(kb.explain, question)
        return current.render("kb_proposals.html", proposals=await learning.pending(current.me), tried=tried,
                              may_decide=current.me.role == StaffRole.ADMIN.value)

    def decision(approve: bool):  # noqa: ANN202
        async def decide(current: Page) -> web.StreamResponse:
            await learning.decide(whole_number(current.request.match_info["id"]), current.me, approve=approve,
                                  now=herald.clock.now(), kb_dir=herald.settings.kb_dir, origin={"via": "console"})
            return current.redirect("/console/kb-proposals")
        return decide

    app.router.add_get("/console/kb-proposals", page(herald, proposals_page))
    app.router.add_post("/console/kb-proposals/{id}/approve", page(herald, decision(True)))
    app.router.add_post("/console/kb-proposals/{id}/reject", page(herald, decision(False)))
    app.router.add_get("/console/directory", page(herald, directory_page))
    app.router.add_get("/console/directory/{org}", page(herald, organisation_page))
    app.router.add_get("/console/engagement", page(herald, engagement_page))
    app.router.add_get("/console/questions", page(herald, questions_page))
    app.router.add_post("/console/questions/{id}/reply", page(herald, reply, keeps=("reply",)))
    app.router.add_post("/console/questions/{id}/learn", page(herald, learn))


@dataclass(frozen=True)
class Figures:
    """The engagement page's figures for one scope and window."""

    notices: engagement.Breakdowns  # added up from what the clock worked out, as of when it did
    stages: list[dict]
    questions: dict[str, int]
    unanswered: list[dict]


async def _figures(current: Page, *, since: datetime) -> Figures:
    try:
        journeys = load_journeys()
    except JourneyConfigError:
        journeys = None
    return Figures(await engagement.breakdowns(current.me, since=since),
                   _stages(await engagement.journey_stages(current.me, journeys), journeys),
                   await engagement.questions(current.me, since=since),
                   await engagement.unanswered(current.me, since=since))


def _stages(rows: list[dict], journeys) -> list[dict]:  # noqa: ANN001
    """Members per journey at each number of steps done; the last stage is 'complete'."""
    by_journey: dict[str, dict] = {}
    for row in rows:
        journey = journeys.for_role(row["role"]) if journeys is not None else None
        name = journey.name if journey is not None else "(journeys are off)"
        total = len(journey.steps) if journey is not None else 0
        entry = by_journey.setdefault(name, {"journey": name, "total": total, "counts": [0] * (total + 1),
                                             "members": 0})
        done = min(int(row["done"]), total)
        entry["counts"][done] += row["n"]
        entry["members"] += row["n"]
    return sorted(by_journey.values(), key=lambda e: e["journey"])


async def _taught_note(asked: Mapping[str, str], answered: list[Question],
                       proposals: dict[int, list[KBProposal]]) -> str:
    """The note the questions page shows after a click on 'teach' (`learn` redirects here saying
    which question, kind and proposal). Read from the page's own answered hand-offs, so an edited
    address can only speak of those: another hand-off's proposal (the same question taught
    before) is named by number and state, never by its text."""
    question_id = whole_number(asked.get("taught", ""))
    if question_id not in {q.id for q in answered}:
        return ""
    mine = [p for p in proposals.get(question_id, []) if p.kind == asked.get("kind")]
    if mine:  # chat's code marks, plain here
        return learning.proposal_note(mine[0], not asked.get("already")).replace("`", "")
    other = await KBProposal.get_or_none(id=whole_number(asked.get("proposal", "")))
    if other is None:
        return ""
    return f"Already proposed (#{other.id}, {other.status}) from another hand-off with the same question."
