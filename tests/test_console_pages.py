"""The console over real HTTP: sign-in, cookies and headers, CSRF, roles as in chat, the notice
pages' numbers, compose → preview → send → edit → retract with the core's audit events, report
downloads, the directory and engagement views."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.core.directory.console_access import issue_link_for_email
from bot.core.insights import engagement
from bot.core.notices import acks, revisions
from bot.core.onboarding import assistant
from storage.models import (
    Acknowledgement,
    AuditEvent,
    Delivery,
    Escalation,
    Member,
    Notice,
    NoticeRevision,
    Organisation,
    OutboundMessage,
    PlatformAccount,
    Question,
    SandboxMessage,
    Staff,
)
from tests.conftest import POSTGRES_ONLY
from tests.console_support import ADMIN, CAM, COMPLIANCE, OTHER_CAM, ConsoleHarness, send_as_cam

pytestmark = pytest.mark.storage

SAMPLE = 1  # the sandbox's sample notice: must-know, operations, to all (8 recipients)


async def _ack(console: ConsoleHarness, email: str, notice_id: int = SAMPLE) -> None:
    result = await acks.acknowledge(notice_id, platform="sandbox", workspace_id="sandbox", user_id=email,
                                    now=console.clock.now())
    await console.herald.update_acknowledged_copies(result)


def _links(page: str, prefix: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="(' + re.escape(prefix) + r'[^"]*)"', page)]


def _people_rows(page: str) -> int:
    return len(re.findall(r'<tr>\s*<th scope="row">', page))


def _cookie(response, name: str = "herald_console") -> str:  # noqa: ANN001
    return next(h for h in response.headers.getall("Set-Cookie") if h.startswith(name + "="))


# ---- signing in -----------------------------------------------------------------------------------

async def test_opening_the_link_does_not_use_it_and_the_session_cookie_is_safe(console: ConsoleHarness) -> None:
    browser = console.browser()
    token = await console.link(CAM)
    for _ in range(2):  # chat clients and scanners fetch links to preview them: GET must not use it up
        response, page = await browser.get(f"/console/sign-in?token={token}")
        assert response.status == 200 and "Continue" in page
    pre = re.search(r'name="pre" value="([^"]+)"', page).group(1)
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
    assert response.headers["Referrer-Policy"] == "same-origin"  # keeps the Origin header on our own POSTs

    response, _ = await browser.post("/console/sign-in", {"token": token, "pre": "forged"}, csrf="")
    assert response.status == 403  # the double-submit cookie must match
    async with browser.session.post(console.url("/console/sign-in"), data={"token": token, "pre": pre},
                                    allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/console/notices"
        cookie = _cookie(response).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
    assert "secure" not in cookie and "max-age=28800" in cookie  # plain http here
    response, page = await browser.get("/console/notices")
    assert response.status == 200 and "Recall of NW-200" in page

    other = console.browser()
    _, page = await other.get(f"/console/sign-in?token={token}")
    response, page = await other.post("/console/sign-in", {"token": token, "pre": re.search(
        r'name="pre" value="([^"]+)"', page).group(1)}, csrf="")
    assert response.status == 403 and "already used" in page


async def test_an_expired_link_is_refused_with_a_way_forward(console: ConsoleHarness) -> None:
    browser = console.browser()
    token = await console.link(CAM)
    _, page = await browser.get(f"/console/sign-in?token={token}")
    console.clock.advance(minutes=11)
    response, page = await browser.post("/console/sign-in", {"token": token, "pre": re.search(
        r'name="pre" value="([^"]+)"', page).group(1)}, csrf="")
    assert response.status == 403 and "expired" in page and "/herald console" in page
    response, _ = await browser.get("/console/notices")
    assert response.status == 401


async def test_the_cookie_is_secure_behind_https(db: str) -> None:
    from tests.console_support import start_console, stop_console

    console = await start_console(db, public_url="https://herald.example.com")
    try:
        browser = console.browser()
        token = await console.link(CAM)
        async with browser.session.get(console.url(f"/console/sign-in?token={token}")) as response:
            assert "secure" in _cookie(response, "herald_console_signin").lower()
            pre = re.search(r'name="pre" value="([^"]+)"', await response.text()).group(1)
        # the jar keeps Secure cookies from plain http: send the sign-in form's cookie by hand
        async with browser.session.post(console.url("/console/sign-in"), data={"token": token, "pre": pre},
                                        headers={"Cookie": f"herald_console_signin={pre}"},
                                        allow_redirects=False) as response:
            assert response.status == 303 and "secure" in _cookie(response).lower()
        assert "https://herald.example.com/console/sign-in?token=hcl_" in console.announced[0]
    finally:
        await stop_console(console)


async def test_without_a_session_nothing_is_shown_or_done(console: ConsoleHarness) -> None:
    stranger = console.browser()
    for path in ("/console/notices", f"/console/notices/{SAMPLE}", "/console/directory", "/console/sandbox/1"):
        response, page = await stranger.get(path)
        assert response.status == 401 and "Sign in with a link from Herald" in page and "NW-200" not in page
    response, _ = await stranger.get(f"/console/notices/{SAMPLE}/live.json")
    assert response.status == 401
    response, _ = await stranger.post(f"/console/notices/{SAMPLE}/retract", {"reason": "x"})
    assert response.status == 401
    assert (await Notice.get(id=SAMPLE)).status != "retracted"


async def test_signing_out_ends_the_session(console: ConsoleHarness) -> None:
    browser = await console.signed_in(CAM)
    response, page = await browser.post("/console/sign-out")
    assert response.status == 200 and "You are signed out" in page
    response, _ = await browser.get("/console/notices")
    assert response.status == 401


async def test_a_notice_composed_as_the_session_ends_is_not_lost(console: ConsoleHarness) -> None:
    """Sessions last 8 hours from sign-in. A CAM who opens Compose late in the session and presses
    Preview after it ended gets 'Your console session has ended' with the title and message to
    copy (nothing is done with them). Before, the page held neither (and Cache-Control: no-store
    means Back re-fetches an empty form). An edit posted after the end is kept the same way,
    escaped."""
    casey = await console.signed_in(CAM)
    console.clock.advance(hours=7, minutes=50)
    _, form = await casey.get("/console/compose")
    assert 'name="body"' in form
    console.clock.advance(minutes=20)  # writing it took 20 minutes
    body = "From 1 March every order over 10 pallets needs a booking reference; the form is linked below."
    response, page = await casey.post("/console/compose", {
        "topic": "operations", "importance": "must-know", "audience": "all", "title": "Booking references",
        "body": body, "deadline": "2026-03-01"})
    assert response.status == 401 and "session has ended" in page
    assert body in page, "the notice the CAM wrote is gone: the page after the ended session does not hold it"
    assert "Booking references" in page and "Sign in with a link from Herald" in page
    assert not await Notice.filter(title="Booking references").exists()  # nothing done without a session

    response, page = await casey.post(f"/console/notices/{SAMPLE}/edit", {
        "title": "Stock <b>check</b>", "body": "Count the pallets </textarea><script>alert(1)</script>"})
    assert response.status == 401 and "Stock &lt;b&gt;check&lt;/b&gt;" in page
    assert "&lt;/textarea&gt;&lt;script&gt;" in page and "<script>alert" not in page
    assert (await Notice.get(id=SAMPLE)).revision == 1
    response, page = await casey.post("/console/compose", {"title": "Urgent: re-enter your password", "body": "x"},
                                      headers={"Origin": "https://elsewhere.example"})
    assert response.status == 401 and "re-enter your password" not in page  # another site's text is not shown
    response, page = await casey.post("/console/questions/1/reply", {"reply": "Yes, the Q1 list is current."})
    assert response.status == 401 and "Yes, the Q1 list is current." in page  # a hand-off's reply too


# ---- CSRF -------------------------------------------------------------------------------------------

async def test_forged_forms_are_refused(console: ConsoleHarness) -> None:
    browser = await console.signed_in(CAM)
    other = await console.signed_in(ADMIN)
    await browser.get("/console/compose")
    form = {"topic": "operations", "importance": "need-to-know", "audience": "all", "title": "T", "body": "B"}
    for csrf, headers in (("", {}), ("0" * 64, {}), (other.csrf, {}),
                          (browser.csrf, {"Origin": "https://evil.example"}), (browser.csrf, {"Origin": "null"})):
        response, page = await browser.post("/console/compose", form, csrf=csrf, headers=headers)
        assert response.status == 403, (csrf, headers)
        assert "refused" in page or "CSRF" in page
    assert await Notice.filter(title="T").count() == 0
    response, _ = await browser.post("/console/compose", form, headers={"Origin": console.url("/").rstrip("/")})
    assert response.status == 200 and await Notice.filter(title="T").count() == 1


# ---- roles -------------------------------------------------------------------------------------------

async def test_a_cam_is_refused_another_cams_notice(console: ConsoleHarness) -> None:
    jordan = await console.signed_in(OTHER_CAM)
    _, page = await jordan.get("/console/notices")
    assert "Recall of NW-200" not in page and "No notices match" in page
    for path in (f"/console/notices/{SAMPLE}", f"/console/notices/{SAMPLE}/people",
                 f"/console/notices/{SAMPLE}/report.csv", f"/console/notices/{SAMPLE}/live.json"):
        response, page = await jordan.get(path)
        assert response.status == 403 and "another CAM" in page and "Lena" not in page, path
    for action, data in (("retract", {"reason": "mine now"}), ("edit", {"title": "Hijack", "body": "x"})):
        response, page = await jordan.post(f"/console/notices/{SAMPLE}/{action}", data)
        assert response.status == 403 and "author or an admin" in page
    notice = await Notice.get(id=SAMPLE)
    assert notice.status == "sent" and notice.title == "Recall of NW-200 firmware 4.2"
    assert not await AuditEvent.filter(kind="report.exported").exists()


async def test_compliance_reads_everything_and_changes_nothing(console: ConsoleHarness) -> None:
    robin = await console.signed_in(COMPLIANCE)
    response, page = await robin.get(f"/console/notices/{SAMPLE}")
    assert response.status == 200 and "Check the whole chain" in page and "Retract the notice" not in page
    response, _ = await robin.get("/console/compose")
    assert response.status == 403
    response, page = await robin.post(f"/console/notices/{SAMPLE}/retract", {"reason": "no"})
    assert response.status == 403
    response, page = await robin.post("/console/audit/verify", {"notice": str(SAMPLE)})
    assert response.status == 200 and "Intact" in page
    casey = await console.signed_in(CAM)
    response, _ = await casey.post("/console/audit/verify", {})
    assert response.status == 403


async def test_partners_have_no_access(console: ConsoleHarness) -> None:
    from bot.common.errors import UserError

    with pytest.raises(UserError):  # members of partner organisations are not staff
        await issue_link_for_email("lena.fischer@contoso.example", via="cli", now=console.clock.now(), actor="t")


# ---- the notice page ------------------------------------------------------------------------------------

async def test_the_notice_page_shows_the_funnel_breakdown_and_people_who_have_not_acknowledged(
        console: ConsoleHarness) -> None:
    console.clock.advance(minutes=30)
    await _ack(console, "lena.fischer@contoso.example")
    console.clock.advance(minutes=30)
    await _ack(console, "emma.roy@litware.example")
    casey = await console.signed_in(CAM)
    response, page = await casey.get(f"/console/notices/{SAMPLE}")
    assert response.status == 200
    assert re.search(r'data-count="recipients">8<', page) and re.search(r'data-count="delivered">8<', page)
    assert re.search(r'data-count="acknowledged"[^>]*>2<', page) and "25%" in page
    assert "<svg class=\"chart\"" in page and "2 of 8 delivered acknowledged" in page  # its text alternative
    assert "Contoso Security" in page and ">gold<" in page and ">emea<" in page
    assert "notice.acknowledged" in page and "delivery.delivered" in page  # the audit events by kind
    _, live = await casey.get(f"/console/notices/{SAMPLE}/live.json")
    assert '"acknowledged": 2' in live and '"outstanding": 6' in live

    _, people = await casey.get(f"/console/notices/{SAMPLE}/people?org=contoso")
    assert "Jonas Weber" in people and "Mia Schulz" in people and "Lena Fischer" not in people
    assert "Emma Roy" not in people and "Sam Carter" not in people
    _, people = await casey.get(f"/console/notices/{SAMPLE}/people?tier=platinum")
    assert "Ruby Walsh" in people and "Noah Kim" in people and "Jonas" not in people


async def test_a_cam_reading_a_colleagues_escalated_notice_sees_only_their_partners_people(
        console: ConsoleHarness) -> None:
    """The sample notice is Casey's; the directory names Jordan CAM of Litware, and the notice was
    escalated for Litware: Jordan may open it, and its people page and report list Litware's members
    only, saying so. Before, they listed every partner's people (names, e-mail addresses, roles),
    partners the directory gives to Casey."""
    litware = await Organisation.get(external_id="litware")
    await Escalation.create(notice_id=SAMPLE, organisation=litware, member_ids=[], status="delivered",
                            created_at=console.clock.now())
    jordan = await console.signed_in(OTHER_CAM)
    response, people = await jordan.get(f"/console/notices/{SAMPLE}/people")
    assert response.status == 200
    assert "Jonas Weber" not in people and "Ruby Walsh" not in people, "another CAM's partners' people are listed"
    assert "Emma Roy" in people and "Limited to your partners" in people
    async with jordan.session.get(console.url(f"/console/notices/{SAMPLE}/report.csv")) as response:
        text = await response.text()
    assert "# scope: limited to your partners: 1 of 4 organisations" in text and "emma.roy@litware.example" in text
    assert "contoso" not in text.lower() and "tailspin" not in text.lower()
    robin = await console.signed_in(COMPLIANCE)
    _, people = await robin.get(f"/console/notices/{SAMPLE}/people")
    assert "Ruby Walsh" in people and "Limited to your partners" not in people


async def test_a_cam_reading_a_colleagues_escalated_notice_sees_only_their_partners_on_its_page(
        console: ConsoleHarness) -> None:
    """The notice's own page (the funnel, the breakdown by organisation, tier and region, the
    reminders and the escalations) was the whole notice's for a CAM who may read it only because
    it was escalated for a partner of theirs, while its people page and report were limited to
    those partners: Jordan saw Casey's partners by name with their counts and their escalations.
    The page and its live counts now have the report's scope."""
    litware = await Organisation.get(external_id="litware")
    await Escalation.create(notice_id=SAMPLE, organisation=litware, member_ids=[], status="delivered",
                            created_at=console.clock.now())
    recipients = await Delivery.filter(notice_id=SAMPLE, kind="notice", member__organisation=litware).count()
    jordan = await console.signed_in(OTHER_CAM)
    response, page = await jordan.get(f"/console/notices/{SAMPLE}")
    assert response.status == 200
    assert "Contoso Security" not in page and "Tailspin" not in page, "another CAM's partners are on the page"
    assert "Litware" in page and re.search(rf'data-count="recipients">{recipients}<', page)
    assert "Limited to your partners" in page
    _, live = await jordan.get(f"/console/notices/{SAMPLE}/live.json")
    assert json.loads(live)["recipients"] == recipients
    casey = await console.signed_in(CAM)
    _, page = await casey.get(f"/console/notices/{SAMPLE}")
    assert "Contoso Security" in page and re.search(r'data-count="recipients">8<', page)
    assert "Limited to your partners" not in page


