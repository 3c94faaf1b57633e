"""Review (journeys): defects in onboarding journeys, each shown by a test that passes once fixed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.directory.workspaces import add_slack_workspace
from bot.core.onboarding.journeys import (
    JourneyCatalog,
    complete_step,
    parse_journeys,
    progress,
    run_journeys,
)
from storage.models import JourneyStep, Member, Staff, Workspace
from tests.support import TEAM, TOKEN, Rig

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin (Anna, Bo)
NOT_YET = datetime(2030, 1, 1, tzinfo=UTC)


def _catalog(steps: list[tuple[str, int]], *, nudge_after_days: float = 3, extra: dict | None = None) -> JourneyCatalog:
    journey = {"steps": [{"key": key, "after_days": days, "title": f"Do {key}", "message": f"Please do {key}.",
                          "link": f"https://partners.example.com/{key}"} for key, days in steps]}
    data: dict = {"nudge_after_days": nudge_after_days, "journeys": {"default": journey},
                  "milestones": [{"at": "half", "message": "Halfway, well done."},
                                 {"at": "complete", "message": "All done, thank you!"}]}
    data.update(extra or {})
    return parse_journeys(data, source="test")


FOUR = _catalog([("portal", 0), ("prefs", 1), ("deals", 2), ("cert", 3)])


async def _only(joined: dict[str, datetime]) -> None:
    await Member.all().update(joined_at=NOT_YET)
    for email, when in joined.items():
        await Member.filter(email=email).update(joined_at=when)


async def _run(rig: Rig, catalog: JourneyCatalog = FOUR) -> dict[str, int]:
    counts = await run_journeys(rig.herald.channels, rig.clock.now(), catalog=catalog)
    await rig.herald.outbox.drain()
    return counts


async def _hourly(rig: Rig, hours: int, catalog: JourneyCatalog = FOUR) -> None:
    for _ in range(hours):
        rig.clock.advance(hours=1)
        await _run(rig, catalog)


async def _steps(email: str) -> list[JourneyStep]:
    return await JourneyStep.filter(member__email=email, position__gte=1).order_by("position")


def _step_posts(rig: Rig, channel: str) -> list[str]:
    headers = []
    for call in rig.fake.calls_to("chat.postMessage"):
        if call.channel == channel and call.ok:
            header = call.args["blocks"][0]["text"]["text"]
            if header.startswith("Onboarding "):
                headers.append(header)
    return headers


# ---- 6. a member moved to another role is nudged about the old journey's steps ---------------------

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
    support journey ("deals" no longer counts for her: `progress` says 0 of 2 until she does
    portal and cases). Two days later Herald still nudges her to "Do deals", a task of a journey
    she is no longer on, whose Done button counts for nothing."""
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

    casey = await Staff.get(email="cam@vendor.example")
    (anna,) = [r for r in await progress(casey, "acme", catalog=catalog) if r["email"] == "anna@acme.example"]
    assert (anna["journey"], anna["total"]) == ("support", 2)
    nudges = [c.args["blocks"][0]["text"]["text"] for c in rig.fake.calls_to("chat.postMessage")
              if c.ok and c.args.get("channel") in ("UANNA", "DUANNA")
              and c.args["blocks"][0]["text"]["text"].startswith("Reminder:")]
    assert "Reminder: Do deals" not in nudges, f"nudged about the sales journey after moving to support: {nudges}"
