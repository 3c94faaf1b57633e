"""The foundation story in Microsoft Teams, over real HTTP: install → command → preview card →
Send → Adaptive Card at the fake Bot Connector → Action.Execute acknowledge → card updated."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC

import pytest

from bot.core.directory.importer import import_directory
from bot.core.notices import sending
from bot.core.notices.revisions import edit_notice
from bot.channels.teams_replies import TOO_LARGE_REPLY
from storage.models import Acknowledgement, AuditEvent, ConsoleSignIn, Delivery, Member, Notice, PlatformAccount, Staff
from tests.fakes.bot_framework_keys import APP_ID, LocalBotFrameworkKeys
from tests.fakes.entra import FakeEntraID
from tests.support import broadcast, directory_csv, hold_publish, many_members_csv, updates_pushed, wait_until
from tests.teams_support import (
    TENANT,
    TeamsRig,
    actions_of,
    card_of,
    restart_teams_rig,
    start_teams_rig,
    stop_teams_rig,
    sent_from_teams,
    teams_credentials_refused,
    texts_of,
)

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")  # questions are answered from it


async def test_install_send_acknowledge_in_teams(teams: TeamsRig) -> None:
    status, _ = await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    assert status == 200 and "Herald" in teams.connector.activities("a:conv-aad-cam")[-1]["text"]
    staff = await Staff.get(email="cam@vendor.example")
    assert staff.teams_conversation_id == "a:conv-aad-cam" and staff.teams_service_url == teams.connector.url
    await teams.post(teams.activity("conversationUpdate", "aad-eve", membersAdded=[{"id": "29:aad-eve"}]))
    account = await PlatformAccount.get(platform="teams", user_id="aad-eve")
    assert account.dm_channel == "a:conv-aad-eve" and account.service_url == teams.connector.url

    preview = await teams.say("aad-cam", "send must-know operations org:teamsco | Recall of LX-200 | Stop <b>selling</b> [now](http://evil)")
    card = card_of(preview)
    assert "3 recipients" in str(card) and [a["verb"] for a in actions_of(card)] == ["herald.send", "herald.cancel"]
    notice_id = actions_of(card)[0]["data"]["notice_id"]

    answer = await teams.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    assert answer["type"] == "application/vnd.microsoft.card.adaptive" and "Sending notice" in str(answer["value"])
    again = await teams.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    assert "already" in str(again["value"])
    await teams.herald.outbox.drain()

    eve_card = card_of(teams.connector.activities("a:conv-aad-eve")[-1])
    assert eve_card["version"] == "1.5"
    (ack_button,) = [a for a in actions_of(eve_card) if a["type"] == "Action.Execute"]
    assert ack_button["verb"] == "herald.ack" and ack_button["data"] == {"notice_id": notice_id, "revision": 1}
    texts = " ".join(texts_of(eve_card))
    # a CAM's [text](url) is a link in Herald's formatting language, in Slack and Teams alike;
    # raw HTML and every other markup stays escaped
    assert "[now](http://evil)" in texts and "\\<b\\>selling\\</b\\>" in texts
    # Fay never talked to Herald: a 1:1 conversation was created for her from the directory's AAD id
    assert any(c.route == "create_conversation" for c in teams.connector.calls)
    assert card_of(teams.connector.activities("a:conv-aad-fay")[-1])["version"] == "1.5"
    # Gus is on Slack and Teams: one copy, on the first platform on file (Slack)
    assert [d.platform for d in await Delivery.filter(notice_id=notice_id, member__email="gus@teamsco.example")] == ["slack"]

    for _ in range(2):
        answer = await teams.invoke("aad-eve", "herald.ack", ack_button["data"])
        assert answer["type"] == "application/vnd.microsoft.card.adaptive"
        assert "Acknowledged by **Eve Moreau**" in str(answer["value"])
        assert not [a for a in actions_of(answer["value"]) if a["type"] == "Action.Execute"]
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1
    # the answer does not wait for the platform: the copy is updated by the outbox, once
    await wait_until(lambda: any(c.route == "update_activity" for c in teams.connector.calls), what="update_activity")
    await teams.herald.outbox.drain()
    updates = [c for c in teams.connector.calls if c.route == "update_activity"]
    assert len(updates) == 1 and updates[0].conversation_id == "a:conv-aad-eve"
    assert "Acknowledged by" in str(teams.connector.activities("a:conv-aad-eve")[-1])

    refused = await teams.invoke("aad-outsider", "herald.ack", {"notice_id": notice_id})
    assert refused["type"] == "application/vnd.microsoft.activity.message" and "not sent to you" in refused["value"]

    status_reply = await teams.say("aad-cam", f"status {notice_id}")
    assert "Recipients: **3**" in status_reply["text"] and "Acknowledged: **1**" in status_reply["text"]


def _send_press(rig: TeamsRig, notice_id: int) -> dict:
    return rig.activity("invoke", "aad-cam", name="adaptiveCard/action",
                        value={"action": {"type": "Action.Execute", "verb": "herald.send",
                                          "data": {"notice_id": notice_id}}})


async def test_the_preview_of_a_scheduled_notice_says_the_audience_is_resolved_again(teams: TeamsRig) -> None:
    """Parity with Slack's preview: a notice scheduled for later reaches whoever matches its
    audience then, not the count shown now; the Teams card gave the time alone."""
    preview = await teams.say("aad-cam", "send need-to-know operations org:teamsco at:2026-01-06T09:00Z | Depot | Friday")

    texts = " ".join(texts_of(card_of(preview)))
    assert "Goes out at " in texts and "(the audience is resolved again then)" in texts, texts


async def test_send_is_answered_before_the_outbox_rows_are_written(teams: TeamsRig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Teams waits 15 s for an invoke's answer; the rows of 100,000 recipients take seconds to
    write (bench/publish.py). The Send is stored and answered first, the rows are written after,
    and the CAM is told in the chat when the notice is out."""
    preview = await teams.say("aad-cam", "send must-know operations org:teamsco | Recall | Stop")
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    release, _ = hold_publish(monkeypatch)
    before = len(teams.connector.activities("a:conv-aad-cam"))
    press = asyncio.ensure_future(teams.post(_send_press(teams, notice_id), settle=False))
    try:
        await wait_until(press.done, what="the Send answered while the outbox rows are still being written")
        status, answer = press.result()
        assert status == 200 and "Sending notice" in str(answer["value"])
        assert await Delivery.filter(notice_id=notice_id).count() == 0
        assert (await Notice.get(id=notice_id)).status == "scheduled"  # the send is stored: due now
        _, again = await teams.post(_send_press(teams, notice_id), settle=False)
    finally:
        release.set()
        await press
    assert "already being sent" in str(again["value"])
    await teams.herald.settle()
    assert await Delivery.filter(notice_id=notice_id).count() == 3
    assert (await Notice.get(id=notice_id)).status == "sending"
    told = [a.get("text", "") for a in teams.connector.activities("a:conv-aad-cam")[before:]]
    assert any(f"Notice #{notice_id} **Recall** is out: 3 recipients queued" in t for t in told), told
    await teams.herald.outbox.drain()
    assert card_of(teams.connector.activities("a:conv-aad-eve")[-1])["version"] == "1.5"