async def test_failed_deliveries_say_why(console: ConsoleHarness) -> None:
    lena = await Member.get(email="lena.fischer@contoso.example")
    await PlatformAccount.filter(member_id=lena.id).delete()
    casey = await console.signed_in(CAM)
    await casey.get("/console/compose")
    response, _ = await casey.post("/console/compose", {
        "topic": "operations", "importance": "must-know", "audience": "org:contoso", "title": "Second",
        "body": "Check the stock"}, allow_redirects=False)
    notice_id = int(response.headers["Location"].rsplit("/", 1)[1])
    await casey.post(f"/console/notices/{notice_id}/send")
    await console.herald.outbox.drain()
    _, page = await casey.get(f"/console/notices/{notice_id}")
    assert re.search(r'data-count="failed">1<', page) and "no Slack or Teams account on file" in page
    _, people = await casey.get(f"/console/notices/{notice_id}/people?state=failed")
    assert "Lena Fischer" in people and "Jonas Weber" not in people and "no Slack or Teams account" in people


async def test_a_breakdown_row_without_a_tier_links_to_the_people_it_counts(console: ConsoleHarness) -> None:
    """The directory's tier (and region) is optional. The notice page rolls organisations without
    one up as "(none)" and links its outstanding count to people?tier=(none). Before, that filtered
    on the literal text "(none)": the page said 'Nobody here: everyone matching has acknowledged'
    for 3 people who had not."""
    await Organisation.filter(external_id="contoso").update(tier="")  # 3 of notice #1's recipients
    robin = await console.signed_in(COMPLIANCE)
    _, page = await robin.get(f"/console/notices/{SAMPLE}")
    row = re.search(r'<th scope="row">\(none\)</th>.*?</tr>', page, re.S)
    assert row, "the tier breakdown has no (none) row"
    link = _links(row.group(0), f"/console/notices/{SAMPLE}/people?")
    outstanding = re.search(r'people\?tier=[^"]*">(\d+)</a>', row.group(0))
    assert link and outstanding and int(outstanding.group(1)) == 3, row.group(0)

    response, people = await robin.get(link[0])
    assert response.status == 200
    assert _people_rows(people) == 3, (
        f"the tier breakdown says 3 outstanding without a tier and links to {link[0]}, which lists "
        f"{_people_rows(people)} people"
        + (" and says 'Nobody here: everyone matching has acknowledged'" if "Nobody here" in people else ""))


