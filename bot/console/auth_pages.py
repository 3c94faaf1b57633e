"""Signing in with a link from chat or the CLI, and signing out.

Opening the link (GET) only shows a button: chat clients and link scanners fetch links to
preview them, and a GET that used up the single-use token would leave the person with a dead
link. The button POSTs the token, with a double-submit cookie since there is no session yet.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from bot.console.web import (
    COOKIE,
    HEADERS,
    PRE_COOKIE,
    Forbidden,
    Page,
    clear_cookie,
    new_pre_token,
    page,
    same_origin,
    set_cookie,
)
from bot.core.directory.console_access import (
    SESSION_LIFETIME,
    SignInRefused,
    end_session,
    redeem_link,
)
from bot.service import Herald


def add_auth_routes(app: web.Application, herald: Herald) -> None:
    async def sign_in_form(current: Page) -> web.StreamResponse:
        token = current.request.query.get("token", "")
        if current.staff is not None and not token:
            return current.redirect("/console/notices")
        pre = new_pre_token()
        response = current.render("sign_in.html", token=token, pre=pre)
        set_cookie(response, PRE_COOKIE, pre, request=current.request, herald=herald, max_age=900)
        return response

    async def sign_in(current: Page) -> web.StreamResponse:
        request = current.request
        form = await current.form()
        pre = request.cookies.get(PRE_COOKIE, "")
        if not same_origin(request) or not pre or not hmac.compare_digest(pre.encode(), form.get("pre", "").encode()):
            raise Forbidden("This sign-in form was not sent from the sign-in page. Open your link again.")
        try:
            opened = await redeem_link(form.get("token", ""), now=herald.clock.now())
        except SignInRefused as exc:
            response = current.render("signed_out.html", status=403, reason=str(exc))
            clear_cookie(response, PRE_COOKIE)
            return response
        response = web.Response(status=303, headers={**HEADERS, "Location": "/console/notices"})
        set_cookie(response, COOKIE, opened.token, request=request, herald=herald,
                   max_age=int(SESSION_LIFETIME.total_seconds()))
        clear_cookie(response, PRE_COOKIE)
        return response

    async def sign_out(current: Page) -> web.StreamResponse:
        assert current.session is not None
        await end_session(current.session, now=herald.clock.now())
        response = current.render("signed_out.html", reason="You are signed out.")
        clear_cookie(response, COOKIE)
        return response

    async def home(current: Page) -> web.StreamResponse:
        return current.redirect("/console/notices")

    app.router.add_get("/console", page(herald, home, signed_in=False))
    app.router.add_get("/console/", page(herald, home))
    app.router.add_get("/console/sign-in", page(herald, sign_in_form, signed_in=False))
    app.router.add_post("/console/sign-in", page(herald, sign_in, signed_in=False))
    app.router.add_post("/console/sign-out", page(herald, sign_out))
