"""What every console page shares: the session cookie, CSRF tokens, security headers, templates,
and turning errors into a short page (a person's mistake in words, anything else an apology).

Sessions: the browser holds a random token in an HttpOnly, SameSite=Lax cookie scoped to
/console (Secure when the request came over https or HERALD_PUBLIC_URL is https); the database
holds its SHA-256 (`bot.core.directory.console_access`).

CSRF: every form carries a synchronizer token bound to the session, an HMAC of the session
token, so it needs no storage and dies with the session; fetch() calls send it in a header.
Requests that change anything are POSTs, and a POST whose Origin is another site is refused
before the token is even looked at; a GET that writes to the audit trail (a report export) is
refused when the browser says another site sent it (Sec-Fetch-Site). The sign-in form, which has no session yet, uses a
double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.common.text import without_control_characters
from bot.core.directory.console_access import session_staff
from bot.service import Herald
from storage.models import ConsoleSession, Staff

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "herald_console"
PRE_COOKIE = "herald_console_signin"  # the sign-in form's double-submit token
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
PATH = "/console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}

HERALD = web.AppKey("console_herald", Herald)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)

Handler = Callable[["Page"], Awaitable[web.StreamResponse]]


class Forbidden(PermissionDenied):
    """A forged or stale form (CSRF), or a request from another site."""


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(("html",), default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    from bot.console import filters

    env.filters.update(filters.FILTERS)
    env.globals["with_query"] = filters.query
    return env


def csrf_for(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"herald-console-csrf", hashlib.sha256).hexdigest()


def secure_request(request: web.Request, herald: Herald) -> bool:
    public = herald.settings.public_url or ""
    return request.secure or public.startswith("https://")


def set_cookie(response: web.StreamResponse, name: str, value: str, *, request: web.Request, herald: Herald,
               max_age: int | None) -> None:
    response.set_cookie(name, value, path=PATH, httponly=True, samesite="Lax", max_age=max_age,
                        secure=secure_request(request, herald))


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PATH)


class Page:
    """One request to a console page: who is signed in, and how to answer."""

    def __init__(self, request: web.Request, herald: Herald, session: ConsoleSession | None,
                 staff: Staff | None, token: str = "") -> None:
        self.request = request
        self.herald = herald
        self.session = session
        self.staff = staff
        self.csrf = csrf_for(token) if token else ""

    @property
    def me(self) -> Staff:
        assert self.staff is not None
        return self.staff

    def render(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        env = self.request.app[TEMPLATES]
        html = env.get_template(template).render(
            staff=self.staff, csrf=self.csrf, csrf_field=CSRF_FIELD, sandbox=self.herald.sandbox,
            path=self.request.path, query=self.request.query, **context)
        return web.Response(text=html, content_type="text/html", status=status, headers=HEADERS)

    def redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={**HEADERS, "Location": location})

    async def form(self) -> dict[str, str]:
        """The posted fields, without control characters (see bot.common.text)."""
        data = await self.request.post()
        return {k: without_control_characters(v) for k, v in data.items() if isinstance(v, str)}

    def json(self, data: Any, status: int = 200) -> web.Response:
        return web.json_response(data, status=status, headers=HEADERS)


def same_origin(request: web.Request) -> bool:
    """A POST must come from a page of ours: the browser's Origin header (sent by every current
    browser on POST) must name this host. No Origin (old clients, curl) falls back to the token."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.host.lower()


def from_our_pages(request: web.Request) -> bool:
    """Whether a GET may be one of our own pages' links, by the browser's Sec-Fetch-Site: a page
    of ours (same-origin), or typed or bookmarked (none). Another site (a top-level navigation
    carries the SameSite=Lax cookie) is not; no header (old browsers, curl) is let through, as a
    POST without Origin is."""
    return request.headers.get("Sec-Fetch-Site", "same-origin").strip().lower() in ("same-origin", "none")


async def check_csrf(request: web.Request, token: str) -> None:
    if not same_origin(request):
        raise Forbidden("This form was sent from another site, so Herald refused it.")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        sent = str((await request.post()).get(CSRF_FIELD, ""))
    # as bytes: compare_digest refuses str holding non-ASCII (a forged field would be a 500)
    if not token or not sent or not hmac.compare_digest(sent.encode(), csrf_for(token).encode()):
        raise Forbidden("This form is out of date or was not sent by the console (CSRF check failed). "
                        "Reload the page and try again.")