async def test_a_breakdown_row_links_to_its_people_after_one_moved_to_another_partner(
        console: ConsoleHarness) -> None:
    """The organisation breakdown counts each copy under the organisation it was sent for (the
    report's rule), and so does the drill-down. Before, it filtered on the member's organisation
    now: after a directory import moved one of contoso's three recipients to fabrikam, contoso's
    row said 3 outstanding but its link listed 2, and fabrikam's said 1 but listed 2."""
    moved = await Member.filter(organisation__external_id="contoso").order_by("id").first()
    await Member.filter(id=moved.id).update(organisation_id=(await Organisation.get(external_id="fabrikam")).id)
    robin = await console.signed_in(COMPLIANCE)
    _, page = await robin.get(f"/console/notices/{SAMPLE}")
    found = dict(re.findall(r'people\?org=(contoso|fabrikam)">(\d+)</a>', page))
    assert found == {"contoso": "3", "fabrikam": "1"}, found  # as the CSV report counts them
    for org, counted in found.items():
        _, people = await robin.get(f"/console/notices/{SAMPLE}/people?org={org}")
        assert _people_rows(people) == int(counted), (
            f"notice #{SAMPLE}'s breakdown says {counted} outstanding at {org} and links to a list of "
            f"{_people_rows(people)}")


async def test_report_downloads_stream_the_same_report_and_are_audited(console: ConsoleHarness) -> None:
    await _ack(console, "lena.fischer@contoso.example")
    robin = await console.signed_in(COMPLIANCE)
    async with robin.session.get(console.url(f"/console/notices/{SAMPLE}/report.csv")) as response:
        assert response.status == 200
        assert response.headers["Content-Disposition"] == 'attachment; filename="notice-1-report.csv"'
        text = await response.text()
    assert "# acknowledged: 1" in text and "lena.fischer@contoso.example" in text
    async with robin.session.get(console.url(f"/console/notices/{SAMPLE}/report.json")) as response:
        report = await response.json()
    assert report["summary"]["acknowledged"] == 1 and len(report["rows"]) == 8
    exports = await AuditEvent.filter(kind="report.exported").values_list("actor", flat=True)
    assert exports == [f"console:{COMPLIANCE}", f"console:{COMPLIANCE}"]


# ---- compose, send, edit, retract -------------------------------------------------------------------

