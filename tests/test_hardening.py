"""Issue 10: crafted tokens, malformed bodies, staff commands from partners, replays.

Every request here is what an attacker or a confused client could send *after* passing the
platform's authentication (correctly signed Slack requests; Teams with the JWT check off, except
for the token tests): the outcome must be a short answer, never a 5xx or a traceback in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.fakes.slack_signing import event_body, interaction_body, slash_command_body
from tests.support import CAM_USER, TEAM, SlackHarness, crashes, in_database, listeners_done
from tests.teams_support import TeamsRig, start_teams_rig, stop_teams_rig
from tests.cli_support import in_process_cli

CRAFTED_TOKENS = (
    "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.",   # alg none, no kid: the SDK raised KeyError('kid')
    "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",          # HS256, empty claims
    "not-a-jwt",
    "a.b.c",
)


# ---- 1 and 6: crafted Teams tokens ------------------------------------------------------------

@pytest.mark.parametrize("token", CRAFTED_TOKENS)
async def test_a_crafted_teams_token_is_a_401_with_one_warning_and_no_token_in_the_log(
        db: str, token: str, caplog: pytest.LogCaptureFixture) -> None:
    rig = await start_teams_rig(db, teams_app_id="00000000-0000-0000-0000-000000000001")
    try:
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            status, _ = await rig.post(rig.activity("message", "aad-cam", text="status"),
                                       headers={"Authorization": f"Bearer {token}"})
        assert status == 401
        assert rig.connector.activities("a:conv-aad-cam") == []
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert not crashes(caplog), crashes(caplog)
        warning = warnings[0].getMessage()
        for part in (p for p in token.split(".") if len(p) >= 3):
            assert part not in warning  # the one line says why, never what
        logged = "\n".join(r.getMessage() for r in caplog.records)  # DEBUG too ("e30" alone matches addresses)
        for part in (p for p in [token, *token.split(".")] if len(p) >= 8):
            assert part not in logged
    finally:
        await stop_teams_rig(rig)


# ---- 6: malformed Slack bodies ----------------------------------------------------------------

def _interaction(kind: str, **fields) -> str:  # noqa: ANN003
    return interaction_body({"type": kind, "team": {"id": TEAM}, "user": {"id": CAM_USER}, "api_app_id": "AHERALD",
                             **fields})


RESPONSE_URL = "FAKE_RESPONSE_URL"  # the fake Slack's response_url for the test (`_to_the_fake`)


def _to_the_fake(body: str, h: SlackHarness, key: str) -> str:
    """``body`` with its response_url on the fake Slack: Herald answers there (e.g. a button
    value that is not an id is refused in an ephemeral reply), never at the real hooks.slack.com."""
    return body.replace(RESPONSE_URL, quote_plus(h.fake.response_url(key)))


MALFORMED_SLACK = {
    "payload-not-json": "payload=%7Bnot+json",
    "payload-a-list": "payload=%5B1%2C2%5D",
    "payload-a-string": "payload=%22hi%22",
    "json-array": "[1, 2, 3]",
    "json-string": '"hello"',
    "json-not-json": "{not json",
    "event-not-an-object": json.dumps({"type": "event_callback", "team_id": TEAM, "api_app_id": "AHERALD",
                                       "event": "surprise", "event_id": "Ev1"}),
    "event-without-user": event_body({"type": "app_home_opened", "tab": "home"}, TEAM),
    "dm-with-list-text": event_body({"type": "message", "channel_type": "im", "user": "UANNA", "channel": "DUANNA",
                                     "text": ["a"]}, TEAM),
    "view-without-state": _interaction("view_submission", view={"callback_id": "herald_compose", "id": "V1"}),
    "view-without-metadata": _interaction("view_submission", view={
        "callback_id": "herald_preview", "id": "V1", "state": {"values": {}}}),
    "view-metadata-not-a-number": _interaction("view_submission", view={
        "callback_id": "herald_edit", "id": "V1", "private_metadata": "x", "state": {"values": {}}}),
    "reply-view-values-a-list": _interaction("view_submission", view={
        "callback_id": "herald_qa_reply_submit", "id": "V1", "private_metadata": "1", "state": {"values": []}}),
    "view-closed-without-metadata": _interaction("view_closed", view={"callback_id": "herald_preview", "id": "V1"}),
    "action-without-value": _interaction("block_actions", actions=[{"action_id": "herald_send", "type": "button"}],
                                         response_url=RESPONSE_URL),
    "action-value-not-a-number": _interaction("block_actions", actions=[
        {"action_id": "herald_cancel", "type": "button", "value": "abc"}], response_url=RESPONSE_URL),
    "reply-button-value-not-a-number": _interaction("block_actions", trigger_id="t", actions=[
        {"action_id": "herald_qa_reply", "type": "button", "value": "x"}], response_url=RESPONSE_URL),
    "action-actions-empty": _interaction("block_actions", actions=[], response_url=RESPONSE_URL),
    "action-user-missing": interaction_body({"type": "block_actions", "team": {"id": TEAM}, "api_app_id": "AHERALD",
                                             "actions": [{"action_id": "herald_ack", "value": "1"}]}),
    "pref-without-option": _interaction("block_actions", actions=[{"action_id": "herald_pref_digest"}]),
    "pref-topics-wrong-type": _interaction("block_actions", actions=[
        {"action_id": "herald_pref_topics", "selected_options": "all"}], view={"blocks": "x"}),
    "link-press-without-value": _interaction("block_actions", actions=[{"action_id": "herald_open_link",
                                                                          "type": "button"}]),
    "event-from-a-workspace-not-connected": event_body({"type": "message", "channel_type": "im", "user": "UX",
                                                        "channel": "DX", "text": "hi"}, "TNOTCONNECTED"),
    "command-without-user": slash_command_body(team_id=TEAM, user_id=None, text="status"),
    "command-without-trigger": slash_command_body(team_id=TEAM, user_id=CAM_USER, text="send", trigger_id=None),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_SLACK))
async def test_a_malformed_signed_slack_body_is_answered_without_a_crash(
        slack_http: SlackHarness, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    reply = await slack_http.post_signed(_to_the_fake(MALFORMED_SLACK[name], slack_http, name))
    await listeners_done(slack_http)
    assert reply.status < 500, reply.body
    assert not crashes(caplog), crashes(caplog)
    assert all(call.key == name for call in slack_http.fake.calls_to("response_url"))


async def test_a_request_from_a_workspace_herald_is_not_connected_to_is_one_plain_warning(
        slack_http: SlackHarness, caplog: pytest.LogCaptureFixture) -> None:
    """Slack may deliver events after an uninstall: bolt's ERROR about a lost installation becomes a
    warning that says what happened, with the workspace in the log context."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        reply = await slack_http.post_signed(MALFORMED_SLACK["event-from-a-workspace-not-connected"])
        await listeners_done(slack_http)
    assert reply.status < 500
    assert not crashes(caplog), crashes(caplog)
    refused = [r for r in caplog.records if "not connected to" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.WARNING]
    assert "from workspace TNOTCONNECTED, which Herald is not connected to" in refused[0].getMessage()


