"""Onboarding journeys: trickled steps in working hours, Done, nudges, milestones, CAM progress."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.common import metrics
from bot.common.errors import NotFound, PermissionDenied
from bot.core.onboarding.journeys import (
    DONE_ACTION,
    JourneyCatalog,
    JourneyConfigError,
    complete_step,
    load_journeys,
    parse_journeys,
    progress,
    run_journeys,
)
from bot.core.commands.parser import PauseCommand, parse_command
from bot.core.directory.pauses import pause_organisation, resume_organisation
from bot.core.directory.staff import add_staff
from bot.core.directory.workspaces import add_slack_workspace, deactivate_workspace
from bot.topics import load_catalog
from storage.models import AuditEvent, JourneyStep, Member, Organisation, OutboundMessage, Staff, Workspace
from tests.query_plans import captured
from tests.support import TEAM, TOKEN, Rig, bulk_members

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin (Anna, Bo)
NOT_YET = datetime(2030, 1, 1, tzinfo=UTC)  # members who should stay out of a test


def _catalog(steps: list[tuple[str, int]], *, nudge_after_days: float = 3, milestones: bool = True) -> JourneyCatalog:
    journey = {"steps": [{"key": key, "after_days": days, "title": f"Do {key}", "message": f"Please do {key}.",
                          "link": f"https://partners.example.com/{key}"} for key, days in steps]}
    data: dict = {"nudge_after_days": nudge_after_days, "journeys": {"default": journey}}
    if milestones:
        data["milestones"] = [{"at": "half", "message": "Halfway, well done."},
                              {"at": "complete", "message": "All done, thank you!"}]
    return parse_journeys(data, source="test")


FOUR = _catalog([("portal", 0), ("prefs", 1), ("deals", 2), ("cert", 3)])


async def _only(joined: dict[str, datetime]) -> None:
    """Give the listed members these join dates; everyone else joins in the far future."""
    await Member.all().update(joined_at=NOT_YET)
    for email, when in joined.items():
        await Member.filter(email=email).update(joined_at=when)


def _posts(rig: Rig, channel: str, prefix: str = "") -> list:
    """Journey messages posted to a DM channel (header text starting with `prefix`)."""
    found = []
    for call in rig.fake.calls_to("chat.postMessage"):
        if call.channel != channel or not call.ok:
            continue
        header = call.args["blocks"][0]["text"]["text"]
        if header.startswith(("Onboarding", "Reminder:")) or "completed onboarding" in header:
            if header.startswith(prefix):
                found.append(call)
    return found


def _header(call) -> str:  # noqa: ANN001
    return call.args["blocks"][0]["text"]["text"]


def _buttons(call) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(e["action_id"], e["value"]) for b in call.args["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def _run(rig: Rig, catalog: JourneyCatalog = FOUR) -> dict[str, int]:
    """The journeys' part of the tick, then the outbox that sends what it queued."""
    counts = await run_journeys(rig.herald.channels, rig.clock.now(), catalog=catalog)
    await rig.herald.outbox.drain()
    return counts


async def _hourly(rig: Rig, hours: int, catalog: JourneyCatalog = FOUR) -> None:
    for _ in range(hours):
        rig.clock.advance(hours=1)
        await _run(rig, catalog)


async def _done(rig: Rig, step: JourneyStep, user: str, **kwargs) -> JourneyStep:  # noqa: ANN003
    done = await complete_step(step.id, platform="slack", workspace_id=TEAM, user_id=user, now=rig.clock.now(),
                               **kwargs)
    if kwargs.get("channels"):  # queued right away: what the handler's outbox.wake() sends
        await rig.herald.outbox.drain()
    return done


async def _steps(email: str) -> list[JourneyStep]:
    return await JourneyStep.filter(member__email=email, position__gte=1).order_by("position")


async def _events(kind: str) -> int:
    return await AuditEvent.filter(kind=kind).count()


# ---- the configuration ------------------------------------------------------------------------

def test_the_shipped_journeys_file_is_valid() -> None:
    catalog = load_journeys()
    assert {"default", "sales", "support", "technical"} <= set(catalog.journeys)
    assert set(catalog.journeys) - {"default"} <= set(load_catalog().roles)  # journeys are named after real roles
    for journey in catalog.journeys.values():
        assert 5 <= len(journey.steps) <= 7
        assert journey.steps[0].after_days == 0
    assert catalog.nudge_after_days == 3
    assert {m.at for m in catalog.milestones} == {"half", "complete"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["journeys"].update(sales=d["journeys"].pop("default")), "a 'default' journey is required"),
    (lambda d: d["journeys"]["default"]["steps"][1].update(afterdays=2),
     "journey 'default', step 2 ('b'): unknown field 'afterdays' (did you mean 'after_days'?)"),
    (lambda d: d["journeys"]["default"]["steps"][1].update(after_days=-1), "'after_days' must be a whole number"),
    (lambda d: d["journeys"]["default"]["steps"][0].update(after_days=5), "lower than the step before's"),
    (lambda d: d["journeys"]["default"]["steps"][1].update(key="a"), "the key 'a' is used twice"),
    (lambda d: d["journeys"]["default"]["steps"][1].update(key="Step B"), "'key' must be lower-case"),
    (lambda d: d["journeys"]["default"]["steps"][0].update(link="portal.example.com"), "'link' must be an http"),
    (lambda d: d["journeys"]["default"]["steps"][0].pop("title"), "'title' must be non-empty text"),
    (lambda d: d["journeys"]["default"].update(steps=[]), "'steps' must be a non-empty list"),
    (lambda d: d.update(nudge_after_days="soon"), "nudge_after_days: must be a number of days"),
    (lambda d: d.update(milestones=[{"at": "third", "message": "x"}]), "'at' must be half, complete or a percentage"),
    (lambda d: d.update(milestones=[{"at": "half", "message": "x"}, {"at": "50%", "message": "y"}]),
     "two milestones are at 50%"),
    (lambda d: d.update(nudge_after=3), "unknown field 'nudge_after' (did you mean 'nudge_after_days'?)"),
])
def test_a_bad_journeys_file_is_reported_clearly(change, message: str) -> None:  # noqa: ANN001
    data = {"journeys": {"default": {"steps": [
        {"key": "a", "after_days": 0, "title": "A", "message": "Do A."},
        {"key": "b", "after_days": 1, "title": "B", "message": "Do B."}]}}}
    parse_journeys(data)  # valid as it stands
    change(data)
    with pytest.raises(JourneyConfigError, match="^test: ") as raised:
        parse_journeys(data, source="test")
    assert message in str(raised.value)


