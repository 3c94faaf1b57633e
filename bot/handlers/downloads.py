"""`GET /reports/download?token=...`: a report's CSV behind a short-lived signed link (handed
out in Teams, where the bot cannot upload files into a 1:1 chat)."""

from __future__ import annotations

from aiohttp import web

from bot.core.compliance.report_links import verify
from bot.core.compliance.reports import can_read_notice, report_chunks
from bot.service import Herald
from storage.models import Notice, Staff


def add_download_routes(app: web.Application, herald: Herald) -> None:
    async def download(request: web.Request) -> web.StreamResponse:
        grant = verify(herald.settings, request.query.get("token", ""), now=herald.clock.now())
        if grant is None:
            return web.json_response({"error": "this link is invalid or has expired; ask Herald again"}, status=403)
        notice_id, staff_id = grant
        staff = await Staff.get_or_none(id=staff_id)
        notice = await Notice.get_or_none(id=notice_id)
        if notice is None or staff is None or not await can_read_notice(staff, notice):
            return web.json_response({"error": "you may no longer read this report"}, status=403)
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="notice-{notice_id}-report.csv"',
            "Cache-Control": "no-store"})
        await response.prepare(request)
        async for chunk in report_chunks(notice_id, "csv", now=herald.clock.now(), actor=staff.email, reader=staff):
            await response.write(chunk.encode("utf-8"))
        await response.write_eof()
        return response

    # No automatic HEAD (aiohttp runs the GET handler for it): a link preview's HEAD would be an
    # export, written to the audit trail, of a report nobody downloaded.
    app.router.add_get("/reports/download", download, allow_head=False)
