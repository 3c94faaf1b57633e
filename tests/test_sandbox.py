"""The sandbox: a real channel adapter behind the `Channel` port, its sample world, and each
member's inbox with working Acknowledge, Helpful / Not helpful, Ask my CAM, Done and questions."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from bot.channels.sandbox import SandboxChannel
from bot.common.clock import ManualClock
from bot.console.sandbox_seed import seed
from bot.core.notices.views import NoticeView
from bot.core.ports import DirectMessage, MessageRef, OutcomeKind, Recipient
from bot.topics import IMPORTANCE
from bot.topics.importance import Importance
from storage.models import (
    Acknowledgement,
    AuditEvent,
    JourneyStep,
    KBProposal,
    Member,
    Organisation,
    PlatformAccount,
    Question,
    SandboxMessage,
    Staff,
)
from tests.console_support import CAM, OTHER_CAM, ConsoleHarness

pytestmark = pytest.mark.storage

LENA = "lena.fischer@contoso.example"


def _view(**changes) -> NoticeView:  # noqa: ANN003
    base = dict(notice_id=3, topic_key="operations", topic_title="Operations", policy=IMPORTANCE[Importance.MUST],
                title="Recall", body="Please **stop**", link="", deadline=None)
    return NoticeView(**{**base, **changes})


async def test_the_channel_stores_what_slack_and_teams_would_get_once_per_delivery(db: str) -> None:
    channel = SandboxChannel(ManualClock())
    who = Recipient(workspace_id="sandbox", user_id="ann@p.example")
    first = await channel.deliver(who, _view(), delivery_id=41, maybe_sent=False)
    again = await channel.deliver(who, _view(), delivery_id=41, maybe_sent=True)  # a retry after a crash
    assert first.kind is OutcomeKind.DELIVERED and again.ref == first.ref
    assert await SandboxMessage.filter(delivery_id=41).count() == 1
    stored = await SandboxMessage.get(delivery_id=41)
    assert stored.card["type"] == "AdaptiveCard" and stored.blocks[0]["type"] == "header"
    assert any(a.get("verb") == "herald.ack" for a in stored.card["actions"])

    await channel.update("sandbox", first.ref, _view().with_ack("Ann", ManualClock().now()))
    stored = await SandboxMessage.get(delivery_id=41)
    assert stored.version == 2 and "Acknowledged by" in json.dumps(stored.blocks)
    with pytest.raises(LookupError):
        await channel.update("sandbox", MessageRef("ann@p.example", "999"), _view())

    sent = await channel.send_message(who, DirectMessage(title="Hello <!channel>", lines=("**x**",)))
    message = await SandboxMessage.get(id=int(sent.ref.message_id))
    # a header is plain_text (never parsed by Slack); the lines are mrkdwn, escaped, no formatting
    assert message.delivery_id is None and message.blocks[0]["text"] == {
        "type": "plain_text", "text": "Hello <!channel>", "emoji": True}
    assert message.blocks[1]["text"]["text"] == "**x**" and message.card["body"][1]["text"] == "\\*\\*x\\*\\*"


async def test_the_sample_world_is_loaded_once(console: ConsoleHarness) -> None:
    assert await Organisation.all().count() == 4
    assert await PlatformAccount.filter(platform="sandbox").count() == await Member.all().count() == 9
    assert set(await Staff.all().values_list("role", flat=True)) == {"cam", "compliance", "admin"}
    again = await seed(console.herald)
    assert not again.created and await Organisation.all().count() == 4
    assert await SandboxMessage.filter(notice_id=1).count() == 8  # the sample notice, delivered
    assert "SANDBOX MODE" in console.announced[0] and "/console/sign-in?token=hcl_" in console.announced[0]


async def test_from_the_inbox_to_an_acknowledgement(console: ConsoleHarness) -> None:
    lena = await Member.get(email=LENA)
    casey = await console.signed_in(CAM)
    response, inbox = await casey.get(f"/console/sandbox/{lena.id}")
    assert response.status == 200 and "Recall of NW-200" in inbox and "<strong>NW-200 smart lock</strong>" in inbox
    assert 'name="action_id" value="herald_ack"' in inbox
    response, inbox = await casey.post(f"/console/sandbox/{lena.id}/action",
                                       {"action_id": "herald_ack", "value": "1", "look": "slack"})
    assert response.status == 200 and "Acknowledged. The notice now shows" in inbox
    assert "Acknowledged by <strong>Lena Fischer</strong>" in inbox and 'value="herald_ack"' not in inbox
    ack = await Acknowledgement.get(notice_id=1)
    assert ack.platform == "sandbox" and ack.member_id == lena.id  # type: ignore[attr-defined]

    # the Teams look posts the card's Action.Execute (verb + data) the way Teams sends an invoke
    jonas = await Member.get(email="jonas.weber@contoso.example")
    _, teams_inbox = await casey.get(f"/console/sandbox/{jonas.id}?look=teams")
    assert 'data-mode="inbox"' in teams_inbox and "herald.ack" in teams_inbox
    response, answer = await casey.post(f"/console/sandbox/{jonas.id}/action",
                                        {"verb": "herald.ack", "data": '{"notice_id": 1}', "look": "teams"},
                                        headers={"Accept": "application/json", "X-CSRF-Token": casey.csrf})
    assert response.status == 200 and json.loads(answer)["location"].endswith("look=teams&note=acknowledged")
    assert await Acknowledgement.filter(notice_id=1).count() == 2


async def test_a_member_cannot_acknowledge_what_was_not_sent_to_them(console: ConsoleHarness) -> None:
    priya = await Member.get(email="priya.nair@fabrikam.example")  # technical: not in the operations audience
    casey = await console.signed_in(CAM)
    await casey.get(f"/console/sandbox/{priya.id}")
    response, page = await casey.post(f"/console/sandbox/{priya.id}/action", {"action_id": "herald_ack", "value": "1"})
    assert response.status == 403 and "not sent to you" in page
    response, page = await casey.post(f"/console/sandbox/{priya.id}/action", {"action_id": "herald_nope", "value": "1"})
    assert response.status == 400


async def test_questions_feedback_and_a_hand_off_answered_from_the_console(console: ConsoleHarness) -> None:
    lena = await Member.get(email="jonas.weber@contoso.example")  # sales: the deal entries are for sales
    casey = await console.signed_in(CAM)
    await casey.get(f"/console/sandbox/{lena.id}")
    response, inbox = await casey.post(f"/console/sandbox/{lena.id}/ask",
                                       {"question": "How do I register a deal?", "look": "slack"})
    assert response.status == 200 and "How do I register a deal?" in inbox
    question = await Question.get(member_id=lena.id)
    assert question.platform == "sandbox" and question.entry_id == "deal-registration-how"
    assert "Deal Registration" in inbox and 'value="herald_qa_helpful"' in inbox

    await casey.post(f"/console/sandbox/{lena.id}/action", {"action_id": "herald_qa_not_helpful",
                                                            "value": str(question.id)})
    assert (await Question.get(id=question.id)).feedback == "not_helpful"
    _, inbox = await casey.post(f"/console/sandbox/{lena.id}/action", {"action_id": "herald_qa_ask_cam",
                                                                       "value": str(question.id)})
    assert "Ihre Frage für Casey Morgan notiert" in inbox  # Casey has no chat account: the console lists it (Lena: de)
    assert (await Question.get(id=question.id)).handoff_status == "open"

    _, waiting = await casey.get("/console/questions")
    assert "How do I register a deal?" in waiting and "Jonas Weber" in waiting
    await casey.post(f"/console/questions/{question.id}/reply", {"reply": "Use the portal, **Sales** tab."})
    assert (await Question.get(id=question.id)).handoff_status == "answered"
    await console.herald.outbox.drain()  # the worker the reply wakes
    _, inbox = await casey.get(f"/console/sandbox/{lena.id}")
    assert "Casey Morgan hat Ihre Frage beantwortet" in inbox and "**Sales**" in inbox  # partner-facing text, escaped
    assert await AuditEvent.filter(kind="question.answered").count() == 1

    # The CAM teaches the assistant from the console, as the chat buttons under a hand-off do.
    _, answered = await casey.get("/console/questions")
    assert "Answered lately" in answered and "Add my reply as a new entry" in answered
    assert "Add the question to entry deal-registration-how" in answered
    _, taught = await casey.post(f"/console/questions/{question.id}/learn", {"kind": "phrasing"})
    [proposal] = await KBProposal.all()
    assert (proposal.kind, proposal.entry_id, proposal.proposed_by) == ("phrasing", "deal-registration-how", CAM)
    assert f"Proposed #{proposal.id}" in taught and "Add the question to entry" not in taught
    assert "Add my reply as a new entry" in taught  # the other kind is still on offer
    _, again = await casey.post(f"/console/questions/{question.id}/learn", {"kind": "phrasing"})
    assert "Already proposed" in again and await KBProposal.all().count() == 1


async def test_teaching_from_the_console_redirects_so_a_refresh_proposes_nothing(console: ConsoleHarness) -> None:
    """'Add my reply as a new entry' answers with a redirect to the questions page (Post/Redirect/
    Get), which says what was proposed: a refresh reloads that page and proposes nothing. Before,
    the POST rendered the page itself, so a refresh asked to send the form again. An edited
    address speaks only of the CAM's own answered hand-offs."""
    lena = await Member.get(email=LENA)
    now = console.clock.now()
    question = await Question.create(
        member=lena, platform="sandbox", text="Where is the Q1 price list?", asked_at=now, abstained=True,
        handoff_status="answered", handed_off_at=now, cam=await Staff.get(email=CAM),
        reply_text="In the portal, under Pricing.", replied_at=now, replied_by=CAM)
    casey = await console.signed_in(CAM)
    await casey.get("/console/questions")
    response, _ = await casey.post(f"/console/questions/{question.id}/learn", {"kind": "entry"},
                                   allow_redirects=False)
    assert response.status == 303, f"the learn POST answered {response.status} itself: a refresh sends it again"
    [proposal] = await KBProposal.all()
    location = response.headers["Location"]
    assert location.startswith("/console/questions?") and location.endswith(f"#answered-{question.id}")
    for _ in range(2):  # the redirected page, then a refresh of it
        response, page = await casey.get(location)
        assert response.status == 200 and f"Proposed #{proposal.id}" in page and "Where is the Q1 price list?" in page
    assert await KBProposal.all().count() == 1 and await AuditEvent.filter(kind="kb.proposed").count() == 1
    response, page = await casey.post(f"/console/questions/{question.id}/learn", {"kind": "entry"})
    assert "Already proposed" in page and await KBProposal.all().count() == 1

    jordan = await console.signed_in(OTHER_CAM)  # another CAM: not their hand-off
    _, page = await jordan.get(location)
    assert "learn-note" not in page and "Where is the Q1 price list?" not in page