def test_an_unreadable_journeys_file_is_reported_clearly(tmp_path: Path) -> None:
    broken = tmp_path / "journeys.yaml"
    broken.write_text("journeys: [unclosed\n")
    with pytest.raises(JourneyConfigError, match="cannot read journeys file"):
        load_journeys(broken)
    with pytest.raises(JourneyConfigError, match="cannot read journeys file"):
        load_journeys(tmp_path / "missing.yaml")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"journeys": {"sales": {"steps": [
        {"key": "a", "after_days": 0, "title": "A", "message": "Do A."}]}}}))
    with pytest.raises(JourneyConfigError, match="a 'default' journey is required"):
        load_journeys(other)


def test_an_edited_journeys_file_is_read_again_without_a_restart(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """The server follows an edit of the journeys file at its next read; an edit that does not
    validate is logged once and the version read before stays in use until it is fixed."""
    path = tmp_path / "journeys.yaml"

    def write(*keys: str) -> None:
        path.write_text(yaml.safe_dump({"journeys": {"default": {"steps": [
            {"key": key, "after_days": n, "title": key.title(), "message": f"Do {key}."}
            for n, key in enumerate(keys)]}}}), encoding="utf-8")

    write("portal")
    assert [s.key for s in load_journeys(path).journeys["default"].steps] == ["portal"]
    assert load_journeys(path) is load_journeys(path)  # unchanged: not read again
    write("portal", "prefs")
    assert [s.key for s in load_journeys(path).journeys["default"].steps] == ["portal", "prefs"]

    path.write_text("journeys: [unclosed\n", encoding="utf-8")  # a bad edit
    for _ in range(3):
        assert [s.key for s in load_journeys(path).journeys["default"].steps] == ["portal", "prefs"]
    problems = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(problems) == 1 and "cannot read journeys file" in problems[0]
    write("portal", "prefs", "deals")
    assert len(load_journeys(path).journeys["default"].steps) == 3


# ---- sending steps ----------------------------------------------------------------------------

async def test_steps_trickle_one_a_day_from_step_one_through_the_tick(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC - timedelta(days=30), "ed@keys.example": MONDAY_9_UTC})
    steps_metric = metrics.sample("herald_journey_messages_sent_total", {"kind": "step"})
    counts = await rig.herald.tick()  # the real tick with the shipped journeys file
    await rig.herald.outbox.drain()  # the worker the tick wakes
    assert counts["journeys"] == 1
    (first,) = _posts(rig, "DUANNA")
    sales = load_journeys().journeys["sales"]
    assert _header(first) == f"Onboarding 1/{len(sales.steps)}: {sales.steps[0].title}"
    (row,) = await _steps("anna@acme.example")
    assert row.status == "sent" and row.channel_id == "DUANNA" and row.message_id and row.sent_at == MONDAY_9_UTC
    assert _buttons(first) == [(DONE_ACTION, str(row.id))]
    assert sales.steps[0].link in str(first.args["blocks"])

    for _ in range(8 * 24):  # everything is overdue, yet one step a working day (none at the weekend)
        rig.clock.advance(hours=1)
        await rig.herald.tick()
        await rig.herald.outbox.drain()
    rows = await _steps("anna@acme.example")
    assert [r.step_key for r in rows] == [s.key for s in sales.steps]
    days = [r.sent_at.astimezone(UTC).date().isoformat() for r in rows]
    assert days == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-12"]
    assert all(8 <= r.sent_at.hour + 1 < 20 for r in rows)  # Berlin working hours
    assert len(_posts(rig, "DUANNA", "Onboarding")) == 6
    assert await JourneyStep.filter(member__email="ed@keys.example").count() == 0  # no chat account: nothing
    assert await _events("journey.step_sent") == 6
    assert metrics.sample("herald_journey_messages_sent_total", {"kind": "step"}) - steps_metric == 6


async def test_a_step_due_late_in_the_evening_waits_for_working_hours(rig: Rig) -> None:
    joined = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)  # Monday 23:00 in Berlin
    rig.clock.set(joined)
    await _only({"bo@acme.example": joined})
    assert (await _run(rig))["steps"] == 0
    rig.clock.set(datetime(2026, 1, 6, 6, 59, tzinfo=UTC))  # 07:59 Berlin
    assert (await _run(rig))["steps"] == 0
    rig.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))  # 08:00 Berlin
    assert (await _run(rig))["steps"] == 1
    assert _header(_posts(rig, "DUBO")[0]).startswith("Onboarding 1/4: Do portal")
    # the second step falls due 24 h after joining (Tuesday 23:00): it waits for Wednesday 08:00
    rig.clock.set(datetime(2026, 1, 6, 22, 30, tzinfo=UTC))
    assert (await _run(rig))["steps"] == 0
    rig.clock.set(datetime(2026, 1, 7, 7, 0, tzinfo=UTC))
    assert (await _run(rig))["steps"] == 1