SESSION_ENDED = "Your console session has ended. Ask Herald for a new sign-in link."


async def signed_out_keeping(current: Page, fields: tuple[str, ...]) -> web.Response:
    """The signed-out page (401) for a form posted after the session ended, holding what was
    written in `fields` to copy: the console does nothing with it (no session, no CSRF check),
    and Back would fetch an empty form (no-store). Only for a POST from our own pages, so
    another site cannot put its text on a console page."""
    written = ""
    if same_origin(current.request):
        form = await current.form()
        written = "\n\n".join(value for value in (form.get(name, "").strip() for name in fields) if value)
    return current.render("signed_out.html", status=401, reason=SESSION_ENDED, kept=written)


def page(herald: Herald, handler: Handler, *, signed_in: bool = True, json: bool = False, audited: bool = False,
         keeps: tuple[str, ...] = ()) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler: load the session, check CSRF on POST, turn errors into short answers.

    `audited`: a GET that writes to the audit trail (a report export) is refused when another
    site sent the browser there (`from_our_pages`), so no web page can make a signed-in officer's
    browser export a report that the trail then records as theirs.

    `keeps`: the fields of a form where someone writes (a notice's title and message): posted
    after the session ended, they come back on the signed-out page (`signed_out_keeping`)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE, "")
        found = await session_staff(token, now=herald.clock.now()) if token else None
        session, staff = found if found else (None, None)
        current = Page(request, herald, session, staff, token if found else "")
        try:
            if signed_in and staff is None:
                if request.method == "GET" and not json:
                    return current.render("signed_out.html", status=401, reason="")
                if request.method == "POST" and keeps:
                    return await signed_out_keeping(current, keeps)
                raise PermissionDenied(SESSION_ENDED)
            if request.method == "POST" and signed_in:
                await check_csrf(request, token)
            if audited and request.method == "GET" and not from_our_pages(request):
                raise Forbidden("Another site sent you to this export, so Herald refused it. "
                                "Download the report from its notice's page in the console.")
            return await handler(current)
        except web.HTTPException:
            raise
        except UserError as exc:
            status = 403 if isinstance(exc, PermissionDenied) else 404 if isinstance(exc, NotFound) else 400
            if status == 403 and staff is None and not isinstance(exc, Forbidden):
                status = 401
            if json:
                return current.json({"error": str(exc)}, status=status)
            return current.render("error.html", status=status, message=str(exc))
        except Exception:  # noqa: BLE001 - logged in full; the person gets an apology, never a trace
            log.exception("console %s %s failed", request.method, request.path)
            if json:
                return current.json({"error": "something went wrong on Herald's side"}, status=500)
            return current.render("error.html", status=500,
                                  message="Something went wrong on Herald's side. The details are in its log.")

    return wrapped


def unknown_address(herald: Herald) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The catch-all under /console, registered last: a mistyped or outdated address (GET or
    HEAD) gets the console's 404 page, with its navigation and a way back, instead of aiohttp's
    text. A method another route takes at that address keeps aiohttp's 405 (with `Allow`), and
    any other method a plain 404, as before."""
    async def no_such_page(current: Page) -> web.StreamResponse:
        raise NotFound(f"There is no console page at {current.request.path[:200]}. "
                       "It may have been mistyped, or the address has changed.")

    console_page = page(herald, no_such_page)

    async def answer(request: web.Request) -> web.StreamResponse:
        allowed = await _methods_elsewhere(request)
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        if request.method in ("GET", "HEAD"):
            return await console_page(request)
        raise web.HTTPNotFound()

    return answer


async def _methods_elsewhere(request: web.Request) -> set[str]:
    """The methods the app's other routes take at this request's path (the router tells only
    the first route that takes the path and method, and the catch-all takes every method)."""
    catch_all = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not catch_all:
            _, methods = await resource.resolve(request)
            allowed |= methods
    return allowed


def whole_number(value: str, default: int = 0) -> int:
    """A query or form value as a small non-negative integer, else `default`."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else default


def new_pre_token() -> str:
    return secrets.token_urlsafe(24)
