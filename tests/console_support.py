"""The console's harness: the real app on a local port in sandbox mode (the sandbox platform is a
real channel adapter, so notices are delivered and acknowledged without any fake), signed in
through a real link with a real cookie jar, forms posted with the page's CSRF token."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import HERALD_KEY, build_app
from bot.common.clock import ManualClock
from bot.core.commands.parser import SendCommand, SurveyCommand, parse_command
from bot.core.directory.console_access import issue_link_for_email
from bot.core.notices import sending
from bot.core.surveys.answers import answer_survey
from bot.core.surveys.creating import create_survey_draft
from bot.service import Herald
from config.settings import load_settings
from storage.models import Delivery, Staff

CAM = "casey.morgan@northwind.example"
OTHER_CAM = "jordan.lee@northwind.example"
COMPLIANCE = "robin.quinn@northwind.example"
ADMIN = "alex.admin@northwind.example"
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_PRE = re.compile(r'name="pre" value="([^"]+)"')


@dataclass
class Browser:
    """One signed-in person: a cookie jar and the CSRF token of the last page seen."""

    harness: "ConsoleHarness"
    session: aiohttp.ClientSession
    csrf: str = ""

    async def get(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, str]:
        async with self.session.get(self.harness.url(path), **kwargs) as response:
            text = await response.text()
        match = _CSRF.search(text)
        if match and match.group(1):
            self.csrf = match.group(1)
        return response, text

    async def post(self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None,
                   headers: dict[str, str] | None = None, allow_redirects: bool = True
                   ) -> tuple[aiohttp.ClientResponse, str]:
        form = dict(data or {})
        form.setdefault("_csrf", self.csrf if csrf is None else csrf)
        if csrf == "":
            form.pop("_csrf")
        async with self.session.post(self.harness.url(path), data=form, headers=headers or {},
                                     allow_redirects=allow_redirects) as response:
            text = await response.text()
        match = _CSRF.search(text)
        if match and match.group(1):
            self.csrf = match.group(1)
        return response, text

    async def close(self) -> None:
        await self.session.close()


@dataclass
class ConsoleHarness:
    app: web.Application
    server: TestServer
    clock: ManualClock
    announced: list[str] = field(default_factory=list)
    browsers: list[Browser] = field(default_factory=list)

    @property
    def herald(self) -> Herald:
        return self.app[HERALD_KEY]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def link(self, email: str) -> str:
        issued = await issue_link_for_email(email, via="test", now=self.clock.now(), actor="test")
        return issued.token

    def browser(self) -> Browser:
        browser = Browser(self, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
        self.browsers.append(browser)
        return browser

    async def signed_in(self, email: str) -> Browser:
        browser = self.browser()
        token = await self.link(email)
        response, text = await browser.get(f"/console/sign-in?token={token}")
        assert response.status == 200, text
        response, text = await browser.post("/console/sign-in", {"token": token, "pre": _PRE.search(text).group(1)},
                                            csrf="")
        assert response.status == 200 and response.url.path == "/console/notices", text
        return browser


async def start_console(db_url: str, *, sandbox: bool = True, run_worker: bool = False,
                        **settings: Any) -> ConsoleHarness:
    clock = ManualClock()
    announced: list[str] = []
    config = load_settings(database_url=db_url, kb_semantic=False, outbox_poll_seconds=3600, **settings)
    app = build_app(config, clock=clock, run_worker=run_worker, manage_database=False, sandbox=sandbox,
                    announce=announced.append)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    harness = ConsoleHarness(app, server, clock, announced)
    await harness.herald.outbox.drain()
    return harness


async def stop_console(harness: ConsoleHarness) -> None:
    for browser in harness.browsers:
        await browser.close()
    await harness.server.close()


# ---- surveys and A/B tests, as the sample CAM ---------------------------------------------------

SANDBOX = {"platform": "sandbox", "workspace_id": "sandbox"}


async def send_as_cam(console: ConsoleHarness, text: str) -> int:
    """`survey …` or `send …` as the sample CAM, through the core calls chat makes; delivered."""
    author = await Staff.get(email=CAM)
    command = parse_command(text)
    if isinstance(command, SurveyCommand):
        preview = await create_survey_draft(author, command, console.herald.catalog, now=console.clock.now())
    else:
        assert isinstance(command, SendCommand), command
        preview = await sending.create_draft(author, command, console.herald.catalog, now=console.clock.now())
    await sending.send_draft(preview.notice.id, author, console.herald.catalog, now=console.clock.now())
    await console.herald.outbox.drain()
    for _ in range(2):  # the sample partners span Berlin to Sydney: wait out their quiet hours
        console.clock.advance(hours=12)
        await console.herald.outbox.drain()
    return preview.notice.id


async def delivered_to(notice_id: int) -> list[str]:
    """The sandbox user ids (e-mails) a notice reached, in member order."""
    return list(await Delivery.filter(notice_id=notice_id, status="delivered").order_by("member_id").values_list(
        "member__email", flat=True))


async def answer_as(console: ConsoleHarness, survey_id: int, email: str, value: int, comment: str | None = None) -> None:
    await answer_survey(survey_id, value, user_id=email, now=console.clock.now(), comment=comment, **SANDBOX)
