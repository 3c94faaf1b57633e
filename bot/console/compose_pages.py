"""Compose, preview, send, schedule, cancel, edit and retract: the Slack modal's form on a page,
run through the same core calls as chat (`sending.create_draft`, `send_draft`, `cancel_draft`,
`revisions.edit_notice`, `retract_notice`), so the checks and audit events are the same."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.console.notice_pages import editable, notice_id, render_notice
from bot.console.web import Page, page
from bot.core.commands.parser import (
    SendCommand,
    parse_deadline,
    parse_link,
    parse_reminders,
    parse_time,
)
from bot.core.directory.audiences import (
    count_recipients,
    parse_audience,
    unmatched_value_warnings,
)
from bot.core.directory.permissions import require_sender
from bot.core.insights.notices import readable_notice
from bot.core.notices import revisions, sending
from bot.core.notices.formatting import FORMAT_HELP
from bot.service import Herald
from bot.topics import IMPORTANCE, parse_importance

WRITTEN = ("title", "body")  # given back to copy when the session ended before the form was sent
FIELDS = ("topic", "importance", "audience", "title", "body", "link", "deadline", "at", "reminders")


def command_from(form: dict[str, str]) -> SendCommand:
    """The form as the same command the inline `send` builds (same parsing, same messages)."""
    value = {name: form.get(name, "").strip() for name in FIELDS}
    return SendCommand(
        importance=value["importance"], topic=value["topic"], audience=value["audience"], title=value["title"],
        body=form.get("body", "").replace("\r\n", "\n").strip(),
        link=parse_link(value["link"]) if value["link"] else "",
        deadline=parse_deadline(value["deadline"]) if value["deadline"] else None,
        scheduled_at=parse_time(value["at"], what="send time") if value["at"] else None,
        reminder_hours=parse_reminders(value["reminders"]) if value["reminders"] else None)


def add_compose_routes(app: web.Application, herald: Herald) -> None:
    def form_page(current: Page, values: dict[str, str], error: str = "", status: int = 200) -> web.Response:
        return current.render("compose.html", values=values, error=error, topics=herald.catalog.topics,
                              levels=list(IMPORTANCE.values()), format_help=FORMAT_HELP, status=status)

    async def compose_form(current: Page) -> web.StreamResponse:
        require_sender(current.me)
        return form_page(current, {"importance": "need-to-know", "audience": "all"})

    async def compose(current: Page) -> web.StreamResponse:
        require_sender(current.me)
        form = await current.form()
        values = {name: form.get(name, "") for name in FIELDS}
        try:
            preview = await sending.create_draft(current.me, command_from(form), herald.catalog,
                                                 now=herald.clock.now())
        except UserError as exc:
            return form_page(current, values, str(exc), status=400)
        return current.redirect(f"/console/notices/{preview.notice.id}")

    async def audience_count(current: Page) -> web.StreamResponse:
        q = current.request.query
        try:
            audience = parse_audience(q.get("audience", "")[:2000], roles=herald.catalog.roles)
            topic = herald.catalog.get(q.get("topic", ""))
            policy = parse_importance(q["importance"]) if q.get("importance") else None
        except UserError as exc:
            return current.json({"count": None, "error": str(exc), "warnings": []})
        return current.json({"count": await count_recipients(audience, topic, policy), "error": "",
                             "warnings": await unmatched_value_warnings(audience)})

    async def send(current: Page) -> web.StreamResponse:
        result = await sending.send_draft(notice_id(current), current.me, herald.catalog, now=herald.clock.now(),
                                          platform_policy=herald.settings.platform_policy)
        herald.outbox.wake()
        return current.redirect(f"/console/notices/{result.notice.id}")

    async def cancel(current: Page) -> web.StreamResponse:
        notice = await sending.cancel_draft(notice_id(current), current.me, now=herald.clock.now())
        return current.redirect(f"/console/notices/{notice.id}")

    async def edit(current: Page) -> web.StreamResponse:
        form = await current.form()
        typed = {"title": form.get("title", ""), "body": form.get("body", "").replace("\r\n", "\n"),
                 "link": form.get("link", "").strip(), "material": form.get("material") == "yes"}
        try:
            result = await revisions.edit_notice(notice_id(current), current.me, herald.catalog,
                                                 now=herald.clock.now(), **typed)
        except (PermissionDenied, NotFound):
            raise
        except UserError as exc:
            return await refused_edit(current, typed, str(exc))
        herald.outbox.wake()
        return current.redirect(f"/console/notices/{result.notice.id}")

    async def refused_edit(current: Page, typed: dict[str, Any], reason: str) -> web.StreamResponse:
        """The notice's page again (400) with the Edit form open, holding what was typed, and
        the reason, as Compose answers; the error page when the form is not on offer (any more)."""
        notice = await readable_notice(notice_id(current), current.me)
        if not editable(current, notice):
            raise UserError(reason)
        return await render_notice(current, herald, notice, edit=typed, edit_error=reason, status=400)

    async def retract(current: Page) -> web.StreamResponse:
        form = await current.form()
        notice, _, _ = await revisions.retract_notice(notice_id(current), current.me,
                                                      reason=form.get("reason", ""), now=herald.clock.now())
        herald.outbox.wake()
        return current.redirect(f"/console/notices/{notice.id}")

    app.router.add_get("/console/compose", page(herald, compose_form))
    app.router.add_post("/console/compose", page(herald, compose, keeps=WRITTEN))
    app.router.add_get("/console/audience-count", page(herald, audience_count, json=True))
    app.router.add_post("/console/notices/{id}/send", page(herald, send))
    app.router.add_post("/console/notices/{id}/cancel", page(herald, cancel))
    app.router.add_post("/console/notices/{id}/edit", page(herald, edit, keeps=WRITTEN))
    app.router.add_post("/console/notices/{id}/retract", page(herald, retract))
