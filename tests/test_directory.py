from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.compliance import audit
from bot.core.directory.importer import COLUMNS, decode_directory_file, import_directory, read_directory_csv
from bot.core.directory.preferences import adopt_device_timezone
from bot.common.errors import UserError
from storage.models import AuditEvent, Delivery, Member, Notice, Organisation, PlatformAccount
from bot.channels.slack_blocks import SEND_ACTION
from tests.support import (
    CAM_USER,
    SAMPLE_DIRECTORY,
    TEAM,
    Rig,
    add_partner_contact,
    directory_csv,
    in_database,
    preview_notice,
)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HEADER = ",".join(COLUMNS)
ROLES = ("sales", "support", "marketing", "technical", "executive", "operations")


def row(**overrides: str) -> str:
    values = {
        "org_id": "acme",
        "org_name": "Acme Corp",
        "tier": "Gold",
        "region": "EMEA",
        "country": "GB",
        "industry": "Retail",
        "size": "Large",
        "partner_type": "Reseller",
        "cam_email": "Carla.Cam@Vendor.com",
        "member_email": "alice@acme.com",
        "member_name": "Alice Smith",
        "role": "sales",
        "timezone": "Europe/London",
        "locale": "en-GB",
        "slack_team_id": "",
        "slack_user_id": "",
        "teams_tenant_id": "",
        "teams_aad_object_id": "",
    }
    unknown = set(overrides) - set(values)
    assert not unknown, unknown
    values.update(overrides)
    return ",".join(values[c] for c in COLUMNS)


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


GLOBEX = {"org_id": "globex", "org_name": "Globex", "tier": "Silver", "cam_email": ""}

ALICE = {"slack_team_id": "T1", "slack_user_id": "U1"}
BOB = {"member_email": "Bob@Acme.com", "member_name": "Bob", "role": "Support", "timezone": "",
       "teams_tenant_id": "TENANT-1", "teams_aad_object_id": "AAD-BOB"}
CAROL = {**GLOBEX, "member_email": "carol@globex.com", "member_name": "Carol",
         "role": "executive", "slack_team_id": "T2", "slack_user_id": "U9"}


def base(alice: dict | None = None, bob: dict | None = None, carol: dict | None = None) -> str:
    """The three-member file (lines 2, 3, 4), with per-member overrides."""
    return csv_text(
        row(**{**ALICE, **(alice or {})}),
        row(**{**BOB, **(bob or {})}),
        row(**{**CAROL, **(carol or {})}),
    )


BASE = base()


async def members_by_email() -> dict[str, Member]:
    return {m.email: m for m in await Member.all()}


def counts(result) -> tuple[int, int, int, int, int]:
    return (result.created, result.updated, result.unchanged, result.deactivated,
            len(result.rejected))


# --------------------------------------------------------------------------- happy path


async def test_import_creates_organisations_members_and_accounts(db: str) -> None:
    result = await import_directory(BASE, now=NOW, actor="admin@vendor.com")

    assert counts(result) == (3, 0, 0, 0, 0)
    assert result.dry_run is False
    assert (result.organisations_created, result.organisations_updated) == (2, 0)

    acme = await Organisation.get(external_id="acme")
    assert acme.name == "Acme Corp"  # kept as typed
    assert (acme.tier, acme.region, acme.country, acme.industry, acme.size, acme.partner_type) == (
        "gold", "emea", "gb", "retail", "large", "reseller"
    )
    assert acme.cam_email == "carla.cam@vendor.com"
    assert (await Organisation.get(external_id="globex")).cam_email == ""

    members = await members_by_email()
    assert set(members) == {"alice@acme.com", "bob@acme.com", "carol@globex.com"}
    bob = members["bob@acme.com"]
    assert (bob.name, bob.role, bob.timezone, bob.locale, bob.active) == (
        "Bob", "support", "UTC", "en-GB", True
    )
    assert members["alice@acme.com"].timezone == "Europe/London"

    accounts = {
        (a.platform, a.workspace_external_id, a.user_id): a.member_id
        for a in await PlatformAccount.all()
    }
    assert accounts == {
        ("slack", "T1", "U1"): members["alice@acme.com"].id,
        ("teams", "tenant-1", "aad-bob"): bob.id,
        ("slack", "T2", "U9"): members["carol@globex.com"].id,
    }

    event = await AuditEvent.get(kind="directory.imported")
    assert event.actor == "admin@vendor.com"
    assert event.occurred_at == NOW
    assert event.data["created"] == 3 and event.data["rejected"] == 0


async def test_reimporting_the_same_file_changes_nothing(db: str) -> None:
    await import_directory(BASE, now=NOW)
    before = [(m.id, m.updated_at) for m in await Member.all().order_by("id")]

    again = await import_directory(BASE, now=NOW)

    assert counts(again) == (0, 0, 3, 0, 0)
    assert (again.organisations_created, again.organisations_updated) == (0, 0)
    assert [(m.id, m.updated_at) for m in await Member.all().order_by("id")] == before
    assert await PlatformAccount.all().count() == 3
    assert await AuditEvent.filter(kind="directory.imported").count() == 2


async def test_two_overlapping_imports_take_turns(db: str) -> None:
    """Two runs of the nightly import overlap (a slow run and the next cron tick, or the job on two
    hosts). On PostgreSQL both planned their inserts before either committed, so the second died on
    a unique key ('duplicate key value violates unique constraint "organisation_external_id_key"':
    a traceback and exit 1 from `herald directory import`). They take turns now: the second waits
    for the first, then finds everything unchanged."""
    text = directory_csv([f"org{i % 40},Org {i % 40},gold,emea,de,x,large,reseller,cam@vendor.example,"
                          f"m{i}@org.example,Member {i},sales,UTC,en,,,," for i in range(2000)])
    outcomes = await asyncio.gather(import_directory(text, now=NOW, actor="cron-a"),
                                    import_directory(text, now=NOW, actor="cron-b"), return_exceptions=True)
    failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    assert not failures, f"an overlapping import failed: {failures}"
    assert sorted((o.created, o.unchanged) for o in outcomes) == [(0, 2000), (2000, 0)]
    assert await Member.all().count() == 2000 and await Organisation.all().count() == 40


async def test_columns_may_come_in_any_order(db: str) -> None:
    columns = list(reversed(COLUMNS))
    line = row()
    cells = dict(zip(COLUMNS, line.split(","), strict=True))
    text = ",".join(columns) + "\n" + ",".join(cells[c] for c in columns) + "\n"

    result = await import_directory(text, now=NOW)

    assert counts(result) == (1, 0, 0, 0, 0)
    assert (await Member.get()).name == "Alice Smith"


async def test_one_changed_member_counts_as_one_update(db: str) -> None:
    await import_directory(BASE, now=NOW)
    changed = BASE.replace("Alice Smith", "Alice Jones")

    result = await import_directory(changed, now=NOW)

    assert counts(result) == (0, 1, 2, 0, 0)
    assert (await Member.get(email="alice@acme.com")).name == "Alice Jones"


async def test_changed_organisation_attributes_are_updated(db: str) -> None:
    await import_directory(BASE, now=NOW)
    changed = BASE.replace("Silver", "Platinum")

    result = await import_directory(changed, now=NOW)

    assert counts(result) == (0, 0, 3, 0, 0)
    assert (result.organisations_created, result.organisations_updated) == (0, 1)
    assert (await Organisation.get(external_id="globex")).tier == "platinum"


