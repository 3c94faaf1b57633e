"""Surveys at journey milestones: a step that names a survey queues it (in the same transaction as
the step) when the member reaches the step; results per journey stage."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.transactions import in_transaction

from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.onboarding.journeys import JourneyConfigError, parse_journeys, run_journeys
from bot.core.surveys.answers import answer_survey
from bot.core.surveys.creating import enqueue_journey_survey, journey_survey
from bot.core.surveys.listing import list_surveys
from bot.core.surveys.results import survey_results
from bot.core.surveys.spec import build_spec
from bot.core.surveys.stages import survey_stages
from storage.models import Delivery, JourneyStep, Member, Staff, Survey
from tests.support import TEAM, Rig
from tests.survey_support import big_directory, members
from tests.test_journeys import MONDAY_9_UTC, _only

RATING = {"question": "How was your first week?", "scale": "1-5", "follow_up": "What was missing?"}


def _catalog(**surveys: object) -> object:
    steps = [{"key": "portal", "after_days": 0, "title": "Portal", "message": "Activate it."},
             {"key": "week-one", "after_days": 7, "title": "Your first week", "message": "Look back.",
              "survey": "rating"}]
    return parse_journeys({"surveys": {"rating": RATING, **surveys}, "journeys": {
        "default": {"steps": steps}, "sales": {"steps": [{**steps[1], "after_days": 3}]}}}, source="test")


def test_journey_surveys_are_validated() -> None:
    with pytest.raises(JourneyConfigError, match="'survey' names 'ratings', which is not under surveys:.*rating"):
        parse_journeys({"surveys": {"rating": RATING}, "journeys": {"default": {"steps": [
            {"key": "a", "after_days": 0, "title": "A", "message": "a", "survey": "ratings"}]}}}, source="t")
    with pytest.raises(JourneyConfigError, match="survey 'bad': a survey needs exactly one of"):
        parse_journeys({"surveys": {"bad": {"question": "Q?"}}, "journeys": {"default": {"steps": [
            {"key": "a", "after_days": 0, "title": "A", "message": "a"}]}}}, source="t")
    with pytest.raises(JourneyConfigError, match="asks a different survey"):
        parse_journeys({"journeys": {
            "default": {"steps": [{"key": "a", "after_days": 0, "title": "A", "message": "a",
                                   "survey": {"question": "Q?", "options": ["x", "y"]}}]},
            "sales": {"steps": [{"key": "a", "after_days": 0, "title": "A", "message": "a"}]}}}, source="t")


async def test_reaching_a_step_sends_its_survey_once_and_results_come_per_stage(rig: Rig) -> None:
    catalog = _catalog()
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": MONDAY_9_UTC})
    for day in range(0, 9):
        rig.clock.set(MONDAY_9_UTC.replace(day=5 + day))
        # two replicas plan at the same moment: the unique keys keep one step row and one survey row
        await asyncio.gather(run_journeys(rig.herald.channels, rig.clock.now(), catalog=catalog),
                             run_journeys(rig.herald.channels, rig.clock.now(), catalog=catalog))
        await rig.herald.outbox.drain()
    survey = await Survey.get(key__startswith="journey:week-one:")
    rows = await Delivery.filter(notice_id=survey.notice_id).values("member__email", "status")  # type: ignore[attr-defined]
    assert sorted((r["member__email"], r["status"]) for r in rows) == [
        ("anna@acme.example", "delivered"), ("bo@acme.example", "delivered")]
    anna_step = await JourneyStep.get(member__email="anna@acme.example", step_key="week-one")
    survey_row = await Delivery.get(notice_id=survey.notice_id, member__email="anna@acme.example")  # type: ignore[attr-defined]
    assert survey_row.created_at == anna_step.created_at  # sales: day 3, queued with the step itself
    posts = [c for c in rig.fake.calls_to("chat.postMessage") if c.args["text"].startswith("[Survey]")]
    assert sorted(c.channel for c in posts) == ["DUANNA", "DUBO"]

    await answer_survey(survey.notice_id, 4, platform="slack", workspace_id=TEAM, user_id="UANNA",  # type: ignore[attr-defined]
                        now=rig.clock.now())
    await add_staff("audit@vendor.example", "compliance", now=rig.clock.now(), actor="test")
    stages = await survey_stages(await Staff.get(email="audit@vendor.example"), catalog=catalog)  # type: ignore[arg-type]
    (stage,) = stages
    assert stage["step"] == "week-one" and stage["answered"] == 1 and stage["recipients"] == 2
    assert {p["journey"] for p in stage["journeys"]} == {"default", "sales"} and stage["mean"] == 4.0
    cam = await Staff.get(email="cam@vendor.example")
    mine = await survey_stages(cam, catalog=catalog)  # type: ignore[arg-type]
    assert mine[0]["recipients"] == 2  # a CAM sees the stages for their own partners


async def test_a_reworded_survey_starts_a_new_stage_survey(rig: Rig) -> None:
    await _only({"anna@acme.example": MONDAY_9_UTC})
    reworded = parse_journeys({"surveys": {"rating": {**RATING, "question": "How was week one?"}}, "journeys": {
        "default": {"steps": [{"key": "week-one", "after_days": 0, "title": "W", "message": "w", "survey": "rating"}]}}},
        source="test")
    rig.clock.set(MONDAY_9_UTC.replace(day=9))
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=_catalog())  # anna (sales): the first wording
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": MONDAY_9_UTC})
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=reworded)  # bo: the new wording
    surveys = {s.question: s for s in await Survey.filter(key__startswith="journey:week-one:")}
    assert set(surveys) == {"How was your first week?", "How was week one?"}
    for question, email in (("How was your first week?", "anna@acme.example"), ("How was week one?", "bo@acme.example")):
        rows = await Delivery.filter(notice_id=surveys[question].notice_id).values_list("member__email", flat=True)  # type: ignore[attr-defined]
        assert rows == [email]


async def test_the_survey_list_shows_a_cam_a_journey_surveys_counts_for_their_own_partners(srig) -> None:  # noqa: ANN001
    """As its results do: not every partner's participation."""
    now = srig.clock.now()
    # Bolt Supply gets a CAM of its own
    moved = "\n".join(line.replace("cam@vendor.example", "bolt.cam@vendor.example") if line.startswith("bolt,")
                      else line for line in big_directory().splitlines()) + "\n"
    assert not (await import_directory(moved, now=now, actor="test")).rejected
    await add_staff("bolt.cam@vendor.example", "cam", now=now, actor="test")
    bolt_cam = await Staff.get(email="bolt.cam@vendor.example")

    survey = await journey_survey("week-one", build_spec("How was your first week?", ("scale:1-5",), anonymous=True),
                                  now=now)
    for member in await Member.all().order_by("id"):
        async with in_transaction() as conn:
            await enqueue_journey_survey(survey, member.id, now=now, using_db=conn)
    await srig.herald.outbox.drain()
    for org, _, user in members():
        if org in ("acme", "bolt"):  # 6 Acme members and 4 Bolt members answer
            await srig.answer(survey.notice_id, user, 4)

    mine = await survey_results(survey.notice_id, bolt_cam)
    assert mine["scope"] == "your organisations" and mine["total"]["answered"] == 4
    (listed,) = (await list_surveys(bolt_cam)).surveys
    assert (listed["answered"], listed["recipients"]) == (mine["total"]["answered"], mine["total"]["recipients"]), (
        f"Bolt's CAM is shown {listed['answered']} answers of {listed['recipients']} recipients in the survey list "
        f"(every partner's), while the survey's results for them are {mine['total']['answered']} of "
        f"{mine['total']['recipients']} (their own partner)")
