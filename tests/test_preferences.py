"""Member preferences (topics, digest frequency, quiet hours, time zone) and how delivery honours them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from tortoise.queryset import UpdateQuery

from bot.channels.slack_blocks import PREF_QUIET_END_ACTION, PREF_TIMEZONE_ACTION
from bot.core.notices import sending as notices
from bot.core.commands.parser import SendCommand
from bot.common.errors import NotFound, UserError
from bot.core.directory.importer import import_directory
from bot.core.delivery.messages import Priority
from bot.core.delivery.outbox import LEFT_TOPIC
from bot.core.directory.preferences import member_for_platform_user, preferences_for, update_preferences
from bot.topics import TopicCatalog
from storage.models import AuditEvent, Delivery, Member, MessagePurpose, Notice, OutboundMessage
from tests.fakes.slack_signing import event_body, interaction_body
from tests.support import SAMPLE_DIRECTORY, TEAM, Rig, SlackHarness, wait_until

MONDAY_8_UTC = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 09:00 Berlin, 02:00 Chicago, 19:00 Sydney
MONDAY_2030_UTC = datetime(2026, 1, 5, 20, 30, tzinfo=UTC)  # 21:30 Berlin, 14:30 Chicago, Tue 07:30 Sydney


async def _member(email: str) -> Member:
    return await Member.get(email=email)


def _posts_to(rig: Rig, channel: str) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage") if c.channel == channel and c.ok]


async def _send(rig: Rig, importance: str, topic: str, audience: str = "all", *,
                catalog: TopicCatalog | None = None) -> int:
    catalog = catalog or rig.herald.catalog
    command = SendCommand(importance=importance, topic=topic, audience=audience, title=f"{importance} {topic}",
                          body="Details inside")
    preview = await notices.create_draft(None, command, catalog, now=rig.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, catalog, now=rig.clock.now(), operator="test")
    return preview.notice.id


async def _sent_event(notice_id: int) -> dict:
    return (await AuditEvent.get(notice_id=notice_id, kind="notice.sent")).data


# ---- reading and changing preferences ------------------------------------------------------------

async def test_preferences_read_and_update(rig: Rig) -> None:
    anna = await _member("anna@acme.example")
    prefs = await preferences_for(anna.id, rig.herald.catalog)
    assert (prefs.timezone, prefs.quiet_start, prefs.quiet_end, prefs.digest_frequency) == ("Europe/Berlin", 20, 8, "daily")
    assert prefs.subscribed == {"incentives": True, "product-updates": True, "support": True}
    assert prefs.fixed_topics == ["announcements", "operations"]

    rig.clock.set(MONDAY_8_UTC)
    updated = await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), timezone=" Europe/Paris ",
                                       quiet_start=21, quiet_end=7, digest_frequency="Weekly",
                                       subscriptions={"incentives": False, "announcements": True})
    assert (updated.timezone, updated.quiet_start, updated.quiet_end, updated.digest_frequency) == (
        "Europe/Paris", 21, 7, "weekly")
    assert updated.subscribed == {"incentives": False, "product-updates": True, "support": True}
    assert updated == await preferences_for(anna.id, rig.herald.catalog)
    stored = await _member("anna@acme.example")
    assert (stored.quiet_start_hour, stored.quiet_end_hour, stored.topic_opt_outs) == (21, 7, ["incentives"])
    (event,) = await AuditEvent.filter(kind="preferences.updated")
    assert event.member_id == anna.id and event.actor == "anna@acme.example"
    assert event.data == {"changes": {
        "timezone": {"from": "Europe/Berlin", "to": "Europe/Paris"},
        "quiet_hours": {"from": [20, 8], "to": [21, 7]},
        "digest_frequency": {"from": "daily", "to": "weekly"},
        "unsubscribed": ["incentives"]}}

    # only the end of the quiet hours; back into a topic
    again = await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), quiet_end=6,
                                     subscriptions={"incentives": True, "support": True})
    assert (again.quiet_start, again.quiet_end, again.subscribed["incentives"]) == (21, 6, True)
    latest = await AuditEvent.filter(kind="preferences.updated").order_by("-id").first()
    assert latest.data == {"changes": {"quiet_hours": {"from": [21, 7], "to": [21, 6]}, "subscribed": ["incentives"]}}

    # nothing changed: nothing recorded
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), timezone="Europe/Paris",
                             digest_frequency="weekly", subscriptions={"support": True})
    assert await AuditEvent.filter(kind="preferences.updated").count() == 2


async def test_member_for_platform_user(rig: Rig) -> None:
    anna = await member_for_platform_user("slack", TEAM, "UANNA")
    assert anna is not None and anna.email == "anna@acme.example"
    assert await member_for_platform_user("slack", TEAM, "UNOBODY") is None
    assert await member_for_platform_user("teams", TEAM, "UANNA") is None
    await Member.filter(id=anna.id).update(active=False)
    assert await member_for_platform_user("slack", TEAM, "UANNA") is None


@pytest.mark.parametrize(("change", "message"), [
    ({"timezone": "Europe/Berln"}, "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"timezone": "  "}, "the time zone is empty"),
    ({"quiet_start": 25}, "quiet hours start must be an hour from 0 to 23, not 25"),
    ({"quiet_end": -1}, "quiet hours end must be an hour from 0 to 23, not -1"),
    ({"quiet_end": True}, "quiet hours end must be a whole hour from 0 to 23"),
    ({"digest_frequency": "monthly"}, "unknown digest frequency 'monthly': use daily or weekly"),
    ({"subscriptions": {"announcements": False}}, "you cannot unsubscribe from 'announcements' (Announcements)"),
    ({"subscriptions": {"incentive": False}}, "unknown topic 'incentive' (did you mean 'incentives'?)"),
    ({"subscriptions": {"incentives": "no"}}, "subscription to 'incentives' must be true or false"),
])
async def test_invalid_preferences_are_refused_and_change_nothing(rig: Rig, change: dict, message: str) -> None:
    anna = await _member("anna@acme.example")
    before = await preferences_for(anna.id, rig.herald.catalog)
    # a valid change alongside the invalid one is not applied either
    with pytest.raises(UserError) as error:
        await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(),
                                 **{"digest_frequency": "weekly", **change})
    assert message in str(error.value)
    assert await preferences_for(anna.id, rig.herald.catalog) == before
    assert not await AuditEvent.filter(kind="preferences.updated").exists()


async def test_unknown_member(rig: Rig) -> None:
    with pytest.raises(NotFound):
        await preferences_for(999_999, rig.herald.catalog)
    with pytest.raises(NotFound):
        await update_preferences(999_999, rig.herald.catalog, now=rig.clock.now(), digest_frequency="weekly")


# ---- opt-outs --------------------------------------------------------------------------------------

async def test_opt_outs_apply_to_need_and_nice_to_know_but_not_must_know(rig: Rig) -> None:
    rig.clock.set(MONDAY_8_UTC)  # working hours in Berlin and Sydney
    anna = await _member("anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), subscriptions={"incentives": False})
    # incentives go to sales and executives: Anna (opted out), Di, and Ed (no chat account)

    need = await _send(rig, "need-to-know", "incentives")
    assert not await Delivery.filter(notice_id=need, member_id=anna.id).exists()
    assert await Delivery.filter(notice_id=need).count() == 2
    assert (await _sent_event(need))["opted_out"] == 1 and (await _sent_event(need))["recipients"] == 2

    nice = await _send(rig, "nice-to-know", "incentives")
    assert not await Delivery.filter(notice_id=nice, member_id=anna.id).exists()
    assert await Delivery.filter(notice_id=nice, status="digest").count() == 1  # Di's
    assert (await _sent_event(nice))["opted_out"] == 1

    must = await _send(rig, "must-know", "incentives")
    assert await Delivery.filter(notice_id=must, member_id=anna.id).count() == 1
    assert (await _sent_event(must))["opted_out"] == 0 and (await _sent_event(must))["recipients"] == 3

    other_topic = await _send(rig, "need-to-know", "product-updates")  # Anna still follows this one
    assert await Delivery.filter(notice_id=other_topic, member_id=anna.id).count() == 1

    await rig.herald.outbox.drain()
    assert len(_posts_to(rig, "DUANNA")) == 2  # the must-know and the product update
    assert len(_posts_to(rig, "DUDI")) == 2  # the need-to-know and the must-know incentive (nice: digest)

    # the catalog stops allowing opt-outs for the topic: stored opt-outs no longer apply
    catalog = rig.herald.catalog
    fixed = replace(catalog, topics={**catalog.topics, "incentives": replace(catalog.topics["incentives"], opt_out=False)})
    later = await _send(rig, "need-to-know", "incentives", catalog=fixed)
    assert await Delivery.filter(notice_id=later, member_id=anna.id).count() == 1


async def test_reimporting_the_directory_keeps_the_time_zone_the_member_chose(rig: Rig) -> None:
    """Anna (Europe/Berlin in the directory) moves to New York and sets her time zone herself. The
    operator's routine re-import of the same directory file must not put her back on Berlin time:
    a need-to-know notice at 08:00 UTC (03:00 in New York) then waits for the end of her quiet
    hours (08:00 New York = 13:00 UTC) instead of reaching her at night."""
    anna = await _member("anna@acme.example")
    rig.clock.set(datetime(2026, 1, 4, 12, 0, tzinfo=UTC))
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), timezone="America/New_York")

    result = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="nightly-sync")
    assert not result.rejected and result.updated == 0
    assert (await _member("anna@acme.example")).timezone == "America/New_York"

    rig.clock.set(MONDAY_8_UTC)  # Monday 03:00 in New York (09:00 Berlin)
    notice_id = await _send(rig, "need-to-know", "announcements", "member:anna@acme.example")
    await rig.herald.outbox.drain()
    delivery = await Delivery.get(notice_id=notice_id, member_id=anna.id)
    assert _posts_to(rig, "DUANNA") == []
    assert delivery.next_attempt_at == datetime(2026, 1, 5, 13, 0, tzinfo=UTC)


# ---- quiet hours -----------------------------------------------------------------------------------

async def test_need_to_know_waits_for_the_end_of_quiet_hours(rig: Rig) -> None:
    rig.clock.set(MONDAY_2030_UTC)
    cy = await _member("cy@bolt.example")
    await update_preferences(cy.id, rig.herald.catalog, now=rig.clock.now(), quiet_start=14, quiet_end=16)
    notice_id = await _send(rig, "need-to-know", "announcements")
    assert (await _sent_event(notice_id))["held_for_quiet_hours"] == 4

    held = {d.member.email: d.next_attempt_at for d in
            await Delivery.filter(notice_id=notice_id, status="pending").select_related("member")}
    assert held == {
        "anna@acme.example": datetime(2026, 1, 6, 7, 0, tzinfo=UTC),  # Tuesday 08:00 Berlin
        "bo@acme.example": datetime(2026, 1, 6, 7, 0, tzinfo=UTC),
        "cy@bolt.example": datetime(2026, 1, 5, 22, 0, tzinfo=UTC),  # 16:00 Chicago, her own quiet hours
        "di@keys.example": datetime(2026, 1, 5, 21, 0, tzinfo=UTC),  # Tuesday 08:00 Sydney
    }
    assert await rig.herald.outbox.drain() == 0
    assert rig.fake.calls_to("chat.postMessage") == []

    rig.clock.set(datetime(2026, 1, 5, 21, 0, tzinfo=UTC))
    await rig.herald.outbox.drain()
    assert [c.channel for c in rig.fake.calls_to("chat.postMessage")] == ["DUDI"]
    rig.clock.set(datetime(2026, 1, 5, 22, 0, tzinfo=UTC))
    await rig.herald.outbox.drain()
    rig.clock.set(datetime(2026, 1, 6, 6, 59, tzinfo=UTC))
    await rig.herald.outbox.drain()
    assert [c.channel for c in rig.fake.calls_to("chat.postMessage")] == ["DUDI", "DUCY"]
    rig.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))
    await rig.herald.outbox.drain()
    assert sorted(c.channel for c in rig.fake.calls_to("chat.postMessage")) == ["DUANNA", "DUBO", "DUCY", "DUDI"]
    delivered = await Delivery.filter(notice_id=notice_id, status="delivered").values_list("member__email", "delivered_at")
    assert dict(delivered)["anna@acme.example"] == datetime(2026, 1, 6, 7, 0, tzinfo=UTC)


async def test_need_to_know_delayed_into_the_night_waits_for_the_morning(rig: Rig) -> None:
    """A need-to-know notice is written at 19:59 in Berlin (not quiet yet, so not held). Herald is
    down for the evening (a crash, a deploy in the night-time maintenance window; a rate limit or
    a backlog delays it the same way) and comes back at 02:00 Berlin time: the outbox checks the
    members' quiet hours as it claims the copies and puts them back until 08:00 instead of
    sending them (SPEC: need-to-know is held until the end of the member's quiet hours)."""
    rig.clock.set(datetime(2026, 1, 5, 18, 59, tzinfo=UTC))  # Monday 19:59 Berlin
    notice_id = await _send(rig, "need-to-know", "announcements", "org:acme")
    assert await Delivery.filter(notice_id=notice_id, status="pending").count() == 2  # written, not sent yet

    rig.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # Herald back up: Tuesday 02:00 Berlin
    assert await rig.herald.outbox.drain() == 0
    assert rig.fake.calls_to("chat.postMessage") == []
    morning = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)
    rows = await Delivery.filter(notice_id=notice_id).values_list("status", "next_attempt_at", "attempts", "claimed_by")
    assert rows == [("pending", morning, 0, "")] * 2
    held = await AuditEvent.filter(notice_id=notice_id, kind="delivery.held").values_list("data", flat=True)
    assert [(e["reason"], e["until"], e["copy"]) for e in held] == [("quiet hours", morning.isoformat(timespec="microseconds"), "notice")] * 2

    rig.clock.set(morning)  # 08:00 Berlin
    await rig.herald.outbox.drain()
    assert sorted(c.channel for c in rig.fake.calls_to("chat.postMessage") if c.ok) == ["DUANNA", "DUBO"]


