"""Open hand-offs follow their organisation's CAM (bot.core.directory.handoff_owners): the list
they are in, who may reply and whom the partner is told the question is with agree."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tortoise import connections

from bot.common.errors import PermissionDenied, UserError
from bot.channels.slack_blocks import REPLY_CALLBACK
from bot.core.directory.handoff_owners import unanswerable_ownership
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.onboarding.assistant import open_handoffs
from storage.models import AuditEvent, Member, OutboundMessage, Question, Staff
from tests.support import CAM_USER, SAMPLE_DIRECTORY, TEAM, Rig, SlackHarness, listeners_done, modal_state

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
NEW_CAM = SAMPLE_DIRECTORY.replace("acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example",
                                   "acme,Acme Locks,gold,emea,de,security,large,distributor,newcam@vendor.example")


async def _anna_asks(rig: Rig) -> tuple[Member, Question]:
    """Monday 10:00 in Berlin: Anna asks a question the assistant cannot answer (not handed off yet)."""
    rig.clock.set(MONDAY_9_UTC)
    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
    return anna, question


async def _handed_off(rig: Rig) -> Question:
    anna, question = await _anna_asks(rig)
    await rig.herald.hand_off_question(question.id, anna)
    await rig.herald.outbox.drain()
    return question


async def _name_nora_acmes_cam(rig: Rig, *, on_slack: bool = False) -> None:
    """Nora New becomes staff (a CAM; `on_slack`: with a Slack account in Acme's workspace) and the
    directory import names her Acme's CAM."""
    chat: dict[str, str] = {}
    if on_slack:
        rig.fake.add_user(TEAM, "UNORA")
        chat = {"slack_user": "UNORA", "slack_team": TEAM}
    await add_staff("newcam@vendor.example", "cam", name="Nora New", now=rig.clock.now(), actor="test", **chat)
    assert not (await import_directory(NEW_CAM, now=rig.clock.now(), actor="test")).rejected


async def _assert_with_the_new_cam(rig: Rig, question: Question) -> None:
    anna = await Member.get(email="anna@acme.example")
    assert "bereits bei Nora New" in await rig.herald.hand_off_question(question.id, anna)  # "already with", in German
    old_cam, new_cam = await Staff.get(email="cam@vendor.example"), await Staff.get(email="newcam@vendor.example")
    assert [q.id for q in await open_handoffs(new_cam)] == [question.id]
    assert await open_handoffs(old_cam) == []
    with pytest.raises(PermissionDenied, match="now with Nora New, Acme Locks's CAM"):  # their old Reply button
        await rig.herald.relay_reply(question.id, old_cam, "Page 4 of the portal.")
    await rig.herald.relay_reply(question.id, new_cam, "Page 4 of the portal.")
    (event,) = await AuditEvent.filter(kind="question.reassigned")
    assert (event.member_id, event.data["question_id"]) == (anna.id, question.id)
    assert (event.data["from_cam"], event.data["cam"]) == ("cam@vendor.example", "newcam@vendor.example")


async def test_open_handoffs_follow_the_partner_to_the_cam_a_directory_import_names(rig: Rig) -> None:
    """A CAM leaves: the directory names a new CAM for Acme. The question Anna handed off before
    is in the new CAM's `questions` list, no longer in the old CAM's, and Anna, pressing Ask my CAM
    again, is told it is with the new CAM."""
    question = await _handed_off(rig)
    await _name_nora_acmes_cam(rig)
    await _assert_with_the_new_cam(rig, question)


async def test_open_handoffs_follow_when_the_cam_the_directory_names_is_added_as_staff(rig: Rig) -> None:
    """The import names a CAM who is not staff yet: the hand-off stays with the old CAM (its list,
    its reply, what Anna is told) until the new CAM is added."""
    question = await _handed_off(rig)
    assert not (await import_directory(NEW_CAM, now=rig.clock.now(), actor="test")).rejected
    anna = await Member.get(email="anna@acme.example")
    assert "bereits bei Casey CAM" in await rig.herald.hand_off_question(question.id, anna)  # "already with"
    assert [q.id for q in await open_handoffs(await Staff.get(email="cam@vendor.example"))] == [question.id]

    await add_staff("newcam@vendor.example", "cam", name="Nora New", now=rig.clock.now(), actor="test")
    await _assert_with_the_new_cam(rig, question)


async def test_the_cam_an_open_hand_off_moves_to_gets_it_in_chat_once(rig: Rig) -> None:
    """The new CAM did not get the partner's question when it was asked: the next tick sends them the
    hand-off, with Reply and whom it was with before, once (later ticks, and another replica's, send
    nothing more), through the outbox."""
    question = await _handed_off(rig)
    await _name_nora_acmes_cam(rig, on_slack=True)

    def to_nora() -> list:
        return [c for c in rig.fake.calls_to("chat.postMessage") if c.args["channel"] in ("UNORA", "DUNORA")]
    assert not to_nora()
    for worker in (rig.herald, rig.another_worker()):
        await worker.tick()
        await worker.outbox.drain()
    (told,) = to_nora()
    text = str(told.args["blocks"])
    assert "Where is the price list?" in text and "It was with cam@vendor.example" in text
    assert f"'value': '{question.id}'" in text  # the Reply button
    await rig.herald.relay_reply(question.id, await Staff.get(email="newcam@vendor.example"), "Page 4.")
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert len(to_nora()) == 1


async def test_a_reassigned_hand_off_reminds_the_new_cam_not_the_old_one(rig: Rig) -> None:
    """Nobody answered Anna's hand-off for a day: the tick queued its CAM's reminder, and before it
    went the directory named Nora Acme's CAM. The old CAM is not reminded of a question that is no
    longer theirs; Nora gets the hand-off, and a day after she got it, the reminder; Anna is told
    it is still with Nora."""
    question = await _handed_off(rig)
    rig.clock.advance(hours=25)  # Tuesday
    assert (await rig.herald.tick())["handoffs_reminded"] == 1  # for the old CAM, still in the outbox
    await _name_nora_acmes_cam(rig, on_slack=True)
    await rig.herald.tick()  # Nora is sent the hand-off
    await rig.herald.outbox.drain()

    def texts(channel: str) -> list[str]:
        return [str(c.args["blocks"]) for c in rig.fake.calls_to("chat.postMessage")
                if c.ok and c.args["channel"] in (channel, f"D{channel}")]
    assert [t for t in texts(CAM_USER) if "still waiting" in t] == []
    (old,) = await OutboundMessage.filter(purpose="handoff_reminder")
    assert (old.status, old.error) == ("cancelled", "the question is now with newcam@vendor.example")
    assert len(texts("UNORA")) == 1 and "It was with cam@vendor.example" in texts("UNORA")[0]

    rig.clock.advance(hours=23)
    assert (await rig.herald.tick())["handoffs_reminded"] == 0  # Nora has had it less than a day
    rig.clock.advance(hours=2)
    assert (await rig.herald.tick())["handoffs_reminded"] == 1
    await rig.herald.outbox.drain()
    await rig.herald.outbox.drain()
    (_, reminder) = texts("UNORA")
    assert "still waiting for your answer" in reminder and "Where is the price list?" in reminder
    assert f"'value': '{question.id}'" in reminder  # Reply
    (note,) = [t for t in texts("UANNA") if "noch bei" in t]
    assert "Ihre Frage liegt noch bei Nora New" in note
    assert [e.data["cam"] for e in await AuditEvent.filter(kind="question.handoff_reminded")] == [
        "newcam@vendor.example"]


async def test_the_tick_reads_only_the_open_hand_offs_due_an_announcement(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Open hand-offs wait for their CAM's reply for as long as it takes, so a year leaves many; the
    tick's announcement must not read them all (nor pass one parameter per question: asyncpg
    takes 32,767) to find the few whose CAM has not had them. What it sends does not grow with
    the hand-offs already announced."""
    from bot.core.onboarding.handoff_announcements import announce_open_handoffs
    from tests.query_plans import captured

    async def reads() -> list[tuple[str, list]]:
        return await captured(monkeypatch, lambda: announce_open_handoffs(rig.herald.channels, rig.clock.now()))

    await _handed_off(rig)
    few = await reads()
    anna = await Member.get(email="anna@acme.example")
    for n in range(40):  # each told to its CAM when asked
        question = await Question.create(member=anna, platform="slack", text=f"Question {n}?",
                                         asked_at=rig.clock.now(), abstained=True, channel_id="DUANNA")
        await rig.herald.hand_off_question(question.id, anna)
    assert await Question.filter(handoff_status="open").count() == 41
    many = await reads()
    assert [len(params) for _, params in many] == [len(params) for _, params in few], many
    assert len(many) == len(few)
    _, found = await connections.get("default").execute_query(*many[0])  # the questions it read
    assert len(found) == 0, f"{len(found)} open hand-offs read, none due an announcement"


async def test_a_cam_who_connects_chat_after_the_question_gets_the_open_hand_off(rig: Rig) -> None:
    """The CAM had no chat account when the partner asked (the question was only in their list):
    once they have one, the next tick sends them the hand-off."""
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="", slack_team_id="")
    question = await _handed_off(rig)
    assert not [c for c in rig.fake.calls_to("chat.postMessage") if c.args["channel"] in (CAM_USER, f"D{CAM_USER}")]
    await Staff.filter(email="cam@vendor.example").update(slack_user_id=CAM_USER, slack_team_id=TEAM)
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    (told,) = [c for c in rig.fake.calls_to("chat.postMessage") if c.args["channel"] in (CAM_USER, f"D{CAM_USER}")]
    assert "Where is the price list?" in str(told.args["blocks"]) and "It was with" not in str(told.args["blocks"])
    assert question.id


async def test_a_cam_whose_hand_off_failed_gets_it_once_they_connect_another_account(rig: Rig) -> None:
    """Slack refused the hand-off to the CAM (the account on file is not in the workspace), and once
    the CAM connected their real account the tick still took the failed message for "already
    told": the partner's question was never announced to them. It is now sent again, once per new
    account, and not again to the account that refused it."""
    await Staff.filter(email="cam@vendor.example").update(slack_user_id="UCAMGONE")
    question = await _handed_off(rig)
    (failed,) = await OutboundMessage.filter(purpose="handoff", reference=question.id)
    assert failed.status == "failed"
    def refused() -> list:
        return [c for c in rig.fake.calls_to("chat.postMessage") if c.args["channel"] == "UCAMGONE"]
    assert len(refused()) == 1
    await rig.herald.tick()
    await rig.herald.outbox.drain()
    assert len(refused()) == 1  # not tried again where it was refused

    await Staff.filter(email="cam@vendor.example").update(slack_user_id=CAM_USER)
    for _ in range(2):
        await rig.herald.tick()
        await rig.herald.outbox.drain()
    (told,) = [c for c in rig.fake.calls_to("chat.postMessage") if c.args["channel"] in (CAM_USER, f"D{CAM_USER}")]
    assert "Where is the price list?" in str(told.args["blocks"]) and "It was with" not in str(told.args["blocks"])
    assert [m.status for m in await OutboundMessage.filter(purpose="handoff", reference=question.id).order_by("id")] \
        == ["failed", "delivered"]


async def test_a_compliance_officer_cannot_reply_to_partners_as_their_cam(slack_http: SlackHarness) -> None:
    """Anna's question is filed under the CAM, who is then made a compliance officer (a role that
    "changes nothing"). Their Reply modal is refused with the reason and nothing is relayed to Anna:
    answering a partner takes the cam or admin role (`permissions.may_act_for_partner`), the same
    rule as teaching the knowledge base and Remind now; the Slack modal, Teams' reply card and the
    console's form all go through `assistant.reply_to_question`."""
    slack = slack_http
    slack.clock.set(MONDAY_9_UTC)
    cam = await Staff.get(email="cam@vendor.example")
    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text="Where is the price list?",
                                     asked_at=slack.clock.now(), abstained=True, handoff_status="open",
                                     handed_off_at=slack.clock.now(), cam=cam, channel_id="DUANNA")
    await add_staff("cam@vendor.example", "compliance", now=slack.clock.now(), actor="ops")

    answer = await slack.submit_view({"callback_id": REPLY_CALLBACK, "private_metadata": str(question.id),
                                      "state": {"values": modal_state((), reply="Ask me, I am compliance now.")}},
                                     user=CAM_USER)
    await listeners_done(slack)
    stored = await Question.get(id=question.id)
    assert answer.get("response_action") == "errors" and stored.handoff_status == "open" and not stored.reply_text, (
        f"a compliance officer's reply was accepted and relayed: {answer}, question now {stored.handoff_status!r}")