# ---- 6: malformed Teams bodies ----------------------------------------------------------------

def _teams_bodies(rig: TeamsRig) -> dict[str, object]:
    base = rig.activity("message", "aad-cam", text="help")
    return {
        "no-from": {k: v for k, v in base.items() if k != "from"},
        "no-conversation": {k: v for k, v in base.items() if k != "conversation"},
        "no-service-url": {k: v for k, v in base.items() if k != "serviceUrl"},
        "from-a-string": {**base, "from": "x"},
        "text-a-list": {**base, "text": ["x"]},
        "channel-data-a-list": {**base, "channelData": [1]},
        "tenant-a-string": {**base, "channelData": {"tenant": "t"}},
        "invoke-junk-value": rig.activity("invoke", "aad-cam", name="adaptiveCard/action", value="junk"),
        "invoke-action-a-list": rig.activity("invoke", "aad-cam", name="adaptiveCard/action", value={"action": [1]}),
        "invoke-data-a-list": rig.activity("invoke", "aad-cam", name="adaptiveCard/action",
                                           value={"action": {"verb": "herald.send", "data": [1]}}),
        "invoke-verb-a-dict": rig.activity("invoke", "aad-cam", name="adaptiveCard/action",
                                           value={"action": {"verb": {"a": 1}}}),
        "invoke-unknown-verb": rig.activity("invoke", "aad-cam", name="adaptiveCard/action",
                                            value={"action": {"verb": "herald.nope", "data": {}}}),
        "invoke-bad-notice": rig.activity("invoke", "aad-cam", name="adaptiveCard/action",
                                          value={"action": {"verb": "herald.send", "data": {"notice_id": "x"}}}),
        "members-added-junk": rig.activity("conversationUpdate", "aad-cam", membersAdded="x"),
        "huge-text": {**base, "text": "x" * 100_000},
    }


