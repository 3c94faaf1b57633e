"""`GET /go/<token>`: an A/B test's link in Teams, counted and then redirected to the notice's link
(the token names the notice and member, never the address, so it is no open redirect)."""

from __future__ import annotations

from aiohttp import web

from bot.core.notices.interactions import open_tracked_link
from bot.service import Herald


def add_link_routes(app: web.Application, herald: Herald) -> None:
    async def go(request: web.Request) -> web.StreamResponse:
        tracker = herald.outbox.link_tracker
        target = await open_tracked_link(tracker, request.match_info["token"], now=herald.clock.now()) \
            if tracker is not None else None
        if target is None:
            return web.Response(status=404, text="This link is not valid, or the notice no longer has it.",
                                headers={"Cache-Control": "no-store"})
        raise web.HTTPFound(target, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    app.router.add_get("/go/{token}", go)