async def test_a_cam_made_compliance_officer_leaves_open_handoffs_flagged_until_a_cam_is_named(rig: Rig) -> None:
    """Acme's CAM, with Anna's question open, becomes a compliance officer while the directory still
    names them: nobody named may answer it, so `herald doctor` flags Acme and the hand-off; an admin
    may answer it meanwhile. Once the directory names an active CAM, the hand-off moves to them and
    the flag clears."""
    question = await _handed_off(rig)
    await add_staff("cam@vendor.example", "compliance", now=rig.clock.now(), actor="ops")
    admin, _ = await add_staff("boss@vendor.example", "admin", now=rig.clock.now(), actor="ops")
    assert question.id in [q.id for q in await open_handoffs(admin)]  # an admin can answer it meanwhile
    flagged = await unanswerable_ownership()
    assert (flagged.organisations, flagged.open_handoffs) == (["acme", "bolt", "keys"], 1)  # all name them

    await _name_nora_acmes_cam(rig)
    new_cam = await Staff.get(email="newcam@vendor.example")
    assert [q.id for q in await open_handoffs(new_cam)] == [question.id]
    flagged = await unanswerable_ownership()
    assert (flagged.organisations, flagged.open_handoffs) == (["bolt", "keys"], 0)


async def test_ask_my_cam_is_refused_while_the_directory_names_a_compliance_officer(rig: Rig) -> None:
    """A hand-off goes to someone who can answer it: when the CAM the directory names for Acme is a
    compliance officer (or inactive), Anna is told there is no CAM on file, as when it names nobody,
    instead of her question waiting with someone who may not reply."""
    anna, question = await _anna_asks(rig)
    await add_staff("cam@vendor.example", "compliance", now=rig.clock.now(), actor="ops")
    with pytest.raises(UserError, match="no channel account manager on file"):
        await rig.herald.hand_off_question(question.id, anna)
    assert (await Question.get(id=question.id)).handoff_status == ""