async def test_malformed_teams_activities_are_answered_without_a_crash(
        teams: TeamsRig, caplog: pytest.LogCaptureFixture) -> None:
    for name, body in _teams_bodies(teams).items():
        caplog.clear()
        status, _ = await teams.post(body)  # type: ignore[arg-type]
        assert status < 500, name
        assert not crashes(caplog), (name, crashes(caplog))


# ---- 4: staff commands typed by partners ------------------------------------------------------

async def test_a_partner_typing_a_staff_command_in_teams_is_refused_like_in_slack(teams: TeamsRig) -> None:
    from storage.models import Notice

    for text, rule in (("send must-know support all | Recall | Stop", "Only channel account managers and admins"),
                       ("send must-know nosuchtopic all | Recall | Stop", "Only channel account managers and admins"),
                       ("send", "Only channel account managers and admins"),
                       ("pause teamsco", "Only Herald staff")):
        reply = await teams.say("aad-eve", text)
        assert f"You tried `{text.split()[0]}`" in reply["text"] and rule in reply["text"], reply
        assert "attachments" not in reply
    assert await Notice.all().count() == 0


@pytest.mark.parametrize("typed", ["send must-know support all | Recall | Stop", "edit 1"])
async def test_a_partner_typing_a_staff_command_in_a_slack_dm_is_refused(slack_http: SlackHarness, typed: str) -> None:
    """As by the slash command. `edit <id>` got no answer at all (the refusal raised)."""
    from storage.models import Notice
    from tests.support import wait_until

    body = event_body({"type": "message", "channel_type": "im", "user": "UANNA", "channel": "DUANNA",
                       "text": typed, "ts": "1.1"}, TEAM)
    assert (await slack_http.post_signed(body)).status == 200
    (post,) = await wait_until(lambda: slack_http.fake.calls_to("chat.postMessage"), what="the refusal")
    assert f"You tried `{typed.split()[0]}`" in post.args["text"]
    assert "Only channel account managers and admins" in post.args["text"]
    assert await Notice.all().count() == 0


async def test_every_staff_command_a_partner_types_in_teams_is_refused_with_the_reason(teams: TeamsRig) -> None:
    """A partner who types a staff command gets the refusal Slack's `/herald` gives them. `edit <id>`
    without text (the form, for staff), `survey results` of a notice that is no survey and
    `survey stages` were not: the first two answered "Sorry, something went wrong on Herald's side"
    (the refusal ran the command, which refused it for another reason first), the last "You tried
    `survey`, a Herald staff command." with no reason (survey_stages checked nobody while no journey
    survey existed)."""
    from tests.support import broadcast

    notice_id = await broadcast(teams.herald, teams.clock, "org:teamsco")
    for typed in ("send", f"edit {notice_id}", f"edit {notice_id} material", f"edit {notice_id} | A | B",
                  f"status {notice_id}", "scheduled", f"cancel {notice_id}", f"retract {notice_id} wrong",
                  "pause teamsco", "resume teamsco", f"report {notice_id}", "questions", "progress",
                  f"variants {notice_id}", f"rollout {notice_id} B", "survey", f"survey results {notice_id}",
                  f"survey close {notice_id}", "survey stages"):
        reply = await teams.say("aad-eve", typed)
        assert reply["text"].startswith("⚠ You tried `"), f"{typed!r} answered {reply['text']!r}"
        assert "staff command. " in reply["text"], f"{typed!r} gave no reason: {reply['text']!r}"
    edit = await teams.say("aad-eve", f"edit {notice_id}")
    assert "Only channel account managers and admins" in edit["text"]  # as `/herald edit <id>` says