async def test_a_step_the_outbox_gets_to_at_night_waits_for_the_members_morning(rig: Rig) -> None:
    """The step is queued on Monday at 19:30 in Berlin, in Anna's working hours, but the outbox only
    gets to it at 02:00 (a backlog, an outage, a rate-limit pause): it puts it back until 08:00,
    as it does a need-to-know copy, instead of waking her."""
    evening = datetime(2026, 1, 5, 18, 30, tzinfo=UTC)  # Monday 19:30 in Berlin
    rig.clock.set(evening)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    assert (await run_journeys(rig.herald.channels, rig.clock.now(), catalog=FOUR))["steps"] == 1

    rig.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # Tuesday 02:00 in Berlin
    await rig.herald.outbox.drain()
    assert _posts(rig, "DUANNA") == []
    morning = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
    (message,) = await OutboundMessage.filter(purpose="journey_step")
    assert (message.status, message.next_attempt_at, message.attempts) == ("pending", morning, 0)
    (held,) = await AuditEvent.filter(kind="message.held")
    assert (held.member_id, held.data["purpose"], datetime.fromisoformat(held.data["until"])) == (
        message.member_id, "journey_step", morning)  # type: ignore[attr-defined]

    rig.clock.set(morning)
    await rig.herald.outbox.drain()
    (step,) = _posts(rig, "DUANNA")
    assert _header(step).startswith("Onboarding 1/4: Do portal")
    assert (await JourneyStep.get(member__email="anna@acme.example")).status == "sent"


async def test_done_at_night_still_answers_at_once(rig: Rig) -> None:
    """Pressing Done at 23:00 in Berlin answers Anna at once (she is there): the milestone it
    reaches is not put back until her morning like the steps the tick queues."""
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    single = _catalog([("portal", 0)])
    await _run(rig, single)
    (row,) = await _steps("anna@acme.example")
    rig.clock.set(datetime(2026, 1, 5, 22, 0, tzinfo=UTC))  # Monday 23:00 in Berlin
    await _done(rig, row, "UANNA", catalog=single, channels=rig.herald.channels)
    assert len(_posts(rig, "DUANNA", "Onboarding complete")) == 1
    assert await AuditEvent.filter(kind="message.held").count() == 0