async def test_new_member_in_existing_organisation_is_created(db: str) -> None:
    await import_directory(BASE, now=NOW)
    text = BASE + row(member_email="dave@acme.com", member_name="Dave") + "\n"

    result = await import_directory(text, now=NOW)

    assert counts(result) == (1, 0, 3, 0, 0)
    assert await Member.filter(organisation__external_id="acme").count() == 3


async def test_quoted_cells_and_byte_order_mark(db: str) -> None:
    text = "\ufeff" + csv_text(row(org_name='"Acme, Inc."', member_name='"Smith, Alice"'))

    result = await import_directory(text, now=NOW)

    assert counts(result) == (1, 0, 0, 0, 0)
    assert (await Organisation.get()).name == "Acme, Inc."
    assert (await Member.get()).name == "Smith, Alice"


async def test_role_and_time_zone_are_case_insensitive(db: str) -> None:
    text = csv_text(row(role="SALES", timezone="america/new_york"))

    result = await import_directory(text, now=NOW)

    assert counts(result) == (1, 0, 0, 0, 0)
    member = await Member.get()
    assert (member.role, member.timezone) == ("sales", "America/New_York")


async def test_a_blank_time_zone_keeps_the_members_zone_and_a_chosen_zone_stays(db: str) -> None:
    """A new member without a zone gets UTC; for a known member a blank cell changes nothing (it
    says nothing about where they are), a new zone in the file moves them, unless they chose their
    zone themselves (preferences): then the import leaves it and counts them unchanged."""
    await import_directory(csv_text(row(timezone="")), now=NOW)
    assert (await Member.get()).timezone == "UTC"
    await import_directory(csv_text(row(timezone="Europe/London")), now=NOW)
    assert (await Member.get()).timezone == "Europe/London"

    result = await import_directory(csv_text(row(timezone="")), now=NOW)
    assert counts(result) == (0, 0, 1, 0, 0)
    assert (await Member.get()).timezone == "Europe/London"

    await Member.all().update(timezone="America/New_York", timezone_chosen=True)
    result = await import_directory(csv_text(row(timezone="Europe/Paris")), now=NOW)
    assert counts(result) == (0, 0, 1, 0, 0)
    assert (await Member.get()).timezone == "America/New_York"


async def test_a_zone_from_the_members_device_fills_a_blank_cell_until_the_directory_names_one(db: str) -> None:
    """Teams reports the member's device zone (bot.core.directory.preferences.adopt_device_timezone).
    It fills in for a blank cell, and a later blank cell keeps it (it says nothing about where they
    are); a zone in the file replaces it, and from then on the device's no longer does."""
    await import_directory(csv_text(row(timezone="")), now=NOW)
    member = await Member.get()
    assert (member.timezone, member.timezone_from_directory) == ("UTC", False)
    assert await adopt_device_timezone(member, "america/los_angeles", now=NOW, source="test")
    assert (await Member.get()).timezone == "America/Los_Angeles"  # the IANA spelling

    await import_directory(csv_text(row(timezone="")), now=NOW)
    assert (await Member.get()).timezone == "America/Los_Angeles"
    await import_directory(csv_text(row(timezone="Europe/London")), now=NOW)
    member = await Member.get()
    assert (member.timezone, member.timezone_from_directory) == ("Europe/London", True)
    assert not await adopt_device_timezone(member, "Asia/Tokyo", now=NOW, source="test")
    assert (await Member.get()).timezone == "Europe/London"


# --------------------------------------------------------------------------- rejections


REJECTION_CASES = [
    (row(member_email="dave@acme.com", role="janitor"), "unknown role 'janitor'"),
    (row(member_email="not-an-email"), "member_email 'not-an-email' is not valid"),
    (row(member_email="erin@acme.com", timezone="Mars/Olympus"),
     "unknown time zone 'Mars/Olympus'"),
    (row(member_email="frank@acme.com", cam_email="cam@"), "cam_email 'cam@' is not valid"),
    (row(member_email="gina@acme.com", org_name=""), "org_name is empty"),
    (row(org_id=""), "org_id is empty"),
    (row(member_email=""), "member_email is empty"),
    (row(member_email="hank@acme.com", role=""), "role is empty"),
    (row(member_email="ivy@acme.com", slack_user_id="U7"),
     "slack_user_id is set but slack_team_id is empty"),
    (row(member_email="jack@acme.com", slack_team_id="T7"),
     "slack_team_id is set but slack_user_id is empty"),
    (row(member_email="kim@acme.com", teams_aad_object_id="aad-kim"),
     "teams_aad_object_id is set but teams_tenant_id is empty"),
    (row(member_email="lee@acme.com", locale="x" * 21), "locale is longer than 20 characters"),
    (row(member_email="ALICE@acme.com", member_name="Alice again"),
     "duplicate member alice@acme.com in organisation acme (already on line 2)"),
    (row(member_email="mo@acme.com", tier="Bronze"),
     "organisation acme conflicts with an earlier row: tier 'bronze' (line 2 says 'gold')"),
    (row(member_email="ned@acme.com", org_name="ACME"),
     "org_name 'ACME' (line 2 says 'Acme Corp')"),
    (row(member_email="oz@acme.com", slack_team_id="T1", slack_user_id="U1"),
     "slack user T1/U1 is already used on line 2"),
    (HEADER.replace(",", ";"), "expected 18 cells, found 1"),
]


@pytest.mark.parametrize(("bad_row", "reason"), REJECTION_CASES)
async def test_each_rejection_names_its_line_and_good_rows_still_import(
    db: str, bad_row: str, reason: str
) -> None:
    text = csv_text(
        row(slack_team_id="T1", slack_user_id="U1"),  # line 2
        bad_row,  # line 3
        row(member_email="zed@acme.com", member_name="Zed"),  # line 4
    )

    result = await import_directory(text, now=NOW)

    assert [e.line for e in result.rejected] == [3]
    assert reason in result.rejected[0].reason
    assert counts(result)[:3] == (2, 0, 0)
    assert set(await members_by_email()) == {"alice@acme.com", "zed@acme.com"}


async def test_unknown_role_message_lists_the_allowed_roles(db: str) -> None:
    result = await import_directory(csv_text(row(role="janitor")), now=NOW)

    assert "allowed roles: " + ", ".join(ROLES) in result.rejected[0].reason


async def test_several_problems_in_one_row_are_reported_together(db: str) -> None:
    rows, errors = read_directory_csv(
        csv_text(row(role="janitor", timezone="Nowhere", member_email="x")), roles=ROLES
    )

    assert rows == []
    assert [e.line for e in errors] == [2]
    for part in ("unknown role", "unknown time zone", "member_email 'x' is not valid"):
        assert part in errors[0].reason


def test_line_numbers_count_blank_lines_and_multi_line_cells() -> None:
    text = "\n".join([
        HEADER,
        row(member_name='"Alice\nSmith"'),  # lines 2-3
        "",  # line 4, skipped
        row(member_email="bob@acme.com", role="nope"),  # line 5
    ])

    rows, errors = read_directory_csv(text, roles=ROLES)

    assert [(r.line, r.member_name) for r in rows] == [(2, "Alice\nSmith")]
    assert [e.line for e in errors] == [5]