async def test_a_send_answered_before_a_crash_is_finished_by_the_tick(teams: TeamsRig,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 between the answer and the rows: the next process's tick publishes the notice."""
    preview = await teams.say("aad-cam", "send must-know operations org:teamsco | Recall | Stop")
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    release, tasks = hold_publish(monkeypatch)
    press = asyncio.ensure_future(teams.post(_send_press(teams, notice_id), settle=False))
    try:
        await wait_until(press.done, what="the Send answered while the outbox rows are still being written")
        assert "Sending notice" in str(press.result()[1]["value"])
        await wait_until(lambda: tasks, what="the rows being written")
    finally:
        for task in tasks:
            task.cancel()  # the process dies: the rows are never written by it
        release.set()
        await press
    await asyncio.gather(*tasks, return_exceptions=True)
    monkeypatch.undo()
    assert await Delivery.filter(notice_id=notice_id).count() == 0
    await restart_teams_rig(teams)
    grace = sending.requested_send_grace(teams.herald.settings.delivery_lease_seconds)
    assert (await teams.herald.tick())["published"] == 0  # a Send so young is left to its own process
    teams.clock.advance(seconds=grace.total_seconds())
    counts = await teams.herald.tick()
    assert counts["published"] == 1
    assert await Delivery.filter(notice_id=notice_id).count() == 3
    assert await AuditEvent.filter(kind="notice.sent", notice_id=notice_id).count() == 1


async def test_one_acknowledgement_settles_both_platforms(db: str) -> None:
    rig = await start_teams_rig(db, platform_policy="all")
    try:
        notice_id = await sent_from_teams(rig, "send must-know operations member:gus@teamsco.example | Recall | Stop")
        assert sorted(d.platform for d in await Delivery.filter(notice_id=notice_id)) == ["slack", "teams"]
        await rig.invoke("aad-gus", "herald.ack", {"notice_id": notice_id})
        await wait_until(lambda: rig.slack.call_count("chat.update") >= 1, what="chat.update")
        await rig.herald.outbox.drain()
        (slack_update,) = rig.slack.calls_to("chat.update")
        assert "Acknowledged by *Gus Petit*" in str(slack_update.args["blocks"])
        assert await Acknowledgement.filter(notice_id=notice_id).count() == 1
    finally:
        await stop_teams_rig(rig)


async def test_commands_are_refused_for_partner_staff_and_help_works(teams: TeamsRig) -> None:
    reply = await teams.say("aad-outsider", "send must-know operations all | X | Y")
    assert "don't recognise you as a partner contact" in reply["text"]
    answer = await teams.say("aad-eve", "send must-know operations all | X | Y")  # a partner: refused, as in Slack
    assert "You tried `send`" in answer["text"] and "Only channel account managers and admins" in answer["text"]
    reply = await teams.say("aad-cam", "frobnicate")
    assert "I don't know the command `frobnicate`" in reply["text"] and "status [notice-id]" in reply["text"]
    reply = await teams.say("aad-cam", "send must-know operations teir:gold | X | Y")
    assert "did you mean 'tier'?" in reply["text"]


async def test_compose_card_round_trip(teams: TeamsRig) -> None:
    compose = card_of(await teams.say("aad-cam", "send"))
    ids = [field.get("id") for field in compose["body"] if "id" in field]
    assert ids == ["topic", "importance", "audience", "title", "body", "link", "deadline"]
    data = {"topic": "operations", "importance": "must-know", "audience": "regoin:emea", "title": "T", "body": "B"}
    answer = await teams.invoke("aad-cam", "herald.compose", data)
    assert "did you mean 'region'" in str(answer["value"]) and answer["value"]["body"][1]["color"] == "Attention"
    answer = await teams.invoke("aad-cam", "herald.compose", {**data, "audience": "region:emea"})
    assert [a["verb"] for a in actions_of(answer["value"])] == ["herald.send", "herald.cancel"]


async def test_cancel_on_a_preview_already_sent_says_it_was_sent_already_as_in_slack(teams: TeamsRig) -> None:
    """The preview card's Cancel on a notice that went out meanwhile (Send pressed on another device,
    or on another preview of it) answered "Notice #N sent.", as if Cancel had sent it; Slack's Cancel
    says "Notice #N already sent." and a draft's Cancel "Notice #N cancelled." in both."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco | Recall of LX-200 | Stop")
    answer = await teams.invoke("aad-cam", "herald.cancel", {"notice_id": notice_id})
    assert texts_of(answer["value"]) == [f"Notice #{notice_id} already sent."], answer["value"]
    draft = actions_of(card_of(await teams.say("aad-cam", "send need-to-know operations org:teamsco | A | B")))
    answer = await teams.invoke("aad-cam", "herald.cancel", draft[1]["data"])
    assert texts_of(answer["value"]) == [f"Notice #{draft[1]['data']['notice_id']} cancelled."]


async def test_a_scheduled_send_says_how_to_list_and_cancel_it_as_in_slack(teams: TeamsRig) -> None:
    """Slack's answer to Send on a scheduled notice ends "`/herald scheduled` lists it; `/herald cancel
    N` cancels it."; the Teams card said only when it goes out, so the CAM was not told how to stop it."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    preview = await teams.say("aad-cam", "send need-to-know announcements all at:2026-03-01T09:00Z | Webinar | Join us")
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    answer = await teams.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    (said,) = texts_of(answer["value"])
    assert f"Notice #{notice_id} **Webinar** is scheduled for " in said
    assert said.endswith(f"**scheduled** lists it; **cancel {notice_id}** cancels it."), said  # a card shows no `code`
    assert f"#{notice_id}" in (await teams.say("aad-cam", "scheduled"))["text"]
    assert "cancelled" in (await teams.say("aad-cam", f"cancel {notice_id}"))["text"]


async def test_the_answer_to_send_shows_no_backticks_a_card_cannot_render(teams: TeamsRig) -> None:
    """The card that replaces the preview after Send said "Follow it with `status N`": a card's
    Markdown has no code spans, so Teams showed the backticks. Herald's command is bold there now;
    a backtick in the CAM's own title stays escaped (shown as typed)."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    preview = await teams.say("aad-cam", "send need-to-know announcements all | Use `beta` now | Details")
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    answer = await teams.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    (said,) = texts_of(answer["value"])
    assert said.endswith(f"follow it with **status {notice_id}**."), said
    assert "Use \\`beta\\` now" in said, said


async def test_unauthenticated_requests_are_refused_when_an_app_id_is_set(db: str) -> None:
    rig = await start_teams_rig(db, teams_app_id="00000000-0000-0000-0000-000000000001")
    try:
        activity = rig.activity("message", "aad-cam", text="status")
        status, _ = await rig.post(activity)
        assert status == 401
        status, _ = await rig.post(activity, headers={"Authorization": "Bearer not-a-jwt"})
        assert status == 401
        assert rig.connector.activities("a:conv-aad-cam") == []
        assert (await Staff.get(email="cam@vendor.example")).teams_conversation_id == ""
    finally:
        await stop_teams_rig(rig)


async def test_an_activity_from_a_channel_other_than_teams_is_not_acted_on(
        db: str, bot_framework_keys: LocalBotFrameworkKeys, caplog: pytest.LogCaptureFixture) -> None:
    """The Azure Bot behind Herald also serves Web Chat / Direct Line, whose clients write `from`
    and `channelData` (the tenant) as they like; their activities come with genuine Bot Framework
    tokens, signed with a key endorsed for their channel. A Direct Line activity claiming to be the
    CAM and asking for a console sign-in link is answered 200 with nothing done and one warning."""
    bot_framework_keys.endorsements = ["directline", "webchat"]
    rig = await start_teams_rig(db, teams_app_id=APP_ID)
    try:
        activity = {**rig.activity("message", "aad-cam", text="console"), "channelId": "directline"}
        token = bot_framework_keys.token(rig.connector.url)
        caplog.clear()
        status, _ = await rig.post(activity, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and await ConsoleSignIn.all().count() == 0
        assert rig.connector.activities("a:conv-aad-cam") == []
        assert (await Staff.get(email="cam@vendor.example")).teams_conversation_id == ""  # nothing linked
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
            "ignored an activity from channel 'directline': Herald acts on Microsoft Teams (msteams) only"]
    finally:
        await stop_teams_rig(rig)


async def test_untrusted_service_url_is_refused_in_production_mode(
        db: str, bot_framework_keys: LocalBotFrameworkKeys) -> None:
    """Microsoft's hosts only (HERALD_TEAMS_CHECK_SERVICE_URL=true): an authenticated activity whose
    serviceUrl is another host is refused (403) and nothing is sent there."""
    rig = await start_teams_rig(db, teams_app_id=APP_ID, teams_app_password="client-secret",
                                teams_check_service_url=True)
    try:
        token = bot_framework_keys.token(rig.connector.url)
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="help"),
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 403 and rig.connector.activities("a:conv-aad-cam") == []
    finally:
        await stop_teams_rig(rig)


async def test_a_deployment_without_teams_takes_no_forged_teams_acknowledgement(
        db: str, caplog: pytest.LogCaptureFixture) -> None:
    """README: without an app id /api/messages is unauthenticated only against a local connector
    (HERALD_TEAMS_CHECK_SERVICE_URL=false) or in the sandbox. A Slack-only deployment with the
    production settings (Microsoft's hosts only, sandbox off) took a forged, unsigned Action.Execute
    and recorded a must-know acknowledgement in a member's name: it refuses every request (401,
    one JSON reason), changes nothing, and says so once at start-up."""
    rig = await start_teams_rig(db)  # Slack configured; no HERALD_TEAMS_APP_ID; a local connector
    try:
        notice_id = await broadcast(rig.herald, rig.clock, "org:teamsco")
        await rig.herald.outbox.drain()
        caplog.clear()
        await restart_teams_rig(rig, teams_check_service_url=True, sandbox="off")
        forged = rig.activity("invoke", "aad-eve", tenant=TENANT, name="adaptiveCard/action",
                              value={"action": {"type": "Action.Execute", "verb": "herald.ack",
                                                "data": {"notice_id": notice_id, "revision": 1}}})
        forged["serviceUrl"] = "https://smba.trafficmanager.net/teams/"
        status, answer = await rig.post(forged)  # no Authorization header at all
        acknowledged = await Acknowledgement.filter(notice_id=notice_id).count()
        assert (status, acknowledged) == (401, 0), (
            f"an unauthenticated, forged Teams invoke was answered {status} and recorded {acknowledged} "
            f"acknowledgement(s) in Eve's name: {str(answer)[:300]}")
        assert answer == {"error": "Teams is not configured on this server"}
        status, _ = await rig.post(rig.activity("message", "aad-cam", text="console"))  # a staff command
        assert status == 401 and await ConsoleSignIn.all().count() == 0
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno >= logging.WARNING and "/api/messages" in r.getMessage()]
        assert len(warnings) == 1 and "refuses" in warnings[0] and "HERALD_TEAMS_APP_ID" in warnings[0], warnings
    finally:
        await stop_teams_rig(rig)


async def test_escalation_reaches_a_cam_who_only_uses_teams(teams: TeamsRig) -> None:
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco deadline:2026-01-06 | Recall | Stop")
    teams.clock.advance(days=2)
    counts = await teams.herald.tick()
    assert counts["escalations"] == 1 and counts["escalation_messages"] == 1
    await teams.herald.outbox.drain()  # the worker the tick wakes
    card = card_of(teams.connector.activities("a:conv-aad-cam")[-1])
    assert "Eve Moreau" in str(card) and [a["verb"] for a in actions_of(card)] == ["herald_remind_now", "herald_open_report"]
    deadline = (await Notice.get(id=notice_id)).deadline.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"passed at {{{{DATE({deadline}, SHORT)}}}} {{{{TIME({deadline})}}}}" in str(card)  # the CAM's own zone
    answer = await teams.invoke("aad-cam", "herald_remind_now", actions_of(card)[0]["data"])
    assert "Queued 3 reminders" in answer["value"]


async def test_remind_now_for_one_member_says_one_reminder_as_in_slack(teams: TeamsRig) -> None:
    """Slack's Remind now answers "Queued 1 reminder for notice #N."; Teams said "Queued 1 reminders"."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    notice_id = await sent_from_teams(
        teams, "send must-know operations member:eve@teamsco.example deadline:2026-01-06 | Recall | Stop")
    teams.clock.advance(days=2)
    await teams.herald.tick()
    await teams.herald.outbox.drain()
    card = card_of(teams.connector.activities("a:conv-aad-cam")[-1])
    answer = await teams.invoke("aad-cam", "herald_remind_now", actions_of(card)[0]["data"])
    assert answer["value"] == f"Queued 1 reminder for notice #{notice_id}.", answer["value"]


async def test_the_report_command_in_teams_shows_the_rates_and_each_partner_as_in_slack(teams: TeamsRig) -> None:
    """`report <id>` in Teams: the totals with the acknowledgement rate and a line per partner, as
    Slack's reply has (bot.channels.report_lines); it showed the totals only."""
    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco | Recall | Stop")
    ack_button = next(a for a in actions_of(card_of(teams.connector.activities("a:conv-aad-eve")[-1]))
                      if a["type"] == "Action.Execute")
    await teams.invoke("aad-eve", "herald.ack", ack_button["data"])

    text = (await teams.say("aad-cam", f"report {notice_id}"))["text"]
    assert "Recipients 3 · delivered 3 · failed 0 · acknowledged 1 (33%)" in text, text
    assert "\n\n- Teams Co: 1/3 (33%)\n\n" in text, text
    assert text.endswith("The full CSV: `herald report <id>` or the reports API.")


async def test_the_report_button_is_answered_before_the_report_is_sent(teams: TeamsRig) -> None:
    """A card button's answer is the HTTP response, and Teams gives a bot seconds to give it (the
    connector sends the invoke again when it does not come). The report a CAM asks for from an
    escalation card goes out as a message of its own, which the connector may throttle (a reply
    waits up to a minute then): the press is answered first, and the report follows."""
    import asyncio

    from bot.handlers.teams.route import TEAMS_HANDLER_KEY

    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco deadline:2026-01-06 | Recall | Stop")
    teams.clock.advance(days=2)
    await teams.herald.tick()
    await teams.herald.outbox.drain()
    card = card_of(teams.connector.activities("a:conv-aad-cam")[-1])
    report_button = actions_of(card)[1]
    assert report_button["verb"] == "herald_open_report"

    pauses: list[float] = []
    release = asyncio.Event()

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        await release.wait()

    teams.server.app[TEAMS_HANDLER_KEY].sleep = pause
    teams.connector.fail_next("send_activity", 429, retry_after=20)
    before = len(teams.connector.activities("a:conv-aad-cam"))
    press = teams.activity("invoke", "aad-cam", name="adaptiveCard/action",
                           value={"action": {"type": "Action.Execute", "verb": "herald_open_report",
                                             "data": report_button["data"]}})
    status, answer = await asyncio.wait_for(teams.post(press, settle=False), timeout=30)  # a guard, not a wait
    assert status == 200 and answer["value"] == "The report is on its way to this chat."
    await wait_until(lambda: pauses, what="the throttled report's pause")
    assert pauses == [20.0] and len(teams.connector.activities("a:conv-aad-cam")) == before  # still to come
    release.set()
    await teams.herald.settle()
    (report,) = teams.connector.activities("a:conv-aad-cam")[before:]
    assert f"Report for notice #{notice_id}" in report["text"]


async def test_a_slow_tenant_does_not_hold_up_other_workspaces(teams: TeamsRig) -> None:
    import asyncio

    from tests.support import wait_until

    preview = await teams.say("aad-cam", "send need-to-know operations org:teamsco | Depot closed | Friday")
    notice_id = actions_of(card_of(preview))[0]["data"]["notice_id"]
    await teams.invoke("aad-cam", "herald.send", {"notice_id": notice_id})
    teams.connector.delay("send_activity", 1.0)
    teams.connector.delay("create_conversation", 1.0)
    draining = asyncio.create_task(teams.herald.outbox.drain())
    try:
        await wait_until(lambda: Delivery.filter(notice_id=notice_id, platform="slack", status="delivered").exists(),
                         what="the Slack delivery")
        assert not draining.done()
        assert await Delivery.filter(notice_id=notice_id, platform="teams", status="delivered").count() == 0
    finally:
        await draining
    assert await Delivery.filter(notice_id=notice_id, status="delivered").count() == 3


async def test_a_body_that_is_not_an_activity_gets_400(teams: TeamsRig) -> None:
    for body in ({}, [], {"type": 7}):
        status, answer = await teams.post(body)  # type: ignore[arg-type]
        assert status == 400 and "not a Bot Framework activity" in answer["error"]


async def test_console_in_teams_answers_staff_with_a_sign_in_link(teams: TeamsRig) -> None:
    import re
    from urllib.parse import parse_qs, urlsplit

    from bot.core.directory.console_access import redeem_link

    reply = await teams.say("aad-cam", "console")
    assert reply["textFormat"] == "markdown"
    url = re.search(r"\]\((http[^)]+)\)", reply["text"]).group(1)
    opened = await redeem_link(parse_qs(urlsplit(url).query)["token"][0], now=teams.clock.now())
    assert opened.staff.email == "cam@vendor.example" and urlsplit(url).path == "/console/sign-in"
    stranger = await teams.say("aad-outsider", "console")  # neither staff nor in the directory
    assert "sign-in" not in stranger.get("text", "")


async def test_new_members_conversations_are_created_within_the_tenants_budget(db: str) -> None:
    """Twelve members Herald never talked to: each needs a 1:1 conversation created, then the
    notice sent, two requests against the tenant's limit; the pacing (5 a second) counts both, so a
    tenant allowing 8 a second, 3 at once, never answers 429 (counting one would mean 10 a second:
    the fourth member draws one). The pacing spaces members, not each member's two requests, so a
    first member held up (the connector's token is fetched first) sends its two closer to the second
    member's: a burst of 2 failed that way on a loaded machine, 3 leaves room for it."""
    from bot.core.commands.parser import SendCommand
    from bot.core.notices import sending as notices
    from tests.fakes.rate_limits import Rate
    from tests.fakes.teams_limits import TeamsLimits

    rig = await start_teams_rig(db, teams_max_per_second=5.0)
    try:
        rig.connector.set_limits(TeamsLimits(per_tenant=Rate(8, 1.0, burst=3)))
        await import_directory(directory_csv([
            f"newco,New Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,n{i}@newco.example,N {i},"
            f"sales,Europe/Paris,fr,,,{TENANT},aad-new{i}" for i in range(12)]), now=rig.clock.now(), actor="test")
        command = SendCommand(importance="need-to-know", topic="operations", audience="org:newco", title="Depot",
                              body="Closed on Friday")
        preview = await notices.create_draft(None, command, rig.herald.catalog, now=rig.clock.now(), operator="test")
        await notices.send_draft(preview.notice.id, None, rig.herald.catalog, now=rig.clock.now(), operator="test")
        await rig.herald.outbox.drain()
        rows = await Delivery.filter(notice_id=preview.notice.id).values_list("status", "error")
        assert [status for status, _ in rows] == ["delivered"] * 12, rows
        stats = rig.connector.limits_stats()
        assert stats["accepted"]["by_method"]["create_conversation"] == 12
        assert stats["throttled"]["total"] == 0
    finally:
        await stop_teams_rig(rig)


async def test_a_throttled_reply_is_sent_again_after_the_pause_it_asks_for(teams: TeamsRig) -> None:
    """A CAM asks for a status while a broadcast spends the tenant's budget: the Bot Connector
    answers the reply with 429. The request was answered already, so Herald waits the pause the
    429 asks for (here recorded, not slept) and sends the reply again."""
    from bot.handlers.teams.route import TEAMS_HANDLER_KEY

    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    teams.server.app[TEAMS_HANDLER_KEY].sleep = pause
    teams.connector.fail_next("send_activity", 429, retry_after=2, times=2)
    reply = await teams.say("aad-cam", "help")
    assert "send" in reply["text"].lower() and pauses == [2.0, 2.0]
    assert [c.status for c in teams.connector.calls_to("send_activity")][-3:] == [429, 429, 201]

    teams.connector.fail_next("send_activity", 429, retry_after=1, times=4)  # never lets up: given up, logged
    status, _ = await teams.post(teams.activity("message", "aad-cam", text="help"))
    assert status == 200 and pauses == [2.0, 2.0, 1.0, 1.0, 1.0]
    assert [c.status for c in teams.connector.calls_to("send_activity")][-4:] == [429] * 4


async def test_progress_for_many_members_fits_one_teams_message(teams: TeamsRig) -> None:
    """Teams refuses a bot message over ~100 KB (counted as UTF-16) with 413 MessageSizeTooBig.
    `progress` for a CAM with 1,200 partner members (one line each) was ~250 KB: refused, only
    logged, and the CAM saw nothing. Now the list stops within the budget with how to see the rest."""
    result = await import_directory(many_members_csv(1_200), now=teams.clock.now(), actor="test")
    assert not result.rejected
    conversation = "a:conv-aad-cam"
    before = len(teams.connector.activities(conversation))
    reply = await teams.say("aad-cam", "progress")
    assert not [c for c in teams.connector.calls if c.conversation_id == conversation and c.status == 413]
    assert len(teams.connector.activities(conversation)) == before + 1
    text = reply["text"]
    assert text.startswith("**Onboarding progress**\n\n• Bulk Partner 00 GmbH")
    shown, managed = text.count("\n\n• "), await Member.filter(active=True, organisation__cam_email="cam@vendor.example").count()
    assert 100 < shown < 1_200 < managed
    assert text.endswith(f"\n\n… and {managed - shown} more members: `progress <org-id>` shows one partner's")


async def test_a_reply_teams_refuses_as_too_large_is_followed_by_a_short_note(teams: TeamsRig) -> None:
    """Whatever the reply, a 413 from the Bot Connector no longer leaves the person with silence."""
    teams.connector.fail_next("send_activity", 413, code="MessageSizeTooBig")
    reply = await teams.say("aad-cam", "help")
    assert reply["text"] == TOO_LARGE_REPLY
    assert [c.status for c in teams.connector.calls_to("send_activity")][-2:] == [413, 201]


@pytest.mark.parametrize("status", [502, 504, 412])
async def test_a_reply_the_connector_fails_transiently_is_sent_again(teams: TeamsRig, status: int) -> None:
    """Microsoft's table of the Bot Connector's status codes (Teams, "Status codes from bot
    conversational APIs") says to retry 412, 502 and 504, as Herald's outbox does (`_RETRYABLE`).
    A reply to a person (a command's answer, the console link, the welcome) was retried only after
    a 429, so after a 502 the CAM who typed `help` heard nothing. It is now sent again after a
    short backoff (no Retry-After here: 1 s, then 2 s), and given up after three more tries."""
    from bot.handlers.teams.route import TEAMS_HANDLER_KEY

    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    teams.server.app[TEAMS_HANDLER_KEY].sleep = pause
    teams.connector.fail_next("send_activity", status, times=2)
    reply = await teams.say("aad-cam", "help")
    assert "send" in reply["text"].lower() and pauses == [1.0, 2.0]
    assert [c.status for c in teams.connector.calls_to("send_activity")][-3:] == [status, status, 201]

    teams.connector.fail_next("send_activity", status, times=4)  # never lets up: given up, logged
    code, _ = await teams.post(teams.activity("message", "aad-cam", text="help"))
    assert code == 200 and pauses == [1.0, 2.0, 1.0, 2.0, 4.0]
    assert [c.status for c in teams.connector.calls_to("send_activity")][-4:] == [status] * 4


async def test_a_replys_pauses_are_bounded(teams: TeamsRig) -> None:
    """However long the connector asks to wait, a reply pauses at most 30 s at a time and 60 s in
    all: an answer later than that is no answer any more, so it is given up and logged."""
    from bot.handlers.teams.route import TEAMS_HANDLER_KEY

    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    teams.server.app[TEAMS_HANDLER_KEY].sleep = pause
    teams.connector.fail_next("send_activity", 429, retry_after=3600, times=4)
    code, _ = await teams.post(teams.activity("message", "aad-cam", text="help"))
    assert code == 200 and pauses == [30.0, 30.0]
    assert [c.status for c in teams.connector.calls_to("send_activity")][-3:] == [429] * 3


def _welcomes(teams: TeamsRig, aad: str) -> int:
    return sum("Hi, I'm Herald" in (a.get("text") or "") for a in teams.connector.activities(f"a:conv-{aad}"))


async def test_a_personal_install_is_greeted_once_and_a_removal_not_at_all(teams: TeamsRig) -> None:
    """Microsoft ("Subscribe to conversation events"): a personal install sends a conversationUpdate
    adding the bot and the user, and an installationUpdate (add); members removed also come as a
    conversationUpdate."""
    await teams.post(teams.activity("conversationUpdate", "aad-eve",
                                    membersAdded=[{"id": "28:herald"}, {"id": "29:aad-eve", "aadObjectId": "aad-eve"}]))
    assert (await PlatformAccount.get(platform="teams", user_id="aad-eve")).dm_channel == "a:conv-aad-eve"
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    assert _welcomes(teams, "aad-eve") == 1
    await teams.post(teams.activity("conversationUpdate", "aad-fay", membersRemoved=[{"id": "28:herald"}]))
    assert _welcomes(teams, "aad-fay") == 0


async def test_a_repeated_installation_update_greets_once(teams: TeamsRig) -> None:
    """SPEC: "nothing is sent twice, across ... duplicate platform deliveries". The Bot Connector may
    deliver the same activity (same id) twice: every activity Herald acts on is acted on once, not
    only messages and invokes."""
    install = teams.activity("installationUpdate", "aad-eve", action="add")
    for _ in range(2):
        status, _ = await teams.post(install)  # the very same activity, same id
        assert status == 200
    assert _welcomes(teams, "aad-eve") == 1, f"greeted {_welcomes(teams, 'aad-eve')} times for one install"


async def test_help_from_the_teams_command_menu_helps_a_partner(teams: TeamsRig) -> None:
    """The command menu offers everyone `help`. A partner who picks it is told what Herald does for
    them (Acknowledge, `preferences`, asking a question), not handed the assistant's "I don't know
    that one yet" and an Ask my CAM button that would pass the word "help" to their CAM."""
    reply = await teams.say("aad-eve", "help")
    shown = reply.get("text") or ""
    assert "I don't know that one yet" not in shown and "`preferences`" in shown, shown[:300]
    assert "**Acknowledge**" in shown and "Ask my CAM" in shown and "send <importance>" not in shown
    assert not reply.get("attachments")  # no assistant buttons


async def test_teams_help_describes_what_teams_does(teams: TeamsRig) -> None:
    """A CAM's help in Teams describes Teams: `edit <id>` opens a form there as in Slack (a card), and
    a report's CSV comes as a 15-minute download link, not "in your DM" (README)."""
    reply = await teams.say("aad-cam", "help")
    assert "CSV in your DM" not in reply["text"], "Teams help says the report CSV comes by DM"
    assert "`edit <notice-id>` — correct a sent notice (form)" in reply["text"]
    assert "inline: `edit <id> [material] | <title> | <body>`" in reply["text"]
    assert "link to the CSV for 15 minutes" in reply["text"] and "**Herald commands**" in reply["text"]


def _client_info(zone: str) -> dict[str, str]:
    """The entity Teams adds to every message: the sender's client, locale and device time zone."""
    return {"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Windows", "timezone": zone}


async def test_a_members_time_zone_is_taken_from_teams_when_the_directory_has_none(teams: TeamsRig) -> None:
    """Every Teams message carries the sender's device time zone (entities: clientInfo.timezone).
    A member imported with a blank `timezone` is UTC (README); once she talks to Herald from Teams,
    her working hours (08:00-20:00) and quiet hours are kept in her own zone, not UTC, so must-know
    reminders and need-to-know copies stop arriving at midnight her time. The change is audited."""
    await import_directory(directory_csv([
        f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,lou@teamsco.example,Lou Park,"
        f"operations,,en,,,{TENANT},aad-lou"]), now=teams.clock.now(), actor="test")
    teams.connector.open_conversation("aad-lou", TENANT)
    status, _ = await teams.post(teams.activity("message", "aad-lou", text="preferences",
                                                entities=[_client_info("America/Los_Angeles")]))
    assert status == 200
    member = await Member.get(email="lou@teamsco.example")
    assert member.timezone == "America/Los_Angeles", f"the member's zone stayed {member.timezone!r}"
    (event,) = await AuditEvent.filter(kind="member.timezone_detected")
    assert event.member_id == member.id and event.data["changes"] == {
        "timezone": {"from": "UTC", "to": "America/Los_Angeles"}}


async def test_teams_does_not_replace_a_zone_the_directory_or_the_member_gave(teams: TeamsRig) -> None:
    """The device's zone only fills a gap: Eve's zone is in the directory (Europe/Paris), and once
    a member picks one in their preferences it is theirs; a name that is no IANA zone is ignored."""
    await teams.post(teams.activity("message", "aad-eve", text="preferences", entities=[_client_info("Asia/Tokyo")]))
    assert (await Member.get(email="eve@teamsco.example")).timezone == "Europe/Paris"

    await Member.filter(email="fay@teamsco.example").update(timezone="UTC", timezone_from_directory=False)
    await teams.post(teams.activity("message", "aad-fay", text="preferences", entities=[_client_info("Mars/Olympus")]))
    assert (await Member.get(email="fay@teamsco.example")).timezone == "UTC"
    await Member.filter(email="fay@teamsco.example").update(timezone_chosen=True)
    await teams.post(teams.activity("message", "aad-fay", text="preferences", entities=[_client_info("Asia/Tokyo")]))
    assert (await Member.get(email="fay@teamsco.example")).timezone == "UTC"
    assert not await AuditEvent.filter(kind="member.timezone_detected").exists()


async def test_an_app_upgrade_does_not_greet_the_member_again(teams: TeamsRig) -> None:
    """Teams sends installationUpdate `add-upgrade` when the bot is added as part of an app upgrade
    (microsoft/botframework-sdk#6139: "allows the bot to distinguish if the bot is being
    added/removed as part of an app upgrade scenario, rather than a fresh install"). A
    `herald teams package --version` rollout must not greet every user again; the upgrade still
    links the person (their chat is stored as with an install)."""
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add-upgrade"))
    assert _welcomes(teams, "aad-eve") == 1, f"greeted {_welcomes(teams, 'aad-eve')} times: again for the upgrade"

    await teams.post(teams.activity("installationUpdate", "aad-fay", action="add-upgrade"))
    assert _welcomes(teams, "aad-fay") == 0
    assert (await PlatformAccount.get(platform="teams", user_id="aad-fay")).dm_channel == "a:conv-aad-fay"


async def test_an_update_teams_refuses_for_good_is_not_tried_again(teams: TeamsRig) -> None:
    """Microsoft's status codes table: 403 BotNotInConversationRoster is "Retry request: No". Eve
    removed Herald after the notice reached her; the CAM's edit updates the others, and hers stops."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco | Recall of LX-200 | Stop selling now")
    teams.connector.remove_app("aad-eve")
    await teams.say("aad-cam", f"edit {notice_id} | Recall of LX-200 (corrected) | Stop selling now, really")
    for _ in range(5):
        await teams.herald.outbox.drain()
        teams.clock.advance(minutes=2)

    refused = [c for c in teams.connector.calls if c.route == "update_activity" and c.conversation_id == "a:conv-aad-eve"]
    assert len(refused) == 1 and refused[0].status == 403
    eve = await Delivery.get(notice_id=notice_id, member__email="eve@teamsco.example")
    assert not eve.update_pending and eve.error.startswith("update failed: the member removed Herald")
    (event,) = await AuditEvent.filter(kind="delivery.update_failed")
    assert event.notice_id == notice_id and event.data["delivery_id"] == eve.id  # compliance sees her copy is stale
    assert event.data["reason"].startswith("the member removed Herald")


async def test_edit_opens_a_form_in_teams_that_corrects_the_link_as_slacks_modal_does(teams: TeamsRig) -> None:
    """Slack's `/herald edit <id>` opens a form with the title, the message, the link and (must-know)
    the material-change box; Teams answered `edit <id>` with "give the new text", and its inline
    form has no link, so a CAM in Teams could never correct or remove a notice's wrong link.
    `edit <id>` now answers a card with the same fields, filled in; its Update edits the notice."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    notice_id = await sent_from_teams(
        teams, "send must-know operations org:teamsco link:https://wrong.example/lx200 | Recall of LX-200 | Stop selling it")
    reply = await teams.say("aad-cam", f"edit {notice_id} material")
    assert reply.get("attachments"), f"`edit {notice_id}` answered {reply.get('text')!r} instead of a form"
    form = card_of(reply)
    fields = {f["id"]: f for f in form["body"] if "id" in f}
    assert list(fields) == ["title", "body", "link", "material"]
    assert fields["title"]["value"] == "Recall of LX-200" and fields["body"]["value"] == "Stop selling it"
    assert fields["link"]["value"] == "https://wrong.example/lx200" and fields["material"]["value"] == "true"
    (update,) = actions_of(form)
    typed = {"title": "Recall of LX-200", "body": "Stop selling it", "link": "https://right.example/lx200",
             "material": "true"}

    refused = await teams.invoke("aad-cam", update["verb"], {**update["data"], **typed, "title": " "})
    assert "the title and the body cannot be empty" in " ".join(texts_of(refused["value"]))
    assert {f["id"]: f.get("value") for f in refused["value"]["body"] if "id" in f}["link"] == typed["link"]
    done = await teams.invoke("aad-cam", update["verb"], {**update["data"], **typed})
    assert done["type"] == "application/vnd.microsoft.card.adaptive"
    said = " ".join(texts_of(done["value"]))
    assert f"Notice #{notice_id}" in said and "Everyone is asked to acknowledge it again" in said, said
    notice = await Notice.get(id=notice_id)
    assert notice.link == "https://right.example/lx200" and notice.revision == 2 and notice.ack_revision == 2
    await teams.herald.outbox.drain()
    assert "https://right.example/lx200" in str(card_of(teams.connector.activities("a:conv-aad-eve")[-1]))

    form = card_of(await teams.say("aad-cam", f"edit {notice_id}"))  # the link removed, as an emptied Slack field does
    (update,) = actions_of(form)
    await teams.invoke("aad-cam", update["verb"], {**update["data"], **typed, "link": "", "material": "false"})
    notice = await Notice.get(id=notice_id)
    assert notice.link == "" and notice.revision == 3 and notice.ack_revision == 2


async def _send_must_know(teams: TeamsRig, audience: str, title: str = "Recall of LX-200") -> int:
    return await sent_from_teams(teams, f"send must-know operations {audience} | {title} | Stop selling it")


async def _retract_reaches(teams: TeamsRig, notice_id: int, conversation: str) -> str:
    """Retract the notice as the CAM; what the member's copy in `conversation` shows after it."""
    reply = await teams.say("aad-cam", f"retract {notice_id} wrong product")
    assert "retracted" in reply["text"]
    await teams.herald.outbox.drain()
    return " ".join(texts_of(card_of(teams.connector.activities(conversation)[-1])))


async def test_a_retraction_reaches_a_chat_herald_opened_itself_after_a_restart(teams: TeamsRig) -> None:
    """README (Connecting Microsoft Teams, 3): members Herald never talked to "get a new 1:1 chat
    when a notice goes out". Fay never messaged Herald (the usual case when an admin's setup policy
    installs the app), so Herald opened her chat: the service URL it opened it on is stored with the
    conversation, so a new process (after a restart, or another replica) updates her copy there,
    not only the process that opened it. Her copy must not keep a live Acknowledge button."""
    notice_id = await _send_must_know(teams, "member:fay@teamsco.example")
    (original,) = teams.connector.activities("a:conv-aad-fay")
    assert "CRITICAL: Recall of LX-200" in texts_of(card_of(original))
    account = await PlatformAccount.get(platform="teams", user_id="aad-fay")
    assert (account.dm_channel, account.service_url) == ("a:conv-aad-fay", teams.connector.url)

    # the default is elsewhere now: only the stored URL reaches her chat
    await restart_teams_rig(teams, teams_service_url="http://127.0.0.1:9/")
    shown = await _retract_reaches(teams, notice_id, "a:conv-aad-fay")
    assert "Retracted: wrong product" in shown, f"Fay's copy still shows the live notice: {shown[:200]!r}"
    assert not (await Delivery.get(notice_id=notice_id)).update_pending


async def test_an_update_of_a_chat_stored_without_its_service_url_goes_to_the_default_one(teams: TeamsRig) -> None:
    """Conversations Herald opened before it stored their service URL (or any account without one):
    an update after a restart uses the service URL chats are opened on, as a send does, instead of
    failing for ever with "no Teams service URL is known"."""
    notice_id = await _send_must_know(teams, "member:fay@teamsco.example")
    await PlatformAccount.filter(platform="teams", user_id="aad-fay").update(service_url="")

    await restart_teams_rig(teams)
    shown = await _retract_reaches(teams, notice_id, "a:conv-aad-fay")
    assert "Retracted: wrong product" in shown, shown[:200]


async def test_a_member_who_removes_herald_is_not_sent_to_and_gets_the_notice_when_they_add_it_again(
        teams: TeamsRig) -> None:
    """Microsoft ("Conversation events in your Teams bot", installation update): removing a
    personal app sends an installationUpdate with action "remove" in the member's 1:1 chat; adding
    it, "add". Eve removes Herald; as for a Slack uninstall (README "Connecting Slack"), the removal
    is recorded (`teams.app_removed`), her copy of the next notice fails at once with the reason,
    without a request the connector could only refuse with 403, and the CAM's escalation lists her
    apart. She adds Herald again: her copy is sent after all (`delivery.requeued`)."""
    from bot.core.compliance.verify import verify_chain
    from storage.models import AuditEvent

    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    teams.connector.remove_app("aad-eve")  # what Teams does; then it tells Herald
    status, _ = await teams.post(teams.activity("installationUpdate", "aad-eve", action="remove"))
    assert status == 200
    (removed,) = await AuditEvent.filter(kind="teams.app_removed")
    eve = await Member.get(email="eve@teamsco.example")
    assert removed.member_id == eve.id  # type: ignore[attr-defined]

    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco deadline:2026-01-06 | Recall | Stop")
    copy = await Delivery.get(notice_id=notice_id, member_id=eve.id)
    assert copy.status == "failed" and "removed Herald in Teams" in copy.error and "add Herald again" in copy.error
    tried = [c for c in teams.connector.calls if c.conversation_id == "a:conv-aad-eve" and c.status == 403]
    assert not tried, f"{len(tried)} requests to a conversation Herald was removed from"

    teams.clock.advance(days=2)  # past the deadline: the CAM hears who never got it
    await teams.herald.tick()
    await teams.herald.outbox.drain()
    escalation = str(card_of(teams.connector.activities("a:conv-aad-cam")[-1]))
    assert "never received it" in escalation and "Eve Moreau" in escalation and "removed Herald" in escalation

    teams.connector.add_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    await teams.herald.outbox.drain()
    copy = await Delivery.get(id=copy.id)
    assert copy.status == "delivered", f"Eve's copy after she added Herald again: {copy.status} ({copy.error})"
    (requeued,) = await AuditEvent.filter(kind="delivery.requeued")
    assert requeued.data["delivery_id"] == copy.id and await AuditEvent.filter(kind="teams.app_added").count() == 1
    assert (await verify_chain()).ok


async def test_a_member_who_writes_to_herald_after_removing_it_is_reached_again(teams: TeamsRig) -> None:
    """Eve removed Herald, then added it back while Herald was restarting: the installationUpdate
    "add" never reached it (the Bot Connector does not retry it). She writes to Herald in her 1:1
    chat, which proves Herald is installed for her. She was still taken for someone who removed
    Herald: her recall copy stayed failed ("it is sent when they add Herald again") and every
    later notice failed without a request, while she chatted with Herald. Her message now ends the
    removal as the "add" does: the failed copy is sent (`delivery.requeued`) and so is the next."""
    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    teams.connector.remove_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="remove"))
    first = await sent_from_teams(teams, "send must-know operations member:eve@teamsco.example | Recall | Stop")
    copy = await Delivery.get(notice_id=first)
    assert copy.status == "failed" and "add Herald again" in copy.error

    teams.connector.add_app("aad-eve")  # she adds Herald again; its "add" is lost
    await teams.say("aad-eve", "help")
    await teams.herald.outbox.drain()
    copy = await Delivery.get(id=copy.id)
    assert copy.status == "delivered", f"Eve wrote to Herald, yet her copy is {copy.status} ({copy.error})"
    assert await AuditEvent.filter(kind="teams.app_added").count() == 1
    second = await sent_from_teams(teams, "send need-to-know operations member:eve@teamsco.example | Update | Read")
    later = await Delivery.get(notice_id=second)
    assert later.status == "delivered", f"the next notice to Eve: {later.status} ({later.error})"


async def test_a_send_refused_because_the_member_removed_herald_is_taken_for_the_removal(teams: TeamsRig) -> None:
    """Eve removed Herald while Herald was down: the installationUpdate "remove" never reached it.
    The first it learns of it is the Bot Connector refusing the next notice in her existing chat
    (403 BotNotInConversationRoster: "the member removed Herald in Teams"). Slack's refusal of a
    removed app is handled as its uninstall event (README "Connecting Slack"); here nothing was
    recorded: each later notice, and a reminder at every slot of her earlier recall, was another
    request refused with 403 and another failure on the record. The refusal now records the
    removal as the event does (`teams.app_removed`): her reminders wait (`reminder.ended`), the next
    notice fails without a request, and adding Herald again sends both and resumes the reminders."""
    from bot.core.notices.reminders import TEAMS_APP_REMOVED

    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    recall = await sent_from_teams(teams, "send must-know operations member:eve@teamsco.example | Recall | Stop")
    original = await Delivery.get(notice_id=recall)
    assert original.status == "delivered" and original.next_reminder_at is not None

    teams.connector.remove_app("aad-eve")  # Herald never hears of it
    second = await sent_from_teams(teams, "send must-know operations member:eve@teamsco.example | Update | Read")
    refused = [c for c in teams.connector.calls if c.status == 403]
    assert len(refused) == 1 and (await Delivery.get(notice_id=second)).status == "failed"
    (removed,) = await AuditEvent.filter(kind="teams.app_removed")
    assert removed.member_id == original.member_id  # type: ignore[attr-defined]

    teams.clock.set(original.next_reminder_at)
    await teams.herald.tick()
    await teams.herald.outbox.drain()
    third = await sent_from_teams(teams, "send must-know operations member:eve@teamsco.example | Later | Read")
    assert len([c for c in teams.connector.calls if c.status == 403]) == 1, "requests Teams could only refuse"
    (ended,) = await AuditEvent.filter(kind="reminder.ended")
    assert ended.data["reason"] == TEAMS_APP_REMOVED and ended.data["delivery_id"] == original.id
    assert not await AuditEvent.filter(kind="reminder.failed").exists()

    teams.connector.add_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    await teams.herald.outbox.drain()
    statuses = [(await Delivery.get(notice_id=n, kind="notice")).status for n in (second, third)]
    assert statuses == ["delivered", "delivered"]
    assert await AuditEvent.filter(kind="reminder.resumed").count() == 1


async def test_a_tenant_whose_admin_blocks_herald_is_not_sent_to_until_it_is_allowed_again(teams: TeamsRig) -> None:
    """A Teams admin blocks Herald for the whole tenant: the Bot Connector answers every call there
    403 BotDisabledByAdmin. Each copy was another refused request failing with a reason that gave
    nothing to do, `herald doctor` said nothing, and nothing was sent once the admin allowed Herald
    again. As for a Slack workspace whose token is dead: the tenant is marked unreachable, its
    copies fail without a request saying whom to ask, doctor warns, and the first activity from
    the tenant sends them."""
    from bot.ops.doctor import WARN, check_blocked_tenants
    from storage.models import Workspace

    for aad in ("aad-cam", "aad-eve", "aad-fay"):
        await teams.post(teams.activity("installationUpdate", aad, action="add"))
    teams.connector.disable_bot(TENANT)
    first = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example")
    await teams.herald.outbox.drain()
    second = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example,fay@teamsco.example",
                             title="Later")
    await teams.herald.outbox.drain()

    refused = [c for c in teams.connector.calls if c.error_code == "BotDisabledByAdmin"]
    assert len(refused) == 1, f"{len(refused)} requests the tenant could only refuse"
    copies = await Delivery.filter(notice_id__in=[first, second], kind="notice")
    assert [c.status for c in copies] == ["failed"] * 3
    assert all(f"a Teams admin of tenant {TENANT} blocked Herald" in c.error and "Teams admin center" in c.error
               for c in copies), copies[0].error
    assert not (await Workspace.get(platform="teams", external_id=TENANT)).active
    (check,) = await check_blocked_tenants()
    assert check.status == WARN and TENANT in check.name and "Teams admin center" in check.fix

    teams.connector.enable_bot(TENANT)
    await teams.post(teams.activity("message", "aad-fay", text="hello"))
    await teams.herald.outbox.drain()
    copies = await Delivery.filter(notice_id__in=[first, second], kind="notice")
    assert [c.status for c in copies] == ["delivered"] * 3, [c.error for c in copies]
    assert await AuditEvent.filter(kind="delivery.requeued").count() == 3
    assert await check_blocked_tenants() == []


async def test_activities_from_a_tenant_nobody_blocked_do_not_read_the_workspace_table_each_time(
        teams: TeamsRig, caplog: pytest.LogCaptureFixture) -> None:
    """Every inbound activity asks whether its tenant was blocked by its admin (to clear the block),
    an Acknowledge click included: the blocked tenants are read once and kept a few seconds, not
    looked up per activity."""
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))  # the list is read once
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        for n in range(3):
            await teams.post(teams.activity("message", "aad-eve", text=f"hello {n}"))
    statements = [str(r.args[0]) for r in caplog.records if r.name == "tortoise.db_client" and r.args]
    looks = [sql for sql in statements if '"workspace"' in sql and "active" in sql]
    assert looks == [], f"{len(looks)} reads of the workspace table for 3 activities"


async def test_a_member_who_removes_herald_is_not_looked_at_hourly_for_reminders(teams: TeamsRig) -> None:
    """Eve got a must-know notice with no deadline, then removed Herald. Her copy's reminders wait
    (`reminder.ended`, with the reason) instead of the planner taking it up (and writing its row)
    every hour for as long as the notice lives; adding Herald again resumes them."""
    from bot.core.notices.reminders import TEAMS_APP_REMOVED

    await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    notice_id = await sent_from_teams(teams, "send must-know operations member:eve@teamsco.example | Recall | Stop")
    copy = await Delivery.get(notice_id=notice_id, kind="notice")
    assert copy.status == "delivered" and copy.next_reminder_at is not None
    teams.connector.remove_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="remove"))

    teams.clock.set(copy.next_reminder_at)
    await teams.herald.tick()
    copy = await Delivery.get(id=copy.id)
    assert copy.next_reminder_at is None, f"Eve's copy is looked at again at {copy.next_reminder_at}"
    (ended,) = await AuditEvent.filter(kind="reminder.ended")
    assert ended.data["reason"] == TEAMS_APP_REMOVED and ended.data["delivery_id"] == copy.id

    teams.connector.add_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    (resumed,) = await AuditEvent.filter(kind="reminder.resumed")
    assert resumed.data["delivery_id"] == copy.id
    for _ in range(24):
        teams.clock.advance(hours=1)
        await teams.herald.tick()
    await teams.herald.outbox.drain()
    assert await Delivery.filter(notice_id=notice_id, kind="reminder", status="delivered").exists()


async def test_a_member_who_removes_herald_is_sent_no_plain_message_either(teams: TeamsRig) -> None:
    """What waits for Eve in the outbox apart from notices (here her first onboarding step, held
    overnight for her working hours) stops when she removes Herald, as her notice copies do: it
    fails at once with the same reason, without a request the connector could only refuse (403),
    and the journey records why (`journey.step_failed`)."""
    from datetime import datetime

    from bot.core.directory.app_installs import APP_REMOVED
    from bot.core.onboarding.journeys import parse_journeys, run_journeys
    from storage.models import JourneyStep, OutboundMessage

    monday_paris = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    teams.clock.set(monday_paris)
    await Member.all().update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
    await Member.filter(email="eve@teamsco.example").update(joined_at=monday_paris)
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    steps = parse_journeys({"journeys": {"default": {"steps": [
        {"key": "portal", "after_days": 0, "title": "Open the portal", "message": "Sign in once."}]}}}, source="test")
    assert (await run_journeys(teams.herald.channels, teams.clock.now(), catalog=steps))["steps"] == 1
    teams.clock.set(datetime(2026, 1, 5, 19, 0, tzinfo=UTC))  # 20:00 in Paris: held until her morning
    await teams.herald.outbox.drain()
    (message,) = await OutboundMessage.filter(purpose="journey_step")
    assert message.status == "pending" and message.next_attempt_at > teams.clock.now()

    teams.connector.remove_app("aad-eve")
    status, _ = await teams.post(teams.activity("installationUpdate", "aad-eve", action="remove"))
    assert status == 200
    await teams.herald.outbox.drain()

    message = await OutboundMessage.get(id=message.id)
    assert (message.status, message.error) == ("failed", APP_REMOVED)
    (step,) = await JourneyStep.filter(member__email="eve@teamsco.example")
    assert (step.status, step.error) == ("failed", APP_REMOVED)
    assert (await AuditEvent.get(kind="journey.step_failed")).data["reason"] == APP_REMOVED
    teams.clock.set(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))  # her morning: nothing left to try
    await teams.herald.outbox.drain()
    refused = [c for c in teams.connector.calls if c.status == 403]
    assert not refused, f"{len(refused)} requests for a member who removed Herald"


async def test_a_member_who_removes_herald_has_their_journey_wait_and_resume_when_they_add_it_again(
        teams: TeamsRig) -> None:
    """Eve's first onboarding step fails because she removed Herald (her only account). As for a
    workspace Herald was removed from, her journey waits: the next day's step is not planned only to
    fail. When she adds Herald again, the failed step is pending again (`journey.step_requeued`) and
    the next run sends it."""
    from datetime import datetime

    from bot.core.directory.app_installs import APP_REMOVED
    from bot.core.onboarding.journeys import parse_journeys, run_journeys
    from storage.models import JourneyStep

    monday_paris = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    teams.clock.set(monday_paris)
    await Member.all().update(joined_at=datetime(2030, 1, 1, tzinfo=UTC))
    await Member.filter(email="eve@teamsco.example").update(joined_at=monday_paris)
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    steps = parse_journeys({"journeys": {"default": {"steps": [
        {"key": "portal", "after_days": 0, "title": "Open the portal", "message": "Sign in once."},
        {"key": "prefs", "after_days": 1, "title": "Set preferences", "message": "Pick topics."}]}}}, source="test")
    assert (await run_journeys(teams.herald.channels, teams.clock.now(), catalog=steps))["steps"] == 1
    teams.connector.remove_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="remove"))
    await teams.herald.outbox.drain()
    (portal,) = await JourneyStep.filter(member__email="eve@teamsco.example")
    assert (portal.status, portal.error) == ("failed", APP_REMOVED)

    for day in (6, 7):  # her next mornings: the journey waits for her
        teams.clock.set(datetime(2026, 1, day, 9, 0, tzinfo=UTC))
        await run_journeys(teams.herald.channels, teams.clock.now(), catalog=steps)
        await teams.herald.outbox.drain()
    planned = await JourneyStep.filter(member__email="eve@teamsco.example").values_list("step_key", "status", "error")
    assert planned == [("portal", "failed", APP_REMOVED)], f"planned while Herald is removed: {planned}"

    teams.connector.add_app("aad-eve")
    await teams.post(teams.activity("installationUpdate", "aad-eve", action="add"))
    portal = await JourneyStep.get(id=portal.id)
    assert (portal.status, portal.error) == ("pending", "")
    (requeued,) = await AuditEvent.filter(kind="journey.step_requeued")
    assert requeued.data["step_id"] == portal.id
    await run_journeys(teams.herald.channels, teams.clock.now(), catalog=steps)
    await teams.herald.outbox.drain()
    assert (await JourneyStep.get(id=portal.id)).status == "sent"
    assert any("Open the portal" in str(a) for a in teams.connector.activities("a:conv-aad-eve"))
    refused = [c for c in teams.connector.calls if c.status == 403]
    assert not refused, f"{len(refused)} requests for a member who removed Herald"


async def test_a_press_on_a_card_older_than_a_material_edit_is_refused_with_a_reason(teams: TeamsRig) -> None:
    """As in Slack (test_slack_e2e): the card carries the revision it shows; a press on a card older
    than the wording to acknowledge records nothing and says why."""
    await teams.post(teams.activity("conversationUpdate", "aad-eve", membersAdded=[{"id": "29:aad-eve"}]))
    notice_id = await sent_from_teams(teams, "send must-know operations member:eve@teamsco.example | Recall | Stop selling LX-200")
    (old_button,) = [a for a in actions_of(card_of(teams.connector.activities("a:conv-aad-eve")[-1]))
                     if a["type"] == "Action.Execute"]
    cam = await Staff.get(email="cam@vendor.example")
    await edit_notice(notice_id, cam, teams.herald.catalog, now=teams.clock.now(), body="Stop selling LX-300",
                      material=True)
    answer = await teams.invoke("aad-eve", "herald.ack", old_button["data"])
    assert "was changed after this copy was sent" in str(answer)
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 0
    answer = await teams.invoke("aad-eve", "herald.ack", {**old_button["data"], "revision": 2})
    assert answer["type"] == "application/vnd.microsoft.card.adaptive"
    assert await Acknowledgement.filter(notice_id=notice_id, revision=2).count() == 1


async def test_a_member_who_never_installed_herald_is_not_reported_as_having_removed_or_blocked_it(
        teams: TeamsRig) -> None:
    """Fay is in the directory with her AAD object id but has never installed Herald. Creating a 1:1
    conversation with a user without the app is refused with 403 BotNotInConversationRoster
    (MicrosoftDocs/msteams-docs#11125; OfficeDev/microsoft-teams-apps-company-communicator#744).
    Her copy says Herald is not installed for her (what the CAM can fix), not that she removed or
    blocked it: the compliance record must not name an act she never performed."""
    from bot.core.commands.parser import SendCommand
    from bot.core.notices import sending as notices

    teams.connector.remove_app("aad-fay")
    command = SendCommand(importance="must-know", topic="announcements", audience="member:fay@teamsco.example",
                          title="Recall", body="Stop selling LX-200")
    preview = await notices.create_draft(None, command, teams.herald.catalog, now=teams.clock.now(), operator="test")
    await notices.send_draft(preview.notice.id, None, teams.herald.catalog, now=teams.clock.now(), operator="test")
    await teams.herald.outbox.drain()
    (row,) = await Delivery.filter(notice_id=preview.notice.id)
    (create,) = teams.connector.calls_to("create_conversation")
    assert (create.status, create.error_code) == (403, "BotNotInConversationRoster")
    assert row.status == "failed" and row.error.startswith("Herald is not installed for the member in Teams")
    assert "removed" not in row.error and "blocked" not in row.error


async def test_a_teams_reminder_once_acknowledged_no_longer_says_the_member_has_not_acknowledged(
        teams: TeamsRig) -> None:
    """As in Slack (test_slack_e2e): Eve acknowledges on the reminder card; the reminder card is
    updated (update_activity) to show the acknowledgement and no longer says "You have not
    acknowledged notice #N ... yet" nor, in its summary, "Reminder: please acknowledge"."""
    from bot.core.notices.reminders import remind_now

    await teams.post(teams.activity("conversationUpdate", "aad-eve", membersAdded=[{"id": "29:aad-eve"}]))
    notice_id = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example")
    await teams.herald.outbox.drain()
    original = await Delivery.get(notice_id=notice_id, kind="notice")
    assert await remind_now(await Notice.get(id=notice_id), [original.member_id], now=teams.clock.now()) == 1
    await teams.herald.outbox.drain()
    reminder_row = await Delivery.get(notice_id=notice_id, kind="reminder")
    card = card_of(teams.connector.activity("a:conv-aad-eve", reminder_row.message_id))
    (button,) = [a for a in actions_of(card) if a["type"] == "Action.Execute"]

    await teams.invoke("aad-eve", "herald.ack", button["data"])
    await updates_pushed(teams.herald)

    activity = teams.connector.activity("a:conv-aad-eve", reminder_row.message_id)
    updated = " ".join(texts_of(card_of(activity)))
    assert "Acknowledged by" in updated
    assert "You have not acknowledged" not in updated and "Reminder" not in updated, updated
    assert "please acknowledge" not in str(activity.get("summary", "")) + str(card_of(activity).get("fallbackText", ""))


async def test_acknowledge_cards_are_drawn_from_variants_read_once_per_notice(
        teams: TeamsRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notice's A/B variants, and whether it has a survey, are fixed once it is sent. The card
    answering a click is drawn from them as read for the notice's first click (two queries a click
    were a sixth of the server's CPU at 500 clicks a second: bench/acks.py); each member still sees
    their own variant."""
    from tests.query_plans import captured

    for aad in ("aad-eve", "aad-fay"):
        await teams.post(teams.activity("conversationUpdate", aad, membersAdded=[{"id": f"29:{aad}"}]))
    notice_id = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example,fay@teamsco.example",
                                title="Recall of LX-200 (A)", body="Wording A",
                                variants=(("Recall of LX-200 (B)", "Wording B"),))
    await teams.herald.outbox.drain()
    pressers = []
    for row in await Delivery.filter(notice_id=notice_id, platform="teams").prefetch_related("account"):
        card = card_of(teams.connector.activities(f"a:conv-{row.account.user_id}")[-1])
        (button,) = [a for a in actions_of(card) if a["type"] == "Action.Execute"]
        pressers.append((row.account.user_id, button["data"], "Wording B" if row.variant == "B" else "Wording A"))
    assert {wording for _, _, wording in pressers} == {"Wording A", "Wording B"}

    (first_aad, first_data, first_wording), (second_aad, second_data, second_wording) = pressers
    first = await teams.invoke(first_aad, "herald.ack", first_data)
    await updates_pushed(teams.herald)
    answers = []
    statements = await captured(monkeypatch, lambda: _invoked(teams, second_aad, second_data, answers))

    assert not [sql for sql, _ in statements if "notice_variant" in sql], statements
    for answer, wording in ((first, first_wording), (answers[0], second_wording)):
        shown = " ".join(texts_of(answer["value"]))
        assert "Acknowledged by" in shown and wording in shown, shown


async def _invoked(teams: TeamsRig, aad: str, data: dict, answers: list) -> None:
    answers.append(await teams.invoke(aad, "herald.ack", data))


async def test_the_card_teams_shows_after_acknowledge_keeps_the_members_own_ab_variant(teams: TeamsRig) -> None:
    """An A/B test: Eve, assigned variant B, gets B's title and body. She presses Acknowledge; the
    invoke's answer is the card Teams puts in place of hers at once. It is her copy acknowledged,
    drawn as the outbox draws it (row_views.copy_view): B's wording, not the notice's own (A's), so
    nobody sees two variants (README) even for the moment before the outbox's update_activity."""
    await teams.post(teams.activity("conversationUpdate", "aad-eve", membersAdded=[{"id": "29:aad-eve"}]))
    notice_id = await broadcast(teams.herald, teams.clock, "member:eve@teamsco.example,fay@teamsco.example",
                                title="Recall of LX-200 (A)", body="Wording A",
                                variants=(("Recall of LX-200 (B)", "Wording B"),))
    await teams.herald.outbox.drain()
    rows = await Delivery.filter(notice_id=notice_id).prefetch_related("account")
    (b_row,) = [r for r in rows if r.platform == "teams" and r.variant == "B"]
    aad = b_row.account.user_id
    card = card_of(teams.connector.activities(f"a:conv-{aad}")[-1])
    assert "Wording B" in " ".join(texts_of(card))  # B's copy, as delivered
    (button,) = [a for a in actions_of(card) if a["type"] == "Action.Execute"]

    answer = await teams.invoke(aad, "herald.ack", button["data"])

    shown = " ".join(texts_of(answer["value"]))
    assert "Acknowledged by" in shown
    assert "Wording B" in shown and "Wording A" not in shown, shown
    await updates_pushed(teams.herald)  # the outbox's update of the same copy draws the same card
    assert card_of(teams.connector.activities(f"a:conv-{aad}")[-1]) == answer["value"]


# ---- Herald's own Teams credentials refused -------------------------------------------------

ENTRA_APP_ID = "00000000-1111-2222-3333-555555555555"
EXPIRED_SECRET, RENEWED_SECRET = "teams-secret-expired-value", "teams-secret-rotated-value"


async def _teams_copies(notice_id: int) -> list[Delivery]:
    return await Delivery.filter(notice_id=notice_id, platform="teams").order_by("id")


def _posted_once(rig: TeamsRig, copies: list[Delivery]) -> bool:
    """Each copy's card is in its member's chat exactly once."""
    return all(len(rig.connector.activities(copy.channel_id)) == 1 for copy in copies)


async def test_teams_copies_refused_for_an_expired_client_secret_go_out_once_it_is_renewed(
        db: str, entra: FakeEntraID) -> None:
    """Entra client secrets expire (two years at most): from that moment Entra ID refuses every
    token request (`invalid_client`, AADSTS7000222 expired / AADSTS7000215 wrong secret) and the
    Bot Connector cannot be called. That is Herald's problem, not the copies': they wait, no attempt
    counted, the Teams lanes pause and ask Entra again every few minutes (one request, not one per
    copy), the refusal is audited once, and when the operator sets the renewed secret and restarts,
    every copy goes out at once, exactly once. (Before: each copy was retried as a passing error,
    asking Entra every time, and failed for good after HERALD_DELIVERY_MAX_ATTEMPTS, about four
    minutes; the restart sent nothing.)"""
    from pydantic import SecretStr

    from bot.core.compliance.verify import verify_chain

    async with teams_credentials_refused(db, entra, app_id=ENTRA_APP_ID, secret=EXPIRED_SECRET,  # it has expired
                                         entra_secret=RENEWED_SECRET, rounds=12) as (rig, notice_id):  # an hour
        waiting = await _teams_copies(notice_id)
        assert waiting and all(c.status == "pending" and c.attempts == 0 for c in waiting), [
            (c.status, c.attempts, c.error) for c in waiting]
        assert all("Entra ID refused Herald's Teams credentials (invalid_client)" in c.error for c in waiting)
        assert len(entra.token_requests) <= 13, f"{len(entra.token_requests)} token requests in an hour"
        assert not rig.connector.calls
        (told,) = await AuditEvent.filter(kind="platform.credentials_refused")
        assert told.data["platform"] == "teams" and "AADSTS7000215" in told.data["reason"]

        # the operator renews the secret and restarts Herald: the copies go at once
        await restart_teams_rig(rig, teams_app_password=SecretStr(RENEWED_SECRET))
        await rig.herald.outbox.drain()
        sent = await _teams_copies(notice_id)
        assert all(c.status == "delivered" for c in sent), [(c.status, c.error) for c in sent]
        assert _posted_once(rig, sent)
        assert await AuditEvent.filter(kind="platform.credentials_restored").count() == 1
        assert (await verify_chain()).ok


async def test_a_401_from_the_bot_connector_pauses_teams_until_herald_is_let_in_again(
        db: str, entra: FakeEntraID) -> None:
    """Entra gives Herald a token but the Bot Connector refuses it (401 after one fresh token: the
    Azure Bot is bound to another app registration, or was deleted): every conversation would be
    refused alike, so it is treated as the refused secret is, not as the copy's failure. Once the
    connector lets Herald in again (the registration is fixed), the next re-check sends them, no
    restart needed. (Before: each copy failed for good at once, "the Bot Connector rejected
    Herald's credentials".)"""
    async with teams_credentials_refused(db, entra, app_id=ENTRA_APP_ID, secret=RENEWED_SECRET, connector_refuses=True,
                                         rounds=6) as (rig, notice_id):
        waiting = await _teams_copies(notice_id)
        assert all(c.status == "pending" and c.attempts == 0 for c in waiting), [
            (c.status, c.attempts, c.error) for c in waiting]
        assert all("HTTP 401" in c.error for c in waiting)
        refused = [c for c in rig.connector.calls if c.status == 401]
        assert len(refused) <= 2 * 7, f"{len(refused)} refused requests in half an hour"  # one fresh token each

        rig.connector.expect_token(None)  # the Azure Bot is Herald's again
        rig.clock.advance(minutes=5)
        await rig.herald.outbox.drain()
        sent = await _teams_copies(notice_id)
        assert all(c.status == "delivered" for c in sent), [(c.status, c.error) for c in sent]
        assert _posted_once(rig, sent)
        assert await AuditEvent.filter(kind="platform.credentials_refused").count() == 1