async def test_a_late_joiner_starts_at_step_one_on_their_own_dates(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    late = datetime(2026, 1, 8, 9, 0, tzinfo=UTC)  # Thursday
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": late})
    await _run(rig)
    await _hourly(rig, 3 * 24 - 1)  # to Thursday 08:00
    assert [r.step_key for r in await _steps("anna@acme.example")] == ["portal", "prefs", "deals"]
    assert await _steps("bo@acme.example") == []
    await _hourly(rig, 1)  # Thursday 09:00: Bo joins and gets step one, not where the calendar is
    assert [r.step_key for r in await _steps("anna@acme.example")] == ["portal", "prefs", "deals", "cert"]
    (first,) = await _steps("bo@acme.example")
    assert (first.step_key, first.position, first.sent_at) == ("portal", 1, late)
    await _hourly(rig, 24)  # Friday: after_days 1
    await _hourly(rig, 3 * 24)  # step 3 (after_days 2) falls on Saturday: Monday instead
    sent = [(r.step_key, r.sent_at.date().isoformat()) for r in await _steps("bo@acme.example")]
    assert sent == [("portal", "2026-01-08"), ("prefs", "2026-01-09"), ("deals", "2026-01-12")]


async def test_two_replicas_at_once_send_each_step_once(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": MONDAY_9_UTC})
    other = rig.another_worker()
    try:
        results = await asyncio.gather(run_journeys(rig.herald.channels, rig.clock.now(), catalog=FOUR),
                                       run_journeys(other.channels, rig.clock.now(), catalog=FOUR))
        await asyncio.gather(rig.herald.outbox.drain(), other.outbox.drain())
    finally:
        await other.close()
    assert sum(r["steps"] for r in results) == 2
    assert len(_posts(rig, "DUANNA")) == 1 and len(_posts(rig, "DUBO")) == 1


async def test_a_crash_after_writing_or_claiming_never_sends_twice(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": MONDAY_9_UTC})
    anna = await Member.get(email="anna@acme.example")
    bo = await Member.get(email="bo@acme.example")
    # Anna's row was written, then the replica died before claiming it: it is simply sent.
    await JourneyStep.create(member=anna, journey="default", step_key="portal", position=1, created_at=MONDAY_9_UTC)
    # Bo's row was claimed (maybe sent) before the crash: it must not go out again.
    await JourneyStep.create(member=bo, journey="default", step_key="portal", position=1, status="sending",
                             sent_at=MONDAY_9_UTC, created_at=MONDAY_9_UTC)
    await _run(rig)
    assert len(_posts(rig, "DUANNA")) == 1 and _posts(rig, "DUBO") == []
    rig.clock.advance(minutes=10)  # the claim's lease runs out
    await _run(rig)
    (row,) = await _steps("bo@acme.example")
    assert row.status == "sent" and "may not have arrived" in row.error
    assert _posts(rig, "DUBO") == [] and await _events("journey.send_interrupted") == 1
    assert (await JourneyStep.get(member=anna, step_key="portal")).status == "sent"


async def test_refused_and_rate_limited_steps(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": MONDAY_9_UTC})
    rig.fake.fail_next("chat.postMessage", status=429, retry_after=1)  # the first send is throttled
    await _run(rig)
    rows = {r.member_id: r for r in await JourneyStep.all()}  # type: ignore[attr-defined]
    assert sorted(r.status for r in rows.values()) == ["sending", "sent"]  # one still queued in the outbox
    (waiting,) = await OutboundMessage.filter(status="pending")
    assert waiting.purpose == "journey_step" and "rate limit" in waiting.error
    rig.clock.advance(minutes=1)
    await _run(rig)  # retried, still one step each
    assert {r.status for r in await JourneyStep.all()} == {"sent"}
    assert len(_posts(rig, "DUANNA")) == 1 and len(_posts(rig, "DUBO")) == 1

    rig.clock.advance(days=1)
    rig.fake.fail_next("chat.postMessage", error="user_disabled", times=2)
    await _run(rig)
    failed = await JourneyStep.filter(step_key="prefs").order_by("id")
    assert [r.status for r in failed] == ["failed", "failed"] and "deactivated" in failed[0].error
    assert await _events("journey.step_failed") == 2
    rig.clock.advance(days=1)
    await _run(rig)  # the journey carries on the next day
    assert await JourneyStep.filter(step_key="deals", status="sent").count() == 2


async def _reconnect(rig: Rig) -> None:
    """The partner's admin adds Herald back to the workspace (a new token)."""
    rig.fake.add_workspace(TEAM, "xoxb-partner-second")
    await add_slack_workspace(TEAM, "xoxb-partner-second", now=rig.clock.now(), actor="test")
    rig.herald.channels["slack"].workspaces.forget(TEAM)  # the server's token cache (30 s) has run out


async def test_steps_due_while_herald_is_removed_from_the_workspace_wait_for_its_reconnection(rig: Rig) -> None:
    """Herald is removed from Anna's workspace (the event is missed) for a few days. The step that
    falls due first is refused ("reconnect it to deliver") and Herald learns it was removed; the
    later ones are not planned while it cannot reach her. After the reconnection the refused step
    is sent again (`journey.step_requeued`), then the rest, one a day: she still reaches 4/4."""
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig)
    assert [_header(c) for c in _posts(rig, "DUANNA")] == ["Onboarding 1/4: Do portal"]

    rig.clock.set(MONDAY_9_UTC + timedelta(hours=12))  # Monday night: Herald is removed (event missed)
    rig.fake.uninstall(TOKEN)
    await _hourly(rig, 3 * 24)  # Tuesday .. Thursday: steps 2-4 fall due
    assert not (await Workspace.get(platform="slack", external_id=TEAM)).active  # learnt from the refused send
    assert [(r.step_key, r.status) for r in await _steps("anna@acme.example")] == [("portal", "sent"), ("prefs", "failed")]

    rig.clock.set(datetime(2026, 1, 8, 22, 0, tzinfo=UTC))  # Thursday night: the admin adds Herald back
    await _reconnect(rig)
    await _hourly(rig, 7 * 24)  # another week

    rows = await _steps("anna@acme.example")
    assert [(r.step_key, r.status) for r in rows] == [
        ("portal", "sent"), ("prefs", "sent"), ("deals", "sent"), ("cert", "sent")], (
        ", ".join(f"{r.step_key}={r.status} ({r.error})" for r in rows))
    assert [_header(c) for c in _posts(rig, "DUANNA", "Onboarding ")] == [
        "Onboarding 1/4: Do portal", "Onboarding 2/4: Do prefs", "Onboarding 3/4: Do deals", "Onboarding 4/4: Do cert"]
    assert len({r.sent_at.date() for r in rows}) == 4  # still one a day
    assert await _events("journey.step_requeued") == 1


async def test_a_nudge_due_while_herald_is_removed_waits_for_the_reconnection(rig: Rig) -> None:
    """README: while a workspace is removed "its members' reminders wait". A journey step's nudge
    falling due then is not spent on a send that can only fail; it goes after the reconnection."""
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig, ONE_NOW)
    await deactivate_workspace("slack", TEAM, reason="app_uninstalled", now=rig.clock.now())
    await _hourly(rig, 4 * 24, ONE_NOW)  # the nudge falls due on Wednesday
    (row,) = await _steps("anna@acme.example")
    assert row.nudged_at is None and await _events("journey.nudge_failed") == 0

    await _reconnect(rig)
    await _hourly(rig, 24, ONE_NOW)
    assert [_header(c) for c in _posts(rig, "DUANNA", "Reminder:")] == ["Reminder: Do portal"]
    assert await _events("journey.nudged") == 1


# ---- Done -------------------------------------------------------------------------------------

async def test_done_marks_the_step_once_and_only_for_its_member(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig)
    (row,) = await _steps("anna@acme.example")
    with pytest.raises(PermissionDenied):
        await _done(rig, row, "UBO")  # a colleague in the same workspace
    with pytest.raises(PermissionDenied):
        await _done(rig, row, "UNOBODY")  # not in the directory at all
    with pytest.raises(NotFound):
        await complete_step(row.id + 1000, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    rig.clock.advance(minutes=5)
    done = await _done(rig, row, "UANNA", catalog=FOUR)
    assert done.status == "done" and done.done_at == MONDAY_9_UTC + timedelta(minutes=5)
    rig.clock.advance(minutes=5)
    again = await _done(rig, row, "UANNA", catalog=FOUR)
    assert again.done_at == done.done_at
    events = await AuditEvent.filter(kind="journey.step_done")
    assert len(events) == 1 and events[0].member_id == row.member_id and events[0].data["step"] == "portal"  # type: ignore[attr-defined]


# ---- nudges -----------------------------------------------------------------------------------

ONE_NOW = _catalog([("portal", 0), ("later", 30)], nudge_after_days=2)


async def test_a_step_not_done_gets_exactly_one_nudge(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig, ONE_NOW)
    (row,) = await _steps("anna@acme.example")
    rig.clock.set(MONDAY_9_UTC + timedelta(days=2, seconds=-1))
    assert (await _run(rig, ONE_NOW))["nudges"] == 0
    rig.clock.set(MONDAY_9_UTC + timedelta(days=2))
    assert (await _run(rig, ONE_NOW))["nudges"] == 1
    await _hourly(rig, 5 * 24, ONE_NOW)
    (nudge,) = _posts(rig, "DUANNA", "Reminder:")
    assert _header(nudge) == "Reminder: Do portal" and _buttons(nudge) == [(DONE_ACTION, str(row.id))]
    assert (await JourneyStep.get(id=row.id)).nudged_at == MONDAY_9_UTC + timedelta(days=2)
    assert await _events("journey.nudged") == 1
    assert (await _done(rig, row, "UANNA", catalog=ONE_NOW)).status == "done"  # the nudge's button works


async def test_done_steps_are_not_nudged(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig, ONE_NOW)
    (row,) = await _steps("anna@acme.example")
    await _done(rig, row, "UANNA", catalog=ONE_NOW)
    await _hourly(rig, 5 * 24, ONE_NOW)
    assert _posts(rig, "DUANNA", "Reminder:") == []


def _by_role_catalog() -> JourneyCatalog:
    def step(key: str, days: int) -> dict:
        return {"key": key, "after_days": days, "title": f"Do {key}", "message": f"Please do {key}."}
    return parse_journeys({"nudge_after_days": 2, "journeys": {
        "default": {"steps": [step("portal", 0), step("basics", 1)]},
        "sales": {"steps": [step("portal", 0), step("deals", 1)]},
        "support": {"steps": [step("portal", 0), step("cases", 1)]}}}, source="test")


async def test_a_member_moved_to_another_role_is_not_nudged_about_the_old_journeys_steps(rig: Rig) -> None:
    """Each member follows the journey of their directory role. Anna (sales) gets "deals" on
    Tuesday; that evening the directory makes her support, and from then on she follows the
    support journey ("deals" no longer counts for her). She is nudged about the steps of the
    support journey ("portal", shared, and "cases"), never about "deals"."""
    from bot.core.directory.importer import import_directory
    from tests.support import SAMPLE_DIRECTORY

    catalog = _by_role_catalog()
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig, catalog)
    await _hourly(rig, 24, catalog)
    assert [r.step_key for r in await _steps("anna@acme.example")] == ["portal", "deals"]

    rig.clock.set(datetime(2026, 1, 6, 17, 0, tzinfo=UTC))  # Tuesday evening: Anna moves to support
    moved = SAMPLE_DIRECTORY.replace("anna@acme.example,Anna Berg,sales,", "anna@acme.example,Anna Berg,support,")
    assert (await import_directory(moved, now=rig.clock.now(), actor="test")).updated == 1
    await _hourly(rig, 3 * 24, catalog)  # to Friday evening

    cam = await Staff.get(email="cam@vendor.example")
    (anna,) = [r for r in await progress(cam, "acme", catalog=catalog) if r["email"] == "anna@acme.example"]
    assert (anna["journey"], anna["total"]) == ("support", 2)
    nudges = [_header(c) for c in _posts(rig, "DUANNA", "Reminder:")]
    assert nudges == ["Reminder: Do portal", "Reminder: Do cases"]


async def test_a_step_of_the_old_journey_still_waiting_is_not_sent_after_a_role_change(rig: Rig) -> None:
    """A step planned in the sales journey that has not gone out yet (e.g. waiting for Herald to
    be reconnected) is not sent once Anna is in support: it is failed with the reason, and her
    support journey goes on."""
    catalog = _by_role_catalog()
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC - timedelta(days=1)})
    anna = await Member.get(email="anna@acme.example")
    await JourneyStep.create(member=anna, journey="sales", step_key="deals", position=2, status="pending",
                             created_at=MONDAY_9_UTC - timedelta(days=1))
    await Member.filter(id=anna.id).update(role="support")
    await _run(rig, catalog)
    deals = await JourneyStep.get(member=anna, step_key="deals")
    assert (deals.status, deals.error) == ("failed", "the step is not in the member's journey any more (their role changed)")
    rig.clock.advance(minutes=1)
    await _run(rig, catalog)  # the next tick
    assert [_header(c) for c in _posts(rig, "DUANNA")] == ["Onboarding 1/2: Do portal"]


