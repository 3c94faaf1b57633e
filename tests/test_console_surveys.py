"""The console's survey and A/B test pages over real HTTP, on the sandbox's sample world: the
lists, a survey's results (response rate, distribution, NPS, breakdowns, the anonymity threshold,
escaped comments, the CSV), a notice's variants compared (not enough data, then a real test) and
rolling out the winner with the same checks and audit events as the CLI."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from bot.console.filters import when
from bot.core.notices import acks
from bot.core.surveys.results import OTHER, results_csv, survey_results
from storage.models import (
    AuditEvent,
    Delivery,
    Member,
    NoticeExperiment,
    Organisation,
    PlatformAccount,
)
from tests.console_support import (
    CAM,
    COMPLIANCE,
    OTHER_CAM,
    SANDBOX,
    ConsoleHarness,
    answer_as,
    delivered_to,
    send_as_cam,
)

pytestmark = pytest.mark.storage

# ---- surveys --------------------------------------------------------------------------------------

async def test_a_survey_page_shows_response_rate_nps_breakdowns_and_escaped_comments(console: ConsoleHarness) -> None:
    survey_id = await send_as_cam(console, "survey announcements all | How likely are you to recommend us? | "
                                     "scale:0-10 | follow-up: Why?")
    people = await delivered_to(survey_id)
    assert len(people) >= 6
    for email, value in zip(people, (10, 9, 7, 3, 10), strict=False):
        await answer_as(console, survey_id, email, value)
    await answer_as(console, survey_id, people[3], 6, comment="<script>alert(1)</script> too **slow**")

    casey = await console.signed_in(CAM)
    response, listing = await casey.get("/console/surveys")
    assert response.status == 200 and f'href="/console/surveys/{survey_id}"' in listing
    assert "How likely are you to recommend us?" in listing and 'href="/console/surveys"' in listing  # nav
    response, page = await casey.get(f"/console/surveys/{survey_id}")
    assert response.status == 200
    assert re.search(r'id="answered-count">5<', page) and f"{5 / len(people) * 100:.0f}%" in page
    assert re.search(r'id="nps">40<', page)  # 10, 9, 7, 6 (changed from 3), 10: (3 promoters - 1 detractor) / 5
    assert "Net Promoter Score" in page and 'id="mean">8.40<' in page
    for dim in ("tier", "region", "role", "organisation"):
        assert f'id="by-{dim}"' in page
    assert "Contoso Security (contoso)" in page and "Who answered what" in page  # named survey
    assert "&lt;script&gt;alert(1)&lt;/script&gt; too **slow**" in page and "<script>alert" not in page
    assert 'aria-label="Answered: 5 of' in page  # the bars have text alternatives

    response, text = await casey.get(f"/console/surveys/{survey_id}/results.csv")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert text == results_csv(await survey_results(survey_id, None, operator=True))

    _, notice_page = await casey.get(f"/console/notices/{survey_id}")
    assert f'href="/console/surveys/{survey_id}"' in notice_page
    jordan = await console.signed_in(OTHER_CAM)
    response, page = await jordan.get(f"/console/surveys/{survey_id}")
    assert response.status == 403 and "How likely" not in page
    _, listing = await jordan.get("/console/surveys")
    assert "How likely" not in listing
    robin = await console.signed_in(COMPLIANCE)
    response, page = await robin.get(f"/console/surveys/{survey_id}")
    assert response.status == 200 and 'id="nps">40<' in page


async def test_the_survey_list_gives_the_same_response_rate_as_the_survey_page(console: ConsoleHarness) -> None:
    """The response rate is answers ÷ members it was delivered to (README), and closing cancels
    the copies not sent yet (held for quiet hours). The survey's page counted so; the Surveys
    list divided by the notice's recipient count (cancelled copies included), showing the CAM a
    lower rate than the survey's own page."""
    from bot.core.commands.parser import SurveyCommand, parse_command
    from bot.core.notices import sending
    from bot.core.surveys.answers import close_survey
    from bot.core.surveys.creating import create_survey_draft
    from storage.models import Staff

    author = await Staff.get(email=CAM)
    command = parse_command("survey announcements all | Is the portal useful? | Yes | No")
    assert isinstance(command, SurveyCommand)
    preview = await create_survey_draft(author, command, console.herald.catalog, now=console.clock.now())
    survey_id = preview.notice.id
    await sending.send_draft(survey_id, author, console.herald.catalog, now=console.clock.now())
    await console.herald.outbox.drain()  # the partners in their quiet hours wait for their morning
    people = await delivered_to(survey_id)
    rows = await Delivery.filter(notice_id=survey_id).count()
    assert 0 < len(people) < rows, (len(people), rows)  # some copies are held for quiet hours
    for email in people:
        await answer_as(console, survey_id, email, 0)
    await close_survey(survey_id, author, now=console.clock.now())  # cancels the held ones

    casey = await console.signed_in(CAM)
    _, page = await casey.get(f"/console/surveys/{survey_id}")
    assert "100%" in page  # every member it was delivered to answered
    _, listing = await casey.get("/console/surveys")
    row = re.search(rf"<tr>\s*<td>{survey_id}</td>.*?</tr>", listing, re.S)
    assert row is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))
    assert f" {len(people)} {len(people)} " in cells and "100%" in cells, cells  # delivered to, answered, rate


