from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.common.errors import UserError
from bot.core.directory.staff import add_staff, cam_for_organisation, list_staff, staff_for_slack
from storage.models import AuditEvent, Member, Notice, Organisation, Question, Staff
from tests.support import Rig

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def test_add_staff_creates_with_normalised_email_and_audits(db: str) -> None:
    staff, created = await add_staff(
        " Carla.Cam@Vendor.COM ", "CAM", name="Carla", slack_team="T1", slack_user="UC",
        teams_aad="AAD-CARLA", now=NOW, actor="root",
    )

    assert created is True
    stored = await Staff.get(id=staff.id)
    assert (stored.email, stored.role, stored.name) == ("carla.cam@vendor.com", "cam", "Carla")
    assert (stored.slack_team_id, stored.slack_user_id, stored.teams_aad_object_id) == (
        "T1", "UC", "aad-carla"
    )
    assert stored.active is True
    event = await AuditEvent.get(kind="staff.added")
    assert (event.actor, event.occurred_at) == ("root", NOW)
    assert event.data["email"] == "carla.cam@vendor.com" and event.data["role"] == "cam"


async def test_add_staff_again_updates_the_same_person(db: str) -> None:
    first, _ = await add_staff("carla@vendor.com", "cam", name="Carla", slack_team="T1",
                               slack_user="UC", now=NOW)

    again, created = await add_staff("CARLA@vendor.com", "admin", now=NOW, actor="root")

    assert created is False
    assert again.id == first.id
    stored = await Staff.get(id=first.id)
    # The role changes; name and ids that were not given are kept.
    assert (stored.role, stored.name, stored.slack_user_id) == ("admin", "Carla", "UC")
    assert await Staff.all().count() == 1
    event = await AuditEvent.get(kind="staff.updated")
    assert event.data["changed"] == ["role"] and event.actor == "root"


async def test_add_staff_reactivates_an_inactive_person(db: str) -> None:
    staff, _ = await add_staff("carla@vendor.com", "cam", now=NOW)
    await Staff.filter(id=staff.id).update(active=False)

    _, created = await add_staff("carla@vendor.com", "cam", now=NOW)

    assert created is False
    assert (await Staff.get(id=staff.id)).active is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"email": "carla@vendor.com", "role": "partner"}, "unknown staff role 'partner'"),
        ({"email": "carla@vendor.com", "role": "sales"}, "cam, compliance, admin"),
        ({"email": "not-an-email", "role": "cam"}, "not a valid e-mail address"),
        ({"email": "carla@vendor.com", "role": "cam", "slack_user": "UC"}, "Slack team id"),
        ({"email": "carla@vendor.com", "role": "cam", "slack_team": "T1"}, "Slack team id"),
    ],
)
async def test_add_staff_rejects_bad_input(db: str, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError) as excinfo:
        await add_staff(now=NOW, **kwargs)

    assert message in str(excinfo.value)
    assert await Staff.all().count() == 0
    assert await AuditEvent.all().count() == 0


async def test_list_staff_is_ordered_by_email(db: str) -> None:
    await add_staff("zoe@vendor.com", "admin", now=NOW)
    await add_staff("adam@vendor.com", "compliance", now=NOW)
    await add_staff("mia@vendor.com", "cam", now=NOW)

    assert [s.email for s in await list_staff()] == [
        "adam@vendor.com", "mia@vendor.com", "zoe@vendor.com"
    ]


async def test_staff_for_slack_finds_only_active_staff_with_both_ids(db: str) -> None:
    staff, _ = await add_staff("carla@vendor.com", "cam", slack_team="T1", slack_user="UC",
                               now=NOW)

    assert (await staff_for_slack("T1", "UC")).id == staff.id
    assert await staff_for_slack("T2", "UC") is None
    assert await staff_for_slack("T1", "UX") is None
    assert await staff_for_slack("", "") is None

    await Staff.filter(id=staff.id).update(active=False)
    assert await staff_for_slack("T1", "UC") is None


async def test_cam_for_organisation(db: str) -> None:
    cam, _ = await add_staff("carla.cam@vendor.com", "cam", now=NOW)
    acme = await Organisation.create(external_id="acme", name="Acme",
                                     cam_email="carla.cam@vendor.com")
    orphan = await Organisation.create(external_id="orphan", name="Orphan")
    unknown = await Organisation.create(external_id="x", name="X", cam_email="nobody@vendor.com")

    assert (await cam_for_organisation(acme)).id == cam.id
    assert await cam_for_organisation(orphan) is None
    assert await cam_for_organisation(unknown) is None

    await Staff.filter(id=cam.id).update(active=False)
    assert await cam_for_organisation(acme) is None


