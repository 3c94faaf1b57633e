"""Survey results and A/B comparisons over the /api/v1 API: tokens, roles, anonymity, CSV."""

from __future__ import annotations


import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_app
from bot.core.compliance.api_tokens import create_token
from bot.core.directory.staff import add_staff
from bot.core.surveys.answers import close_survey
from storage.models import Delivery, Member
from tests.query_plans import captured
from tests.survey_support import SurveyRig, members, start_survey_rig, stop_survey_rig

API = "/api/v1"


@pytest.fixture
async def api(db: str):
    rig = await start_survey_rig(db)
    now = rig.clock.now()
    await add_staff("audit@vendor.example", "compliance", now=now, actor="test")
    await add_staff("other@vendor.example", "cam", now=now, actor="test")
    tokens = {who: (await create_token(email, now=now))[1] for who, email in (
        ("compliance", "audit@vendor.example"), ("cam", "cam@vendor.example"), ("other", "other@vendor.example"))}
    app = build_app(rig.herald.settings, clock=rig.clock, run_worker=False, manage_database=False)
    try:
        async with TestClient(TestServer(app)) as client:
            yield rig, client, {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}
    finally:
        await stop_survey_rig(rig)


async def test_survey_results_over_the_api(api: tuple[SurveyRig, TestClient, dict]) -> None:
    rig, client, auth = api
    survey_id = await rig.survey("announcements all anonymous | Rate us | scale:1-5")
    await rig.herald.outbox.drain()
    for _, _, user in members()[:3]:
        await rig.answer(survey_id, user, 5)

    assert (await client.get(f"{API}/surveys/{survey_id}")).status == 401
    response = await client.get(f"{API}/surveys/{survey_id}", headers=auth["compliance"])
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    data = await response.json()
    assert data["suppressed"] and data["total"]["answered"] == 3 and data["total"]["distribution"] is None
    assert data["answers"] is None and data["breakdowns"]["tier"] == []
    for _, _, user in members()[3:8]:
        await rig.answer(survey_id, user, 4)
    data = await (await client.get(f"{API}/surveys/{survey_id}", headers=auth["compliance"])).json()
    assert data["total"]["mean"] == 4.38 and all(r["answered"] >= 5 for rows in data["breakdowns"].values()
                                                   for r in rows)
    csv_response = await client.get(f"{API}/surveys/{survey_id}?format=csv", headers=auth["compliance"])
    assert csv_response.content_type == "text/csv"
    assert f'survey-{survey_id}-results.csv' in csv_response.headers["Content-Disposition"]
    assert "total,all,12,8,0.6667,4.38,,0,0,0,5,3" in await csv_response.text()

    # the survey was sent by an operator: a CAM may not read it, compliance may
    assert (await client.get(f"{API}/surveys/{survey_id}", headers=auth["other"])).status == 403
    listed = await (await client.get(f"{API}/surveys", headers=auth["compliance"])).json()
    assert [s["id"] for s in listed["surveys"]] == [survey_id] and listed["next_before"] is None
    assert (await (await client.get(f"{API}/surveys", headers=auth["other"])).json())["surveys"] == []
    assert (await client.get(f"{API}/surveys/abc", headers=auth["compliance"])).status == 400
    assert (await client.get(f"{API}/surveys/999", headers=auth["compliance"])).status == 404
    assert (await client.get(f"{API}/surveys/{survey_id}?format=xml", headers=auth["compliance"])).status == 400
    stages = await (await client.get(f"{API}/surveys/stages", headers=auth["compliance"])).json()
    assert stages == {"stages": []}


async def test_the_survey_list_counts_the_members_each_survey_was_delivered_to(
        api: tuple[SurveyRig, TestClient, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """A survey's `recipients` in the list are the members it was delivered to, the response
    rate's denominator in its results: not the notice's recipient count, which holds the copies
    the close cancelled (m2@bolt's, held for Sydney's quiet hours). Counted for the whole page in
    one grouped query: listing more surveys takes no more statements."""
    rig, client, auth = api
    await Member.filter(email="m2@bolt.example").update(timezone="Australia/Sydney")
    survey_id = await rig.survey("announcements org:bolt | Ready for Q1? | Yes | No")
    await rig.herald.outbox.drain()
    await close_survey(survey_id, None, now=rig.clock.now(), operator="test")
    assert await Delivery.filter(notice_id=survey_id, status="cancelled").count() == 1

    async def listed() -> list[dict]:
        return (await (await client.get(f"{API}/surveys", headers=auth["compliance"])).json())["surveys"]

    detail = await (await client.get(f"{API}/surveys/{survey_id}", headers=auth["compliance"])).json()
    assert [(s["id"], s["recipients"]) for s in await listed()] == [(survey_id, detail["total"]["recipients"])] == [
        (survey_id, 3)]
    one = len(await captured(monkeypatch, listed))
    for text in ("announcements org:acme | Useful? | Yes | No", "announcements all | Clear? | Yes | No"):
        await rig.survey(text)
    await rig.herald.outbox.drain()
    assert [s["recipients"] for s in await listed()] == [11, 6, 3]  # m2@bolt's copies wait for Sydney's morning
    assert len(await captured(monkeypatch, listed)) == one


async def test_variant_comparison_over_the_api(api: tuple[SurveyRig, TestClient, dict]) -> None:
    rig, client, auth = api
    notice_id = await rig.notice("must-know announcements all | Recall A | Stop A || Recall B | Stop B")
    await rig.herald.outbox.drain()
    data = await (await client.get(f"{API}/notices/{notice_id}/variants", headers=auth["compliance"])).json()
    assert [v["variant"] for v in data["variants"]] == ["A", "B"] and all(v["delivered"] == 6 for v in data["variants"])
    assert [c["metric"] for c in data["comparisons"]] == ["ack_rate", "interaction_rate", "time_to_acknowledge"]
    assert all(not c["enough_data"] for c in data["comparisons"])
    assert (await client.get(f"{API}/notices/{notice_id}/variants", headers=auth["other"])).status == 403
    plain = await rig.notice("need-to-know announcements all | Plain | No variants")
    response = await client.get(f"{API}/notices/{plain}/variants", headers=auth["compliance"])
    assert response.status == 404 and "no variants" in (await response.json())["message"]
