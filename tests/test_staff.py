from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.common.errors import UserError
from bot.core.directory.staff import add_staff, cam_for_organisation, list_staff, staff_for_slack
from storage.models import AuditEvent, Organisation, Staff

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