async def test_compose_preview_send_edit_and_retract_go_through_the_core(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    _, page = await casey.get("/console/compose")
    assert 'name="audience"' in page and "**bold**" in page  # the formatting help
    response, count = await casey.get("/console/audience-count?audience=tier:gold&topic=operations")
    assert response.status == 200 and '"count": 5' in count
    _, count = await casey.get("/console/audience-count?audience=tier:gould&topic=operations")
    assert '"count": 0' in count and "did you mean" in count
    _, count = await casey.get("/console/audience-count?audience=colour:red&topic=operations")
    assert "unknown attribute" in count
    ask = "/console/audience-count?audience=tier:gold&topic=product-updates&importance="
    everyone = json.loads((await casey.get(ask + "must-know"))[1])["count"]
    left = await Member.filter(organisation__tier="gold", role__in=["sales", "technical", "support"]).first()
    await Member.filter(id=left.id).update(topic_opt_outs=["product-updates"])  # left the topic
    assert json.loads((await casey.get(ask + "need-to-know"))[1])["count"] == everyone - 1  # as the send queues
    assert json.loads((await casey.get(ask + "must-know"))[1])["count"] == everyone  # must-know reaches everyone
    await Member.filter(id=left.id).update(topic_opt_outs=[])

    response, page = await casey.post("/console/compose", {"topic": "operations", "importance": "must-know",
                                                           "audience": "tier:gold", "title": "", "body": "x"})
    assert response.status == 400 and "the title is empty" in page and 'value="tier:gold"' in page

    body = "Please **stop** shipping:\n- check pallets\n- [the list](https://partners.northwind.example/l)"
    response, _ = await casey.post("/console/compose", {
        "topic": "operations", "importance": "must-know", "audience": "tier:gold", "title": "Hold shipments",
        "body": body, "deadline": "2026-02-01"}, allow_redirects=False)
    assert response.status == 303
    notice_id = int(response.headers["Location"].rsplit("/", 1)[1])
    _, draft = await casey.get(f"/console/notices/{notice_id}")
    assert 'id="draft-recipients">5<' in draft and 'data-card="' in draft and "&#34;AdaptiveCard&#34;" in draft
    assert "<strong>stop</strong>" in draft and "• check pallets" in draft  # Slack's drawing

    await casey.post(f"/console/notices/{notice_id}/send")
    await console.herald.outbox.drain()
    notice = await Notice.get(id=notice_id)
    assert notice.status == "sent" and notice.recipient_count == 5
    events = await AuditEvent.filter(notice_id=notice_id, kind__startswith="notice.").values_list("kind", "actor")
    assert ("notice.created", CAM) in events and ("notice.sent", CAM) in events
    message = await SandboxMessage.get(notice_id=notice_id, user_id="lena.fischer@contoso.example")
    assert any("*stop*" in b.get("text", {}).get("text", "") for b in message.blocks if b["type"] == "section")

    await casey.post(f"/console/notices/{notice_id}/edit", {"title": "Hold shipments now", "body": body,
                                                            "link": "", "material": "yes"})
    await console.herald.outbox.drain()
    assert (await Notice.get(id=notice_id)).revision == 2 and await NoticeRevision.filter(notice_id=notice_id).count() == 2
    message = await SandboxMessage.get(id=message.id)
    assert message.version == 2 and "Hold shipments now" in str(message.blocks)

    response, page = await casey.post(f"/console/notices/{notice_id}/retract", {"reason": ""})
    assert response.status == 400 and "say why" in page
    await casey.post(f"/console/notices/{notice_id}/retract", {"reason": "sent too early"})
    await console.herald.outbox.drain()
    assert (await Notice.get(id=notice_id)).status == "retracted"
    assert "Retracted: sent too early" in str((await SandboxMessage.get(id=message.id)).blocks)
    kinds = await AuditEvent.filter(notice_id=notice_id).values_list("kind", flat=True)
    assert "notice.edited" in kinds and "notice.retracted" in kinds


async def test_a_refused_edit_gives_the_form_back_with_what_was_typed(console: ConsoleHarness) -> None:
    """The compose form comes back with the values and the reason (status 400), and so does the
    Edit form of a sent notice: the notice's page with the form open. Before, a refused edit got
    the error page ('That did not work … Back to the notices') and the new title and body the CAM
    typed were gone. Here the link is ftp://, which the field's type=url lets through and the core
    refuses."""
    notice_id = await send_as_cam(console, "send must-know operations all | Hold shipments | Please stop shipping")
    casey = await console.signed_in(CAM)  # the send took a day of the clock
    await casey.get(f"/console/notices/{notice_id}")
    typed = "Please stop shipping pallets from batch 7 until the inspection on Friday is done."
    response, page = await casey.post(f"/console/notices/{notice_id}/edit", {
        "title": "Hold shipments of batch 7", "body": typed, "link": "ftp://files.northwind.example/batch7.pdf"})
    assert response.status == 400 and "must be a plain http(s) URL" in page
    assert f"/console/notices/{notice_id}/edit" in page and typed in page, (
        "the edit was refused with the error page only: the title and message the CAM typed are lost "
        f"(page says: {re.sub(r'<[^>]+>', ' ', page.split('<main', 1)[1])[:200].split()})")
    assert 'value="Hold shipments of batch 7"' in page and 'value="ftp://files.northwind.example/batch7.pdf"' in page
    assert '<details class="change" id="edit" open>' in page  # the Edit form is open, not folded away
    assert (await Notice.get(id=notice_id)).revision == 1  # nothing was changed


async def test_revision_times_are_shown_like_every_other_time_on_the_page(console: ConsoleHarness) -> None:
    """Every time on the console reads '2026-01-05 09:00 UTC', and so do the Revisions list's.
    Before, it printed the core's ISO strings ('2026-01-06T09:00:00.123456Z' with the
    microseconds an edit's clock has)."""
    notice_id = await send_as_cam(console, "send must-know operations all | Hold shipments | Please stop shipping")
    casey = await console.signed_in(CAM)
    await casey.get(f"/console/notices/{notice_id}")
    console.clock.advance(seconds=1.25)
    await casey.post(f"/console/notices/{notice_id}/edit", {"title": "Hold shipments", "body": "Please stop now",
                                                            "link": ""})
    _, page = await casey.get(f"/console/notices/{notice_id}")
    revisions = re.findall(r"<li>Revision \d.*?</li>", page)
    assert len(revisions) == 2, revisions
    assert all(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", r) for r in revisions), revisions


async def test_a_scheduled_notice_waits_and_can_be_cancelled(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    await casey.get("/console/compose")
    at = (console.clock.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ")
    response, _ = await casey.post("/console/compose", {
        "topic": "announcements", "importance": "need-to-know", "audience": "all", "title": "Tomorrow",
        "body": "Later", "at": at}, allow_redirects=False)
    notice_id = int(response.headers["Location"].rsplit("/", 1)[1])
    _, page = await casey.post(f"/console/notices/{notice_id}/send")
    assert (await Notice.get(id=notice_id)).status == "scheduled" and "scheduled for" in page
    await casey.post(f"/console/notices/{notice_id}/cancel")
    assert (await Notice.get(id=notice_id)).status == "cancelled"
    assert not await Delivery.filter(notice_id=notice_id).exists()


async def test_the_notice_lists_date_filter_finds_a_notice_by_the_date_it_shows(console: ConsoleHarness) -> None:
    """The list shows one date per notice (sent_at, or scheduled_at while it waits) and its date
    filter is on that date, not on when the draft was made: a notice drafted on 5 January for
    16 February is found on 16 February, while it waits and once sent, as the period summary
    compliance pulls for that day counts it; the day it was drafted does not list it."""
    from bot.core.commands.parser import SendCommand
    from bot.core.compliance.reports import summary_report
    from bot.core.notices import sending

    herald = console.herald
    author = await Staff.get(email=CAM)
    drafted = console.clock.now()  # 2026-01-05 09:00 UTC
    goes_out = drafted + timedelta(days=42)  # 2026-02-16 09:00 UTC
    command = SendCommand(importance="need-to-know", topic="announcements", audience="all",
                          title="February price list", body="New prices from 16 February.", scheduled_at=goes_out)
    preview = await sending.create_draft(author, command, herald.catalog, now=drafted)
    await sending.send_draft(preview.notice.id, author, herald.catalog, now=drafted)
    day, drafted_day = goes_out.date().isoformat(), drafted.date().isoformat()
    robin = await console.signed_in(COMPLIANCE)
    _, waiting = await robin.get(f"/console/notices?since={day}&until={day}")
    assert "February price list" in waiting, f"From = To = {day}, the day it is scheduled for, does not list it"
    assert 'Sent from <input type="date"' in waiting

    console.clock.set(goes_out + timedelta(minutes=1))
    published = await sending.publish_due(herald.catalog, now=console.clock.now(),
                                          platform_policy=herald.settings.platform_policy, channels=herald.channels)
    assert published == 1
    window_start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    in_summary = [r["id"] for r in await summary_report(since=window_start, until=window_start + timedelta(days=1))]
    assert preview.notice.id in in_summary  # compliance's summary: sent that day

    robin = await console.signed_in(COMPLIANCE)  # six weeks on: a new session
    _, listed = await robin.get(f"/console/notices?since={day}&until={day}")
    _, on_drafted_day = await robin.get(f"/console/notices?since={drafted_day}&until={drafted_day}")
    assert "February price list" in listed, (
        f"From = To = {day} (the day the list shows as Sent, and the summary report counts it) does not "
        f"list notice #{preview.notice.id}; filtering on the day it was drafted "
        f"({drafted_day}) {'does' if 'February price list' in on_drafted_day else 'does not either'}")
    assert "February price list" not in on_drafted_day


async def test_bad_addresses_get_a_short_answer(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    response, page = await casey.get("/console/notices/abc")
    assert response.status == 400 and "is a number" in page
    response, page = await casey.get("/console/notices/999")
    assert response.status == 404 and "does not exist" in page and "Traceback" not in page


async def test_a_mistyped_console_address_gets_a_console_page(console: ConsoleHarness) -> None:
    """Every console error is a short page with the console's navigation and a way back, and so
    is a mistyped or outdated address (/console/notice/1, /console/reports). Before, it got
    aiohttp's plain text '404: Not Found' with no way back into the console. Other methods keep
    their answers: 405 where another method is taken, else 404; the API's 404 stays JSON."""
    casey = await console.signed_in(CAM)
    response, page = await casey.get("/console/notice/1")
    assert response.status == 404
    assert response.content_type == "text/html" and "Back to the notices" in page, (
        f"{response.content_type}: {page!r}")
    assert "There is no console page at /console/notice/1" in page
    session = casey.session
    async with session.head(console.url("/console/reports")) as response:
        assert response.status == 404
    async with session.head(console.url(f"/console/notices/{SAMPLE}/report.csv")) as response:
        assert response.status == 405 and response.headers["Allow"] == "GET"  # a HEAD is not an export
    response, _ = await casey.post(f"/console/notices/{SAMPLE}", {})
    assert response.status == 405
    response, _ = await casey.post("/console/notice/1/send", {})
    assert response.status == 404
    assert (await Notice.get(id=SAMPLE)).status == "sent"
    async with session.get(console.url("/api/v1/nothing")) as response:
        assert response.status == 404 and response.content_type == "application/json"
    response, page = await console.browser().get("/console/notice/1")
    assert response.status == 401 and "Sign in with a link from Herald" in page  # nothing said without a session


# ---- directory and engagement -----------------------------------------------------------------------

async def test_the_directory_is_scoped_like_chat(console: ConsoleHarness) -> None:
    jordan = await console.signed_in(OTHER_CAM)
    _, page = await jordan.get("/console/directory")
    assert "Litware Distribution" in page and "Contoso" not in page
    response, _ = await jordan.get("/console/directory/contoso")
    assert response.status == 403
    robin = await console.signed_in(COMPLIANCE)
    _, page = await robin.get("/console/directory?tier=gold")
    assert "Litware Distribution" in page and "Contoso Security" in page and "Tailspin" not in page
    _, page = await robin.get("/console/directory/contoso")
    assert "Lena Fischer" in page and "sandbox" in page and "casey.morgan@northwind.example" in page


async def test_an_organisation_whose_id_has_a_slash_opens_from_the_directory(console: ConsoleHarness) -> None:
    """The directory import takes any org_id (a CRM's 'EMEA/1042'); the page opens at
    /console/directory/EMEA%2F1042. Before, the directory and people pages linked to
    /console/directory/{{ id|urlencode }}, and Jinja's urlencode leaves '/' as it is, so the link
    was /console/directory/EMEA/1042: aiohttp's plain-text '404: Not Found'."""
    await Organisation.create(external_id="EMEA/1042", name="Adatum Partners", tier="gold", region="emea",
                              cam_email=CAM)
    casey = await console.signed_in(CAM)
    _, page = await casey.get("/console/directory")
    link = [h for h in _links(page, "/console/directory/") if "1042" in h]
    assert link, "the directory does not list the organisation"
    response, opened = await casey.get(link[0])
    assert response.status == 200 and "Adatum Partners" in opened, (
        f"the directory links Adatum Partners to {link[0]}: {response.status} {opened[:40]!r}")
    assert link == ["/console/directory/EMEA%2F1042"], link  # one path segment


async def test_engagement_is_aggregated_per_topic_and_segment(console: ConsoleHarness) -> None:
    casey_staff = await Staff.get(email=CAM)
    sent = (await Notice.get(id=SAMPLE)).sent_at
    for minutes, email in ((10, "lena.fischer@contoso.example"), (30, "jonas.weber@contoso.example"),
                           (90, "sam.carter@fabrikam.example")):
        console.clock.set(sent + timedelta(minutes=minutes))
        await _ack(console, email)
    await Member.filter(email="noah.kim@tailspin.example").update(topic_opt_outs=["incentives"])
    since = sent - timedelta(days=1)
    assert await engagement.refresh_engagement(console.clock.now()) >= 1  # the clock's work
    by_topic = {r.key: r for r in await engagement.breakdown(casey_staff, "topic", since=since)}
    operations = by_topic["operations"]
    # Casey's partners: Contoso, Fabrikam, Tailspin (6 recipients of the sample notice; Litware is Jordan's)
    assert (operations.delivered, operations.must_delivered, operations.acknowledged) == (6, 6, 3)
    assert operations.median_seconds == pytest.approx(30 * 60, abs=60)  # to within the minute
    assert by_topic["incentives"].opt_outs == 1
    by_tier = {r.key: r for r in await engagement.breakdown(casey_staff, "tier", since=since)}
    assert by_tier["gold"].acknowledged == 2 and by_tier["gold"].median_seconds == pytest.approx(20 * 60, abs=60)
    assert by_tier["platinum"].opt_outs == 1
    robin = await Staff.get(email=COMPLIANCE)
    everyone = {r.key: r for r in await engagement.breakdown(robin, "region", since=since)}
    assert everyone["amer"].delivered == 3  # Sam (Fabrikam) + Emma and Liam (Litware)

    casey = await console.signed_in(CAM)
    response, page = await casey.get("/console/engagement?days=30")
    assert response.status == 200 and "By topic" in page and "30 min" in page and "Onboarding journeys" in page
    assert "changed every minute (at its tick)" in page  # HERALD_TICK_SECONDS=60
    console.herald.settings = console.herald.settings.model_copy(update={"tick_seconds": 300})
    _, page = await casey.get("/console/engagement?days=30")
    assert "changed every 5 minutes (at its tick)" in page  # it said "every minute" whatever the tick
    assert "Notice figures as of" in page and "not counted yet" not in page


async def test_an_unanswered_question_links_to_why(console: ConsoleHarness) -> None:
    """The engagement page's questions asked without a good answer each link to the knowledge base
    page's explanation of that question."""
    member = await Member.filter(active=True).first()
    await Question.create(member=member, platform="slack", text="Can I bring my dog & cat?", abstained=True,
                          asked_at=console.clock.now())
    casey = await console.signed_in(CAM)
    response, page = await casey.get("/console/engagement?days=30")
    assert response.status == 200 and "can i bring my dog &amp; cat?" in page
    assert 'href="/console/kb-proposals?q=can%20i%20bring%20my%20dog%20%26%20cat%3F#try"' in page
    response, page = await casey.get("/console/kb-proposals?q=can%20i%20bring%20my%20dog%20%26%20cat%3F")
    assert response.status == 200 and 'value="can i bring my dog &amp; cat?"' in page and "dog alien" in page


async def test_the_questions_page_shows_a_page_of_open_hand_offs_and_a_link_on_to_the_rest(
        console: ConsoleHarness) -> None:
    """Nothing closes an open hand-off but the CAM's reply, so a year of questions a CAM never got
    to stays open. The Questions page shows them a page at a time, oldest first, with a link on to
    the next page (keyset on when they were handed off, then id), as the notice list pages; every
    one is reachable, once, in order, and two handed off at the same moment are not skipped."""
    casey = await Staff.get(email=CAM)
    lena = await Member.get(email="lena.fischer@contoso.example")  # Contoso names Casey as its CAM
    start = console.clock.now() - timedelta(days=365)
    await Question.bulk_create([
        Question(member=lena, platform="sandbox", text=f"Question {i} about deal registration?",
                 asked_at=start + timedelta(days=2 * (i // 2)), abstained=True, handoff_status="open", cam=casey,
                 handed_off_at=start + timedelta(days=2 * (i // 2))) for i in range(150)])  # two a moment

    browser = await console.signed_in(CAM)
    seen: list[int] = []
    path = "/console/questions"
    for _ in range(20):
        response, page = await browser.get(path)
        assert response.status == 200
        forms = re.findall(r'action="/console/questions/\d+/reply"', page)
        onward = re.search(r'href="(/console/questions\?[^"]+)"', page)
        assert len(forms) <= 100 and (onward or len(seen) + len(forms) == 150), (
            f"the Questions page renders all {len(forms)} open hand-offs of the year on one page "
            f"({len(page):,} characters of HTML) with no link to a next page")
        seen += [int(n) for n in re.findall(r"Question (\d+) about deal registration", page)]
        if not onward:
            break
        path = onward.group(1).replace("&amp;", "&")
    assert seen == list(range(150))


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "–"), (0, "under 1 min"), (59.4, "under 1 min"), (59.5, "1 min"), (3599, "59 min"),
    (3600, "1 h 0 min"), (5430, "1 h 30 min"), (86399, "23 h 59 min"), (86400, "1 d 0 h"), (90061, "1 d 1 h"),
])
def test_the_duration_filter_shows_a_time_to_acknowledge_in_words(seconds: float | None, shown: str) -> None:
    """The engagement page's median time to acknowledge (`duration`), to the minute under a day."""
    from bot.console.filters import duration

    assert duration(seconds) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (30, "every 30 seconds"), (0.5, "every 0.5 seconds"), (60, "every minute"), (90, "every 90 seconds"),
    (300.0, "every 5 minutes"), (3600, "every hour"), (5400, "every 90 minutes"), (86400, "every 24 hours"),
])
def test_the_every_filter_says_how_often_a_job_runs(seconds: float, shown: str) -> None:
    """How often the tick works out engagement figures and the directory is synced (`every`)."""
    from bot.console.filters import every

    assert every(seconds) == shown


async def test_engagement_figures_are_worked_out_by_the_clock_when_they_change(console: ConsoleHarness) -> None:
    """The page adds up what the clock stored: a click shows after the next refresh, which works
    out again only the notices that changed (and, once a day, every one: members change role)."""
    robin = await Staff.get(email=COMPLIANCE)
    sent = (await Notice.get(id=SAMPLE)).sent_at
    since = sent - timedelta(days=1)
    console.clock.set(sent + timedelta(minutes=5))
    await engagement.refresh_engagement(console.clock.now())
    assert await engagement.refresh_engagement(console.clock.now()) == 0  # nothing changed
    before = {r.key: r for r in await engagement.breakdown(robin, "topic", since=since)}["operations"]
    await _ack(console, "lena.fischer@contoso.example")
    assert {r.key: r for r in await engagement.breakdown(robin, "topic", since=since)}["operations"] == before
    assert await engagement.refresh_engagement(console.clock.now()) == 1  # only the notice clicked
    after = {r.key: r for r in await engagement.breakdown(robin, "topic", since=since)}["operations"]
    assert after.acknowledged == before.acknowledged + 1

    console.clock.set(console.clock.now() + timedelta(hours=2))
    await _import_directory(console, lena="technical")  # the directory gives Lena another role
    assert await engagement.refresh_engagement(console.clock.now()) == 1  # the notice that reached her
    roles = {r.key: r for r in await engagement.breakdown(robin, "role", since=since)}
    assert roles["technical"].acknowledged == 1 and roles["operations"].acknowledged == 0  # Lena's click moved

    figures = await engagement.breakdowns(robin, since=since)
    assert figures.as_of == console.clock.now() and figures.uncounted == 0


async def _import_directory(console: ConsoleHarness, *, lena: str = "operations", tailspin_region: str = "apac",
                            contoso_tier: str = "gold") -> None:
    """The sandbox's directory imported again, with Lena's role, Tailspin's region and Contoso's
    tier as given."""
    from bot.core.directory.importer import import_directory

    text = (Path(__file__).parent.parent / "config" / "sandbox" / "directory.csv").read_text()
    text = text.replace("Lena Fischer,operations", f"Lena Fischer,{lena}")
    text = text.replace("Tailspin Locksmiths,platinum,apac", f"Tailspin Locksmiths,platinum,{tailspin_region}")
    text = text.replace("Contoso Security,gold", f"Contoso Security,{contoso_tier}")
    result = await import_directory(text, now=console.clock.now(), actor="test")
    assert not result.rejected


async def test_a_settled_notice_is_not_counted_again_until_something_it_counts_changes(
        console: ConsoleHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notice sent months ago with nothing left to send is not worked out again every day (a
    year's notices would all be read again in one tick): only when an acknowledgement arrives
    for it, its copies are sent again, or the directory changes the role of a member it reached
    or the tier, region or CAM of an organisation it reached."""
    from tests.query_plans import captured

    robin = await Staff.get(email=COMPLIANCE)
    sent = (await Notice.get(id=SAMPLE)).sent_at
    gold = await send_as_cam(console, "send must-know operations tier:gold | Hold shipments | Stop shipping")
    console.clock.set(sent + timedelta(days=90))
    assert await engagement.refresh_engagement(console.clock.now()) == 2
    for _ in range(3):
        console.clock.advance(hours=13)
        statements = await captured(monkeypatch, lambda: engagement.refresh_engagement(console.clock.now()))
        reads = [sql for sql, _ in statements if "FROM delivery" in sql or "FROM acknowledgement a" in sql]
        assert reads == [], f"settled notices read again: {reads}"

    await _import_directory(console, tailspin_region="emea")  # Tailspin got the sample, not the gold notice
    assert await engagement.refresh_engagement(console.clock.now()) == 1
    regions = {r.key: r for r in await engagement.breakdown(robin, "region", since=sent - timedelta(days=1))}
    assert regions["emea"].delivered == 3 + 3 + 2 and "apac" not in regions  # Contoso twice, Tailspin once
    await _import_directory(console, tailspin_region="emea", contoso_tier="silver")  # Contoso got both
    assert await engagement.refresh_engagement(console.clock.now()) == 2
    assert await engagement.refresh_engagement(console.clock.now()) == 0
    await _import_directory(console, tailspin_region="emea", contoso_tier="silver")  # the same again
    assert await engagement.refresh_engagement(console.clock.now()) == 0
    assert gold


async def test_the_recount_stops_when_the_tick_budget_is_spent(console: ConsoleHarness) -> None:
    """The figures are worked out last in the tick, within what is left of its time budget (as
    digests and reminders are): one notice at least, the others at the next ticks, those never
    worked out first."""
    from bot.common.budget import TimeBudget

    gold = await send_as_cam(console, "send must-know operations tier:gold | Hold shipments | Stop shipping")
    seconds = [0.0]
    budget = TimeBudget(10, monotonic=lambda: seconds[0])
    seconds[0] = 10  # spent by the tick's other jobs
    assert await engagement.refresh_engagement(console.clock.now(), budget=budget) == 1
    assert await engagement.refresh_engagement(console.clock.now(), budget=budget) == 1
    assert await engagement.refresh_engagement(console.clock.now(), budget=budget) == 0
    await _ack(console, "lena.fischer@contoso.example", gold)
    assert await engagement.refresh_engagement(console.clock.now(), budget=TimeBudget(10)) == 1


async def test_an_older_notice_is_looked_at_again_only_when_someone_acknowledges_it(console: ConsoleHarness) -> None:
    """Past the fortnight in which its counts are read every minute, a notice is worked out again
    when an acknowledgement newer than those counted arrives for it (and by the daily recount)."""
    robin = await Staff.get(email=COMPLIANCE)
    sent = (await Notice.get(id=SAMPLE)).sent_at
    console.clock.set(sent + engagement.RECENT + timedelta(days=6))
    await engagement.refresh_engagement(console.clock.now())
    console.clock.advance(minutes=1)
    assert await engagement.refresh_engagement(console.clock.now()) == 0
    await _ack(console, "sam.carter@fabrikam.example")  # three weeks late
    assert await engagement.refresh_engagement(console.clock.now()) == 1
    operations = {r.key: r for r in await engagement.breakdown(robin, "topic", since=sent - timedelta(days=1))}
    assert operations["operations"].acknowledged == 1
    assert await engagement.refresh_engagement(console.clock.now()) == 0


async def test_acknowledgements_are_counted_once_whatever_the_revision(console: ConsoleHarness) -> None:
    await _ack(console, "lena.fischer@contoso.example")
    await _ack(console, "lena.fischer@contoso.example")  # a second click changes nothing
    assert await Acknowledgement.filter(notice_id=SAMPLE).count() == 1
    casey = await console.signed_in(CAM)
    _, live = await casey.get(f"/console/notices/{SAMPLE}/live.json")
    assert '"acknowledged": 1' in live
    assert json.loads(live)["chart"] is None  # only when asked: the page asks every third poll
    _, live = await casey.get(f"/console/notices/{SAMPLE}/live.json?chart=1")
    chart = json.loads(live)["chart"]  # the page swaps its chart for this one as clicks arrive
    assert chart.startswith('<svg class="chart"') and "1 of 8 delivered acknowledged" in chart


async def test_journey_stages_count_members_who_have_not_started(console: ConsoleHarness) -> None:
    from storage.models import JourneyStep

    now = console.clock.now()
    lena = await Member.get(email="lena.fischer@contoso.example")  # operations
    for position, done in ((1, True), (2, True), (3, False)):
        await JourneyStep.create(member=lena, journey="onboarding", step_key=f"s{position}", position=position,
                                 created_at=now, done_at=now if done else None)
    casey_staff = await Staff.get(email=CAM)
    stages = {(r["role"], r["done"]): r["n"] for r in await engagement.journey_stages(casey_staff)}
    # Casey's partners: Lena and Sam are in operations; Lena has done two steps, Sam none
    assert stages[("operations", 2)] == 1 and stages[("operations", 0)] == 1
    everyone = {(r["role"], r["done"]): r["n"] for r in await engagement.journey_stages(
        await Staff.get(email=COMPLIANCE))}
    assert everyone[("operations", 0)] == 2  # and Emma, at Jordan's Litware
    assert sum(everyone.values()) == await Member.filter(active=True).count()


async def test_journey_stages_count_only_steps_of_the_members_current_journey(console: ConsoleHarness) -> None:
    """Jonas (sales) has done all six steps of the sales journey; the directory then makes him
    support. A step counts for another journey only when it has the same key
    (config/journeys.yaml), so `progress` says 2 of the support journey's 6 steps
    (portal-access, notification-preferences). The Engagement page counts the same way: Jonas is
    at stage 2 of the support journey, not "Complete"."""
    from bot.core.directory.importer import import_directory
    from bot.core.onboarding.journeys import load_journeys, progress
    from storage.models import JourneyStep
    from tests.support import DIRECTORY_HEADER

    now = console.clock.now()
    jonas = await Member.get(email="jonas.weber@contoso.example")
    journeys = load_journeys()
    for step in journeys.journeys["sales"].steps:
        await JourneyStep.create(member=jonas, journey="sales", step_key=step.key, position=step.position,
                                 status="done", created_at=now, sent_at=now, done_at=now, platform="sandbox")
    row = ("contoso,Contoso Security,gold,emea,de,security,large,distributor,casey.morgan@northwind.example,"
           "jonas.weber@contoso.example,Jonas Weber,support,Europe/Berlin,de,,,,")
    result = await import_directory(f"{DIRECTORY_HEADER}\n{row}\n", now=now, actor="test")
    assert not result.rejected and result.updated == 1

    casey = await Staff.get(email=CAM)
    (mine,) = [r for r in await progress(casey, "contoso") if r["email"] == "jonas.weber@contoso.example"]
    assert (mine["journey"], mine["done"], mine["total"], mine["completed_at"]) == ("support", 2, 6, None)
    stages = {(r["role"], r["done"]): r["n"] for r in await engagement.journey_stages(casey, journeys)}
    assert stages[("support", 2)] == 1 and ("support", 6) not in stages

    browser = await console.signed_in(CAM)
    response, page = await browser.get("/console/engagement?days=30")
    assert response.status == 200
    support_row = re.search(r'<tr><th scope="row">support .*?</tr>', page, re.S).group(0)
    cells = re.findall(r'<td class="num">([^<]*)</td>', support_row)
    members, complete = cells[0], cells[2]
    assert members == "2"  # Mia Schulz and Jonas
    assert complete == "0", f"the console shows {complete} of {members} support members complete; progress: 2/6"


async def test_a_notice_worked_out_within_the_tick_is_left_to_the_next(console: ConsoleHarness) -> None:
    """With several replicas ticking, a notice another replica has just worked out is not worked
    out again in the same tick; the next tick picks the change up."""
    sent = (await Notice.get(id=SAMPLE)).sent_at
    console.clock.set(sent + timedelta(minutes=5))
    await engagement.refresh_engagement(console.clock.now())
    await _ack(console, "lena.fischer@contoso.example")
    console.clock.advance(seconds=20)
    tick = timedelta(seconds=48)
    assert await engagement.refresh_engagement(console.clock.now(), not_within=tick) == 0
    console.clock.advance(seconds=40)
    assert await engagement.refresh_engagement(console.clock.now(), not_within=tick) == 1


async def test_control_characters_pasted_into_the_compose_form_are_dropped(console: ConsoleHarness) -> None:
    """Text pasted from a PDF can hold NUL, which PostgreSQL's text columns refuse: the console
    drops control characters (but line breaks and tabs) from every form."""
    casey = await console.signed_in(CAM)
    response, page = await casey.post("/console/compose", {
        "topic": "operations", "importance": "need-to-know", "audience": "tier:gold", "title": "Pasted\x07 text",
        "body": "copied from a PDF: \x007\x00 end\n\tnext line"}, allow_redirects=False)
    assert response.status == 303, page[-300:]
    response, page = await casey.get(response.headers["Location"])
    assert response.status == 200
    notice = await Notice.get(title="Pasted text")
    assert notice.body == "copied from a PDF: 7 end\n\tnext line"


async def test_a_double_click_on_update_makes_one_revision_and_no_500(console: ConsoleHarness) -> None:
    """Both requests read revision 1: the second is refused ("changed meanwhile") instead of failing
    on the revisions' unique key with a 500."""
    notice_id = await send_as_cam(console, "send must-know operations tier:gold | Hold shipments | Stop shipping")
    casey = await console.signed_in(CAM)
    form = {"title": "Hold shipments now", "body": "Stop shipping today", "link": "", "material": "yes"}
    answers = await asyncio.gather(casey.post(f"/console/notices/{notice_id}/edit", form),
                                   casey.post(f"/console/notices/{notice_id}/edit", form))
    assert 500 not in [response.status for response, _ in answers]
    assert (await Notice.get(id=notice_id)).revision == 2
    assert await NoticeRevision.filter(notice_id=notice_id).count() == 2
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.edited").count() == 1


def _returning_together(real: Any, parties: int = 2) -> Any:
    """`real` (a coroutine function), returning to each caller only once `parties` calls of it
    have returned: each concurrent caller has done its check before any acts."""
    arrived = 0
    all_in = asyncio.Event()

    async def together(*args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        found = await real(*args, **kwargs)
        arrived += 1
        if arrived >= parties:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return found
    return together


async def test_a_double_click_on_retract_is_answered_as_already_retracted(
        console: ConsoleHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both requests find the notice sent; the second's conditional update then finds it retracted
    by the first. It was told "changed meanwhile; try again", and a retry then "already retracted";
    it is told the latter at once now (and `herald retract` run twice at once exits 0 for both)."""
    notice_id = await send_as_cam(console, "send must-know operations tier:gold | Hold shipments | Stop shipping")
    casey = await console.signed_in(CAM)
    monkeypatch.setattr(revisions, "_authorised", _returning_together(revisions._authorised))

    answers = await asyncio.gather(casey.post(f"/console/notices/{notice_id}/retract", {"reason": "too early"}),
                                   casey.post(f"/console/notices/{notice_id}/retract", {"reason": "too early"}))
    monkeypatch.undo()

    pages = [page for response, page in answers if response.status == 400]
    assert len(pages) == 1 and 500 not in [response.status for response, _ in answers], answers
    assert "is retracted and cannot be retracted" in pages[0], \
        f"the second click was told {'to try again' if 'changed meanwhile' in pages[0] else 'something else'}"
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.retracted").count() == 1


def _started_together(real: Any, parties: int = 2) -> Any:
    """`real` (a coroutine function), entered by each caller only once `parties` callers got to it."""
    arrived = 0
    all_in = asyncio.Event()

    async def together(*args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        arrived += 1
        if arrived >= parties:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return await real(*args, **kwargs)
    return together


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_a_double_click_on_send_the_answer_relays_it_once_and_no_500(
        console: ConsoleHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's reply form has no guard against a double click (console.js adds none); both
    requests find no relay queued (`queue_relay` reads, then `enqueue` reads again and inserts) and
    the second insert broke the outbound message's unique key: the CAM got "Something went wrong
    on Herald's side" (500) for an answer that was in fact sent. `enqueue` takes the concurrent
    duplicate for "already queued" now, and the second click is answered as a replayed one."""
    casey = await Staff.get(email=CAM)
    lena = await Member.get(email="lena.fischer@contoso.example")  # Contoso names Casey as its CAM
    question = await Question.create(member=lena, platform="sandbox", text="Where do I register a deal?",
                                     asked_at=console.clock.now(), abstained=True, handoff_status="open", cam=casey,
                                     handed_off_at=console.clock.now())
    monkeypatch.setattr(assistant, "queue_relay", _started_together(assistant.queue_relay))
    browser = await console.signed_in(CAM)
    form = {"reply": "In the partner portal, Sales tab."}

    answers = await asyncio.gather(browser.post(f"/console/questions/{question.id}/reply", form),
                                   browser.post(f"/console/questions/{question.id}/reply", form))

    statuses = [response.status for response, _ in answers]
    assert 500 not in statuses, f"a double click on Send the answer: {statuses}"
    assert statuses[0] == statuses[1], statuses
    assert await OutboundMessage.filter(purpose="relay", reference=question.id).count() == 1
    assert await AuditEvent.filter(kind="question.answered").count() == 1
