"""The console in a real browser (headless Chromium): sign in through a link, watch a notice's
count rise as clicks arrive, drill down to a non-acknowledger, download a report, compose with a
preview drawn by Microsoft's Adaptive Cards renderer, a CAM refused another CAM's notice, a forged
form refused, an expired link refused, the sandbox from inbox to acknowledgement, a partner's long
link wrapped on a phone, and the live counts saying so when the session has ended.

Screenshots of the main pages are kept in tests/artifacts/ (git-ignored) to be looked at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import ARTIFACTS, LiveConsole, chromium, close_chromium, require_browser
from tests.console_support import CAM, OTHER_CAM

pytestmark = pytest.mark.browser

WAIT = 15  # seconds the browser may take to show what the server already did


@pytest.fixture(scope="session")
def downloads() -> Iterator[Path]:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="herald-downloads-"))
    yield path


@pytest.fixture(scope="session")
def driver(downloads: Path):  # noqa: ANN201
    require_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    browser = chromium(downloads)
    yield browser
    close_chromium(browser)


@pytest.fixture
def live(tmp_path: Path, driver) -> Iterator[LiveConsole]:  # noqa: ANN001
    console = LiveConsole(tmp_path / "console.db").start()
    driver.get("about:blank")  # the last test's page stops polling its (stopped) server
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get_log("browser")  # start each test with an empty console log
    try:
        yield console
    finally:
        console.stop()


def _wait(driver, condition, what: str):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=f"waited for {what}")


def _css(driver, selector: str):  # noqa: ANN001, ANN202
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _all(driver, selector: str):  # noqa: ANN001, ANN202
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _sign_in(driver, url: str) -> None:  # noqa: ANN001
    driver.get(url)
    _css(driver, "#continue").click()
    # the list loaded, not only its address committed: a navigation started before it is done can
    # leave the next page empty (seen once under CI's load)
    _wait(driver, lambda d: d.current_url.endswith("/console/notices")
          and d.execute_script("return document.readyState") == "complete" and "Sign out" in d.page_source,
          "the notice list")


def _shot(driver, name: str, *, width: int = 1280) -> None:  # noqa: ANN001
    """A full-page screenshot at this width (Chromium's capture beyond the viewport)."""
    import base64

    driver.set_window_size(width, 900)
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 8000)")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
    driver.set_window_size(1280, 900)


def _no_script_errors(driver) -> None:  # noqa: ANN001
    """No JavaScript errors and no Content-Security-Policy violations on the page."""
    severe = [entry["message"] for entry in driver.get_log("browser")
              if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]]
    assert not severe, severe


def _chart_text(driver) -> str:  # noqa: ANN001
    """The chart's text alternative, as a screen reader gets it."""
    return driver.execute_script("var d = document.querySelector('svg.chart desc'); return d ? d.textContent : '';")


def _click_as_partner(live: LiveConsole, email: str, notice_id: int = 1) -> None:
    """A partner presses Acknowledge in their sandbox inbox: a real POST to the sandbox adapter."""
    async def click() -> None:
        from storage.models import Member

        member = await Member.get(email=email)
        partner = await live.harness.signed_in(CAM)  # the sandbox's inboxes are for signed-in staff
        await partner.get(f"/console/sandbox/{member.id}")
        response, _ = await partner.post(f"/console/sandbox/{member.id}/action",
                                         {"action_id": "herald_ack", "value": str(notice_id)})
        assert response.status == 200
    live.run(click())


