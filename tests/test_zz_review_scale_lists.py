"""Review (reads at scale), the chat lists: moved unchanged from tests/test_zz_review_scale.py; they
overlap the fix-limits branch (bounded chat list replies) and are checked after it is merged.

Each test fails on the current code for the reason in its docstring; bench/periodic_scale.py
prints the figures at 100,000 members.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.models import Member, Organisation, PlatformAccount, Question, Staff
from tests.support import TEAM

MONDAY_10_UTC = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


async def _members(n: int, *, org_external_id: str = "bulk", platform_account: bool = True) -> list[int]:
    """`n` active members in Europe/Berlin of one new organisation (CAM cam@vendor.example), each
    with a Slack account in the rig's workspace. Returns their ids."""
    org = await Organisation.create(external_id=org_external_id, name="Bulk Partner GmbH", tier="gold",
                                    region="emea", cam_email="cam@vendor.example")
    await Member.bulk_create([
        Member(organisation_id=org.id, email=f"m{i:05d}@bulk.example", name=f"Member {i:05d}", role="sales",
               timezone="Europe/Berlin", joined_at=MONDAY_10_UTC - timedelta(days=400))
        for i in range(n)], batch_size=500)
    ids = [m for m in await Member.filter(organisation_id=org.id).order_by("id").values_list("id", flat=True)]
    if platform_account:
        await PlatformAccount.bulk_create([
            PlatformAccount(member_id=m, platform="slack", workspace_external_id=TEAM, user_id=f"UB{m}",
                            dm_channel=f"DUB{m}") for m in ids], batch_size=500)
    return ids


# ---- 4. chat lists without bounds ---------------------------------------------------------------

async def test_teams_progress_of_a_large_partner_answers(db: str) -> None:
    """`progress <org-id>` lists every active member of the organisation, one line each, in one
    message. For a partner with 1,500 staff (the largest of 100 tenants in bench/scale.py has
    19,348) that is ~75,000 characters; the Bot Connector refuses the reply (413
    MessageSizeTooBig, Teams' ~100 KB activity limit) and the CAM gets nothing. The answer should
    be bounded (a summary, the first N, and the console for the rest)."""
    from tests.teams_support import start_teams_rig, stop_teams_rig

    teams = await start_teams_rig(db)
    try:
        await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
        await _members(1500, org_external_id="bigco", platform_account=False)
        before = len(teams.connector.activities("a:conv-aad-cam"))
        status, _ = await teams.post(teams.activity("message", "aad-cam", text="progress bigco"))
        assert status == 200
        refused = [c for c in teams.connector.calls if c.status == 413]
        replies = teams.connector.activities("a:conv-aad-cam")[before:]
        assert not refused and replies, (
            f"the CAM got {len(replies)} replies; the connector refused {len(refused)} as too big "
            f"({[c.error_code for c in refused]})")
    finally:
        await stop_teams_rig(teams)


async def test_slack_questions_list_fits_a_message(slack) -> None:  # noqa: ANN001
    """`questions` lists every open hand-off of the CAM (an admin: everyone's) in one message,
    with up to 200 characters of each question. With 300 open hand-offs the reply is over
    40,000 characters: Slack truncates message text at 40,000 characters (chat.postMessage
    reference), so the list is cut off mid-line with nothing to say so. It should be bounded
    (the oldest N and a count, the console for the rest)."""
    cam = await Staff.get(email="cam@vendor.example")
    ids = await _members(300, org_external_id="asks", platform_account=False)
    now = slack.clock.now()
    await Question.bulk_create([
        Question(member_id=m, platform="slack", text="How do I register a deal for a customer that buys through "
                 "two of our distributors at once, and who gets the rebate when both claim it? " * 2,
                 asked_at=now, abstained=True, handoff_status="open", handed_off_at=now, cam_id=cam.id)
        for m in ids], batch_size=500)
    _, _, key = await slack.command("questions")
    (listing,) = await slack.responses(key)
    text = listing.args["text"]
    assert len(text) <= 40_000, f"the questions reply is {len(text)} characters (Slack keeps 40,000)"