async def test_paused_organisations_get_steps_but_no_nudges(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC, "cy@bolt.example": MONDAY_9_UTC})
    cam = await Staff.get(email="cam@vendor.example")
    await pause_organisation(cam, "acme", until=None, reason="site fire", now=rig.clock.now())
    catalog = _catalog([("portal", 0), ("prefs", 1)], nudge_after_days=2)
    await _run(rig, catalog)
    await _hourly(rig, 4 * 24, catalog)  # to Friday 09:00
    assert [r.status for r in await _steps("anna@acme.example")] == ["sent", "sent"]  # steps keep coming
    assert _posts(rig, "DUANNA", "Reminder:") == []  # but no nudges while paused
    assert len(_posts(rig, "DUCY", "Reminder:")) == 2  # Bolt is not paused: one nudge a day

    await resume_organisation(cam, "acme", now=rig.clock.now())
    await _run(rig, catalog)
    assert [_header(c) for c in _posts(rig, "DUANNA", "Reminder:")] == ["Reminder: Do portal"]  # one a day
    await _hourly(rig, 4 * 24, catalog)
    assert [_header(c) for c in _posts(rig, "DUANNA", "Reminder:")] == ["Reminder: Do portal", "Reminder: Do prefs"]


async def test_a_pause_typed_with_a_utc_offset_ends_at_that_moment(rig: Rig) -> None:
    """`pause acme until 2026-01-07T10:00+01:00` ends at 09:00 UTC: Anna's nudge, due on Wednesday
    at 09:00 UTC, goes out then. On SQLite the end was stored with its offset and compared as text,
    and the nudges came back an hour late (on PostgreSQL, on time)."""
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    command = parse_command("pause acme until 2026-01-07T10:00+01:00 flood at the depot")
    assert isinstance(command, PauseCommand) and command.until == datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    assert command.until.utcoffset() == timedelta(0)
    cam = await Staff.get(email="cam@vendor.example")
    await pause_organisation(cam, "acme", until=command.until, reason=command.reason, now=rig.clock.now())
    await _run(rig, ONE_NOW)

    rig.clock.set(datetime(2026, 1, 7, 8, 59, tzinfo=UTC))
    assert (await _run(rig, ONE_NOW))["nudges"] == 0  # still paused
    rig.clock.set(datetime(2026, 1, 7, 9, 0, tzinfo=UTC))
    assert (await _run(rig, ONE_NOW))["nudges"] == 1
    assert _header(_posts(rig, "DUANNA", "Reminder:")[0]) == "Reminder: Do portal"


# ---- milestones and completion ----------------------------------------------------------------

