"""Survey results and A/B test pages: the lists, one survey's results (response rate,
distribution, NPS, breakdowns, anonymity already applied by the core), and a notice's variants
compared with the roll-out-the-winner form.

The figures come from the same core functions as chat, the CLI and /api/v1
(`surveys.results.survey_results`, `notices.ab_results.variant_results`), and the roll-out is
the CLI's `notices.rollout.roll_out`, which checks the role and writes the audit events."""

from __future__ import annotations

from aiohttp import web

from bot.common.errors import UserError
from bot.console.charts import bar_svg
from bot.console.notice_pages import may_change, notice_id
from bot.console.web import HEADERS, Page, page, whole_number
from bot.core.insights import notices as insights
from bot.core.notices.ab_results import list_experiments, variant_results
from bot.core.notices.rollout import roll_out
from bot.core.surveys.listing import list_surveys
from bot.core.surveys.results import DIMENSIONS, MIN_SEGMENT_ANSWERS, OTHER, results_csv, survey_results
from bot.service import Herald

METRICS = {"ack_rate": "Acknowledgement rate", "interaction_rate": "Button presses (any button)",
           "time_to_acknowledge": "Time to acknowledge"}
ANSWERS_SHOWN = 200  # named answers listed on the page; the API has them all


def add_survey_routes(app: web.Application, herald: Herald) -> None:
    async def surveys_page(current: Page) -> web.StreamResponse:
        found = await list_surveys(current.me, before=whole_number(current.request.query.get("before", "")) or None)
        return current.render("surveys.html", surveys=found.surveys, next_before=found.next_before, bar=bar_svg)

    async def survey_page(current: Page) -> web.StreamResponse:
        results = await survey_results(notice_id(current), current.me, answers_listed=ANSWERS_SHOWN)
        return current.render("survey.html", r=results, doc=results["survey"], dimensions=DIMENSIONS,
                              threshold=MIN_SEGMENT_ANSWERS, other=OTHER, answers_shown=ANSWERS_SHOWN, bar=bar_svg)

    async def survey_csv(current: Page) -> web.StreamResponse:
        results = await survey_results(notice_id(current), current.me, answers_listed=0)  # figures only
        return web.Response(text=results_csv(results), content_type="text/csv", charset="utf-8", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="survey-{results["survey"]["id"]}-results.csv"'})

    async def experiments_page(current: Page) -> web.StreamResponse:
        items, next_before = await list_experiments(
            current.me, before=whole_number(current.request.query.get("before", "")) or None)
        return current.render("ab_tests.html", tests=items, next_before=next_before)

    async def variants_page(current: Page) -> web.StreamResponse:
        notice = await insights.readable_notice(notice_id(current), current.me)
        results = await variant_results(notice.id, current.me)
        return current.render("variants.html", notice=notice, r=results, metrics=METRICS, bar=bar_svg,
                              may_roll_out=may_change(current, notice) and _may_roll_out(results),
                              rolled=current.request.query.get("rolled", "")[:1])

    async def rollout(current: Page) -> web.StreamResponse:
        variant = (await current.form()).get("variant", "").strip().upper()
        if len(variant) != 1:
            raise UserError("Choose the variant to send to the rest of the audience.")
        result = await roll_out(notice_id(current), variant, current.me, catalog=herald.catalog,
                                now=herald.clock.now())
        herald.outbox.wake()
        return current.redirect(f"/console/notices/{result.notice.id}/variants?rolled={result.variant}")

    app.router.add_get("/console/surveys", page(herald, surveys_page))
    app.router.add_get("/console/surveys/{id}", page(herald, survey_page))
    app.router.add_get("/console/surveys/{id}/results.csv", page(herald, survey_csv), allow_head=False)
    app.router.add_get("/console/ab-tests", page(herald, experiments_page))
    app.router.add_get("/console/notices/{id}/variants", page(herald, variants_page))
    app.router.add_post("/console/notices/{id}/rollout", page(herald, rollout))


def _may_roll_out(results: dict) -> bool:
    """A first share was sent, nobody was rolled out yet and the notice is out (the core checks too)."""
    return (results["share_percent"] is not None and not results["winner"]
            and results["status"] in ("sending", "sent"))