async def test_a_journey_step_is_marked_done_from_the_inbox(console: ConsoleHarness) -> None:
    lena = await Member.get(email=LENA)
    monday = console.clock.now().replace(hour=8)  # 2026-01-05 is a Monday; 09:00 in Berlin
    await Member.filter(id=lena.id).update(joined_at=monday - timedelta(days=1))
    console.clock.set(monday)
    await console.herald.tick()
    await console.herald.outbox.drain()  # the worker the tick wakes
    step = await JourneyStep.get(member_id=lena.id, position=1)
    casey = await console.signed_in(CAM)
    _, inbox = await casey.get(f"/console/sandbox/{lena.id}")
    assert "Onboarding 1/" in inbox and f'name="value" value="{step.id}"' in inbox
    response, inbox = await casey.post(f"/console/sandbox/{lena.id}/action",
                                       {"action_id": "herald_journey_done", "value": str(step.id)})
    assert response.status == 200 and "Marked done." in inbox
    assert (await JourneyStep.get(id=step.id)).done_at is not None
    jonas = await Member.get(email="jonas.weber@contoso.example")  # someone else's step: refused
    response, _ = await casey.post(f"/console/sandbox/{jonas.id}/action",
                                   {"action_id": "herald_journey_done", "value": str(step.id)})
    assert response.status == 403


async def test_inboxes_list_every_sample_member(console: ConsoleHarness) -> None:
    casey = await console.signed_in(CAM)
    _, page = await casey.get("/console/sandbox")
    assert len(re.findall(r'href="/console/sandbox/\d+"', page)) == 9 and "Litware Distribution" in page