async def test_cam_for_organisation_is_only_someone_who_may_act_as_cam(db: str) -> None:
    """The directory may name a compliance officer (or an inactive person) as a partner's CAM: they
    could answer neither a hand-off nor an escalation, so nobody is the organisation's CAM then
    (hand-offs are refused to the partner, escalations go to the notice's author, doctor warns)."""
    carla, _ = await add_staff("carla.cam@vendor.com", "compliance", now=NOW)
    acme = await Organisation.create(external_id="acme", name="Acme", cam_email="carla.cam@vendor.com")
    assert await cam_for_organisation(acme) is None
    await add_staff("carla.cam@vendor.com", "admin", now=NOW)
    assert (await cam_for_organisation(acme)).id == carla.id


async def test_removing_a_staff_member_ends_what_they_could_still_use(rig: Rig) -> None:
    """`remove_staff` (herald staff remove): inactive; console sessions ended and unused sign-in
    links expired; API tokens revoked for good (a later `staff add` reactivates the person, not
    them); open hand-offs moved to the organisation's current CAM, or left for an admin where it
    names nobody able; scheduled notices failed with the reason; `staff.deactivated` on the trail.
    A second removal records nothing new."""
    from bot.core.commands.parser import SendCommand
    from bot.core.compliance.api_tokens import authenticate, create_token
    from bot.core.directory.console_access import issue_link, redeem_link, session_staff
    from bot.core.directory.offboarding import remove_staff
    from bot.core.notices import sending

    rig.clock.set(NOW)
    now = rig.clock.now()
    cam = await Staff.get(email="cam@vendor.example")
    session = await redeem_link((await issue_link(cam, via="cli", now=now)).token, now=now)
    unused_link = await issue_link(cam, via="cli", now=now)
    _, token = await create_token(cam.email, now=now)
    nora, _ = await add_staff("newcam@vendor.example", "cam", name="Nora New", now=now, actor="test")
    await Organisation.filter(external_id="acme").update(cam_email=nora.email)  # as an import would, minus the move
    anna, cy = await Member.get(email="anna@acme.example"), await Member.get(email="cy@bolt.example")
    asked = {"platform": "slack", "text": "Where is the price list?", "asked_at": now, "abstained": True,
             "handoff_status": "open", "handed_off_at": now, "cam": cam}
    at_acme, at_bolt = await Question.create(member=anna, **asked), await Question.create(member=cy, **asked)
    command = SendCommand(importance="need-to-know", topic="announcements", audience="all", title="Depot",
                          body="Closed", scheduled_at=NOW + timedelta(days=1))
    preview = await sending.create_draft(cam, command, rig.herald.catalog, now=now)
    await sending.send_draft(preview.notice.id, cam, rig.herald.catalog, now=now)

    done = await remove_staff("cam@vendor.example", now=now, actor="operator:ops")
    assert (done.was_active, done.sessions_ended, done.links_expired, done.tokens_revoked) == (True, 1, 1, 1)
    assert (done.handoffs_moved, done.handoffs_left, done.notices_failed) == (1, 1, [preview.notice.id])
    assert not (await Staff.get(id=cam.id)).active
    assert await session_staff(session.token, now=now) is None
    assert (await Question.get(id=at_acme.id)).cam_id == nora.id  # Acme names Nora: it is with her now
    assert (await Question.get(id=at_bolt.id)).cam_id == cam.id  # Bolt names nobody able: an admin's to answer
    notice = await Notice.get(id=preview.notice.id)
    assert notice.status == "failed" and "cam@vendor.example is no longer active" in notice.failure_reason
    (event,) = await AuditEvent.filter(kind="staff.deactivated")
    assert event.actor == "operator:ops" and event.data["tokens_revoked"] == 1 and event.data["handoffs_left"] == 1
    assert await AuditEvent.filter(kind="question.reassigned").count() == 1
    assert await AuditEvent.filter(kind="notice.failed", notice_id=notice.id).count() == 1

    again = await remove_staff("cam@vendor.example", now=now, actor="operator:ops")
    assert not again.was_active and await AuditEvent.filter(kind="staff.deactivated").count() == 1

    await add_staff("cam@vendor.example", "cam", now=now, actor="operator:ops")  # back: a fresh start
    assert (await Staff.get(id=cam.id)).active
    assert await authenticate(token, now=now) is None and await session_staff(session.token, now=now) is None
    with pytest.raises(UserError):
        await redeem_link(unused_link.token, now=now)