def test_read_directory_csv_normalises_values() -> None:
    rows, errors = read_directory_csv(
        csv_text(row(member_email=" Alice@ACME.com ", member_name=" Alice ", role="Sales",
                     teams_tenant_id="ABC", teams_aad_object_id="DEF")),
        roles=ROLES,
    )

    assert errors == []
    [r] = rows
    assert (r.member_email, r.member_name, r.role) == ("alice@acme.com", "Alice", "sales")
    assert (r.tier, r.partner_type, r.cam_email) == ("gold", "reseller", "carla.cam@vendor.com")
    assert (r.teams_tenant_id, r.teams_aad_object_id) == ("abc", "def")


async def test_slack_ids_typed_in_lower_case_are_stored_as_slack_sends_them(db: str) -> None:
    """Slack's team and user ids are upper-case in every event and click; an id a spreadsheet
    lower-cased would never match them, so the import (and `herald staff add`) upper-cases them, and
    re-importing the corrected file heals an account stored lower-case."""
    from bot.core.directory.staff import add_staff
    from storage.models import Staff

    await import_directory(csv_text(row(slack_team_id="t0abc", slack_user_id="u0alice")), now=NOW)
    assert await PlatformAccount.all().values_list("workspace_external_id", "user_id") == [("T0ABC", "U0ALICE")]
    await PlatformAccount.all().update(workspace_external_id="t0abc", user_id="u0alice")  # as an older import stored it
    again = await import_directory(csv_text(row(slack_team_id="T0ABC", slack_user_id="U0ALICE")), now=NOW)
    assert again.updated == 1
    assert await PlatformAccount.all().values_list("workspace_external_id", "user_id") == [("T0ABC", "U0ALICE")]

    await add_staff("cam@vendor.example", "cam", slack_user="u0cam", slack_team="t0vendor", now=NOW)
    assert await Staff.all().values_list("slack_team_id", "slack_user_id") == [("T0VENDOR", "U0CAM")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("  \n\n", "empty"),
        (HEADER + "\n", "no member rows"),
        (HEADER.replace(",locale", "") + "\n" + row(), "missing column(s): locale"),
        (HEADER.replace(",locale", ",notes") + "\n" + row(), "missing column(s): locale; unknown column(s): 'notes'"),
        (
            HEADER.replace("role,timezone", "rank,timezone") + "\n" + row(),
            "missing column(s): role; unknown column(s): 'rank'",
        ),
        (HEADER + ",role\n" + row() + ",sales", "repeated column(s): role"),
    ],
)
def test_whole_file_problems_raise_user_error(text: str, message: str) -> None:
    with pytest.raises(UserError) as excinfo:
        read_directory_csv(text, roles=ROLES)
    assert message in str(excinfo.value)


async def test_whole_file_problem_writes_nothing(db: str) -> None:
    with pytest.raises(UserError):
        await import_directory("org_id,member_email\nacme,a@acme.com\n", now=NOW)
    assert await AuditEvent.all().count() == 0


# --------------------------------------------------------------------------- dry run


async def test_dry_run_reports_the_same_counts_and_writes_nothing(db: str) -> None:
    text = BASE + row(member_email="bad", member_name="Bad") + "\n"

    dry = await import_directory(text, now=NOW, dry_run=True)

    assert dry.dry_run is True
    assert counts(dry) == (3, 0, 0, 0, 1)
    assert await Organisation.all().count() == 0
    assert await Member.all().count() == 0
    assert await PlatformAccount.all().count() == 0
    assert await AuditEvent.all().count() == 0

    real = await import_directory(text, now=NOW)
    assert counts(real) == counts(dry)
    assert real.rejected == dry.rejected
    assert (real.organisations_created, real.organisations_updated) == (
        dry.organisations_created, dry.organisations_updated
    )


async def test_dry_run_against_existing_data(db: str) -> None:
    await import_directory(BASE, now=NOW)
    text = csv_text(
        row(member_name="Alice Jones", slack_team_id="T1", slack_user_id="U1"),
        row(member_email="new@acme.com", member_name="New"),
    )

    dry = await import_directory(text, now=NOW, dry_run=True, deactivate_missing=True, allow_mass_deactivation=True)

    assert counts(dry) == (1, 1, 0, 2, 0)
    members = await members_by_email()
    assert members["alice@acme.com"].name == "Alice Smith"
    assert all(m.active for m in members.values()) and len(members) == 3
    assert await AuditEvent.all().count() == 1

    real = await import_directory(text, now=NOW, deactivate_missing=True, allow_mass_deactivation=True)
    assert counts(real) == counts(dry)


# --------------------------------------------------------------------------- deactivation


async def test_deactivate_missing_members_and_reactivate_them(db: str) -> None:
    await import_directory(BASE, now=NOW)
    without_bob = csv_text(row(**ALICE), row(**CAROL))

    kept = await import_directory(without_bob, now=NOW)
    assert counts(kept) == (0, 0, 2, 0, 0)
    assert (await Member.get(email="bob@acme.com")).active is True

    result = await import_directory(without_bob, now=NOW, deactivate_missing=True)
    assert counts(result) == (0, 0, 2, 1, 0)
    assert (await Member.get(email="bob@acme.com")).active is False

    again = await import_directory(without_bob, now=NOW, deactivate_missing=True)
    assert counts(again) == (0, 0, 2, 0, 0)  # already inactive: not counted twice

    back = await import_directory(BASE, now=NOW)
    assert counts(back) == (0, 1, 2, 0, 0)
    assert (await Member.get(email="bob@acme.com")).active is True


# The sample directory without Anna (a partial export, or the day she was between contracts).
WITHOUT_ANNA = "\n".join(line for line in SAMPLE_DIRECTORY.splitlines() if "anna@" not in line) + "\n"


async def test_a_must_know_copy_cancelled_while_a_member_was_out_of_the_directory_reaches_them_when_back(
        rig: Rig) -> None:
    """A must-know notice to gold partners is queued; before the outbox reaches Anna a sync with
    --deactivate-missing leaves her out (her copy is cancelled, "removed from the partner
    directory"), and the next sync brings her back. Her copy goes back to the outbox (audited,
    counted in the import's result) and is delivered: an active member of the audience is not
    silently left without the recall, its reminders and its escalation."""
    rig.clock.set(NOW)
    notice_id = await rig.broadcast("tier:gold", deadline=NOW + timedelta(days=3))  # queued, not sent yet
    left = await import_directory(WITHOUT_ANNA, now=rig.clock.now(), deactivate_missing=True, actor="test")
    assert left.deactivated == 1
    copy = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example", kind="notice")
    assert (copy.status, copy.error) == ("cancelled", "removed from the partner directory")
    rig.clock.advance(minutes=5)

    back = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")

    assert back.restored == 1 and (await Member.get(email="anna@acme.example")).active
    restored = await AuditEvent.filter(kind="delivery.restored").values_list("notice_id", "member_id", "data")
    assert [(n, m, d["status"]) for n, m, d in restored] == [(notice_id, copy.member_id, "pending")]  # type: ignore[attr-defined]
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    copy = await Delivery.get(id=copy.id)
    assert copy.status == "delivered", f"Anna's must-know copy is {copy.status!r} ({copy.error!r})"
    assert (await Notice.get(id=notice_id)).status == "sent"


