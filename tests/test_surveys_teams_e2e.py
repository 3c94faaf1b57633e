"""Pulse surveys and A/B variants in Microsoft Teams, over real HTTP against the fake Bot Connector:
survey cards with Action.Execute answers (rows of at most six), changed answers and the comment
input, anonymous thresholds, variant balance and the winner's rollout with no double sends."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.app import HERALD_KEY, build_app
from bot.common.clock import ManualClock
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from config.settings import load_settings
from bot.core.notices.interactions import link_tracker
from storage.models import Delivery, NoticeInteraction, SurveyAnswer, SurveyAnswerChange
from tests.fakes.bot_connector import FakeBotConnector
from tests.support import SIGNING_SECRET, directory_csv
from tests.teams_support import TENANT, TeamsRig, actions_of, card_of, texts_of

PEOPLE = [(org, n) for org, count in (("north", 4), ("south", 2)) for n in range(1, count + 1)]
DIRECTORY = directory_csv([
    f"{org},{org.title()} Ltd,{'gold' if org == 'north' else 'silver'},emea,fr,retail,large,reseller,cam@vendor.example,"
    f"p{n}@{org}.example,P{n} {org.title()},{'sales' if n % 2 else 'support'},UTC,fr,,,{TENANT},aad-{org}-{n}"
    for org, n in PEOPLE])
AADS = [f"aad-{org}-{n}" for org, n in PEOPLE]


@pytest.fixture
async def teams(db: str):
    connector = FakeBotConnector()
    await connector.start()
    for aad in (*AADS, "aad-cam", "aad-outsider"):
        connector.open_conversation(aad, TENANT)
    clock = ManualClock()
    config = load_settings(database_url=db, slack_signing_secret=SIGNING_SECRET, teams_check_service_url=False,
                           teams_service_url=connector.url)
    app = build_app(config, clock=clock, run_worker=False, manage_database=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await import_directory(DIRECTORY, now=clock.now(), actor="test")
    await add_staff("cam@vendor.example", "cam", name="Casey CAM", teams_aad="aad-cam", now=clock.now(), actor="test")
    rig = TeamsRig(connector, None, server, aiohttp.ClientSession(), clock, app[HERALD_KEY])  # type: ignore[arg-type]
    try:
        yield rig
    finally:
        await rig.session.close()
        await server.close()
        await connector.stop()


def _last_card(teams: TeamsRig, aad: str) -> dict[str, Any]:
    return card_of(teams.connector.activities(f"a:conv-{aad}")[-1])


def _answer_buttons(card: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [s["actions"] for s in card["body"] if s.get("type") == "ActionSet"
            and s["actions"][0]["verb"] == "herald.survey_answer"]


async def _send_preview(teams: TeamsRig, text: str) -> int:
    preview = card_of(await teams.say("aad-cam", text))
    send = next(a for a in actions_of(preview) if a["verb"] == "herald.send")
    answer = await teams.invoke("aad-cam", "herald.send", send["data"])
    assert "Sending notice" in str(answer["value"])
    await teams.herald.outbox.drain()
    return send["data"]["notice_id"]


async def test_a_member_can_answer_a_survey_card_whose_send_is_in_doubt(teams: TeamsRig) -> None:
    """The card reached the member but its copy is still `sending` (its outcome not written yet,
    or the replica that sent it died before writing it): the press proves the card landed. The
    answer is recorded and the card comes back with it, as for an Acknowledge press on such a
    copy; it was refused ("This survey was not sent to you") and lost."""
    survey_id = await _send_preview(teams, "survey announcements all | Ready for Q1? | Yes | No")
    # the copy as it is between the connector's answer and the outcome's write
    await Delivery.filter(notice_id=survey_id, member__email="p1@north.example").update(status="sending")

    answered = await teams.invoke("aad-north-1", "herald.survey_answer", {"notice_id": survey_id, "value": 0})
    assert "Your answer: **Yes**" in " ".join(texts_of(answered["value"])), answered
    assert (await SurveyAnswer.get(survey__notice_id=survey_id)).value == 0


async def test_survey_cards_answers_changes_and_anonymous_results(teams: TeamsRig) -> None:
    survey_id = await _send_preview(
        teams, "survey announcements all anonymous | Rate the [portal](http://evil) | scale:0-10 | follow-up: Why?")
    card = _last_card(teams, "aad-north-1")
    assert card["version"] == "1.5" and not card.get("actions")
    rows = _answer_buttons(card)
    assert [len(r) for r in rows] == [6, 5] and [a["title"] for r in rows for a in r] == [str(n) for n in range(11)]
    assert all(a["type"] == "Action.Execute" and a["data"]["notice_id"] == survey_id for r in rows for a in r)
    texts = " ".join(texts_of(card))
    assert "\\[portal\\]\\(http://evil\\)" in texts  # no link injection
    assert any(e.get("type") == "Input.Text" and e["id"] == "comment" for e in card["body"])

    first = await teams.invoke("aad-north-1", "herald.survey_answer", {"notice_id": survey_id, "value": 8})
    assert first["type"] == "application/vnd.microsoft.card.adaptive"
    assert "Your answer: **8**" in " ".join(texts_of(first["value"]))
    again = await teams.invoke("aad-north-1", "herald.survey_answer",
                               {"notice_id": survey_id, "value": 3, "comment": "Too many clicks"})
    assert "Your answer: **3**" in " ".join(texts_of(again["value"]))
    comment_box = next(e for e in again["value"]["body"] if e.get("type") == "Input.Text")
    assert comment_box["value"] == "Too many clicks"
    await teams.invoke("aad-north-1", "herald.survey_comment", {"notice_id": survey_id, "comment": "Fewer clicks"})
    stored = await SurveyAnswer.get()
    # one changed answer (8 -> 3); rewording the comment under the same answer is not one
    assert (stored.value, stored.comment, stored.changes, stored.member_id) == (3, "Fewer clicks", 1, None)  # type: ignore[attr-defined]
    assert await SurveyAnswerChange.all().count() == 3

    outsider = await teams.invoke("aad-outsider", "herald.survey_answer", {"notice_id": survey_id, "value": 1})
    assert "not sent to you" in outsider["value"]

    results = (await teams.say("aad-cam", f"survey results {survey_id}"))["text"]
    assert "results appear once 5 people have answered" in results and "Fewer clicks" not in results
    for aad in AADS[1:5]:
        await teams.invoke(aad, "herald.survey_answer", {"notice_id": survey_id, "value": 10})
    results = (await teams.say("aad-cam", f"survey results {survey_id}"))["text"]
    assert "answered **5** of 6" in results and "NPS: **+60**" in results  # 4 promoters, 1 detractor
    assert "North Ltd (north): 4/4" not in results  # 4 answers: pooled with south's one
    assert r"other segments \(small groups pooled\): 5/6" in results  # escaped for Markdown
    assert "Fewer clicks" in results and "P1 North" not in results


async def test_survey_form_card_in_teams(teams: TeamsRig) -> None:
    form = card_of(await teams.say("aad-cam", "survey"))
    assert [e.get("id") for e in form["body"] if e.get("id")][:3] == ["topic", "audience", "question"]
    error = await teams.invoke("aad-cam", "herald.survey_compose", {
        "topic": "announcements", "audience": "all", "question": "Best day?", "kind": "options", "options": "Monday"})
    assert "2 to 5 options" in " ".join(texts_of(error["value"]))
    preview = await teams.invoke("aad-cam", "herald.survey_compose", {
        "topic": "announcements", "audience": "org:south", "question": "Best day?", "kind": "options",
        "options": "Monday\nFriday", "anonymous": "false"})
    texts = " ".join(texts_of(preview["value"]))
    assert "Preview of survey" in texts and "2 recipients" in texts
    assert [a["verb"] for a in actions_of(preview["value"])] == ["herald.send", "herald.cancel"]


async def test_variants_and_rollout_in_teams(teams: TeamsRig) -> None:
    notice_id = await _send_preview(teams, "send need-to-know announcements all share:50% | Plan A | Body A "
                                           "|| Plan B | Body B")
    first = {aad: teams.connector.activities(f"a:conv-{aad}") for aad in AADS}
    assert sum(len(v) for v in first.values()) == 3
    reply = (await teams.say("aad-cam", f"rollout {notice_id} A"))["text"]
    assert "Rolling out variant A" in reply and "3 held-back recipients" in reply
    assert "already rolled out" in (await teams.say("aad-cam", f"rollout {notice_id} A"))["text"]
    await teams.herald.outbox.drain()
    per_person = {aad: len(teams.connector.activities(f"a:conv-{aad}")) for aad in AADS}
    assert set(per_person.values()) == {1}  # nobody got two variants, nobody was missed
    shown = Counter("Plan B" if "Plan B" in " ".join(texts_of(_last_card(teams, aad))) else "Plan A" for aad in AADS)
    assert shown == {"Plan A": 5, "Plan B": 1}  # the first three were dealt A, B, A; the other three got A
    assert Counter(await Delivery.filter(notice_id=notice_id).values_list("variant", flat=True)) == {"A": 5, "B": 1}
    results = (await teams.say("aad-cam", f"variants {notice_id}"))["text"]
    assert "A/B test of notice" in results and "variant A rolled out" in results


async def test_a_b_link_presses_are_counted_in_teams_through_herald(teams: TeamsRig) -> None:
    teams.herald.outbox.link_tracker = link_tracker("https://herald.example.com", "k" * 40)
    notice_id = await _send_preview(teams, "send need-to-know announcements all link:https://partners.example.com/q3 "
                                           "| Plan A | Body A || Plan B | Body B")
    card = _last_card(teams, "aad-north-1")
    (open_url,) = [a for a in actions_of(card) if a["type"] == "Action.OpenUrl"]
    assert open_url["url"].startswith("https://herald.example.com/go/")
    path = open_url["url"].removeprefix("https://herald.example.com")
    async with teams.session.get(teams.server.make_url(path), allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == "https://partners.example.com/q3"
    async with teams.session.get(teams.server.make_url(path), allow_redirects=False) as response:
        assert response.status == 302
    (pressed,) = await NoticeInteraction.filter(notice_id=notice_id).values("platform", "presses", "member__email")
    assert pressed == {"platform": "teams", "presses": 2, "member__email": "p1@north.example"}
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for bad in (forged, f"/go/{notice_id}.1", "/go/../../etc"):
        async with teams.session.get(teams.server.make_url(bad), allow_redirects=False) as response:
            assert response.status == 404
    results = (await teams.say("aad-cam", f"variants {notice_id}"))["text"]
    assert "pressed a button 1" in results
