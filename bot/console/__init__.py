"""The console: a web face for CAMs and compliance, and the sandbox's inbox, in the same aiohttp
server. An inbound adapter like the Slack and Teams handlers: pages call the same core functions
with the same role checks and audit events as chat commands (see docs/architecture.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from bot.console.auth_pages import add_auth_routes
from bot.console.compose_pages import add_compose_routes
from bot.console.directory_pages import add_directory_routes
from bot.console.notice_pages import add_notice_routes
from bot.console.survey_pages import add_survey_routes
from bot.console.web import HERALD, HERE, TEMPLATES, environment, unknown_address
from bot.service import Herald

log = logging.getLogger(__name__)

SANDBOX_BANNER = "SANDBOX MODE: sample data in its own database; nothing is sent to Slack or Teams"


def add_console_routes(app: web.Application, herald: Herald, *,
                       announce: Callable[[str], None] | None = None) -> None:
    """Mount /console; in sandbox mode also the inboxes, the sample world and the start-up link
    (`announce` prints it; None = log it at WARNING)."""
    app[HERALD] = herald
    app[TEMPLATES] = environment()
    add_auth_routes(app, herald)
    add_notice_routes(app, herald)
    add_compose_routes(app, herald)
    add_directory_routes(app, herald)
    add_survey_routes(app, herald)
    app.router.add_static("/console/static", HERE / "static", append_version=False)
    if herald.sandbox:
        from bot.console.sandbox_pages import add_sandbox_routes

        add_sandbox_routes(app, herald)
        app.on_startup.append(_sandbox_start(herald, announce))
    app.router.add_route("*", "/console/{address:.*}", unknown_address(herald))  # last: what no route took


def _sandbox_start(herald: Herald, announce: Callable[[str], None] | None):  # noqa: ANN202
    async def start(app: web.Application) -> None:
        from bot.console.sandbox_seed import give_sandbox_accounts, seed, welcome_link

        log.warning(SANDBOX_BANNER)
        seeded = await seed(herald)
        if seeded.created:
            log.warning("sandbox: loaded the sample directory and sent sample notice #%s", seeded.notice_id)
        elif added := await give_sandbox_accounts():
            log.warning("sandbox: gave %d imported members an inbox", added)
        link = await welcome_link(herald)
        message = (f"{SANDBOX_BANNER}.\nOpen the console as the sample CAM (the link works once, for 10 minutes):\n"
                   f"  {herald.sign_in_url(link.token)}\n"
                   "A new link: herald console-link casey.morgan@northwind.example")
        (announce or log.warning)(message)
    return start