async def test_the_audit_trail_names_who_an_import_deactivated_and_brought_back_and_the_copies_it_cancelled(
        rig: Rig) -> None:
    """Compliance asks when Anna stopped getting notices and why her recall copy never went out.
    The trail had one `directory.imported` event saying "deactivated 1" (not who) and nothing for
    the copy the import cancelled, while the copy put back when she returned was audited
    (`delivery.restored`). Each member an import deactivates or brings back now has an event, and
    each copy it cancels a `delivery.cancelled` with the reason, as other cancellations have."""
    rig.clock.set(NOW)
    notice_id = await rig.broadcast("tier:gold", deadline=NOW + timedelta(days=3))  # queued, not sent yet
    anna = await Member.get(email="anna@acme.example")

    await import_directory(WITHOUT_ANNA, now=rig.clock.now(), deactivate_missing=True, actor="operator:ops")

    copy = await Delivery.get(notice_id=notice_id, member_id=anna.id, kind="notice")
    left = await AuditEvent.filter(kind="member.deactivated").values("member_id", "actor", "data")
    assert [(e["member_id"], e["actor"], e["data"]["organisation"], e["data"]["reason"]) for e in left] == [
        (anna.id, "operator:ops", "acme", "left out of a directory import with --deactivate-missing")]
    cancelled = await AuditEvent.filter(kind="delivery.cancelled").values("notice_id", "member_id", "data")
    assert [(e["notice_id"], e["member_id"], e["data"]["delivery_id"], e["data"]["reason"]) for e in cancelled] == [
        (notice_id, anna.id, copy.id, "removed from the partner directory")]

    rig.clock.advance(minutes=5)
    await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="operator:ops")

    back = await AuditEvent.filter(kind="member.reactivated").values("member_id", "data")
    assert [(e["member_id"], e["data"]["organisation"]) for e in back] == [(anna.id, "acme")]
    assert await AuditEvent.filter(kind__in=["member.deactivated", "member.reactivated"]).count() == 2


async def test_a_dry_run_says_how_many_copies_the_import_would_cancel_and_put_back(rig: Rig) -> None:
    """`--dry-run` reports what the real run would do, but of the copies it said nothing: not how
    many still-queued copies (a must-know recall's) leaving members out cancels, nor (restored 0)
    how many bringing them back puts in the outbox again. Both runs now count both."""
    rig.clock.set(NOW)
    notice_id = await rig.broadcast("tier:gold", deadline=NOW + timedelta(days=3))  # queued, not sent yet
    anna = await Member.get(email="anna@acme.example")

    dry_leave = await import_directory(WITHOUT_ANNA, now=rig.clock.now(), deactivate_missing=True, dry_run=True)
    assert (dry_leave.deactivated, dry_leave.cancelled) == (1, 1)
    copy = await Delivery.get(notice_id=notice_id, member_id=anna.id, kind="notice")
    assert copy.status == "pending"
    leave = await import_directory(WITHOUT_ANNA, now=rig.clock.now(), deactivate_missing=True, actor="test")
    assert (leave.deactivated, leave.cancelled) == (1, 1)

    dry_back = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), dry_run=True)
    assert dry_back.restored == 1
    assert (await Delivery.get(id=copy.id)).status == "cancelled"
    back = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")
    assert (back.restored, back.cancelled) == (1, 0)


async def test_a_returning_member_gets_no_copy_of_a_notice_retracted_while_they_were_out(rig: Rig) -> None:
    """Only notices still live come back: a retraction meanwhile keeps the copy cancelled."""
    from bot.core.notices.revisions import retract_notice

    rig.clock.set(NOW)
    notice_id = await rig.broadcast("tier:gold")
    await import_directory(WITHOUT_ANNA, now=rig.clock.now(), deactivate_missing=True, actor="test")
    await retract_notice(notice_id, None, reason="wrong product", now=rig.clock.now(), operator="test")

    back = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")

    assert back.restored == 0
    copy = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example", kind="notice")
    assert (copy.status, copy.error) == ("cancelled", "removed from the partner directory")


async def test_a_member_out_of_the_directory_stops_being_reminded_until_they_are_back(rig: Rig) -> None:
    """Anna got a must-know notice with no deadline and left the directory before acknowledging
    it. Her reminders end (`reminder.ended` on the audit trail, with the reason) instead of the
    planner taking her original up again every hour for as long as the notice lives; when an
    import brings her back they resume (`reminder.resumed`) and she is reminded."""
    from bot.core.compliance.verify import verify_chain

    rig.clock.set(NOW)
    notice_id = await rig.broadcast("member:anna@acme.example")  # must-know, no deadline
    await rig.herald.outbox.drain()
    original = await Delivery.get(notice_id=notice_id, kind="notice")
    assert original.status == "delivered" and original.next_reminder_at is not None
    await import_directory(WITHOUT_ANNA, now=rig.clock.now(), deactivate_missing=True, actor="test")

    rig.clock.set(original.next_reminder_at)
    await rig.herald.tick()
    original = await Delivery.get(id=original.id)
    assert original.next_reminder_at is None, (
        f"the reminder of a member out of the directory is looked at again at {original.next_reminder_at}")
    (ended,) = await AuditEvent.filter(kind="reminder.ended")
    assert (ended.notice_id, ended.member_id) == (notice_id, original.member_id)  # type: ignore[attr-defined]
    assert ended.data["reason"] == "the member was removed from the partner directory"
    assert not await Delivery.filter(notice_id=notice_id, kind="reminder").exists()

    rig.clock.advance(days=1)
    await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")
    (resumed,) = await AuditEvent.filter(kind="reminder.resumed")
    assert resumed.data["delivery_id"] == original.id
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    (reminder,) = await Delivery.filter(notice_id=notice_id, kind="reminder")
    assert reminder.status == "delivered"
    await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test")  # nothing resumed twice
    assert await AuditEvent.filter(kind="reminder.resumed").count() == 1
    assert (await verify_chain()).ok


async def test_deactivate_missing_spares_members_whose_row_was_rejected(db: str) -> None:
    await import_directory(BASE, now=NOW)
    text = base(alice={"timezone": "Europe/Londn"})  # Alice's row now fails

    result = await import_directory(text, now=NOW, deactivate_missing=True)

    assert [e.line for e in result.rejected] == [2]
    assert result.deactivated == 0
    assert (await Member.get(email="alice@acme.com")).active is True


async def test_deactivate_missing_deactivates_nobody_when_a_row_cannot_be_read(db: str) -> None:
    """An unquoted comma in Alice's name: her row has a cell too many, so whose it is cannot be told."""
    await import_directory(BASE, now=NOW)
    text = base(alice={"member_name": "Smith, Alice"}, bob={"member_email": "bobby@acme.com"})

    result = await import_directory(text, now=NOW, deactivate_missing=True)

    assert [e.line for e in result.rejected] == [2] and "deactivates nobody" in result.rejected[0].reason
    assert result.deactivated == 0
    assert await Member.filter(email__in=["alice@acme.com", "bob@acme.com"], active=True).count() == 2


async def test_an_org_audience_matches_the_directorys_id_in_any_case(db: str) -> None:
    """The directory keeps ids as written (ACME-01); a CAM typing them exactly reached nobody."""
    from bot.core.directory.audiences import count_recipients, parse_audience, unmatched_value_warnings
    from bot.topics import load_catalog

    await import_directory(csv_text(row(org_id="ACME-01", slack_team_id="T1", slack_user_id="U1")), now=NOW)
    catalog = load_catalog()
    for typed in ("org:ACME-01", "org:acme-01"):
        audience = parse_audience(typed, roles=catalog.roles)
        assert (await count_recipients(audience, catalog.get("announcements")),
                await unmatched_value_warnings(audience)) == (1, [])