# ---- a hand-off still waiting in the outbox when its CAM changes ------------------------------

async def _queued_to_casey(rig: Rig) -> Question:
    """Anna hands her question off; the DM to Casey, Acme's CAM, is queued, not sent yet."""
    anna, question = await _anna_asks(rig)
    await rig.herald.hand_off_question(question.id, anna)
    (queued,) = await OutboundMessage.filter(purpose="handoff", status="pending")
    assert queued.recipient["user_id"] == CAM_USER
    return question


def _handoffs_to(rig: Rig, user: str) -> list:
    return [c for c in rig.fake.calls_to("chat.postMessage")
            if c.ok and c.args["channel"] in (user, f"D{user}") and "Where is the price list?" in str(c.args)]


async def test_a_hand_off_queued_before_the_partner_got_another_cam_goes_to_the_new_cam_once(rig: Rig) -> None:
    """The directory names Nora as Acme's CAM while Anna's hand-off to Casey waits in the outbox:
    the question moves to Nora, and so does the DM (saying whom it was with), once; Casey, no longer
    Acme's CAM, gets nothing (`question.handoff_readdressed`)."""
    question = await _queued_to_casey(rig)
    await _name_nora_acmes_cam(rig, on_slack=True)

    for worker in (rig.herald, rig.another_worker()):
        await worker.outbox.drain()
        await worker.tick()  # the tick's announcement of moved hand-offs sends nothing more
        await worker.outbox.drain()

    assert _handoffs_to(rig, CAM_USER) == []
    (told,) = _handoffs_to(rig, "UNORA")
    assert "It was with cam@vendor.example" in str(told.args["blocks"])
    assert f"'value': '{question.id}'" in str(told.args["blocks"])  # the Reply button
    (moved,) = await AuditEvent.filter(kind="question.handoff_readdressed")
    assert (moved.data["from_cam"], moved.data["cam"]) == ("cam@vendor.example", "newcam@vendor.example")
    assert not await AuditEvent.filter(kind="question.handoff_not_delivered").exists()


