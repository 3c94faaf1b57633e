"""Notice pages: the filtered list, one notice (funnel, chart, breakdown, reminders, escalations,
revisions, audit events, previews), the people who have not acknowledged, live counts for the
page's script, the report downloads, and the whole-chain check."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from bot.channels.slack_blocks import notice_blocks
from bot.channels.teams_cards import notice_card
from bot.common.errors import PermissionDenied, UserError
from bot.console.blockkit import blocks_html
from bot.console.charts import bar_svg, timeline_svg
from bot.console.web import HEADERS, Page, page, whole_number
from bot.core.compliance.reports import FORMATS, parse_moment, report_chunks, report_scope
from bot.core.compliance.verify import verify_chain
from bot.core.directory.audiences import parse_audience, unmatched_value_warnings
from bot.core.insights import notices as insights
from bot.core.notices.views import notice_view
from bot.service import Herald
from bot.topics import IMPORTANCE
from storage.models import NoticeExperiment, NoticeStatus, StaffRole, Survey

log = logging.getLogger(__name__)

STATUSES = [s.value for s in NoticeStatus]
STATES = {"": "not acknowledged", "delivered": "delivered, not acknowledged", "failed": "delivery failed",
          "pending": "not delivered yet", "digest": "kept for the digest", "cancelled": "cancelled"}


def notice_id(current: Page) -> int:
    raw = current.request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise UserError("A notice id is a number, e.g. /console/notices/42.")
    return int(raw)


def previews(herald: Herald, notice) -> dict[str, Any]:  # noqa: ANN001
    """The notice as Slack and Teams get it: the Block Kit drawn as HTML, the card as JSON for
    Microsoft's renderer in the page."""
    view = notice_view(notice, herald.catalog)
    card = notice_card(view)
    return {"slack_html": blocks_html(notice_blocks(view)), "card_json": json.dumps(card, ensure_ascii=False),
            "card_pretty": json.dumps(card, indent=2, ensure_ascii=False)}


def may_change(current: Page, notice) -> bool:  # noqa: ANN001
    """Whether to offer Send/Edit/Retract (the core checks again: this only hides buttons)."""
    staff = current.me
    return staff.role == StaffRole.ADMIN.value or (
        staff.role == StaffRole.CAM.value and notice.author_id == staff.id)


def editable(current: Page, notice) -> bool:  # noqa: ANN001
    """Whether the notice's page offers the Edit form (as notice.html decides)."""
    return may_change(current, notice) and notice.status in (
        NoticeStatus.SCHEDULED.value, NoticeStatus.SENDING.value, NoticeStatus.SENT.value)


async def render_notice(current: Page, herald: Herald, notice, *, edit: dict[str, Any] | None = None,  # noqa: ANN001
                        edit_error: str = "", status: int = 200) -> web.Response:
    """A notice's page (a draft's, or a sent notice's with its figures). `edit`: what a refused
    edit posted, put back in the open Edit form beside `edit_error`, so nothing typed is lost."""
    now = herald.clock.now()
    context: dict[str, Any] = {"notice": notice, "may_change": may_change(current, notice),
                               "bar": bar_svg, "states": STATES, **previews(herald, notice)}
    topic = herald.catalog.topics.get(notice.topic)
    context["topic_title"] = topic.title if topic else notice.topic
    if notice.status in (NoticeStatus.DRAFT.value, NoticeStatus.CANCELLED.value):
        context["warnings"] = await unmatched_value_warnings(parse_audience(notice.audience,
                                                                            roles=herald.catalog.roles))
        return current.render("draft.html", status=status, **context)
    scope = await report_scope(current.me, notice)  # a colleague's notice escalated to me: my partners'
    context["survey_of"], context["has_variants"], overview, line = await asyncio.gather(
        Survey.exists(notice_id=notice.id), NoticeExperiment.exists(notice_id=notice.id),
        insights.overview(notice, scope), insights.timeline(notice, now=now, scope=scope))  # at once on PostgreSQL
    context.update(overview=overview, timeline=line, scope=scope,
                   chart=timeline_svg(line, recipients=overview.summary["recipients"],
                                      delivered=overview.summary["delivered"]) if line else None,
                   is_auditor=current.me.role in (StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value),
                   edit=edit or {"title": notice.title, "body": notice.body, "link": notice.link or "",
                                 "material": False},
                   edit_error=edit_error)
    return current.render("notice.html", status=status, **context)