async def test_reimporting_an_organisation_id_in_another_case_does_not_make_a_second_organisation(db: str) -> None:
    """Ids match in any case, in audiences and in the import: a spreadsheet export writing ACME-01 as
    acme-01 updates the organisation (its stored spelling kept) instead of making a second one and,
    with --deactivate-missing, deactivating every member of the real one."""
    await import_directory(csv_text(row(org_id="ACME-01", **ALICE)), now=NOW)

    again = await import_directory(csv_text(row(org_id="acme-01", **ALICE), row(org_id="acme-01", **BOB)),
                                   now=NOW, deactivate_missing=True)

    assert (again.organisations_created, again.created, again.deactivated, again.rejected) == (0, 1, 0, []), (
        f"organisations now: {sorted(await Organisation.all().values_list('external_id', flat=True))}")
    assert await Organisation.all().values_list("external_id", flat=True) == ["ACME-01"]
    assert await Member.filter(email="alice@acme.com", active=True).count() == 1
    assert await Member.filter(organisation__external_id="ACME-01").count() == 2


async def test_a_file_spelling_one_organisation_id_in_two_cases_is_refused_on_the_later_line(db: str) -> None:
    """Within one file, two ids differing only in case are one organisation written two ways: the
    later line is rejected (which spelling is meant cannot be told), the first one imports."""
    result = await import_directory(csv_text(row(org_id="ACME-01", **ALICE), row(org_id="acme-01", **BOB)), now=NOW)

    assert [(e.line, e.reason) for e in result.rejected] == [
        (3, "organisation id 'acme-01' is 'ACME-01' on line 2: ids match in any case, write it one way")]
    assert await Organisation.all().values_list("external_id", flat=True) == ["ACME-01"]


async def test_deactivate_missing_covers_every_organisation(db: str) -> None:
    await import_directory(BASE, now=NOW)
    without_bob = csv_text(row(**ALICE), row(**CAROL))
    await import_directory(csv_text(row(**ALICE), row(**BOB), row(**CAROL),
                                    row(**{**CAROL, "member_email": "dan@globex.com", "slack_user_id": "U8"})), now=NOW)

    result = await import_directory(without_bob, now=NOW, deactivate_missing=True)

    assert counts(result) == (0, 0, 2, 2, 0)  # Bob of acme, Dan of globex
    assert await Member.filter(active=True).count() == 2


async def test_deactivate_missing_refuses_a_file_that_would_deactivate_most_of_the_directory(db: str) -> None:
    """One partner's export imported with --deactivate-missing (a partial file, or a CRM export cut
    short) deactivated every member of every other partner and cancelled what was queued for them.
    An import that would deactivate more than half of the active members is refused, nothing
    written, its dry run likewise, unless the operator confirms it (allow_mass_deactivation)."""
    await import_directory(BASE, now=NOW)
    only_globex = csv_text(row(**CAROL))

    for dry_run in (True, False):
        with pytest.raises(UserError) as excinfo:
            await import_directory(only_globex, now=NOW, deactivate_missing=True, dry_run=dry_run)
        message = str(excinfo.value)
        assert "would deactivate 2 of the 3 active members" in message, message
        assert "organisation acme, which the file does not name" in message, message
        assert "--allow-mass-deactivation" in message, message
    assert await Member.filter(active=True).count() == 3
    assert await AuditEvent.filter(kind="directory.imported").count() == 1

    confirmed = await import_directory(only_globex, now=NOW, deactivate_missing=True, allow_mass_deactivation=True)
    assert counts(confirmed) == (0, 0, 1, 2, 0)
    assert await Member.filter(active=True).count() == 1