async def test_a_held_need_to_know_copy_follows_the_members_new_time_zone(rig: Rig) -> None:
    """Held at 21:30 Berlin until 08:00 Berlin; meanwhile Anna moves to New York: at 08:00 Berlin
    (02:00 New York) her copy is put back until 08:00 New York, Bo's goes out."""
    rig.clock.set(MONDAY_2030_UTC)
    notice_id = await _send(rig, "need-to-know", "announcements", "org:acme")
    anna = await _member("anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), timezone="America/New_York")

    rig.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))
    await rig.herald.outbox.drain()
    assert [c.channel for c in rig.fake.calls_to("chat.postMessage")] == ["DUBO"]
    assert (await Delivery.get(notice_id=notice_id, member_id=anna.id)).next_attempt_at == datetime(
        2026, 1, 6, 13, 0, tzinfo=UTC)
    rig.clock.set(datetime(2026, 1, 6, 13, 0, tzinfo=UTC))
    await rig.herald.outbox.drain()
    assert [c.channel for c in rig.fake.calls_to("chat.postMessage")] == ["DUBO", "DUANNA"]


async def test_several_held_messages_follow_the_members_new_time_zone_in_one_update_per_new_time(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Friday 21:30 in Berlin: the outbox put back Anna's two digests until her quiet hours end
    (Saturday 08:00 Berlin) and a journey step and nudge until her working hours (Monday 08:00
    Berlin). She moves to Tokyo, where it is Saturday 05:30: the digests now come at 08:00 Tokyo
    that morning, the step and nudge at 08:00 Tokyo on Monday. A digest due again after a failed
    try (not a hold) and Bo's held digest stay as they were. The four rows move in two UPDATE
    statements, one per new time, not one per row."""
    friday = datetime(2026, 1, 9, 20, 30, tzinfo=UTC)
    rig.clock.set(friday)
    anna, bo = await _member("anna@acme.example"), await _member("bo@acme.example")
    saturday_berlin, monday_berlin = datetime(2026, 1, 10, 7, 0, tzinfo=UTC), datetime(2026, 1, 12, 7, 0, tzinfo=UTC)

    async def held(key: str, purpose: MessagePurpose, member: Member, until: datetime, **extra: object) -> int:
        row = await OutboundMessage.create(
            key=key, purpose=purpose.value, priority=Priority.BACKGROUND, member_id=member.id, platform="slack",
            workspace_external_id=TEAM, next_attempt_at=until, due_since=until, created_at=friday, **extra)
        return row.id
    digests = [await held(f"digest:{n}", MessagePurpose.DIGEST, anna, saturday_berlin) for n in (1, 2)]
    journey = [await held("journey_step:1", MessagePurpose.JOURNEY_STEP, anna, monday_berlin),
               await held("journey_nudge:1", MessagePurpose.JOURNEY_NUDGE, anna, monday_berlin)]
    retried = await held("digest:3", MessagePurpose.DIGEST, anna, saturday_berlin, attempts=1)
    bos = await held("digest:4", MessagePurpose.DIGEST, bo, saturday_berlin)

    updates: list[str] = []
    execute = UpdateQuery._execute

    async def counted(query: UpdateQuery) -> int:
        updates.append(query.model.__name__)
        return await execute(query)
    monkeypatch.setattr(UpdateQuery, "_execute", counted)
    await update_preferences(anna.id, rig.herald.catalog, now=friday, timezone="Asia/Tokyo")
    monkeypatch.undo()

    saturday_tokyo, monday_tokyo = datetime(2026, 1, 9, 23, 0, tzinfo=UTC), datetime(2026, 1, 11, 23, 0, tzinfo=UTC)
    due = {row.id: (row.next_attempt_at, row.due_since) for row in await OutboundMessage.all()}
    assert [due[i] for i in digests] == [(saturday_tokyo, saturday_tokyo)] * 2
    assert [due[i] for i in journey] == [(monday_tokyo, monday_tokyo)] * 2
    assert due[retried] == due[bos] == (saturday_berlin, saturday_berlin)
    (event,) = await AuditEvent.filter(kind="preferences.updated")
    assert event.data["held_retimed"] == 4
    assert updates.count("OutboundMessage") == 2, updates


async def _home(slack: SlackHarness, user: str) -> dict:
    """The member opens Herald's Home tab (a signed `app_home_opened` event): the view published."""
    before = len(slack.fake.calls_to("views.publish"))
    response = await slack.post_signed(event_body({"type": "app_home_opened", "user": user, "tab": "home"}, TEAM))
    assert response.status == 200
    published = await wait_until(lambda: (c := slack.fake.calls_to("views.publish")) and len(c) > before and c,
                                 what="the home tab")
    return published[-1].args["view"]


async def _home_action(slack: SlackHarness, user: str, action: dict) -> dict:
    """One control of the Home tab changed (a signed block_actions request, as Slack sends it from
    the view); the view Herald published after it."""
    view = await _home(slack, user)
    before = len(slack.fake.calls_to("views.publish"))
    payload = {"type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "AHERALD",
               "trigger_id": "t", "container": {"type": "view", "view_id": "VHOME"}, "view": view,
               "actions": [action]}
    response = await slack.post_signed(interaction_body(payload))
    assert response.status == 200
    published = await wait_until(lambda: (c := slack.fake.calls_to("views.publish")) and len(c) > before and c,
                                 what="the home tab after the change")
    return published[-1].args["view"]


def _need_to_know(slack: SlackHarness, audience: str, topic: str = "support") -> SendCommand:
    return SendCommand(importance="need-to-know", topic=topic, audience=audience, title="Portal maintenance",
                       body="The partner portal is down on Wednesday")


async def _send_command(slack: SlackHarness, command: SendCommand) -> int:
    preview = await notices.create_draft(None, command, slack.herald.catalog, now=slack.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, slack.herald.catalog, now=slack.clock.now(), operator="test")
    return preview.notice.id


def _dms(slack: SlackHarness, channel: str, text: str = "Portal maintenance") -> list:
    """The DMs posted to `channel` that show `text` (the notice; not a journey step sent meanwhile)."""
    return [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == channel and c.ok
            and text in str(c.args.get("blocks") or c.args.get("text"))]


async def test_a_held_need_to_know_copy_comes_at_the_end_of_the_quiet_hours_of_the_zone_the_member_just_chose(
        slack_http: SlackHarness) -> None:
    """A need-to-know notice goes out at 20:30 UTC: 21:30 for Anna in Berlin, her directory zone, so
    it is held until 08:00 Berlin (07:00 UTC). Anna, who works from Tokyo, sets Asia/Tokyo in her
    Home tab at once. SPEC: need-to-know is "held until the end of the member's quiet hours, in
    their time zone": 08:00 Tokyo, 23:00 UTC. Now the held copy keeps the old zone's time
    (next_attempt_at is never moved earlier; notice_rows.not_before only ever holds a copy longer)
    and reaches her at 16:00 in Tokyo, eight hours into her working day."""
    slack = slack_http
    slack.clock.set(datetime(2026, 1, 5, 20, 30, tzinfo=UTC))  # Mon 21:30 Berlin, Tue 05:30 Tokyo
    notice_id = await _send_command(slack, _need_to_know(slack, "member:anna@acme.example"))
    await slack.herald.outbox.drain()
    assert not _dms(slack, "DUANNA")  # held: quiet hours in Berlin

    slack.clock.advance(minutes=5)
    view = await _home_action(slack, "UANNA", {"action_id": PREF_TIMEZONE_ACTION, "type": "plain_text_input",
                                               "block_id": "timezone", "value": "Asia/Tokyo"})
    assert "Saved." in str(view) and (await Member.get(email="anna@acme.example")).timezone == "Asia/Tokyo"

    slack.clock.set(datetime(2026, 1, 5, 23, 5, tzinfo=UTC))  # Tue 08:05 in Tokyo: her quiet hours are over
    await slack.herald.tick()
    await slack.herald.outbox.drain()
    copy = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example")
    assert _dms(slack, "DUANNA"), (
        f"at 08:05 in Tokyo (her zone since 20:35 UTC) Anna's need-to-know copy is still {copy.status}, "
        f"held until {copy.next_attempt_at:%Y-%m-%d %H:%M} UTC "
        f"({copy.next_attempt_at.astimezone(ZoneInfo('Asia/Tokyo')):%H:%M} in Tokyo)")


async def test_quiet_hours_starting_and_ending_at_the_same_hour_show_as_none_in_the_home_tab(
        slack_http: SlackHarness) -> None:
    """Quiet hours whose start and end are the same hour are no quiet hours (README), so a
    need-to-know notice at 21:30 in Berlin reaches Anna at once. The Home tab she saved them in
    must say so, not just show 20:00 to 20:00 as if she had a day-long quiet spell."""
    slack = slack_http
    slack.clock.set(datetime(2026, 1, 5, 20, 30, tzinfo=UTC))  # Mon 21:30 in Berlin
    assert "No quiet hours" not in str(await _home(slack, "UANNA"))  # 20:00-08:00 by default
    view = await _home_action(slack, "UANNA", {"action_id": PREF_QUIET_END_ACTION, "type": "static_select",
                                               "selected_option": {"value": "20"}})
    anna = await Member.get(email="anna@acme.example")
    assert "Saved." in str(view) and (anna.quiet_start_hour, anna.quiet_end_hour) == (20, 20)
    notes = [e["text"] for b in view["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert any(n.startswith("No quiet hours") for n in notes), notes

    await _send_command(slack, _need_to_know(slack, "member:anna@acme.example"))
    await slack.herald.outbox.drain()
    assert _dms(slack, "DUANNA")  # not held: she has no quiet hours


async def test_quiet_hours_starting_and_ending_at_the_same_hour_show_as_none_on_the_teams_card(
        teams) -> None:  # noqa: ANN001
    """The Teams preferences card, saved with quiet hours from 09:00 to 09:00, says there are
    none (README), as Slack's Home tab does."""
    from tests.teams_support import texts_of

    saved = await teams.invoke("aad-fay", "herald.preferences_save", {"quiet_start": "9", "quiet_end": "9"})
    texts = texts_of(saved["value"])  # the card that replaces the one pressed
    assert "Saved." in texts and any(t.startswith("No quiet hours") for t in texts), texts
    fay = await Member.get(email="fay@teamsco.example")
    assert (fay.quiet_start_hour, fay.quiet_end_hour) == (9, 9)


async def test_a_copy_in_doubt_found_in_quiet_hours_is_looked_for_in_the_morning(rig: Rig) -> None:
    """A worker posted Anna's copy at 19:59 Berlin and died before recording it. Its claim runs out
    in her quiet hours: the copy stays in doubt, neither looked for nor sent again, until 08:00;
    then the channel finds the earlier message instead of posting a second one."""
    rig.clock.set(datetime(2026, 1, 5, 18, 59, tzinfo=UTC))
    notice_id = await _send(rig, "need-to-know", "announcements", "member:anna@acme.example")
    await rig.herald.outbox.drain()
    row = await Delivery.get(notice_id=notice_id)
    posted_ts = row.message_id
    await Delivery.filter(id=row.id).update(status="sending", message_id="", delivered_at=None,
                                            claimed_by="dead-worker", claimed_until=rig.clock.now())

    rig.clock.set(datetime(2026, 1, 6, 1, 0, tzinfo=UTC))  # 02:00 Berlin
    assert await rig.herald.outbox.drain() == 0
    morning = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)
    row = await Delivery.get(id=row.id)
    assert (row.status, row.claimed_by, row.claimed_until) == ("sending", "", morning)
    assert rig.fake.call_count("conversations.history") == 0

    rig.clock.set(morning + timedelta(seconds=1))  # in doubt until then (as a retry in doubt)
    await rig.herald.outbox.drain()
    row = await Delivery.get(id=row.id)
    assert row.status == "delivered" and row.message_id == posted_ts
    assert rig.fake.call_count("chat.postMessage") == 1 and rig.fake.call_count("conversations.history") == 1


async def test_a_need_to_know_copy_held_for_quiet_hours_is_not_sent_after_its_member_left_the_topic(rig: Rig) -> None:
    """README: leaving a topic takes its notices out of a digest not yet sent. A need-to-know copy
    held for the member's quiet hours is the same case: Anna leaves Product updates in the night,
    and the outbox, which checked retractions and closed surveys as it claimed the copy in the
    morning but never opt-outs, sent it anyway. It is now cancelled and audited; Bo's goes out."""
    rig.clock.set(MONDAY_2030_UTC)  # 21:30 Berlin: held until 08:00
    notice_id = await _send(rig, "need-to-know", "product-updates", "org:acme")
    assert await rig.herald.outbox.drain() == 0
    anna = await _member("anna@acme.example")
    await update_preferences(anna.id, rig.herald.catalog, now=rig.clock.now(), subscriptions={"product-updates": False})

    rig.clock.set(datetime(2026, 1, 6, 7, 0, tzinfo=UTC))  # 08:00 Berlin
    await rig.herald.outbox.drain()

    assert _posts_to(rig, "DUANNA") == [] and len(_posts_to(rig, "DUBO")) == 1
    assert await Delivery.filter(notice_id=notice_id, member_id=anna.id).values_list("status", "error") == [
        ("cancelled", LEFT_TOPIC)]
    cancelled = await AuditEvent.filter(notice_id=notice_id, kind="delivery.cancelled").values_list("member_id", "data")
    assert [(m, data["reason"]) for m, data in cancelled] == [(anna.id, LEFT_TOPIC)]
    assert (await Notice.get(id=notice_id)).status == "sent"


async def test_must_know_is_not_held_by_quiet_hours(rig: Rig) -> None:
    rig.clock.set(MONDAY_2030_UTC)
    notice_id = await _send(rig, "must-know", "announcements")
    assert (await _sent_event(notice_id))["held_for_quiet_hours"] == 0
    await rig.herald.outbox.drain()
    assert len(rig.fake.calls_to("chat.postMessage")) == 4


async def test_quiet_hours_do_not_hold_need_to_know_over_the_weekend(rig: Rig) -> None:
    rig.clock.set(datetime(2026, 1, 10, 9, 0, tzinfo=UTC))  # Saturday 10:00 Berlin
    notice_id = await _send(rig, "need-to-know", "announcements", "org:acme")
    await rig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 2