async def test_halfway_and_completion_messages_and_the_cam_is_told(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig)
    await _hourly(rig, 3 * 24)  # Thursday: all four steps sent
    rows = await _steps("anna@acme.example")
    assert len(rows) == 4
    await _done(rig, rows[0], "UANNA", catalog=FOUR)
    await _run(rig)
    assert _posts(rig, "DUANNA", "Onboarding: halfway") == []
    await _done(rig, rows[1], "UANNA", catalog=FOUR)  # 2 of 4: halfway, sent by the next run
    assert (await _run(rig))["milestones"] == 1
    (half,) = _posts(rig, "DUANNA", "Onboarding: halfway")
    assert "Halfway, well done." in str(half.args["blocks"]) and "2 of 4 steps done." in str(half.args["blocks"])

    await _done(rig, rows[2], "UANNA", catalog=FOUR)
    await _done(rig, rows[3], "UANNA", catalog=FOUR, channels=rig.herald.channels)  # sent right away
    (complete,) = _posts(rig, "DUANNA", "Onboarding complete")
    assert "All done, thank you!" in str(complete.args["blocks"])
    (told,) = _posts(rig, "DUCAM1")
    assert _header(told) == "Anna Berg completed onboarding"
    assert "anna@acme.example" in str(told.args["blocks"]) and "Acme Locks" in str(told.args["blocks"])
    assert "`/herald progress acme` shows everyone at Acme Locks." in str(told.args["blocks"])  # a Slack CAM
    await _hourly(rig, 48)
    await _done(rig, rows[3], "UANNA", catalog=FOUR, channels=rig.herald.channels)
    assert len(_posts(rig, "DUANNA", "Onboarding complete")) == 1 and len(_posts(rig, "DUCAM1")) == 1
    assert await _events("journey.completed") == 1 and await _events("journey.cam_told") == 1
    assert await _events("journey.milestone_sent") == 2


async def test_milestones_reached_together_send_only_the_highest(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"bo@acme.example": MONDAY_9_UTC})
    single = _catalog([("portal", 0)])
    await _run(rig, single)
    (row,) = await _steps("bo@acme.example")
    await complete_step(row.id, platform="slack", workspace_id=TEAM, user_id="UBO", now=rig.clock.now(),
                        catalog=single)
    await _run(rig, single)
    assert [_header(c) for c in _posts(rig, "DUBO")] == ["Onboarding 1/1: Do portal", "Onboarding complete"]
    assert len(_posts(rig, "DUCAM1")) == 1


async def test_the_cam_note_fails_cleanly_without_a_cam(rig: Rig) -> None:
    chicago_morning = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # 09:00 in Chicago (Cy)
    rig.clock.set(chicago_morning)
    await _only({"cy@bolt.example": chicago_morning})
    await Organisation.filter(external_id="bolt").update(cam_email="")
    single = _catalog([("portal", 0)], milestones=False)
    await _run(rig, single)
    (row,) = await _steps("cy@bolt.example")
    await complete_step(row.id, platform="slack", workspace_id=TEAM, user_id="UCY", now=rig.clock.now(),
                        catalog=single, channels=rig.herald.channels)
    await rig.herald.outbox.drain()
    note = await JourneyStep.get(step_key="cam:complete")
    assert note.status == "failed" and "no active CAM" in note.error
    assert await _events("journey.completed") == 1 and await _events("journey.cam_not_told") == 1


async def _cam_note_queued_for_casey(rig: Rig) -> None:
    """Bo completes a one-step journey; the note to Casey, Acme's CAM, is queued, not sent yet."""
    rig.clock.set(MONDAY_9_UTC)
    await _only({"bo@acme.example": MONDAY_9_UTC})
    single = _catalog([("portal", 0)], milestones=False)
    await _run(rig, single)
    (row,) = await _steps("bo@acme.example")
    await complete_step(row.id, platform="slack", workspace_id=TEAM, user_id="UBO", now=rig.clock.now(),
                        catalog=single, channels=rig.herald.channels)
    (queued,) = await OutboundMessage.filter(purpose="journey_cam", status="pending")
    assert queued.recipient["user_id"] == "UCAM1"


async def test_a_cam_note_queued_before_the_partner_got_another_cam_goes_to_the_new_cam(rig: Rig) -> None:
    """The directory names Nora as Acme's CAM while the note that Bo
    completed onboarding waits for Casey: Nora gets it, Casey does not (`journey.cam_readdressed`,
    then `journey.cam_told` naming Nora)."""
    from bot.core.directory.importer import import_directory
    from tests.support import SAMPLE_DIRECTORY

    await _cam_note_queued_for_casey(rig)
    rig.fake.add_user(TEAM, "UNORA")
    await add_staff("nora@vendor.example", "cam", name="Nora New", slack_user="UNORA", slack_team=TEAM,
                    now=rig.clock.now(), actor="test")
    to_nora = "\n".join(line.replace("cam@vendor.example", "nora@vendor.example") if line.startswith("acme,")
                        else line for line in SAMPLE_DIRECTORY.splitlines()) + "\n"
    assert not (await import_directory(to_nora, now=rig.clock.now(), actor="test")).rejected

    await rig.herald.outbox.drain()

    assert _posts(rig, "DUCAM1") == []
    (told,) = _posts(rig, "DUNORA")
    assert _header(told).endswith("completed onboarding") and "bo@acme.example" in str(told.args["blocks"])
    assert "`/herald progress acme` shows everyone at Acme Locks." in str(told.args["blocks"])
    (moved,) = await AuditEvent.filter(kind="journey.cam_readdressed")
    assert (moved.data["from_cam"], moved.data["cam"]) == ("cam@vendor.example", "nora@vendor.example")
    assert (await AuditEvent.get(kind="journey.cam_told")).data["cam"] == "nora@vendor.example"
    assert (await JourneyStep.get(step_key="cam:complete")).status == "sent"