async def test_an_anonymous_survey_shows_nothing_under_five_answers_and_no_names(console: ConsoleHarness) -> None:
    survey_id = await send_as_cam(console, "survey announcements all anonymous | Is the portal useful? | Yes | No | "
                                     "follow-up: What is missing?")
    people = await delivered_to(survey_id)
    for email in people[:4]:
        await answer_as(console, survey_id, email, 0)
    casey = await console.signed_in(CAM)
    _, page = await casey.get(f"/console/surveys/{survey_id}")
    assert 'id="suppressed"' in page and "at least 5 people" in page and "(4 so far)" in page
    assert 'id="by-organisation"' not in page and "Who answered what" not in page

    await answer_as(console, survey_id, people[4], 1, comment="Price lists")
    await answer_as(console, survey_id, people[5], 0)
    _, page = await casey.get(f"/console/surveys/{survey_id}")
    assert 'id="suppressed"' not in page and re.search(r'id="answered-count">6<', page)
    results = await survey_results(survey_id, None, operator=True)
    for dim in ("tier", "region", "role", "organisation"):
        table = re.search(rf'id="by-{dim}".*?</table>', page, re.S).group(0)
        shown = [r["segment"] for r in results["breakdowns"][dim]]
        assert all(r["answered"] >= 5 for r in results["breakdowns"][dim])
        for segment in shown:
            assert segment.replace("&", "&amp;") in table
        assert table.count('<tr><th scope="row">') == len(shown)
    assert OTHER in page or all(len(results["breakdowns"][d]) <= 1 for d in results["breakdowns"])
    names = await Member.all().values_list("name", flat=True)
    assert not [name for name in names if name in page]  # no member is named anywhere
    assert "Price lists" in page and "Who answered what" not in page


async def test_an_anonymous_surveys_notice_page_neither_dates_nor_counts_its_answers(console: ConsoleHarness) -> None:
    """The survey's notice page (deliveries, audit trail) names no answer event: "the latest event
    (survey.answered, <time>)" next to the people page's delivery times narrowed a lone answer
    down to a person. A named survey's page lists them as before."""
    survey_id = await send_as_cam(console, "survey announcements all anonymous | Is the portal useful? | Yes | No")
    named_id = await send_as_cam(console, "survey announcements all | Is the wiki useful? | Yes | No")
    people = await delivered_to(survey_id)
    console.clock.advance(minutes=7)
    answered_at = console.clock.now()
    await answer_as(console, survey_id, people[0], 1)
    await answer_as(console, survey_id, people[0], 0)  # changed
    await answer_as(console, named_id, people[0], 1)
    casey = await console.signed_in(CAM)
    _, survey_page = await casey.get(f"/console/surveys/{survey_id}")
    assert 'id="suppressed"' in survey_page  # one answer: the survey page shows nothing

    response, page = await casey.get(f"/console/notices/{survey_id}")
    assert response.status == 200
    assert when(answered_at) not in page
    assert "survey.answered" not in page and "survey.answer_changed" not in page and 'id="answers-hidden"' in page
    _, named = await casey.get(f"/console/notices/{named_id}")
    assert "survey.answered" in named and when(answered_at) in named and 'id="answers-hidden"' not in named


# ---- A/B tests ----------------------------------------------------------------------------------

async def _bigger_directory(console: ConsoleHarness, n: int = 48) -> None:
    """A partner of `n` sandbox members, enough for the tests' minimum of 20 per variant."""
    org = await Organisation.create(external_id="adatum", name="Adatum Security", tier="gold", region="emea",
                                    cam_email=CAM)
    await Member.bulk_create([Member(organisation_id=org.id, email=f"p{i:02d}@adatum.example", name=f"Person {i}",
                                     role="sales", timezone="UTC") for i in range(n)])
    await PlatformAccount.bulk_create([
        PlatformAccount(member_id=m, platform="sandbox", workspace_external_id="sandbox", user_id=email,
                        dm_channel=email)
        for m, email in await Member.filter(organisation_id=org.id).values_list("id", "email")])