async def test_a_hand_off_queued_before_its_cam_was_removed_is_not_sent_to_them(rig: Rig) -> None:
    """`herald staff remove` takes Casey away while the hand-off to her waits, and the directory
    names nobody else: she gets nothing; the question stays open for an admin, the trail says why."""
    from bot.core.directory.offboarding import remove_staff

    question = await _queued_to_casey(rig)
    await remove_staff("cam@vendor.example", now=rig.clock.now(), actor="operator:ops")

    await rig.herald.outbox.drain()
    await rig.herald.tick()
    await rig.herald.outbox.drain()

    assert _handoffs_to(rig, CAM_USER) == []
    from bot.core.onboarding.handoffs import NOBODY_TO_HAND_OFF_TO
    (message,) = await OutboundMessage.filter(purpose="handoff")
    assert (message.status, message.error) == ("failed", NOBODY_TO_HAND_OFF_TO)
    assert (await Question.get(id=question.id)).handoff_status == "open"
    admin, _ = await add_staff("boss@vendor.example", "admin", now=rig.clock.now(), actor="ops")
    assert question.id in [q.id for q in await open_handoffs(admin)]
    (moved,) = await AuditEvent.filter(kind="question.handoff_readdressed")
    assert (moved.data["from_cam"], moved.data["cam"]) == ("cam@vendor.example", None)
    (failed,) = await AuditEvent.filter(kind="question.handoff_not_delivered")
    assert (failed.data["cam"], failed.data["reason"]) == ("cam@vendor.example", NOBODY_TO_HAND_OFF_TO)


async def test_a_hand_off_queued_before_its_cam_was_made_compliance_officer_is_not_sent_to_them(rig: Rig) -> None:
    """Casey becomes a compliance officer while the hand-off to her waits: she may no longer answer
    partners, so she is not sent it, and the tick does not queue it for her again."""
    await _queued_to_casey(rig)
    await add_staff("cam@vendor.example", "compliance", now=rig.clock.now(), actor="ops")
    for _ in range(2):
        await rig.herald.outbox.drain()
        await rig.herald.tick()
    await rig.herald.outbox.drain()

    assert _handoffs_to(rig, CAM_USER) == []
    from bot.core.onboarding.handoffs import NOBODY_TO_HAND_OFF_TO
    (message,) = await OutboundMessage.filter(purpose="handoff")
    assert (message.status, message.error) == ("failed", NOBODY_TO_HAND_OFF_TO)
