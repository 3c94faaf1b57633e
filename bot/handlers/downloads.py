"""`/reports/download?token=...`: a report's CSV behind a short-lived signed link (handed out in
Teams, where the bot cannot upload files into a 1:1 chat).

Opening the link (GET) only shows a Download button: link scanners and preview fetchers (Safe
Links, mail gateways, unfurlers) GET every link they see, and an export is written to the audit
trail (`report.exported`). The button POSTs the same token; the POST streams the CSV and audits.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from bot.core.compliance.report_links import verify
from bot.core.compliance.reports import can_read_notice, report_chunks
from bot.service import Herald
from storage.models import Notice, Staff

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the address
}


def _download_page(notice_id: int, token: str) -> str:
    """The page the link opens: nothing exported yet, one button that POSTs the token."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Herald: report of notice #{notice_id}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
<h1 style="font-size:1.3rem">Acknowledgement report of notice #{notice_id}</h1>
<form method="post" action="/reports/download">
<input type="hidden" name="token" value="{escape(token)}">
<p>The CSV is produced when you download it, and the download is recorded on the audit trail.</p>
<button type="submit" id="download">Download the CSV report</button>
</form></body></html>
"""


def add_download_routes(app: web.Application, herald: Herald) -> None:
    async def granted(token: str) -> tuple[Notice, Staff] | web.Response:
        """The notice and the person a valid link is for, or the refusal to answer with."""
        grant = verify(herald.settings, token, now=herald.clock.now())
        if grant is None:
            return web.json_response({"error": "this link is invalid or has expired; ask Herald again"}, status=403)
        notice_id, staff_id = grant
        staff = await Staff.get_or_none(id=staff_id)
        notice = await Notice.get_or_none(id=notice_id)
        if notice is None or staff is None or not await can_read_notice(staff, notice):
            return web.json_response({"error": "you may no longer read this report"}, status=403)
        return notice, staff

    async def show(request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        found = await granted(token)
        if isinstance(found, web.Response):
            return found
        notice, _ = found
        return web.Response(text=_download_page(notice.id, token), content_type="text/html", headers=PAGE_HEADERS)

    async def download(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        found = await granted(str(form.get("token", "")))
        if isinstance(found, web.Response):
            return found
        notice, staff = found
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="notice-{notice.id}-report.csv"',
            "Cache-Control": "no-store"})
        await response.prepare(request)
        async for chunk in report_chunks(notice.id, "csv", now=herald.clock.now(), actor=staff.email, reader=staff):
            await response.write(chunk.encode("utf-8"))
        await response.write_eof()
        return response

    # No automatic HEAD (aiohttp runs the GET handler for it); the GET itself exports nothing.
    app.router.add_get("/reports/download", show, allow_head=False)
    app.router.add_post("/reports/download", download)