async def test_variants_are_compared_and_the_winner_rolled_out_once(console: ConsoleHarness) -> None:
    notice_id = await send_as_cam(console, "send must-know operations all share:50% | Recall A | Stop A || "
                                     "Recall B | <b>Stop</b> B")
    casey = await console.signed_in(CAM)
    _, notice_page = await casey.get(f"/console/notices/{notice_id}")
    assert f'href="/console/notices/{notice_id}/variants"' in notice_page
    _, listing = await casey.get("/console/ab-tests")
    assert f'href="/console/notices/{notice_id}/variants"' in listing and "50%" in listing
    response, page = await casey.get(f"/console/notices/{notice_id}/variants")
    assert response.status == 200 and "not enough data yet" in page and "at least 20" in page
    assert 'id="rollout-form"' in page and 'value="A"' in page and 'value="B"' in page
    held = await Delivery.filter(notice_id=notice_id, status="held").count()
    assert held > 0

    jordan = await console.signed_in(OTHER_CAM)
    response, _ = await jordan.get(f"/console/notices/{notice_id}/variants")
    assert response.status == 403
    response, _ = await jordan.post(f"/console/notices/{notice_id}/rollout", {"variant": "B"})
    assert response.status == 403
    robin = await console.signed_in(COMPLIANCE)
    response, page = await robin.get(f"/console/notices/{notice_id}/variants")
    assert response.status == 200 and 'id="rollout-form"' not in page  # compliance reads, never changes
    response, _ = await robin.post(f"/console/notices/{notice_id}/rollout", {"variant": "B"})
    assert response.status == 403
    response, page = await casey.post(f"/console/notices/{notice_id}/rollout", {"variant": "B"}, csrf="forged")
    assert response.status == 403 and "CSRF" in page
    assert (await NoticeExperiment.get(notice_id=notice_id)).winner == ""

    response, page = await casey.post(f"/console/notices/{notice_id}/rollout", {"variant": "b"})
    assert response.status == 200 and response.url.path == f"/console/notices/{notice_id}/variants"
    assert "Variant B is on its way" in page and 'id="rollout-form"' not in page
    assert (await NoticeExperiment.get(notice_id=notice_id)).winner == "B"
    assert await Delivery.filter(notice_id=notice_id, status="held").count() == 0
    event = await AuditEvent.get(kind="notice.rolled_out", notice_id=notice_id)
    assert event.actor == CAM and event.data["released"] == held
    response, page = await casey.post(f"/console/notices/{notice_id}/rollout", {"variant": "A"})
    assert response.status == 400 and "a second variant would reach people who already have one" in page
    await console.herald.outbox.drain()
    per_member = Counter(await Delivery.filter(notice_id=notice_id).values_list("member_id", flat=True))
    assert set(per_member.values()) == {1}  # nobody got two variants
    _, page = await casey.get(f"/console/notices/{notice_id}/variants")
    assert "&lt;b&gt;Stop&lt;/b&gt;" not in page or "<b>Stop</b>" not in page  # titles only, escaped anyway
    rollout = re.search(r'<dd id="rollout">.*?</dd>', page, re.S).group(0)  # apart from the experiment's figures
    assert f"to {held} held-back members" in rollout and f"{held} delivered, 0 acknowledged" in rollout
    first_wave = await Delivery.filter(notice_id=notice_id, rolled_out=False).count()
    figures = re.findall(r'<td class="num">(\d+)</td><td class="num">(\d+)</td>', page)  # assigned, delivered
    assert len(figures) == 2 and sum(int(d) for _, d in figures) == first_wave == len(per_member) - held


async def test_with_enough_data_the_page_gives_the_tests_p_value(console: ConsoleHarness) -> None:
    await _bigger_directory(console)
    notice_id = await send_as_cam(console, "send must-know operations org:adatum | Recall A | Stop A || Recall B | Stop B")
    variant = dict(await Delivery.filter(notice_id=notice_id).values_list("member__email", "variant"))
    assert Counter(variant.values()) == {"A": 24, "B": 24}
    a_people = [e for e, v in sorted(variant.items()) if v == "A"]
    b_people = [e for e, v in sorted(variant.items()) if v == "B"]
    for email in a_people[:20] + b_people[:5]:
        console.clock.advance(minutes=3)
        await acks.acknowledge(notice_id, user_id=email, now=console.clock.now(), **SANDBOX)
    casey = await console.signed_in(CAM)
    _, page = await casey.get(f"/console/notices/{notice_id}/variants")
    ack = re.search(r'id="compare-ack_rate">.*?</li>', page, re.S).group(0)
    assert "Pearson&#39;s chi-square test, p = " in ack and "variant A does best and the difference is significant" in ack
    assert "83%" in page and "21%" in page  # 20 of 24, 5 of 24
    times = re.search(r'id="compare-time_to_acknowledge">.*?</li>', page, re.S).group(0)
    assert "Mann-Whitney U test" in times
    assert 'id="rollout-form"' not in page  # everyone got a variant at once: nothing held back to roll out
