"""Review of the onboarding assistant (area: assistant): behaviour a partner, a CAM or an
operator would consider wrong. Each test fails on the current code for the reason in its docstring."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.directory.staff import add_staff
from bot.core.onboarding.learning import ENTRY, decide, propose
from storage.models import Member, Question, Staff
from tests.fakes.slack_signing import event_body
from tests.support import (
    TEAM,
    SlackHarness,
    seed_directory,
    start_harness,
    stop_harness,
    wait_until,
)

PRICE_KB = """\
vendor: Acme
entries:
  - id: price-list
    title: Where do I find the current price list?
    answer: In the partner portal under Sales > Price lists.
    alt_questions:
      - Onde encontro a lista de precos?
    translations:
      pt-br:
        title: Onde encontro a lista de preços atual?
        answer: No portal de parceiros, em Vendas > Listas de preços.
  - id: demo-units
    title: How do I order demo units?
    answer: Through the demo shop in the partner portal.
"""


@pytest.fixture
def price_kb(tmp_path: Path) -> Path:
    directory = tmp_path / "kb"
    directory.mkdir()
    (directory / "kb.yaml").write_text(PRICE_KB, encoding="utf-8")
    return directory


async def _dm(slack: SlackHarness, user: str, text: str, ts: str) -> dict:
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text, "ts": ts}
    assert (await slack.post_signed(event_body(event, TEAM))).status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def test_the_same_learned_answer_approved_twice_does_not_offer_itself_as_did_you_mean(
        db: str, price_kb: Path) -> None:
    """Two partners ask the CAM the same thing; the CAM replies the same to both and presses "Add
    my reply as a KB entry" under each hand-off. `herald qa pending` lists two proposals and the
    admin approves both: nothing says the second duplicates the first, so the knowledge base gets
    two identical entries (learned-1, learned-2). From then on the answer to that question carries
    "Did you mean: <the same title>?" offering the identical entry (and in the default mode the
    margin-aware confidence of such questions drops by about half, since two entries fit equally).
    A duplicate proposal should be refused or merged, not approved into a second copy."""
    from bot.core.onboarding.assistant import DID_YOU_MEAN_ACTION

    slack = await start_harness(db, extra_settings={"kb_dir": price_kb, "kb_semantic": False})
    try:
        await seed_directory(slack.clock)
        await add_staff("admin@vendor.example", "admin", name="Ada Admin", now=slack.clock.now(), actor="test")
        cam, admin = await Staff.get(email="cam@vendor.example"), await Staff.get(email="admin@vendor.example")
        await _dm(slack, "UANNA", "where do I find the current price list", "1700000000.000100")  # loads the KB
        reply = "Yes: free visitor parking behind building B; register your plate at reception."
        for email in ("anna@acme.example", "bo@acme.example"):
            member = await Member.get(email=email)
            asked = await Question.create(member=member, platform="slack", text="is there parking for visitors",
                                          asked_at=slack.clock.now(), entry_id="", score=0.1, abstained=True,
                                          channel_id=f"D{member.id}", handoff_status="answered", cam=cam,
                                          reply_text=reply)
            proposal, created = await propose(asked.id, cam, ENTRY, now=slack.clock.now())
            assert created
            try:
                await decide(proposal.id, admin, approve=True, now=slack.clock.now(), kb_dir=price_kb)
            except Exception:  # noqa: BLE001 - refusing the duplicate is one right outcome
                pass
        await slack.herald.tick()

        answer = await _dm(slack, "UCY", "is there parking for visitors", "1700000000.000200")
        assert "building B" in str(answer["blocks"])
        offered = [e["text"]["text"] for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == DID_YOU_MEAN_ACTION]
        assert not offered, f"the answer offers an identical learned entry: {offered}"
    finally:
        await stop_harness(slack)