async def test_a_cam_note_queued_before_the_cam_was_removed_is_not_sent_to_them(rig: Rig) -> None:
    """`herald staff remove` takes Casey away while the note waits for her, and the directory names
    nobody else: she gets nothing; the note fails as when there is no CAM at completion."""
    from bot.core.directory.offboarding import remove_staff

    await _cam_note_queued_for_casey(rig)
    await remove_staff("cam@vendor.example", now=rig.clock.now(), actor="operator:ops")

    await rig.herald.outbox.drain()

    assert _posts(rig, "DUCAM1") == []
    note = await JourneyStep.get(step_key="cam:complete")
    assert note.status == "failed" and "no active CAM" in note.error
    (moved,) = await AuditEvent.filter(kind="journey.cam_readdressed")
    assert (moved.data["from_cam"], moved.data["cam"]) == ("cam@vendor.example", None)
    assert await _events("journey.cam_not_told") == 1 and await _events("journey.cam_told") == 0


async def test_completing_the_journey_of_a_new_role_is_recognised_and_the_cam_told_again(rig: Rig) -> None:
    """Anna completes the sales journey (recognition, the CAM told), then the directory makes her
    support. When she completes the support journey too, she is recognised for it and her CAM hears
    of it: milestones and the CAM's note belong to a journey, not to the member once."""
    from bot.core.directory.importer import import_directory
    from tests.support import SAMPLE_DIRECTORY

    def step(key: str, days: int) -> dict:
        return {"key": key, "after_days": days, "title": f"Do {key}", "message": f"Please do {key}."}
    catalog = parse_journeys({"journeys": {
        "default": {"steps": [step("portal", 0), step("basics", 1)]},
        "sales": {"steps": [step("portal", 0), step("deals", 1)]},
        "support": {"steps": [step("portal", 0), step("cases", 1)]}},
        "milestones": [{"at": "complete", "message": "All done, thank you!"}]}, source="test")
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig, catalog)
    await _hourly(rig, 24, catalog)
    for row in await _steps("anna@acme.example"):
        await _done(rig, row, "UANNA", catalog=catalog, channels=rig.herald.channels)
    assert len(_posts(rig, "DUANNA", "Onboarding complete")) == 1 and len(_posts(rig, "DUCAM1")) == 1

    moved = SAMPLE_DIRECTORY.replace("anna@acme.example,Anna Berg,sales,", "anna@acme.example,Anna Berg,support,")
    assert (await import_directory(moved, now=rig.clock.now(), actor="test")).updated == 1
    await _hourly(rig, 24, catalog)  # "cases" is sent (portal counts already: the same key)
    (cases,) = [r for r in await _steps("anna@acme.example") if r.step_key == "cases"]
    await _done(rig, cases, "UANNA", catalog=catalog, channels=rig.herald.channels)
    await _hourly(rig, 24, catalog)

    assert len(_posts(rig, "DUANNA", "Onboarding complete")) == 2
    told = [_header(c) for c in _posts(rig, "DUCAM1")]
    assert told == ["Anna Berg completed onboarding"] * 2
    assert "support onboarding journey" in str(_posts(rig, "DUCAM1")[-1].args["blocks"])
    assert await _events("journey.completed") == 2


# ---- progress ---------------------------------------------------------------------------------

async def test_progress_rows_and_who_may_see_them(rig: Rig) -> None:
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC, "bo@acme.example": MONDAY_9_UTC})
    await _run(rig)
    await _hourly(rig, 3 * 24)
    for row in await _steps("anna@acme.example"):
        await _done(rig, row, "UANNA", catalog=FOUR)
    (bo_first, *_) = await _steps("bo@acme.example")
    await complete_step(bo_first.id, platform="slack", workspace_id=TEAM, user_id="UBO", now=rig.clock.now(),
                        catalog=FOUR)

    cam = await Staff.get(email="cam@vendor.example")
    rows = await progress(cam, "acme", catalog=FOUR)
    assert [r["email"] for r in rows] == ["anna@acme.example", "bo@acme.example"]
    anna, bo = rows
    assert anna["organisation"] == "Acme Locks" and anna["org_id"] == "acme" and anna["member"] == "Anna Berg"
    assert (anna["role"], anna["done"], anna["total"], anna["completed_at"]) == ("sales", 4, 4, rig.clock.now())
    assert anna["last_step"] == "Do cert"
    assert (bo["done"], bo["total"], bo["completed_at"], bo["last_step"], bo["last_step_status"]) == (
        1, 4, None, "Do cert", "sent")
    everyone = await progress(cam, None, catalog=FOUR)  # the CAM of every seeded organisation
    assert {r["org_id"] for r in everyone} == {"acme", "bolt", "keys"} and len(everyone) == 5

    other, _ = await add_staff("other@vendor.example", "cam", now=rig.clock.now())
    assert await progress(other, None, catalog=FOUR) == []
    with pytest.raises(PermissionDenied):
        await progress(other, "acme", catalog=FOUR)
    await Organisation.filter(external_id="bolt").update(cam_email="other@vendor.example")
    assert [r["email"] for r in await progress(other, None, catalog=FOUR)] == ["cy@bolt.example"]

    admin, _ = await add_staff("admin@vendor.example", "admin", now=rig.clock.now())
    assert len(await progress(admin, None, catalog=FOUR)) == 5
    compliance, _ = await add_staff("officer@vendor.example", "compliance", now=rig.clock.now())
    with pytest.raises(PermissionDenied):
        await progress(compliance, None, catalog=FOUR)
    with pytest.raises(PermissionDenied):
        await progress(None, None, catalog=FOUR)
    with pytest.raises(NotFound):
        await progress(admin, "nope", catalog=FOUR)