def test_the_cli_refuses_a_partial_file_with_deactivate_missing_and_says_how_to_confirm(
        db_url: str, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from bot.cli import main
    from tests.cli_support import in_process_cli

    cli = in_process_cli(monkeypatch, db_url)
    full, partial = tmp_path / "all.csv", tmp_path / "globex.csv"
    full.write_text(BASE)
    partial.write_text(csv_text(row(**CAROL)))
    assert cli.invoke(main, ["directory", "import", str(full), "--quiet"]).exit_code == 0

    for extra in (["--dry-run"], []):
        refused = cli.invoke(main, ["directory", "import", str(partial), "--quiet", "--deactivate-missing", *extra])
        assert refused.exit_code == 1, refused.output
        assert "would deactivate 2 of the 3 active members" in refused.output, refused.output
        assert "deactivated 2" not in refused.output
    assert in_database(db_url, lambda: Member.filter(active=True).count()) == 3

    confirmed = cli.invoke(main, ["directory", "import", str(partial), "--quiet", "--deactivate-missing",
                                  "--allow-mass-deactivation"])
    assert confirmed.exit_code == 0, confirmed.output
    assert "deactivated 2" in confirmed.output
    assert in_database(db_url, lambda: Member.filter(active=True).count()) == 1


# --------------------------------------------------------------------------- accounts


async def test_unchanged_ids_keep_the_cached_conversation(db: str) -> None:
    await import_directory(BASE, now=NOW)
    await PlatformAccount.filter(platform="slack", user_id="U1").update(dm_channel="D1")
    await PlatformAccount.filter(platform="teams").update(
        dm_channel="a:conv", service_url="https://smba.example/emea/"
    )

    result = await import_directory(BASE.replace("Alice Smith", "Alice Jones"), now=NOW)

    assert counts(result) == (0, 1, 2, 0, 0)
    assert (await PlatformAccount.get(platform="slack", user_id="U1")).dm_channel == "D1"
    teams = await PlatformAccount.get(platform="teams")
    assert (teams.dm_channel, teams.service_url) == ("a:conv", "https://smba.example/emea/")


async def test_changed_slack_ids_update_the_members_account(db: str) -> None:
    await import_directory(BASE, now=NOW)
    alice = await Member.get(email="alice@acme.com")
    account = await PlatformAccount.get(member_id=alice.id, platform="slack")
    account.dm_channel = "D1"
    await account.save()

    result = await import_directory(base(alice={"slack_user_id": "U2"}), now=NOW)

    assert counts(result) == (0, 1, 2, 0, 0)
    [updated] = await PlatformAccount.filter(member_id=alice.id, platform="slack")
    assert updated.id == account.id
    assert (updated.workspace_external_id, updated.user_id, updated.dm_channel) == ("T1", "U2", "")
    again = await import_directory(base(alice={"slack_user_id": "U2"}), now=NOW)
    assert counts(again) == (0, 0, 3, 0, 0)


async def test_changed_teams_user_keeps_service_url_of_same_tenant(db: str) -> None:
    await import_directory(BASE, now=NOW)
    await PlatformAccount.filter(platform="teams").update(
        dm_channel="a:conv", service_url="https://smba.example/emea/"
    )

    result = await import_directory(base(bob={"teams_aad_object_id": "AAD-BOB2"}), now=NOW)

    assert counts(result) == (0, 1, 2, 0, 0)
    teams = await PlatformAccount.get(platform="teams")
    assert (teams.user_id, teams.dm_channel, teams.service_url) == (
        "aad-bob2", "", "https://smba.example/emea/"
    )


async def test_adding_an_account_to_an_existing_member_is_an_update(db: str) -> None:
    await import_directory(BASE, now=NOW)
    text = base(alice={"teams_tenant_id": "tenant-1", "teams_aad_object_id": "aad-alice"})

    result = await import_directory(text, now=NOW)

    assert counts(result) == (0, 1, 2, 0, 0)
    alice = await Member.get(email="alice@acme.com")
    assert await PlatformAccount.filter(member_id=alice.id).count() == 2


async def test_empty_id_cells_leave_existing_accounts_alone(db: str) -> None:
    await import_directory(BASE, now=NOW)
    text = base(alice={"slack_team_id": "", "slack_user_id": ""})

    result = await import_directory(text, now=NOW)

    assert counts(result) == (0, 0, 3, 0, 0)
    assert await PlatformAccount.filter(platform="slack", user_id="U1").exists()


async def test_account_linked_to_an_active_member_elsewhere_is_rejected(db: str) -> None:
    await import_directory(BASE, now=NOW)
    text = csv_text(row(**GLOBEX, member_email="alice@globex.com", slack_team_id="T1",
                        slack_user_id="U1"))

    result = await import_directory(text, now=NOW)

    assert [(e.line, e.reason) for e in result.rejected] == [
        (2, "slack user T1/U1 is already linked to alice@acme.com in organisation acme, whom this file leaves "
            "out: if they moved here, import it with --deactivate-missing (they are deactivated there and "
            "the account moves here), or remove the ids from this row")
    ]
    assert not await Member.filter(email="alice@globex.com").exists()


async def test_a_member_moving_organisation_is_told_how_to_move_them(db: str) -> None:
    """Alice moves from acme to globex: the next full export names her under globex with her Slack
    id. The row was refused, "already linked to alice@acme.com in organisation acme", with nothing
    on what to do; the reason now says how (the full file with --deactivate-missing moves her). A
    file that names the holder too is told the two rows claim one account."""
    await import_directory(BASE, now=NOW)
    moved = csv_text(row(**BOB), row(**CAROL), row(**{**ALICE, **GLOBEX}))

    refused = await import_directory(moved, now=NOW)
    [error] = refused.rejected
    assert error.line == 4 and "import it with --deactivate-missing" in error.reason, error.reason

    both = await import_directory(csv_text(row(), row(**BOB), row(**CAROL),
                                           row(**{**ALICE, **GLOBEX, "member_email": "alice2@globex.com"})), now=NOW)
    [error] = both.rejected
    assert error.reason == ("slack user T1/U1 is already linked to alice@acme.com in organisation acme, whom this "
                            "file names too (a blank id cell leaves an account where it is): give the ids on one "
                            "of the two rows only"), error.reason

    result = await import_directory(moved, now=NOW, deactivate_missing=True)
    assert counts(result) == (1, 0, 2, 1, 0)
    assert await PlatformAccount.filter(user_id="U1", member__organisation__external_id="globex").exists()


async def test_account_moves_to_new_member_when_the_old_one_is_deactivated(db: str) -> None:
    await import_directory(BASE, now=NOW)
    await PlatformAccount.filter(user_id="U1").update(dm_channel="D1")
    moved = base(alice={**GLOBEX, "member_email": "alice@globex.com"})

    result = await import_directory(moved, now=NOW, deactivate_missing=True)

    assert result.rejected == [], result.rejected
    assert counts(result) == (1, 0, 2, 1, 0)
    new = await Member.get(email="alice@globex.com")
    account = await PlatformAccount.get(user_id="U1")
    assert (account.member_id, account.dm_channel) == (new.id, "D1")
    assert (await Member.get(email="alice@acme.com")).active is False
    again = await import_directory(moved, now=NOW, deactivate_missing=True)
    assert counts(again) == (0, 0, 3, 0, 0)


async def test_large_file_imports_in_bulk(db: str) -> None:
    rows = [
        row(org_id=f"org{i // 10}", org_name=f"Org {i // 10}", member_email=f"m{i}@p{i // 10}.com",
            slack_team_id=f"T{i // 10}", slack_user_id=f"U{i}")
        for i in range(1200)
    ]
    text = csv_text(*rows)

    first = await import_directory(text, now=NOW)
    assert counts(first) == (1200, 0, 0, 0, 0)
    assert await PlatformAccount.all().count() == 1200

    changed = text.replace("Alice Smith", "Alice S.")
    second = await import_directory(changed, now=NOW)
    assert counts(second) == (0, 1200, 0, 0, 0)
    assert await Member.filter(name="Alice S.").count() == 1200


async def test_a_failure_while_writing_rolls_everything_back(db: str, monkeypatch) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "_append", broken)  # the audit append is the import's last write

    with pytest.raises(RuntimeError):
        await import_directory(BASE, now=NOW)

    assert await Organisation.all().count() == 0
    assert await Member.all().count() == 0
    assert await PlatformAccount.all().count() == 0


async def test_taking_over_an_account_replaces_the_members_stale_one(db: str) -> None:
    await import_directory(BASE, now=NOW)
    old = await Member.create(organisation=await Organisation.get(external_id="globex"),
                              email="alice@globex.com", role="sales", active=False)
    held = await PlatformAccount.create(member=old, platform="slack", workspace_external_id="T1",
                                        user_id="U5", dm_channel="D5")
    alice = await Member.get(email="alice@acme.com")

    result = await import_directory(base(alice={"slack_user_id": "U5"}), now=NOW)

    assert counts(result) == (0, 1, 2, 0, 0)
    [account] = await PlatformAccount.filter(member_id=alice.id, platform="slack")
    assert (account.id, account.user_id, account.dm_channel) == (held.id, "U5", "D5")
    assert not await PlatformAccount.filter(user_id="U1").exists()


def test_windows_line_endings_and_header_case_are_accepted() -> None:
    text = HEADER.upper() + "\r\n" + row() + "\r\n" + row(member_email="x", role="sales") + "\r\n"

    rows, errors = read_directory_csv(text, roles=ROLES)

    assert [r.line for r in rows] == [2]
    assert [e.line for e in errors] == [3]


def test_a_semicolon_or_tab_separated_file_is_read_as_such() -> None:
    """Excel saves "CSV" with semicolons where the decimal separator is a comma (much of Europe),
    and "Unicode text" with tabs: such a file was refused, "missing column(s): org_id, ..." for
    every column. The separator is told from the header, and a comma inside a cell is then data."""
    for delimiter in (";", "\t"):
        text = "\n".join(line.replace(",", delimiter) for line in (HEADER, row(), row(member_email="x")))
        text = text.replace("Acme Corp", "Acme, Corp") + "\n"

        rows, errors = read_directory_csv(text, roles=ROLES)

        assert [(r.line, r.org_name) for r in rows] == [(2, "Acme, Corp")], delimiter
        assert [e.line for e in errors] == [3], delimiter


def test_a_workbook_is_refused_with_how_to_export_it() -> None:
    """An .xlsx imported as is was read "as windows-1252" and refused for a header of binary junk
    shown as an unknown column; an .xls likewise. Each is named, with how to save it as CSV."""
    xlsx = b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256))
    xls = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256))
    with pytest.raises(UserError, match=r"workbook \(\.xlsx or \.ods\), not CSV: .*CSV UTF-8"):
        decode_directory_file(xlsx)
    with pytest.raises(UserError, match=r"Excel 97-2003 workbook \(\.xls\), not CSV"):
        decode_directory_file(xls)


