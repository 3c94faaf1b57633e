"""Console input an attacker controls and who sees what: forged tokens with characters
`hmac.compare_digest` refuses as text (a 500 before), a report link's HEAD and GET (no export until Download is pressed), a report export another site navigates to, malformed
sandbox card data and API page sizes, sign-out on every device, and knowledge-base proposals scoped like the hand-offs they come
from."""

from __future__ import annotations

import re

import pytest

from bot.core.onboarding.learning import ENTRY, propose
from storage.models import AuditEvent, Member, Notice, Question, Staff
from tests.console_support import CAM, COMPLIANCE, OTHER_CAM, ConsoleHarness, start_console, stop_console

pytestmark = pytest.mark.storage

SAMPLE = 1


async def test_a_forged_csrf_token_with_a_non_ascii_character_is_refused(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    await casey.get(f"/console/notices/{SAMPLE}")
    response, page = await casey.post(f"/console/notices/{SAMPLE}/retract", {"reason": "x"}, csrf="é" * 64)
    assert (await Notice.get(id=SAMPLE)).status == "sent"
    assert response.status == 403, f"a forged CSRF field answered {response.status}, not 403 (CSRF refused)"


async def test_a_non_ascii_csrf_header_is_refused(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    await casey.get(f"/console/notices/{SAMPLE}")
    response, _ = await casey.post(f"/console/notices/{SAMPLE}/retract", {"reason": "x"}, csrf="",
                                   headers={"X-CSRF-Token": "\u00e9" * 64})
    assert response.status == 403, f"a forged X-CSRF-Token answered {response.status}, not 403"


async def test_the_sign_in_form_with_a_non_ascii_pre_token_is_refused(console: ConsoleHarness) -> None:
    browser = console.browser()
    token = await console.link(CAM)
    _, page = await browser.get(f"/console/sign-in?token={token}")
    assert re.search(r'name="pre" value="([^"]+)"', page)
    response, _ = await browser.post("/console/sign-in", {"token": token, "pre": "é"}, csrf="")
    assert response.status == 403, f"a forged sign-in form answered {response.status}, not 403"


async def test_a_malformed_sandbox_card_action_is_refused(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    await casey.get("/console/sandbox/1")
    statuses = []
    for data in ("{not json", "[1, 2]", "\"text\""):
        response, _ = await casey.post("/console/sandbox/1/action", {"verb": "ack", "data": data, "look": "teams"})
        statuses.append(response.status)
    assert statuses == [400, 400, 400], f"malformed Action.Execute data answered {statuses}"


async def test_an_api_page_size_of_many_digits_is_refused(console: ConsoleHarness) -> None:
    from bot.core.compliance.api_tokens import create_token

    _, token = await create_token(COMPLIANCE, now=console.clock.now())
    browser = console.browser()
    statuses = {}
    for query in ("limit=" + "1" * 5000, "before=" + "1" * 5000):
        async with browser.session.get(console.url(f"/api/v1/surveys?{query}"),
                                       headers={"Authorization": f"Bearer {token}"}) as response:
            statuses[query[:7]] = response.status
    assert statuses == {"limit=1": 400, "before=": 400}, f"/api/v1/surveys answered {statuses}"


async def test_a_report_link_token_with_a_non_ascii_signature_is_refused(db: str) -> None:
    console = await start_console(db, secret_key="s" * 40, public_url="https://herald.example.com")
    try:
        robin = await Staff.get(email=COMPLIANCE)
        async with console.browser().session.get(console.url("/reports/download"),
                                                 params={"token": f"{SAMPLE}.{robin.id}.99999999999.é"}) as response:
            status = response.status
        assert status == 403, f"a forged link with a non-ASCII signature answered {status}, not 403"
    finally:
        await stop_console(console)


async def test_a_cross_site_navigation_does_not_export_an_audited_report(console: ConsoleHarness) -> None:
    """The console's report downloads are GETs that export and audit (`report.exported`, actor
    `console:<officer>`). The session cookie is SameSite=Lax, which browsers send on a top-level
    cross-site navigation, so any web page a signed-in compliance officer visited could navigate
    them to /console/notices/1/report.csv: the export ran and the tamper-evident audit trail
    recorded an export the officer never asked for. Refused now when the browser says another
    site sent it; the page's own links (same-origin), a typed address (none) and clients that send
    no Sec-Fetch headers (old browsers, curl with the cookie) still download."""
    robin = await console.signed_in(COMPLIANCE)
    cross_site = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
                  "Referer": "https://evil.example/page"}
    async with robin.session.get(console.url(f"/console/notices/{SAMPLE}/report.csv"),
                                 headers=cross_site) as response:
        status = response.status
        text = await response.text()
    exports = await AuditEvent.filter(kind="report.exported").values_list("actor", flat=True)
    assert status == 403 and exports == [], (
        f"a cross-site navigation exported the report (HTTP {status}); audit trail: {exports}")
    assert "Another site sent you to this export" in text
    async with robin.session.get(console.url(f"/console/notices/{SAMPLE}/report.json"),
                                 headers={"Sec-Fetch-Site": "same-site"}) as response:
        assert response.status == 403  # a sibling site is not one of our pages either
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}):
        async with robin.session.get(console.url(f"/console/notices/{SAMPLE}/report.csv"),
                                     headers=headers) as response:
            assert response.status == 200 and "# notice_id: 1" in await response.text(), headers
    exports = await AuditEvent.filter(kind="report.exported").values_list("actor", flat=True)
    assert exports == [f"console:{COMPLIANCE}"] * 3
    _, page = await robin.get(f"/console/notices/{SAMPLE}", headers={"Sec-Fetch-Site": "cross-site"})
    assert "report.csv" in page  # a link from elsewhere (chat) still opens the notice's page