def add_notice_routes(app: web.Application, herald: Herald) -> None:
    async def list_page(current: Page) -> web.StreamResponse:
        q = current.request.query
        filters = insights.NoticeFilters(
            topic=q.get("topic", "") if q.get("topic", "") in herald.catalog.topics else "",
            importance=q.get("importance", "") if q.get("importance", "") in {i.value for i in IMPORTANCE} else "",
            status=q.get("status", "") if q.get("status", "") in STATUSES else "",
            author=q.get("author", "")[:254],
            since=parse_moment(q["since"], what="from") if q.get("since") else None,
            until=parse_moment(q["until"], what="to", end_of_day=True) if q.get("until") else None)
        result = await insights.list_notices(current.me, filters, before=whole_number(q.get("before", "")) or None)
        return current.render("notices.html", page=result, filters=filters, topics=herald.catalog.topics,
                              importances=[p.level.value for p in IMPORTANCE.values()], statuses=STATUSES,
                              bar=bar_svg)

    async def notice_page(current: Page) -> web.StreamResponse:
        notice = await insights.readable_notice(notice_id(current), current.me)
        return await render_notice(current, herald, notice)

    async def live(current: Page) -> web.StreamResponse:
        notice = await insights.readable_notice(notice_id(current), current.me)
        scope = await report_scope(current.me, notice)
        counts = await insights.live_counts(notice, scope)
        chart = None
        if current.request.query.get("chart") == "1":  # the page asks every few polls: a GROUP BY over the acks
            line = await insights.timeline(notice, now=herald.clock.now(), scope=scope)
            chart = str(timeline_svg(line, recipients=counts["recipients"], delivered=counts["delivered"])) if line else None
        return current.json({"status": notice.status, **counts,
                             "outstanding": max(counts["delivered"] - counts["acknowledged"], 0), "chart": chart})

    async def people(current: Page) -> web.StreamResponse:
        notice = await insights.readable_notice(notice_id(current), current.me)
        q = current.request.query
        wanted = insights.PeopleFilter(organisation=q.get("org", "")[:100], tier=q.get("tier", "")[:50],
                                       region=q.get("region", "")[:50],
                                       state=q.get("state", "") if q.get("state", "") in STATES else "")
        scope = await report_scope(current.me, notice)
        result = await insights.not_acknowledged(notice, wanted, scope=scope, after=q.get("after", "")[:40])
        reasons = await insights.failure_reasons(notice.id, scope) if wanted.state == "failed" else []
        return current.render("people.html", notice=notice, wanted=wanted, result=result, states=STATES,
                              reasons=reasons, scope=scope)

    async def report(current: Page) -> web.StreamResponse:
        fmt = current.request.match_info["format"]
        if fmt not in FORMATS:
            raise UserError("Reports come as csv or json.")
        notice = await insights.readable_notice(notice_id(current), current.me)
        chunks = report_chunks(notice.id, fmt, now=herald.clock.now(), actor=f"console:{current.me.email}",  # type: ignore[arg-type]
                               reader=current.me)
        first = await anext(chunks)
        response = web.StreamResponse(headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="notice-{notice.id}-report.{fmt}"'})
        response.content_type = "text/csv" if fmt == "csv" else "application/json"
        response.charset = "utf-8"
        try:
            await response.prepare(current.request)
            await response.write(first.encode("utf-8"))
            async for chunk in chunks:
                await response.write(chunk.encode("utf-8"))
            await response.write_eof()
        except ConnectionError:
            log.info("console report of notice %s: the browser went away", notice.id)
        finally:
            await chunks.aclose()
        return response

    async def verify(current: Page) -> web.StreamResponse:
        if current.me.role not in (StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value):
            raise PermissionDenied("Only compliance officers and admins check the whole audit chain.")
        result = await verify_chain()
        back = whole_number((await current.form()).get("notice", ""))
        return current.render("verify.html", result=result, back=back)

    app.router.add_get("/console/notices", page(herald, list_page))
    app.router.add_get("/console/notices/{id}", page(herald, notice_page))
    app.router.add_get("/console/notices/{id}/live.json", page(herald, live, json=True))
    app.router.add_get("/console/notices/{id}/people", page(herald, people))
    app.router.add_get("/console/notices/{id}/report.{format}", page(herald, report, audited=True), allow_head=False)
    app.router.add_post("/console/audit/verify", page(herald, verify))