def test_a_crm_export_with_columns_of_its_own_is_imported_and_says_which_it_ignored(
        db_url: str, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A Salesforce or HubSpot export carries columns of its own (Record ID, Owner, Notes...), with
    every directory column too: the whole file was refused, "unknown column(s)". Columns that are
    not the directory's are now ignored, and the command says which; a file missing one of the
    directory's columns is still refused (a misspelt column is missing, so it is never ignored)."""
    from bot.cli import main
    from tests.cli_support import in_process_cli

    cli = in_process_cli(monkeypatch, db_url)
    export = tmp_path / "salesforce.csv"
    export.write_text(csv_text(*(f"0015e00000{i},{line},Notes here,Owner" for i, line in enumerate(BASE.splitlines()[1:])),
                               header=f"Record ID,{HEADER},Notes, Owner "))

    imported = cli.invoke(main, ["directory", "import", str(export), "--quiet"])

    assert imported.exit_code == 0, imported.output
    assert "created 3, updated 0, unchanged 0, deactivated 0, rejected 0" in imported.output
    assert "salesforce.csv: ignored column(s) that are not the directory's: 'record id', 'notes', 'owner'" \
        in imported.output, imported.output
    names = in_database(db_url, lambda: Member.all().order_by("id").values_list("name", flat=True))
    assert names == ["Alice Smith", "Bob", "Carol"]


def test_an_import_naming_a_cam_herald_does_not_know_says_so(db_url: str, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A CRM's account-owner column with a typo ("carla.cam@vendr.com"), or a CAM not added as
    staff yet: the import took it without a word, and those partners' Ask my CAM was refused and
    their escalations went to the notice's author until someone ran `herald doctor`. The import
    now names each such address with its organisations and how to add them (rows still import)."""
    from bot.cli import main
    from tests.cli_support import in_process_cli

    cli = in_process_cli(monkeypatch, db_url)
    partners = tmp_path / "partners.csv"
    partners.write_text(base(carol={"cam_email": "Carla.Cam@Vendr.com"}))

    first = cli.invoke(main, ["directory", "import", str(partners), "--quiet", "--dry-run"])
    assert first.exit_code == 0, first.output
    assert ("note: cam_email carla.cam@vendor.com (acme) is not an active CAM or admin in Herald: "
            "`herald staff add carla.cam@vendor.com --role cam`") in first.output, first.output
    assert "note: cam_email carla.cam@vendr.com (globex) is not an active CAM or admin" in first.output

    assert cli.invoke(main, ["staff", "add", "carla.cam@vendor.com", "--role", "cam"]).exit_code == 0
    again = cli.invoke(main, ["directory", "import", str(partners), "--quiet"])
    assert again.exit_code == 0, again.output
    assert "carla.cam@vendor.com (acme)" not in again.output and "carla.cam@vendr.com (globex)" in again.output


def test_blank_cells_only_file_is_empty() -> None:
    with pytest.raises(UserError, match="empty"):
        read_directory_csv(",,,\n , \n", roles=ROLES)


async def test_an_attribute_of_several_words_can_be_typed_with_hyphens(db: str) -> None:
    """An expression cannot hold a space: 'Service Provider' is partner_type:service-provider."""
    from bot.core.directory.audiences import count_recipients, parse_audience, unmatched_value_warnings
    from bot.topics import load_catalog

    await import_directory(csv_text(row(partner_type="Service Provider", industry="Financial Services",
                                        slack_team_id="T1", slack_user_id="U1")), now=NOW)
    catalog = load_catalog()
    for typed in ("partner_type:service-provider", "partner_type:service_provider", "industry:financial-services"):
        audience = parse_audience(typed, roles=catalog.roles)
        assert (await count_recipients(audience, catalog.get("announcements")),
                await unmatched_value_warnings(audience)) == (1, []), typed
    typo = parse_audience("partner_type:service-providr", roles=catalog.roles)
    assert await unmatched_value_warnings(typo) == [
        "no partner matches partner_type:service-providr (did you mean 'service-provider'?)"]


async def test_an_attribute_written_in_decomposed_unicode_matches_the_same_word_typed_composed(db: str) -> None:
    """A directory exported on a Mac (or pasted from a PDF) often carries decomposed accents (NFD:
    'e' + U+0301), while Slack and Teams send what a CAM types composed (NFC). The import stores
    every cell composed, and an audience is compared composed, so `industry:sécurité` reaches the
    partner whose industry reads exactly that, whichever form either side was written in."""
    import unicodedata

    from bot.core.directory.audiences import count_recipients, parse_audience, unmatched_value_warnings
    from bot.topics import load_catalog

    nfd = unicodedata.normalize("NFD", "Sécurité")
    result = await import_directory(csv_text(row(org_id=unicodedata.normalize("NFD", "Sécu-01"), industry=nfd,
                                                 member_name=unicodedata.normalize("NFD", "Zoé Martin"),
                                                 **ALICE)), now=NOW)
    assert result.rejected == []
    organisation = await Organisation.get()
    assert (organisation.external_id, organisation.industry, (await Member.get()).name) == (
        "Sécu-01", "sécurité", "Zoé Martin")  # composed
    catalog = load_catalog()
    for typed in ("industry:sécurité", "org:sécu-01"):
        for form in ("NFC", "NFD"):
            audience = parse_audience(unicodedata.normalize(form, typed), roles=catalog.roles)
            assert (await count_recipients(audience, catalog.get("announcements")),
                    await unmatched_value_warnings(audience)) == (1, []), (typed, form)


async def test_an_organisation_id_an_older_import_stored_decomposed_is_the_same_organisation(db: str) -> None:
    """An id stored decomposed before imports composed their cells is matched by the composed id of
    the next file (no second organisation, nobody deactivated) and is stored composed from then
    on, so an `org:` audience typed by a CAM reaches it."""
    import unicodedata

    from bot.core.directory.audiences import count_recipients, parse_audience
    from bot.topics import load_catalog

    await import_directory(csv_text(row(org_id="Sécu-01", **ALICE)), now=NOW)
    await Organisation.filter(external_id="Sécu-01").update(external_id=unicodedata.normalize("NFD", "Sécu-01"))

    again = await import_directory(csv_text(row(org_id="Sécu-01", **ALICE)), now=NOW, deactivate_missing=True)

    assert (again.organisations_created, again.organisations_updated, again.deactivated) == (0, 1, 0)
    assert await Organisation.all().values_list("external_id", flat=True) == ["Sécu-01"]
    catalog = load_catalog()
    assert await count_recipients(parse_audience("org:Sécu-01", roles=catalog.roles),
                                  catalog.get("announcements")) == 1


# ---- audiences typed in chat: what a value matches ------------------------------------------------

async def test_a_value_written_with_a_hyphen_and_a_space_is_reached_typed_with_hyphens(slack_http) -> None:
    """README ("Audience terms"): a value of several words is typed with hyphens. "Value-Added
    Reseller", "Sub-Saharan Africa" or "51-200 employees" mix hyphens and spaces: the matcher once
    tried only the typed value with every hyphen a space (or an underscore), so the preview said 0
    recipients and the warning's "did you mean" proposed exactly what had been typed."""
    slack = slack_http
    await add_partner_contact(slack, f"varco,VAR Co,gold,Sub-Saharan Africa,za,retail,51-200 employees,"
                                     f"Value-Added Reseller,cam@vendor.example,vi@varco.example,Vi Var,sales,"
                                     f"Africa/Johannesburg,en,{TEAM},UVI,,", "UVI")

    for audience in ("partner_type:value-added-reseller", "region:sub-saharan-africa", "size:51-200-employees",
                     "partner_type:Value_Added_Reseller"):
        text, notice_id = await preview_notice(slack, f"send need-to-know announcements {audience} | Q3 price list | "
                                                      "Attached")
        assert "no partner matches" not in text, (audience, text)
        assert "1 recipient*" in text, (audience, text)

    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    assert await Delivery.filter(notice_id=notice_id).count() == 1


async def test_an_org_id_with_a_non_ascii_capital_is_reached_in_any_case(slack_http) -> None:
    """README: `org:` ids match in any case. The filter compared them in SQL (`UPPER(external_id) =
    UPPER('öko-01')`), and SQLite's UPPER (PostgreSQL's under the C locale) folds ASCII letters
    only: `org:ÖKO-01`, typed exactly as the directory writes it, reached nobody, and the warning
    (which lower-cased in Python) gave the CAM no reason."""
    slack = slack_http
    await add_partner_contact(slack, f"ÖKO-01,Öko Schlösser GmbH,gold,emea,at,security,small,reseller,"
                                     f"cam@vendor.example,uli@oeko.example,Uli Öz,sales,Europe/Vienna,de,{TEAM},UULI,,",
                              "UULI")

    for audience in ("org:ÖKO-01", "org:öko-01"):
        text, notice_id = await preview_notice(slack, f"send need-to-know announcements {audience} | Winter hours | "
                                                      "Closed 24-26 Dec")
        assert "1 recipient*" in text and "no partner matches" not in text, (audience, text)

    await slack.click(SEND_ACTION, str(notice_id), user=CAM_USER)
    await slack.responses(slack.last_click_key)
    assert await Delivery.filter(notice_id=notice_id).count() == 1


async def test_an_org_id_the_filter_does_not_match_is_warned_about_with_a_spelling_that_matches(db: str) -> None:
    """The warning and the filter follow one rule for `org:` ids: any case, but the id's own
    punctuation (ACME-01 and ACME_01 may be two partners). `org:acme_01` reached nobody with no
    warning, since the warning tried the value with its underscore a hyphen and the filter did not."""
    from bot.core.directory.audiences import count_recipients, parse_audience, unmatched_value_warnings
    from bot.topics import load_catalog

    await import_directory(csv_text(row(org_id="ACME-01", slack_team_id="T1", slack_user_id="U1")), now=NOW)
    catalog = load_catalog()
    typo = parse_audience("org:acme_01", roles=catalog.roles)
    assert (await count_recipients(typo, catalog.get("announcements")), await unmatched_value_warnings(typo)) == (
        0, ["no partner matches org:acme_01 (did you mean 'acme-01'?)"])


async def test_a_value_with_a_comma_is_reached_and_the_spelling_herald_suggests_works(slack_http) -> None:
    """A comma separates values, so a directory value holding one (ISO's "Korea, Republic of")
    could be typed no way at all, and Herald's "did you mean" proposed `korea,-republic-of`, read
    as two values. Punctuation now compares as a hyphen, and the spelling suggested selects the value."""
    import re

    slack = slack_http
    await add_partner_contact(slack, f'kor,Seoul Security,gold,apac,"Korea, Republic of",security,large,distributor,'
                                     f"cam@vendor.example,min@kor.example,Min Park,sales,Asia/Seoul,ko,{TEAM},UMIN,,",
                              "UMIN")

    text, _ = await preview_notice(slack, "send need-to-know announcements country:korea-republic-of | Q3 | Prices")
    assert "1 recipient*" in text and "no partner matches" not in text, text
    text, _ = await preview_notice(slack, "send need-to-know announcements country:korea-republik-of | Q3 | Prices")
    suggested = re.search(r"did you mean '([^']+)'", text)
    assert suggested, text  # the typo is noticed and a spelling proposed
    text, _ = await preview_notice(slack, f"send need-to-know announcements country:{suggested.group(1)} | Q3 | Prices")
    assert "1 recipient*" in text and "no partner matches" not in text, (suggested.group(1), text)


async def test_naming_a_deactivated_member_is_warned_about(db: str) -> None:
    """`member:` naming someone the directory deactivated reached nobody, and the count left them
    out without a word: the CAM is told, as for any term that matches nobody."""
    from bot.core.directory.audiences import count_recipients, parse_audience, unmatched_value_warnings
    from bot.topics import load_catalog

    await import_directory(BASE, now=NOW)
    left = await import_directory(csv_text(row(**ALICE), row(**CAROL)), now=NOW, deactivate_missing=True)
    assert left.deactivated == 1 and not (await Member.get(email="bob@acme.com")).active
    catalog = load_catalog()
    audience = parse_audience("member:bob@acme.com,alice@acme.com,nobody@acme.com", roles=catalog.roles)
    assert (await count_recipients(audience, catalog.get("announcements")),
            await unmatched_value_warnings(audience)) == (
        1, ["member:bob@acme.com is deactivated", "no partner matches member:nobody@acme.com"])


async def test_the_preview_says_how_many_recipients_have_no_account_yet(slack_http) -> None:  # noqa: ANN001
    """Ed Fox (Keys & Co, gold) is in the directory without Slack or Teams ids and never wrote to
    Herald: the preview counted him among 4 recipients without a word, and his copy failed at once
    ("no Slack or Teams account on file"). The preview now says so in one line."""
    text, _ = await preview_notice(slack_http, "send must-know operations tier:gold | Recall | Stop")

    assert "4 recipients" in text, text
    assert "1 of them has no Slack or Teams account on file yet: its copy will fail" in text, text


@pytest.mark.parametrize(("importance", "counts"), [("must", (3, 2)), ("need", (2, 1)), (None, (3, 2))])
async def test_the_preview_counts_recipients_and_those_without_an_account_in_one_pass(
        db: str, importance: str | None, counts: tuple[int, int]) -> None:
    """The preview's two numbers come from one resolution of the audience: Acme's sales staff for
    incentives are Alice (Slack), Dave and Erin (no ids); Bob (support) is routed out. Erin left
    the topic, which a need-to-know notice respects and a must-know one does not."""
    from bot.core.directory.audiences import count_recipients, count_recipients_and_without_account, parse_audience
    from bot.topics import load_catalog, parse_importance

    await import_directory(csv_text(row(**ALICE), row(**BOB), row(member_email="dave@acme.com", member_name="Dave"),
                                    row(member_email="erin@acme.com", member_name="Erin")), now=NOW)
    await Member.filter(email="erin@acme.com").update(topic_opt_outs=["incentives"])
    catalog = load_catalog()
    audience, topic = parse_audience("org:acme", roles=catalog.roles), catalog.get("incentives")
    policy = parse_importance(importance) if importance else None

    assert await count_recipients_and_without_account(audience, topic, policy) == counts
    assert await count_recipients(audience, topic, policy) == counts[0]
