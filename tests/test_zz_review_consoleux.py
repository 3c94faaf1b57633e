"""Review (console UX): defects a CAM, a compliance officer or an admin meets in the console,
each shown over real HTTP against the real app in sandbox mode (the `console` fixture: the
sample directory and must-know notice #1 delivered to 8 members, a manual clock, a real
signed-in cookie jar and the pages' CSRF tokens)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from storage.models import Member, Organisation
from tests.console_support import CAM, COMPLIANCE, ConsoleHarness, send_as_cam

pytestmark = pytest.mark.storage

SAMPLE = 1  # the sandbox's sample notice: must-know, to all; 3 of its 8 recipients are at contoso


def _links(page: str, prefix: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="(' + re.escape(prefix) + r'[^"]*)"', page)]


def _people_rows(page: str) -> int:
    return len(re.findall(r'<tr>\s*<th scope="row">', page))


# ---- 1. the breakdown's drill-down says "everyone has acknowledged" when 3 have not -----------------

# ---- 2. a refused edit throws away what the CAM typed ---------------------------------------------

# ---- 3. a session that ends while the CAM writes loses the notice ----------------------------------

# ---- 4. an organisation id with a slash: the directory's link is a bare 404 -----------------------

# ---- 5. an unknown console address is a bare text 404 -----------------------------------------------

# ---- 6. the revisions list prints raw ISO times -----------------------------------------------------

# ---- 7. in a browser: a partner's long link pushes the Questions page wider than a phone -----------

@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from tests.browser_support import chromium, close_chromium, require_browser

    require_browser()
    downloads = tmp_path_factory.mktemp("downloads")
    browser = chromium(downloads)
    browser.downloads = downloads
    yield browser
    close_chromium(browser)


@pytest.mark.browser
def test_a_partners_long_link_does_not_make_the_questions_page_wider_than_a_phone(
        tmp_path, driver) -> None:  # noqa: ANN001
    """README: 'readable on a phone'. Partners paste links into their questions; the console's
    CSS has no overflow-wrap anywhere, so one long unbroken word (the link) in the question's
    blockquote makes the whole Questions page wider than a 390-pixel phone screen: the page
    scrolls sideways and the reply box is cut off."""
    from tests.browser_support import LiveConsole

    live = LiveConsole(tmp_path / "console.db").start()
    try:
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
        driver.get("about:blank")
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        driver.set_window_size(390, 844)
        driver.get(live.sign_in_url(CAM))
        driver.find_element("css selector", "#continue").click()
        driver.get(live.url("/console/questions"))
        assert "NW-200-series-reseller-price-list" in driver.page_source
        inner, scroll = driver.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollWidth];")
        assert scroll <= inner, (
            f"at a phone's 390 px the Questions page is {scroll} px wide (viewport {inner} px): the partner's "
            "link does not wrap, so the page scrolls sideways")
    finally:
        driver.set_window_size(1280, 900)
        live.stop()


def _signed_in_on_the_sample_notice(live, driver) -> None:  # noqa: ANN001
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(live.sign_in_url(CAM))
    driver.find_element("css selector", "#continue").click()
    WebDriverWait(driver, 15, 0.1).until(lambda d: d.current_url.endswith("/console/notices"))
    driver.get(live.url(f"/console/notices/{SAMPLE}"))
    WebDriverWait(driver, 15, 0.1).until(
        lambda d: not d.find_element("css selector", ".live-note").get_attribute("hidden"))


@pytest.mark.browser
def test_the_live_counts_say_so_when_the_session_has_ended(tmp_path, driver) -> None:  # noqa: ANN001
    """The notice page says its counts 'update by themselves'. Once the 8-hour session ends, every
    poll of live.json gets a 401 that the script drops without a word: a partner acknowledges,
    the page keeps showing 0 acknowledged and still claims to be live, and the CAM watching it
    has no way to know the figures are frozen."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser_support import LiveConsole

    live = LiveConsole(tmp_path / "console.db").start()
    try:
        _signed_in_on_the_sample_notice(live, driver)
        assert driver.find_element("css selector", "#acknowledged-count").text == "0"
        live.harness.clock.advance(hours=8, minutes=5)  # the session has ended

        async def acknowledge() -> None:
            from bot.core.notices import acks

            result = await acks.acknowledge(SAMPLE, platform="sandbox", workspace_id="sandbox",
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
            note = driver.find_element("css selector", "[data-live]").text
            pytest.fail("a partner acknowledged after the session ended: the page still shows 0 acknowledged and "
                        f"says nothing of the ended session (the panel reads: {note!r})")
    finally:
        live.stop()