def test_sign_in_watch_the_count_rise_drill_down_and_download(live: LiveConsole, driver, downloads: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    token = re.search(r"token=(hcl_\S+)", live.harness.announced[0]).group(1)  # the start-up link
    _sign_in(driver, live.url(f"/console/sign-in?token={token}"))
    assert "Recall of NW-200 firmware 4.2" in driver.page_source
    _shot(driver, "notices")

    driver.find_element(By.LINK_TEXT, "Recall of NW-200 firmware 4.2").click()
    count = _css(driver, "#acknowledged-count")
    assert count.text == "0"
    _wait(driver, lambda d: not _css(d, ".live-note").get_attribute("hidden"), "the live counts")
    for expected, email in ((1, "lena.fischer@contoso.example"), (2, "jonas.weber@contoso.example"),
                            (3, "ruby.walsh@tailspin.example")):
        live.harness.clock.advance(minutes=25)  # the clicks come in over an hour and a quarter
        _click_as_partner(live, email)
        _wait(driver, lambda d, n=expected: _css(d, "#acknowledged-count").text == str(n),
              f"the count to reach {expected} without a reload")
    assert "38%" in _css(driver, "[data-rate]").text
    _wait(driver, lambda d: "3 of 8 delivered acknowledged" in _chart_text(d), "the chart to follow without a reload")
    path = _css(driver, "svg.chart path.acknowledged").get_attribute("d")
    assert path.count("L") >= 2  # the line climbs through the clicks
    _no_script_errors(driver)
    driver.refresh()  # the tables are drawn by the server
    assert "3 of 8 delivered acknowledged" in driver.page_source
    _shot(driver, "notice")
    _shot(driver, "notice-phone", width=390)

    # drill down: Contoso's outstanding → the people who have not acknowledged
    row = next(r for r in _all(driver, "table.breakdown tr") if "Contoso Security" in r.text)
    row.find_element(By.CSS_SELECTOR, "td:last-child a").click()
    _wait(driver, lambda d: "/people" in d.current_url, "the people page")
    assert "Mia Schulz" in driver.page_source and "Lena Fischer" not in driver.page_source
    _shot(driver, "people")

    driver.back()
    _css(driver, "#download-csv").click()
    report = downloads / "notice-1-report.csv"
    _wait(driver, lambda d: report.exists() and report.stat().st_size > 0, "the CSV download")
    text = report.read_text(encoding="utf-8")
    assert "# acknowledged: 3" in text and "mia.schulz@contoso.example" in text
    report.unlink()

    live.run(live.harness.herald.tick())  # the clock works out the engagement figures
    for page, name in (("/console/directory", "directory"), ("/console/directory/contoso", "organisation"),
                       ("/console/engagement", "engagement")):
        driver.get(live.url(page))
        _shot(driver, name)
    assert "Acknowledged" in driver.page_source and "Onboarding journeys" in driver.page_source
    assert "Notice figures as of" in driver.page_source
    _no_script_errors(driver)


def test_compose_with_a_preview_drawn_by_microsofts_renderer(live: LiveConsole, driver) -> None:  # noqa: ANN001
    _sign_in(driver, live.sign_in_url(CAM))
    driver.get(live.url("/console/compose"))
    _css(driver, "#importance").send_keys("Must know")
    _css(driver, "#audience").clear()
    _css(driver, "#audience").send_keys("tier:gold")
    _wait(driver, lambda d: _css(d, "#recipient-count").text.startswith("5 recipients"), "the live recipient count")
    _css(driver, "#title").send_keys("Hold shipments")
    _css(driver, "#body").send_keys("Please **stop** shipping _today_:\n- check pallets\n- call the depot\n\n"
                                    "Details: [the list](https://partners.northwind.example/list) <!channel>")
    _shot(driver, "compose")
    _css(driver, "#preview").click()
    _wait(driver, lambda d: _css(d, ".ac-host").get_attribute("data-rendered") == "yes", "the Adaptive Card")

    card = _css(driver, ".ac-host")
    assert card.get_attribute("data-validation-failures") == "0"  # the card validates cleanly
    items = [li.text for li in card.find_elements("css selector", "ul li")]
    assert items == ["check pallets", "call the depot"]
    assert "stop" in [strong.text for strong in card.find_elements("css selector", "strong")]
    assert card.find_element("css selector", "em").text == "today"
    link = card.find_element("css selector", "a[href='https://partners.northwind.example/list']")
    assert link.text == "the list" and "<!channel>" in card.text
    assert card.find_element("css selector", "button").text == "Acknowledge"
    slack = _css(driver, ".slack-frame")
    assert "stop" in [s.text for s in slack.find_elements("css selector", "strong")] and "• check pallets" in slack.text
    assert slack.find_element("css selector", "a").get_attribute("href") == "https://partners.northwind.example/list"
    _no_script_errors(driver)
    _shot(driver, "preview")
    _shot(driver, "preview-phone", width=390)

    _css(driver, "#send").click()
    _wait(driver, lambda d: "/console/notices/2" in d.current_url and "notice-status" in d.page_source, "the notice")
    assert "Hold shipments" in driver.page_source


def test_a_cam_is_refused_another_cams_notice_and_forged_forms_and_expired_links(live: LiveConsole, driver) -> None:  # noqa: ANN001
    _sign_in(driver, live.sign_in_url(OTHER_CAM))
    driver.get(live.url("/console/notices/1"))
    _wait(driver, lambda d: "it is another CAM's" in d.page_source, "the refusal")
    assert "Lena" not in driver.page_source
    _shot(driver, "refused")

    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    _sign_in(driver, live.sign_in_url(CAM))
    driver.get(live.url("/console/notices/1"))
    _css(driver, "details.change:nth-of-type(2) summary").click()
    _css(driver, "#retract-reason").send_keys("forged")
    driver.execute_script(  # what a page on another site cannot know: the session's CSRF token
        "document.querySelector('form[action$=\"/retract\"] input[name=_csrf]').value = 'forged';")
    _css(driver, "form[action$='/retract'] button").click()
    _wait(driver, lambda d: "CSRF check failed" in d.page_source, "the refusal")
    assert live.run(_status(1)) == "sent"

    url = live.sign_in_url(CAM)
    live.harness.clock.advance(minutes=11)
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(url)
    _css(driver, "#continue").click()
    _wait(driver, lambda d: "has expired" in d.page_source, "the expired link")
    _shot(driver, "expired-link")


async def _status(notice_id: int) -> str:
    from storage.models import Notice

    return (await Notice.get(id=notice_id)).status


def test_the_sandbox_from_inbox_to_acknowledgement(live: LiveConsole, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    _sign_in(driver, live.sign_in_url(CAM))
    driver.get(live.url("/console/sandbox"))
    _shot(driver, "inboxes")
    driver.find_element(By.LINK_TEXT, "Lena Fischer").click()
    _wait(driver, lambda d: "Recall of NW-200" in d.page_source, "Lena's inbox")
    _shot(driver, "inbox-slack")
    _css(driver, "button.sk-button.danger").click()  # Acknowledge, as Slack draws it
    _wait(driver, lambda d: "Acknowledged by" in d.page_source, "the acknowledged message")
    assert "Acknowledged. The notice now shows" in _css(driver, "#inbox-note").text

    # Jonas uses the Teams look: the button is drawn by Microsoft's renderer and posts an Action.Execute
    driver.get(live.url("/console/sandbox"))
    driver.find_element(By.LINK_TEXT, "Jonas Weber").click()
    driver.find_element(By.LINK_TEXT, "as Teams").click()
    _wait(driver, lambda d: _css(d, ".ac-host").get_attribute("data-rendered") == "yes", "the Teams card")
    _shot(driver, "inbox-teams")
    _shot(driver, "inbox-teams-phone", width=390)
    acknowledge = next(b for b in _all(driver, ".ac-host button") if b.text == "Acknowledge")
    acknowledge.click()
    _wait(driver, lambda d: "note=acknowledged" in d.current_url, "the acknowledgement")
    _wait(driver, lambda d: "Acknowledged by" in _css(d, ".ac-host").text, "the updated card")
    _no_script_errors(driver)

    driver.get(live.url("/console/notices/1"))
    assert _css(driver, "#acknowledged-count").text == "2"


def test_survey_results_and_an_ab_test_rolled_out_from_the_keyboard(live: LiveConsole, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.console_support import answer_as, delivered_to, send_as_cam

    async def prepare() -> tuple[int, int]:
        survey_id = await send_as_cam(live.harness, "survey announcements all | How likely are you to recommend "
                                                    "the partner portal? | scale:0-10 | follow-up: Why?")
        for email, value in zip(await delivered_to(survey_id), (10, 9, 8, 6, 10, 3), strict=False):
            await answer_as(live.harness, survey_id, email, value, comment="<b>More</b> webinars" if value == 3 else None)
        notice_id = await send_as_cam(live.harness, "send must-know operations all share:50% | Recall: stop NW-200 "
                                                    "installs | Stop A || Action needed: NW-200 firmware | Stop B")
        return survey_id, notice_id
    survey_id, notice_id = live.run(prepare(), timeout=60)

    _sign_in(driver, live.sign_in_url(CAM))
    driver.find_element(By.LINK_TEXT, "Surveys").click()
    _wait(driver, lambda d: d.current_url.endswith("/console/surveys"), "the survey list")
    _shot(driver, "surveys")
    driver.find_element(By.PARTIAL_LINK_TEXT, "How likely are you to recommend").click()
    _wait(driver, lambda d: f"/console/surveys/{survey_id}" in d.current_url, "the survey's results")
    assert _css(driver, "#nps").text == "17"  # 3 promoters, 2 detractors of 6
    assert _css(driver, "#answered-count").text == "6"
    assert "<b>More</b> webinars" in _css(driver, ".comments").text  # typed by a partner: shown as text
    assert [t.text for t in _all(driver, "table.breakdown caption")] == [
        "By tier", "By region", "By role", "By organisation"]
    _no_script_errors(driver)
    _shot(driver, "survey")
    _shot(driver, "survey-phone", width=390)

    driver.get(live.url(f"/console/notices/{notice_id}"))
    link = _css(driver, "#variants-link")
    link.send_keys(Keys.ENTER)  # keyboard only from here
    _wait(driver, lambda d: d.current_url.endswith(f"/console/notices/{notice_id}/variants"), "the A/B test")
    assert "not enough data yet" in _css(driver, "#compare-ack_rate").text
    _shot(driver, "variants")
    choice = _css(driver, "#rollout-form input[value='B']")
    choice.send_keys(Keys.SPACE)
    assert choice.is_selected()
    _css(driver, "#rollout-form button[type='submit']").send_keys(Keys.ENTER)
    _wait(driver, lambda d: "Variant B is on its way" in d.page_source, "the roll-out")
    assert "variant B" in _css(driver, "#winner").text and not _all(driver, "#rollout-form")
    _no_script_errors(driver)
    _shot(driver, "variants-rolled-out")
    _shot(driver, "variants-phone", width=390)
    driver.find_element(By.LINK_TEXT, "A/B tests").click()
    _wait(driver, lambda d: d.current_url.endswith("/console/ab-tests"), "the A/B test list")
    assert "variant B" in driver.page_source
    _shot(driver, "ab-tests")


def test_the_sandbox_hands_a_question_to_the_cam_and_shows_the_reply(live: LiveConsole, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of

    _sign_in(driver, live.sign_in_url(CAM))
    driver.get(live.url("/console/sandbox"))
    driver.find_element(By.LINK_TEXT, "Jonas Weber").click()
    _wait(driver, lambda d: _all(d, "#question"), "Jonas's inbox")
    _css(driver, "#question").send_keys("Can I get a demo unit for a trade fair?")
    _css(driver, "form.ask button").click()
    _wait(driver, lambda d: "The assistant answered below" in d.page_source, "the assistant's answer")
    ask = next(b for b in _all(driver, "button.sk-button") if b.text == "Meinen CAM fragen")  # Jonas: de
    ask.click()
    _wait(driver, lambda d: "Ihre Frage für Casey Morgan notiert" in d.page_source, "the hand-off")

    driver.get(live.url("/console/questions"))
    assert "Can I get a demo unit for a trade fair?" in driver.page_source and "Jonas Weber" in driver.page_source
    _css(driver, "textarea[name='reply']").send_keys("Yes: ask for *DEMO-200* in the portal.")
    send = _css(driver, "form[action$='/reply'] button")
    send.click()
    # the form posts from /console/questions back to it: the URL alone cannot say the post is done
    _wait(driver, staleness_of(send), "the reply to be posted")
    _wait(driver, lambda d: d.current_url.endswith("/console/questions"), "the questions page")
    teach = _css(driver, "#answered-" + str(_answered_id(driver)) + " form button")
    assert teach.text == "Add my reply as a new entry"
    teach.click()
    _wait(driver, lambda d: _all(d, "#learn-note"), "the proposal's note")
    assert "as a new entry with your reply as its answer" in _css(driver, "#learn-note").text
    _no_script_errors(driver)
    _shot(driver, "questions-teach")

    driver.get(live.url("/console/sandbox"))
    driver.find_element(By.LINK_TEXT, "Jonas Weber").click()

    def arrived(d) -> bool:  # noqa: ANN001 - the reply leaves through the outbox: reload until it is in
        if "Casey Morgan hat Ihre Frage beantwortet" in d.page_source:
            return True
        d.refresh()
        return False
    _wait(driver, arrived, "the CAM's reply in the inbox")
    assert "DEMO-200" in driver.page_source
    _no_script_errors(driver)
    _shot(driver, "inbox-handoff")


def _answered_id(driver) -> int:  # noqa: ANN001 - the first answered hand-off on the questions page
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.CSS_SELECTOR, "section[id^='answered-']").get_attribute("id").split("-")[1])


def test_the_knowledge_base_page_tries_a_question(live: LiveConsole, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    _sign_in(driver, live.sign_in_url(CAM))
    driver.find_element(By.LINK_TEXT, "Knowledge base").click()
    _wait(driver, lambda d: _all(d, "#q"), "the knowledge base page")
    _css(driver, "#q").send_keys("how do I reset the PIN of my bank card")
    _css(driver, "#try button").click()
    _wait(driver, lambda d: _all(d, "ul.explanation"), "the explanation")
    text = _css(driver, "ul.explanation").text
    assert "threshold" in text and "bank alien" in text, text
    assert _css(driver, "#q").get_attribute("value") == "how do I reset the PIN of my bank card"
    _no_script_errors(driver)
    _shot(driver, "kb-try")


def test_a_partners_long_link_does_not_make_the_questions_page_wider_than_a_phone(
        live: LiveConsole, driver) -> None:  # noqa: ANN001
    """README: 'readable on a phone'. Partners paste links into their questions: one long unbroken
    word (the link) in the question's blockquote wraps inside a 390-pixel phone screen. Before,
    the console's CSS had no overflow-wrap, so it made the whole Questions page wider than the
    phone: the page scrolled sideways and the reply box was cut off."""
    async def hand_off() -> None:
        from storage.models import Member, Question, Staff

        lena = await Member.get(email="lena.fischer@contoso.example")  # Contoso names Casey as CAM
        now = live.harness.clock.now()
        await Question.create(
            member=lena, platform="sandbox", asked_at=now, abstained=True, handoff_status="open",
            cam=await Staff.get(email=CAM), handed_off_at=now,
            text="Is this the current price list? https://partners.northwind.example/portal/documents/"
                 "pricing/2026/Q1/NW-200-series-reseller-price-list-EMEA-final-v3.xlsx")
    live.run(hand_off())
    _sign_in(driver, live.sign_in_url(CAM))
    try:
        driver.set_window_size(390, 844)
        driver.get(live.url("/console/questions"))
        assert "NW-200-series-reseller-price-list" in driver.page_source
        inner, scroll = driver.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollWidth];")
        assert scroll <= inner, (
            f"at a phone's 390 px the Questions page is {scroll} px wide (viewport {inner} px): the partner's "
            "link does not wrap, so the page scrolls sideways")
    finally:
        driver.set_window_size(1280, 900)
    _shot(driver, "questions-phone", width=390)


def test_the_live_counts_say_so_when_the_session_has_ended(live: LiveConsole, driver) -> None:  # noqa: ANN001
    """The notice page says its counts 'update by themselves'. Once the 8-hour session ends, it
    says the figures have stopped and why, and stops asking. Before, every poll of live.json got
    a 401 that the script dropped without a word: a partner acknowledged, the page kept showing
    0 acknowledged and still claimed to be live."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    _sign_in(driver, live.sign_in_url(CAM))
    driver.get(live.url("/console/notices/1"))
    _wait(driver, lambda d: not _css(d, ".live-note").get_attribute("hidden"), "the live note")
    assert _css(driver, "#acknowledged-count").text == "0"
    live.harness.clock.advance(hours=8, minutes=5)  # the session has ended

    async def acknowledge() -> None:
        from bot.core.notices import acks

        result = await acks.acknowledge(1, platform="sandbox", workspace_id="sandbox",
                                        user_id="lena.fischer@contoso.example", now=live.harness.clock.now())
        await live.herald.update_acknowledged_copies(result)
    live.run(acknowledge())

    def told(d) -> bool:  # noqa: ANN001 - the count followed, or the page says it no longer can
        page = d.find_element("css selector", "[data-live]").text.lower()
        return d.find_element("css selector", "#acknowledged-count").text == "1" or "session" in page \
            or "sign in" in page
    try:
        WebDriverWait(driver, 10, 0.2).until(told)
    except TimeoutException:
        note = _css(driver, "[data-live]").text
        pytest.fail("a partner acknowledged after the session ended: the page still shows 0 acknowledged and "
                    f"says nothing of the ended session (the panel reads: {note!r})")
    assert _css(driver, ".live-note").text == "Your session has ended: sign in again to see new figures."