async def test_progress_sends_no_statement_with_a_parameter_per_member(rig: Rig, monkeypatch) -> None:  # noqa: ANN001
    """`progress` for an admin (or a CAM) covers every active member of the organisations in
    scope. Their steps and chat accounts were read with every member id as a parameter of one
    statement, and PostgreSQL's driver (asyncpg) refuses more than 32,767: on a directory of
    100,000 members (bench/periodic_scale.py) the admin's `progress` failed. The statements now
    select the members in the database: their parameters do not grow with the directory."""
    rig.clock.set(MONDAY_9_UTC)
    admin, _ = await add_staff("admin@vendor.example", "admin", now=rig.clock.now())
    cam = await Staff.get(email="cam@vendor.example")

    async def widest(staff: Staff) -> int:
        statements = await captured(monkeypatch, lambda: progress(staff, None, catalog=FOUR))
        return max(len(values) for _, values in statements)

    before = {"admin": await widest(admin), "cam": await widest(cam)}
    await bulk_members(300, joined_at=MONDAY_9_UTC)
    after = {"admin": await widest(admin), "cam": await widest(cam)}
    assert after == before, (f"progress passes a parameter per member: the widest statement went from {before} "
                             f"to {after} parameters for 300 more members (asyncpg refuses more than 32,767)")
    assert len(await progress(admin, None, catalog=FOUR)) == 5 + 300


async def test_progress_tells_members_not_on_a_journey_from_those_behind(slack_http, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """config/journeys.yaml: `enrol_joined_after` "enrols only members who joined on or after that
    date". Those members are never sent a step, so `progress` says "not enrolled" for them, not
    "0/6 steps" like a new member ignoring their steps."""
    slack = slack_http
    from bot.core.onboarding import journeys as journeys_module

    shipped = yaml.safe_load(journeys_module.default_journeys_path().read_text(encoding="utf-8"))
    shipped["enrol_joined_after"] = "2030-01-01"  # switched on for people who join from 2030
    path = tmp_path / "journeys.yaml"
    path.write_text(yaml.safe_dump(shipped), encoding="utf-8")
    monkeypatch.setattr(journeys_module, "default_journeys_path", lambda: path)
    await slack.herald.tick()
    await slack.herald.outbox.drain()
    assert await JourneyStep.all().count() == 0  # nobody in the directory is on a journey
    casey = await Staff.get(email="cam@vendor.example")
    rows = await progress(casey, "acme")
    assert {r["email"]: r["enrolled"] for r in rows} == {"anna@acme.example": False, "bo@acme.example": False}

    _, _, key = await slack.command("progress acme")
    (listing,) = await slack.responses(key)
    anna = next(line for line in listing.args["text"].splitlines() if "Anna Berg" in line)
    assert anna.endswith(": not enrolled (joined before onboarding journeys started)"), anna


async def test_progress_says_when_herald_cannot_reach_a_member(rig: Rig) -> None:
    """A member whose only workspace Herald was removed from gets no steps while it lasts (they
    wait): `progress` says so instead of showing them as merely behind."""
    from bot.common.replies import ReplyBudget
    from bot.core.commands.runner import Progress, progress_text

    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    await _run(rig)
    await deactivate_workspace("slack", TEAM, reason="app_uninstalled", now=rig.clock.now())
    cam = await Staff.get(email="cam@vendor.example")
    rows = await progress(cam, "acme", catalog=FOUR)
    assert [(r["email"], r["reachable"]) for r in rows] == [("anna@acme.example", False), ("bo@acme.example", False)]
    text = progress_text(Progress(rows), bold="*", budget=ReplyBudget(40_000))
    assert "Anna Berg (sales): 0/4 steps, waiting: Herald cannot reach them in Slack or Teams" in text
    await _reconnect(rig)
    assert all(r["reachable"] for r in await progress(cam, "acme", catalog=FOUR))


async def test_a_milestone_the_tick_finds_waits_for_working_hours(rig: Rig) -> None:
    """Milestones added to the journeys file after Anna passed halfway are found by the tick, here at
    03:00 in Berlin: the recognition waits for her morning. (Pressing Done answers at once.)"""
    rig.clock.set(MONDAY_9_UTC)
    await _only({"anna@acme.example": MONDAY_9_UTC})
    plain = _catalog([("portal", 0), ("prefs", 1), ("deals", 2), ("cert", 3)], milestones=False)
    for day in range(2):  # Monday and Tuesday: a step each day, done at once
        rig.clock.set(MONDAY_9_UTC + timedelta(days=day))
        await run_journeys(rig.herald.channels, rig.clock.now(), catalog=plain)
        await rig.herald.outbox.drain()
        step = await JourneyStep.filter(member__email="anna@acme.example", position__gte=1).order_by("-position").first()
        await complete_step(step.id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now(),
                            catalog=plain)
    rig.clock.set(datetime(2026, 1, 7, 2, 0, tzinfo=UTC))  # Wednesday 03:00 in Berlin
    before = len(rig.fake.messages("DUANNA"))
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=FOUR)
    await rig.herald.outbox.drain()
    assert len(rig.fake.messages("DUANNA")) == before

    rig.clock.set(datetime(2026, 1, 7, 8, 0, tzinfo=UTC))  # 09:00 in Berlin
    await run_journeys(rig.herald.channels, rig.clock.now(), catalog=FOUR)
    await rig.herald.outbox.drain()
    assert any("Halfway" in str(m) for m in rig.fake.messages("DUANNA")[before:])


async def test_steps_waiting_for_thousands_of_members_do_not_hide_the_ones_that_can_go(rig: Rig) -> None:
    """Pending rows that cannot go now (a member who has left; one outside working hours) stay
    pending. The run looked at the oldest 5,000 pending rows only, so with 5,000 such rows ahead of
    it a new member's first step was never sent. It now reads on, a page at a time."""
    rig.clock.set(MONDAY_9_UTC)
    await _only({})
    left = await bulk_members(5000, joined_at=MONDAY_9_UTC - timedelta(days=30), org_external_id="left")
    await JourneyStep.bulk_create([JourneyStep(member_id=m, journey="default", step_key="portal", position=1,
                                               status="pending", created_at=MONDAY_9_UTC) for m in left],
                                  batch_size=500)
    await Member.filter(id__in=left).update(active=False)
    await _only({"anna@acme.example": MONDAY_9_UTC - timedelta(days=30)})

    counts = await _run(rig)

    assert counts["steps"] == 1 and len(_posts(rig, "DUANNA")) == 1
    assert await JourneyStep.filter(member_id__in=left, status="pending").count() == 5000