async def test_opening_a_report_link_exports_nothing_until_download_is_pressed(db: str) -> None:
    """Chat clients, link scanners and preview fetchers (Safe Links, mail gateways) GET a link
    before (or instead of) the person: every GET of /reports/download exported the report and wrote
    `report.exported` for a report nobody downloaded (HEAD was already refused). Opening the link
    now shows a Download button only; the button POSTs the same signed token, which exports once."""
    from bot.core.compliance.report_links import signed_report_url

    console = await start_console(db, secret_key="s" * 40, public_url="https://herald.example.com")
    try:
        robin = await Staff.get(email=COMPLIANCE)
        url = signed_report_url(console.herald.settings, SAMPLE, robin.id, now=console.clock.now())
        path = url.removeprefix("https://herald.example.com")
        session = console.browser().session
        async with session.head(console.url(path)) as response:
            assert response.status == 405, response.status
        async with session.get(console.url(path)) as response:  # a preview fetcher, or the person
            status, page = response.status, await response.text()
        exports = await AuditEvent.filter(kind="report.exported").values_list("actor", flat=True)
        assert exports == [], f"opening the link (GET, HTTP {status}) exported the report: {exports}"
        assert status == 200 and 'method="post"' in page and "# notice_id" not in page
        token = re.search(r'name="token" value="([^"]+)"', page).group(1)
        async with session.post(console.url("/reports/download"), data={"token": token}) as response:
            assert response.status == 200 and "# notice_id: 1" in await response.text()
        assert await AuditEvent.filter(kind="report.exported").values_list("actor", flat=True) == [COMPLIANCE]
        async with session.post(console.url("/reports/download"), data={"token": token[:-2] + "xx"}) as response:
            assert response.status == 403  # the signature is checked on the POST too
        console.clock.advance(minutes=16)
        async with session.post(console.url("/reports/download"), data={"token": token}) as response:
            assert response.status == 403  # and the 15-minute expiry
        assert await AuditEvent.filter(kind="report.exported").count() == 1
    finally:
        await stop_console(console)


async def test_signing_out_ends_every_session_of_that_person(console: ConsoleHarness) -> None:
    """A lost or shared device: Sign out on one ends the console on the others too."""
    laptop = await console.signed_in(CAM)
    phone = await console.signed_in(CAM)  # the same CAM on another device (another link)
    response, page = await laptop.post("/console/sign-out")
    assert response.status == 200 and "You are signed out" in page
    response, _ = await laptop.get("/console/notices")
    assert response.status == 401
    response, _ = await phone.get("/console/notices")
    assert response.status == 401, (f"after Sign out the CAM's other session still answers {response.status}: "
                                    "sign-out ended only the one browser's session")


PRIVATE_QUESTION = "Can we register the Globex deal for 480 NW-200 units at 32 percent off?"
PRIVATE_REPLY = "Yes, Lena: register it today; I approved the 32 percent for Globex."


async def test_a_cam_sees_no_kb_proposal_made_from_another_cams_partners_question(console: ConsoleHarness) -> None:
    """A proposal holds the partner's question and the CAM's reply: scoped like the hand-off."""
    casey = await Staff.get(email=CAM)
    lena = await Member.get(email="lena.fischer@contoso.example")  # Contoso names Casey as its CAM
    question = await Question.create(member=lena, platform="sandbox", text=PRIVATE_QUESTION,
                                     asked_at=console.clock.now(), abstained=True, handoff_status="answered",
                                     cam=casey, reply_text=PRIVATE_REPLY, replied_at=console.clock.now(),
                                     replied_by=casey.email)
    await propose(question.id, casey, ENTRY, now=console.clock.now())  # Casey's one click under the hand-off

    jordan = await console.signed_in(OTHER_CAM)  # Litware's CAM, nothing to do with Contoso
    _, questions = await jordan.get("/console/questions")
    assert PRIVATE_QUESTION not in questions  # the hand-off itself is scoped...
    response, page = await jordan.get("/console/kb-proposals")  # ...but the proposal made from it is not
    assert PRIVATE_QUESTION not in page and PRIVATE_REPLY not in page, (
        f"another CAM's partner's question and the CAM's reply are shown to {OTHER_CAM} "
        f"(status {response.status}) on /console/kb-proposals")


def test_a_signature_with_a_non_ascii_character_is_simply_wrong() -> None:
    """bot.common.secrets.verify checks the A/B links' signatures (GET /go/<token>)."""
    from bot.common.secrets import sign, verify

    key = b"k" * 32
    assert verify(key, "1.7", sign(key, "1.7"))
    assert not verify(key, "1.7", "\u00e9" * 43)