# ---- 8: replays -------------------------------------------------------------------------------

async def _replayed(h: SlackHarness, body: str, settled: Callable[[], Any] | None = None,
                    ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Send `body` twice with the same signature (an attacker's replay inside the window);
    (calls to the fake Slack, audit events) after the first and after the replay. `settled`
    says when the first request's effects are all out (a Send's deliveries run after it)."""
    import time as _time

    from storage.models import AuditEvent

    from tests.support import wait_until

    stamp, calls = int(_time.time()), len(h.fake.calls)
    first = await h.post_signed(body, timestamp=stamp)
    await listeners_done(h)
    await h.herald.outbox.drain()  # what the request queued (a hand-off DM, a relayed reply) goes out
    await wait_until(lambda: len(h.fake.calls) > calls, what="the first request's answer")
    if settled is not None:  # the harness runs no outbox loop: drain as it would, until the effects are out
        async def drained_and_settled() -> bool:
            await h.herald.outbox.drain()
            return await settled()

        await wait_until(drained_and_settled, what="the first request's effects")
    once = (len(h.fake.calls), await AuditEvent.all().count())
    again = await h.post_signed(body, timestamp=stamp)
    await listeners_done(h)
    await h.herald.outbox.drain()
    assert first.status == 200 and again.status == 200 and again.body == ""
    return once, (len(h.fake.calls), await AuditEvent.all().count())


async def _two_notices() -> bool:
    from storage.models import Notice

    return await Notice.all().count() >= 2


async def test_a_replayed_slack_request_has_no_second_effect(slack_http: SlackHarness) -> None:
    from bot.channels.slack_blocks import CANCEL_ACTION, PREF_DIGEST_ACTION, SEND_ACTION
    from storage.models import AuditEvent, Delivery, Notice

    h = slack_http  # (edit, reply, hand-off and journey Done are requests like these: the guard is per request)
    for text in ("send must-know operations all | Recall | Stop", "send need-to-know operations all | Other | Text"):
        await h.command(text)
    from tests.support import wait_until

    await wait_until(_two_notices, what="two drafts")
    first, second = await Notice.all().order_by("id").values_list("id", flat=True)

    def click(action: str, value: str, user: str = CAM_USER, **extra) -> str:  # noqa: ANN003
        return _interaction("block_actions", user={"id": user}, trigger_id="t1", response_url=h.fake.response_url("k"),
                            actions=[{"action_id": action, "value": value, "type": "button", **extra}])

    async def all_delivered() -> bool:
        rows = await Delivery.filter(notice_id=first).values_list("status", flat=True)
        return len(rows) == 5 and not {"pending", "sending"} & set(rows)

    before, after = await _replayed(h, click(SEND_ACTION, str(first)), settled=all_delivered)  # Send
    assert before == after and await Delivery.filter(notice_id=first).count() == 5
    before, after = await _replayed(h, click(CANCEL_ACTION, str(second)))  # Cancel
    assert before == after and (await Notice.get(id=second)).status == "cancelled"
    body = slash_command_body(text=f"retract {first} wrong price", user_id=CAM_USER, team_id=TEAM,
                              response_url=h.fake.response_url("r"))
    async def retracted_everywhere() -> bool:  # the command's work runs after its answer, then the updates
        return (await Notice.get(id=first)).status == "retracted" and not await Delivery.filter(
            notice_id=first, update_pending=True).exists()

    before, after = await _replayed(h, body, settled=retracted_everywhere)  # retract
    assert before == after and await AuditEvent.filter(kind__contains="retract").count() == 1
    pref = _interaction("block_actions", user={"id": "UANNA"}, trigger_id="t2", actions=[
        {"action_id": PREF_DIGEST_ACTION, "selected_option": {"value": "weekly"}}])
    before, after = await _replayed(h, pref)  # preferences: one views.publish, not two
    assert before == after


async def test_a_replay_after_five_minutes_of_herald_time_still_has_no_effect(slack_http: SlackHarness) -> None:
    """Slack's signature check accepts a timestamp up to 5 minutes either side of now, but a
    request's replay key was kept only 5 minutes after its first sighting: with Herald's clock
    behind Slack's by d, a captured request could be replayed, and acted on again, for about d
    after its key expired. Here Herald's (injected) clock moves on 6 minutes while the signature
    check still accepts the timestamp: the replay must still be ignored (one views.publish)."""
    import time as _time

    from bot.channels.slack_blocks import PREF_DIGEST_ACTION
    from tests.support import wait_until

    h = slack_http
    pref = _interaction("block_actions", user={"id": "UANNA"}, trigger_id="t2", actions=[
        {"action_id": PREF_DIGEST_ACTION, "selected_option": {"value": "weekly"}}])
    stamp, calls = int(_time.time()), len(h.fake.calls)
    first = await h.post_signed(pref, timestamp=stamp)
    await listeners_done(h)
    await wait_until(lambda: len(h.fake.calls) > calls, what="the first request's views.publish")
    once = len(h.fake.calls)
    h.clock.advance(minutes=6)
    again = await h.post_signed(pref, timestamp=stamp)
    await listeners_done(h)
    assert first.status == 200 and again.status == 200
    assert again.body == "" and len(h.fake.calls) == once, (
        f"a replay 6 minutes after the first sighting was acted on again: {[c.method for c in h.fake.calls[once:]]}")


async def test_a_repeated_teams_activity_id_has_no_second_effect(teams: TeamsRig) -> None:
    from storage.models import Notice

    activity = teams.activity("message", "aad-cam", text="send must-know operations all | Recall | Stop")
    for _ in range(2):
        status, _ = await teams.post(activity)
        assert status == 200
    assert await Notice.all().count() == 1 and len(teams.connector.activities("a:conv-aad-cam")) == 1
    notice_id = (await Notice.first()).id
    send = teams.activity("invoke", "aad-cam", name="adaptiveCard/action",
                          value={"action": {"type": "Action.Execute", "verb": "herald.send", "data": {"notice_id": notice_id}}})
    statuses = [(await teams.post(send))[0] for _ in range(2)]
    assert statuses == [200, 200]
    from storage.models import AuditEvent
    assert await AuditEvent.filter(notice_id=notice_id, kind="notice.sent").count() <= 1


async def test_a_repeated_acknowledge_invoke_gets_the_first_answer_again(teams: TeamsRig) -> None:
    """An Action.Execute press is answered in the HTTP response itself (an AdaptiveCardInvokeResponse:
    statusCode, type, value). The same invoke again (the connector's retry after the first answer
    was lost) gets the same card without a second acknowledgement; from a process that no longer has
    that answer (another replica, a restart), a short message: never an empty body, which Teams
    shows as an error."""
    from bot.handlers.teams.route import TEAMS_HANDLER_KEY
    from bot.handlers.teams.texts import ALREADY_RECEIVED
    from bot.handlers.teams.turn import InvokeAnswers
    from storage.models import Acknowledgement
    from tests.teams_support import sent_from_teams

    notice_id = await sent_from_teams(teams, "send must-know operations org:teamsco | Recall of LX-200 | Stop selling")
    press = teams.activity("invoke", "aad-eve", name="adaptiveCard/action",
                           value={"action": {"type": "Action.Execute", "verb": "herald.ack",
                                             "data": {"notice_id": notice_id}}})
    status, first = await teams.post(press)
    assert status == 200 and first["type"] == "application/vnd.microsoft.card.adaptive"
    status, again = await teams.post(press)  # the same activity id again
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1
    assert status == 200 and again == first, f"the repeated invoke got {again!r}"

    teams.server.app[TEAMS_HANDLER_KEY].invoke_answers = InvokeAnswers()  # as another replica would be
    status, elsewhere = await teams.post(press)
    assert status == 200 and elsewhere == {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                                           "value": ALREADY_RECEIVED}
    assert await Acknowledgement.filter(notice_id=notice_id).count() == 1


# ---- 5: the CLI acts --as a staff member ------------------------------------------------------

@pytest.fixture
def cli_db(db_url: str, tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    from bot.cli import main
    from tests.support import SAMPLE_DIRECTORY

    runner = in_process_cli(monkeypatch, db_url)
    csv = tmp_path / "partners.csv"
    csv.write_text(SAMPLE_DIRECTORY)
    assert runner.invoke(main, ["directory", "import", str(csv)]).exit_code == 0
    for email, role in (("cam@vendor.example", "cam"), ("audit@vendor.example", "compliance")):
        assert runner.invoke(main, ["staff", "add", email, "--role", role]).exit_code == 0
    return runner, main, db_url




def test_cli_changes_need_an_accountable_staff_member(cli_db) -> None:  # noqa: ANN001
    import getpass

    from storage.models import AuditEvent, Notice

    runner, main, db_url = cli_db
    send = ["send", "--topic", "operations", "--importance", "must-know", "--audience", "all", "--title", "Recall",
            "--body", "Stop", "--yes"]
    missing = runner.invoke(main, send)
    assert missing.exit_code == 2 and "--as" in missing.output
    nobody = runner.invoke(main, [*send, "--as", "ghost@vendor.example"])
    assert nobody.exit_code == 1 and "no active staff member" in nobody.output and "Traceback" not in nobody.output
    wrong_role = runner.invoke(main, [*send, "--as", "audit@vendor.example"])
    assert wrong_role.exit_code == 1 and "Only channel account managers and admins" in wrong_role.output
    assert in_database(db_url, lambda: Notice.all().count()) == 0

    sent = runner.invoke(main, [*send, "--as", "CAM@vendor.example"])
    assert sent.exit_code == 0, sent.output
    notice_id = int(sent.stdout.split()[1])  # warnings go to stderr
    notice = in_database(db_url, lambda: Notice.get(id=notice_id).prefetch_related("author"))
    assert notice.author.email == "cam@vendor.example"
    events = in_database(db_url, lambda: AuditEvent.filter(notice_id=notice_id).order_by("id"))
    assert events and all(e.actor == "cam@vendor.example" and e.data.get("source") == "cli"
                          and e.data.get("os_user") == getpass.getuser() for e in events if e.kind.startswith("notice."))

    refused = runner.invoke(main, ["retract", str(notice_id), "--reason", "x", "--as", "audit@vendor.example"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    for args in (["edit", str(notice_id), "--body", "Stop now"], ["retract", str(notice_id), "--reason", "wrong"]):
        assert runner.invoke(main, args).exit_code == 2  # --as is required
        done = runner.invoke(main, [*args, "--as", "cam@vendor.example"])
        assert done.exit_code == 0, done.output

    later = runner.invoke(main, [*send[:-1], "--at", "2099-01-01T09:00Z", "--yes", "--as", "cam@vendor.example"])
    later_id = int(later.stdout.split()[1])
    assert runner.invoke(main, ["cancel", str(later_id)]).exit_code == 2
    cancelled = runner.invoke(main, ["cancel", str(later_id), "--as", "cam@vendor.example"])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, (later.output, cancelled.output)
    assert runner.invoke(main, ["pause", "acme", "--as", "audit@vendor.example"]).exit_code == 1
    paused = runner.invoke(main, ["pause", "acme", "--reason", "stocktake", "--as", "cam@vendor.example"])
    assert paused.exit_code == 0 and "paused" in paused.output, paused.output
    resumed = runner.invoke(main, ["resume", "acme", "--as", "cam@vendor.example"])
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    pause_events = in_database(db_url, lambda: AuditEvent.filter(kind__startswith="organisation."))
    assert pause_events and all(e.data.get("source") == "cli" for e in pause_events)


async def test_replayed_edit_hand_off_and_reply_have_no_second_effect(slack_http: SlackHarness) -> None:
    from bot.channels.slack_blocks import EDIT_CALLBACK, REPLY_CALLBACK, SEND_ACTION
    from bot.core.onboarding.assistant import ASK_CAM_ACTION
    from storage.models import Member, NoticeRevision, Question

    h = slack_http
    await h.command("send need-to-know operations all | Depot | Closed Friday")
    await wait_for_notice()
    from storage.models import Notice

    notice_id = (await Notice.first()).id
    click = _interaction("block_actions", trigger_id="t0", response_url=h.fake.response_url("s"),
                         actions=[{"action_id": SEND_ACTION, "value": str(notice_id), "type": "button"}])
    await _replayed(h, click)
    edit = _interaction("view_submission", trigger_id="t1", view={
        "type": "modal", "id": "V1", "callback_id": EDIT_CALLBACK, "private_metadata": str(notice_id),
        "state": {"values": {"title": {"value": {"type": "plain_text_input", "value": "Depot"}},
                             "body": {"value": {"type": "plain_text_input", "value": "Closed Friday and Monday"}}}}})
    first = await h.post_signed(edit, timestamp=(stamp := __import__("time").time().__int__()))
    await listeners_done(h)
    again = await h.post_signed(edit, timestamp=stamp)
    assert first.status == again.status == 200 and again.body == ""
    assert await NoticeRevision.filter(notice_id=notice_id).count() == 2  # the original and one edit

    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=h.clock.now(), channel_id="DUANNA")
    ask = _interaction("block_actions", user={"id": "UANNA"}, trigger_id="t2", response_url=h.fake.response_url("q"),
                       actions=[{"action_id": ASK_CAM_ACTION, "value": str(question.id), "type": "button"}])
    before, after = await _replayed(h, ask)  # hand-off: the CAM gets one DM, not two
    assert before == after and (await Question.get(id=question.id)).handoff_status == "open"
    reply = _interaction("view_submission", trigger_id="t3", view={
        "type": "modal", "id": "V2", "callback_id": REPLY_CALLBACK, "private_metadata": str(question.id),
        "state": {"values": {"reply": {"value": {"type": "plain_text_input", "value": "On the portal."}}}}})
    posts = len(h.fake.calls_to("chat.postMessage"))
    before, after = await _replayed(h, reply)  # the partner gets the answer once
    assert before == after and len(h.fake.calls_to("chat.postMessage")) == posts + 1


async def wait_for_notice() -> None:
    from storage.models import Notice
    from tests.support import wait_until

    await wait_until(lambda: Notice.all().exists(), what="the draft")


async def test_a_replayed_journey_done_has_no_second_effect(slack_http: SlackHarness) -> None:
    from bot.core.onboarding.journeys import DONE_ACTION
    from storage.models import JourneyStep, Member

    h = slack_http
    anna = await Member.get(email="anna@acme.example")
    step = await JourneyStep.create(member=anna, journey="default", step_key="portal", position=1, status="sent",
                                    platform="slack", created_at=h.clock.now())
    done = _interaction("block_actions", user={"id": "UANNA"}, trigger_id="t4", response_url=h.fake.response_url("d"),
                        actions=[{"action_id": DONE_ACTION, "value": str(step.id), "type": "button"}])
    before, after = await _replayed(h, done)  # one "Marked done" reply, one audit event
    assert before == after and (await JourneyStep.get(id=step.id)).status == "done"
