"""Learning from hand-offs (issue 16 item 3): the CAM adds a handed-off question to the knowledge base
with one click, an admin approves it, the assistant answers from it without a restart; audited."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.common.errors import UserError
from bot.core.directory.staff import add_staff
from bot.core.onboarding import index, learning
from bot.core.onboarding.assistant import ASK_CAM_ACTION, NOT_HELPFUL_ACTION, REPLY_ACTION
from bot.core.onboarding.learning import ENTRY, LEARN_ENTRY_ACTION, LEARN_PHRASING_ACTION, PHRASING, decide, propose
from bot.core.onboarding.qa import KBEntry, apply_overlay, default_directory
from storage import db as storage_db
from storage.models import AuditEvent, KBProposal, Member, Question, Staff
from tests.conftest import POSTGRES_ONLY
from tests.fakes.slack_signing import event_body
from tests.support import CAM_USER, TEAM, Rig, SlackHarness, seed_directory, start_harness, stop_harness, wait_until
from tests.cli_support import in_process_cli

PARKING = "is there parking for visitors at your headquarters"


def _buttons(blocks: list[dict]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def _dm(slack: SlackHarness, user: str, text: str) -> dict:
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text,
             "ts": "1700000000.000300"}
    assert (await slack.post_signed(event_body(event, TEAM))).status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def _click(slack: SlackHarness, action: str, value: str, user: str) -> str:
    await slack.click(action, value, user=user)
    (response,) = await slack.responses(slack.last_click_key)
    return response.args["text"]


async def _hand_off(slack: SlackHarness, user: str, question: Question) -> list[tuple[str, str]]:
    await _click(slack, ASK_CAM_ACTION, str(question.id), user)
    await slack.herald.outbox.drain()  # the worker the hand-off wakes
    handoff = await wait_until(lambda: [c for c in slack.fake.calls_to("chat.postMessage")
                                        if c.channel == f"D{CAM_USER}"], what="the CAM's DM")
    return _buttons(handoff[-1].args["blocks"])


@pytest.fixture
async def slack(db: str):
    """Keyword search only (the flow is the same with the embedding model; its index build is
    tested in test_qa_index.py)."""
    harness = await start_harness(db, extra_settings={"kb_semantic": False})
    await seed_directory(harness.clock)
    await add_staff("admin@vendor.example", "admin", name="Ada Admin", now=harness.clock.now(), actor="test")
    try:
        yield harness
    finally:
        await stop_harness(harness)


async def test_a_cams_reply_becomes_an_entry_once_an_admin_approves_it(slack: SlackHarness) -> None:
    answer = await _dm(slack, "UANNA", PARKING)
    assert "Das weiß ich noch nicht" in str(answer["blocks"])  # "I don't know that one yet": Anna's locale is de
    question = await Question.get()
    qid = str(question.id)
    # nothing suggested, so only "reply as a new entry" is offered next to Reply
    assert await _hand_off(slack, "UANNA", question) == [(REPLY_ACTION, qid), (LEARN_ENTRY_ACTION, qid)]

    assert "Reply to the partner first" in await _click(slack, LEARN_ENTRY_ACTION, qid, CAM_USER)
    assert "Only the partner's CAM or an admin" in await _click(slack, LEARN_ENTRY_ACTION, qid, "UANNA")
    assert await KBProposal.all().count() == 0

    await slack.click(REPLY_ACTION, qid, user=CAM_USER)
    (opened,) = await wait_until(lambda: slack.fake.calls_to("views.open"), what="the reply form")
    view = opened.args["view"]
    reply = "Yes: free visitor parking behind building B; register your plate at reception."
    await slack.submit_view({"callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                             "state": {"values": {"reply": {"value": {"type": "plain_text_input", "value": reply}}}}})
    await slack.herald.outbox.drain()  # the reply is relayed to the partner
    assert any(reply in str(c.args) for c in slack.fake.calls_to("chat.postMessage"))

    told = await _click(slack, LEARN_ENTRY_ACTION, qid, CAM_USER)
    proposal = await KBProposal.get()
    assert f"Proposed #{proposal.id}" in told and f"herald qa approve {proposal.id}" in told
    assert (proposal.kind, proposal.status, proposal.answer, proposal.proposed_by) == (
        "entry", "pending", reply, "cam@vendor.example")
    assert "Already proposed" in await _click(slack, LEARN_ENTRY_ACTION, qid, CAM_USER)  # one proposal per click kind
    assert await KBProposal.all().count() == 1

    # pending: the assistant does not know it yet, and the service does not reload
    assert (await slack.herald.tick())["kb_reloaded"] == 0
    with pytest.raises(Exception, match="Only an admin"):
        await decide(proposal.id, await Staff.get(email="cam@vendor.example"), approve=True, now=slack.clock.now(),
                     kb_dir=slack.herald.settings.kb_dir)
    await decide(proposal.id, await Staff.get(email="admin@vendor.example"), approve=True, now=slack.clock.now(),
                 kb_dir=slack.herald.settings.kb_dir)

    assert (await slack.herald.tick())["kb_reloaded"] == 1  # no restart
    assert (await slack.herald.tick())["kb_reloaded"] == 0
    answer = await _dm(slack, "UBO", "can visitors park at the headquarters?")
    assert "free visitor parking behind building B" in str(answer["blocks"])
    assert (await Question.filter(member__email="bo@acme.example").first()).entry_id == proposal.entry_id

    kinds = await AuditEvent.filter(kind__startswith="kb.").order_by("id").values_list("kind", "actor")
    assert kinds == [("kb.proposed", "cam@vendor.example"), ("kb.approved", "admin@vendor.example")]


async def test_a_not_helpful_answer_is_offered_to_the_cam_as_a_phrasing(slack: SlackHarness) -> None:
    await _dm(slack, "UANNA", "how do i register a deal")
    question = await Question.get()
    assert question.entry_id == "deal-registration-how"
    await _click(slack, NOT_HELPFUL_ACTION, str(question.id), "UANNA")
    qid = str(question.id)
    buttons = await _hand_off(slack, "UANNA", question)
    assert buttons == [(REPLY_ACTION, qid), (LEARN_PHRASING_ACTION, qid), (LEARN_ENTRY_ACTION, qid)]
    handoff = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{CAM_USER}"][-1]
    assert "not helpful" in str(handoff.args["blocks"])

    assert "another phrasing of entry deal-registration-how" in await _click(slack, LEARN_PHRASING_ACTION, qid, CAM_USER)
    proposal = await KBProposal.get()
    assert (proposal.kind, proposal.entry_id, proposal.source) == ("phrasing", "deal-registration-how", "not_helpful")
    admin = await Staff.get(email="admin@vendor.example")
    await decide(proposal.id, admin, approve=False, now=slack.clock.now(), kb_dir=slack.herald.settings.kb_dir)
    with pytest.raises(Exception, match="already rejected"):
        await decide(proposal.id, admin, approve=True, now=slack.clock.now(), kb_dir=slack.herald.settings.kb_dir)
    assert (await slack.herald.tick())["kb_reloaded"] == 0  # a rejection changes nothing
    assert await AuditEvent.filter(kind="kb.rejected").count() == 1


@pytest.fixture
def small_kb(tmp_path: Path) -> Path:
    directory = tmp_path / "kb"
    directory.mkdir()
    (directory / "kb.yaml").write_text(
        "vendor: Acme\nentries:\n"
        "  - id: price-list\n    title: Where is the current price list?\n"
        "    answer: In the portal under Sales > Prices.\n"
        "  - id: demo-units\n    title: How do I order demo units?\n    answer: Through the portal's demo shop.\n",
        encoding="utf-8")
    return directory


async def test_a_phrasing_of_an_entry_no_longer_in_the_knowledge_base_is_not_approved(
        rig: Rig, small_kb: Path) -> None:
    """A CAM proposes a question as a phrasing of entry demo-units; before an admin decides, the
    entry is removed from the knowledge base files. Approving it is refused with the reason (the
    knowledge base would drop the phrasing when it loads): no kb.approved, the proposal stays
    pending for the admin to reject. A phrasing of a learned entry (not in the files) is approved."""
    rig.clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    await add_staff("admin@vendor.example", "admin", name="Ada Admin", now=rig.clock.now(), actor="test")
    admin, cam = await Staff.get(email="admin@vendor.example"), await Staff.get(email="cam@vendor.example")
    anna = await Member.get(email="anna@acme.example")
    question = await Question.create(member=anna, platform="slack", text="can I get a demo lock to show customers",
                                     asked_at=rig.clock.now(), entry_id="demo-units", score=0.5,
                                     channel_id="DUANNA", handoff_status="answered", cam=cam,
                                     reply_text="Order them in the portal's demo shop.")
    proposal, _ = await propose(question.id, cam, PHRASING, now=rig.clock.now())
    (small_kb / "kb.yaml").write_text(  # the knowledge base's author removes the entry meanwhile
        "vendor: Acme\nentries:\n"
        "  - id: price-list\n    title: Where is the current price list?\n"
        "    answer: In the portal under Sales > Prices.\n", encoding="utf-8")

    with pytest.raises(UserError, match="entry demo-units, which is no longer in the knowledge base"):
        await decide(proposal.id, admin, approve=True, now=rig.clock.now(), kb_dir=small_kb)
    assert (await KBProposal.get(id=proposal.id)).status == "pending"
    assert await AuditEvent.filter(kind="kb.approved").count() == 0
    await decide(proposal.id, admin, approve=False, now=rig.clock.now(), kb_dir=small_kb)

    learned, _ = await propose(question.id, cam, ENTRY, now=rig.clock.now())  # the CAM's reply as an entry
    await decide(learned.id, admin, approve=True, now=rig.clock.now(), kb_dir=small_kb)
    again = await Question.create(member=anna, platform="slack", text="demo lock for a customer visit?",
                                  asked_at=rig.clock.now(), entry_id=learned.entry_id, handoff_status="open", cam=cam)
    phrasing, _ = await propose(again.id, cam, PHRASING, now=rig.clock.now())
    assert (await decide(phrasing.id, admin, approve=True, now=rig.clock.now(), kb_dir=small_kb)).status == "approved"


def test_an_approved_phrasing_joins_its_entry_and_changes_the_index_fingerprint(tmp_path: Path) -> None:
    entry = KBEntry(id="a", title="T", topic="", roles=frozenset(), tiers=frozenset(), answer="A.", link="",
                    alt_questions=("q1",))
    overlay = [{"id": 1, "kind": "phrasing", "entry_id": "a", "question": "q2", "answer": ""},
               {"id": 2, "kind": "phrasing", "entry_id": "gone", "question": "q3", "answer": ""},
               {"id": 3, "kind": "entry", "entry_id": "learned-3", "question": "new?", "answer": "Yes."}]
    (a, new) = apply_overlay([entry], overlay)
    assert a.alt_questions == ("q1", "q2") and (new.id, new.title, new.answer) == ("learned-3", "new?", "Yes.")
    directory = default_directory()
    assert index.fingerprint(directory, overlay) != index.fingerprint(directory)
    store = tmp_path / "store"
    index._write_marker(index.marker(store, index.fingerprint(directory)))
    assert index.vectors_ready(directory, store) and not index.vectors_ready(directory, store, overlay)


def test_cli_lists_approves_and_rejects_proposals(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.common.clock import ManualClock
    from bot.core.onboarding.learning import propose
    from tests.support import seed_directory as seed

    runner = in_process_cli(monkeypatch, db_url)

    async def prepare() -> list[int]:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            clock = ManualClock()
            await seed(clock)
            await add_staff("admin@vendor.example", "admin", now=clock.now(), actor="test")
            cam = await Staff.get(email="cam@vendor.example")
            anna = await Member.get(email="anna@acme.example")
            ids = []
            for text, entry in (("how do i register a deal", "deal-registration-how"),
                                ("where is the price list", "deal-registration-how"),
                                ("can I get a demo lock", "demo-units")):  # no such entry (any more)
                q = await Question.create(member=anna, platform="slack", text=text, asked_at=clock.now(),
                                          entry_id=entry, handoff_status="open", cam=cam)
                ids.append((await propose(q.id, cam, "phrasing", now=clock.now()))[0].id)
            return ids
        finally:
            await storage_db.close()

    first, second, gone = asyncio.run(prepare())
    listed = runner.invoke(main, ["qa", "pending"])
    assert listed.exit_code == 0 and f"#{first}" in listed.output and "where is the price list" in listed.output
    refused = runner.invoke(main, ["qa", "approve", str(first), "--as", "cam@vendor.example"])
    assert refused.exit_code == 1 and "Only an admin" in refused.output
    assert runner.invoke(main, ["qa", "approve", str(first), "--as", "admin@vendor.example"]).exit_code == 0
    assert runner.invoke(main, ["qa", "reject", str(second), "--as", "admin@vendor.example"]).exit_code == 0
    refused = runner.invoke(main, ["qa", "approve", str(gone), "--as", "admin@vendor.example"])
    assert refused.exit_code == 1 and "entry demo-units, which is no longer in the knowledge base" in refused.output
    assert runner.invoke(main, ["qa", "reject", str(gone), "--as", "admin@vendor.example"]).exit_code == 0
    assert "no pending proposals" in runner.invoke(main, ["qa", "pending"]).output

    async def audit() -> list[dict]:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            return [e.data for e in await AuditEvent.filter(kind="kb.approved")]
        finally:
            await storage_db.close()

    (approved,) = asyncio.run(audit())
    assert approved["via"] == "cli" and approved["os_user"]


# a partner's question as typed: line breaks would forge rows, ESC sequences reach the terminal
FORGED = ("where is the price list\n"
          "2026-01-01T09:00  no answer    executive   please send the admin password to partner-it@evil.example")
ESCAPES = "reset \x1b[2J\x1b]8;;https://evil.example\x1b\\the PIN\x1b]8;;\x1b\\"


def test_qa_unanswered_lists_one_line_per_question_without_control_sequences(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.common.clock import ManualClock

    runner = in_process_cli(monkeypatch, db_url)

    async def prepare() -> None:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            clock = ManualClock()
            await seed_directory(clock)
            anna = await Member.get(email="anna@acme.example")
            for text in (FORGED, ESCAPES):
                await Question.create(member=anna, platform="slack", text=text, asked_at=clock.now(), abstained=True)
        finally:
            await storage_db.close()

    asyncio.run(prepare())
    listed = runner.invoke(main, ["qa", "unanswered"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2, lines  # two questions, two rows
    assert "\x1b" not in listed.output, repr(listed.output)


async def test_console_lists_proposals_and_an_admin_decides_there(console) -> None:  # noqa: ANN001
    from bot.core.onboarding.learning import propose
    from tests.console_support import ADMIN, CAM

    member = await Member.filter(active=True).first()
    admin = await Staff.get(email=ADMIN)
    question = await Question.create(member=member, platform="slack", text="can we resell refurbished locks",
                                     asked_at=console.clock.now(), handoff_status="answered",
                                     reply_text="Only units refurbished by Northwind, with a 1-year warranty.")
    proposal, _ = await propose(question.id, admin, "entry", now=console.clock.now())

    cam = await console.signed_in(CAM)
    response, page = await cam.get("/console/kb-proposals")
    assert response.status == 200 and "can we resell refurbished locks" in page and "1-year warranty" in page
    assert f"/console/kb-proposals/{proposal.id}/approve" not in page  # only admins decide
    response, _ = await cam.post(f"/console/kb-proposals/{proposal.id}/approve")
    assert response.status == 403 and (await KBProposal.get(id=proposal.id)).status == "pending"

    browser = await console.signed_in(ADMIN)
    response, page = await browser.get("/console/kb-proposals")
    assert f"/console/kb-proposals/{proposal.id}/approve" in page
    response, page = await browser.post(f"/console/kb-proposals/{proposal.id}/approve")
    assert response.status == 200 and response.url.path == "/console/kb-proposals" and "No proposals are waiting" in page
    assert (await KBProposal.get(id=proposal.id)).status == "approved"
    (event,) = await AuditEvent.filter(kind="kb.approved")
    assert event.actor == ADMIN and event.data["via"] == "console"

    # a phrasing of an entry the knowledge base no longer has: refused, saying why
    gone = await Question.create(member=member, platform="slack", text="can I get a demo lock",
                                 asked_at=console.clock.now(), entry_id="demo-units", handoff_status="open")
    phrasing, _ = await propose(gone.id, admin, "phrasing", now=console.clock.now())
    response, page = await browser.post(f"/console/kb-proposals/{phrasing.id}/approve")
    assert response.status == 400 and "entry demo-units, which is no longer in the knowledge base" in page
    assert (await KBProposal.get(id=phrasing.id)).status == "pending"
    assert await AuditEvent.filter(kind="kb.approved").count() == 1


async def test_the_knowledge_base_page_tries_a_question_and_says_why(console) -> None:  # noqa: ANN001
    """A CAM or admin types a question and sees what a partner would get and why (as `herald qa ask`)."""
    from tests.console_support import CAM

    cam = await console.signed_in(CAM)
    response, page = await cam.get("/console/kb-proposals?q=how+do+I+reset+the+PIN+of+my+bank+card")
    assert response.status == 200
    assert 'value="how do I reset the PIN of my bank card"' in page
    assert "threshold" in page and "the key-term check took" in page
    assert "bank alien" in page and "reset covered" in page
    response, page = await cam.get("/console/kb-proposals?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E+deal")
    assert response.status == 200 and "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    response, page = await cam.get("/console/kb-proposals")
    assert response.status == 200 and "Try a question" in page and "explanation" not in page


async def test_an_approval_while_the_kb_files_have_a_mistake_keeps_the_loaded_knowledge_base_answering(
        db: str, small_kb: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Keyword mode. The knowledge base's author saves a file with a misspelt field while the
    server runs; then an admin approves a learned entry. The tick that picks it up used to drop the
    loaded knowledge base before reading the files again, which now failed, so every partner's
    question afterwards raised and got no reply at all. Now the new knowledge base is loaded before
    it replaces the one in use: the server keeps answering from what it loaded, logs why once (not
    on every tick), and takes the learned entry at the first tick after the file is fixed."""
    slack = await start_harness(db, extra_settings={"kb_dir": small_kb, "kb_semantic": False})
    try:
        await seed_directory(slack.clock)
        await add_staff("admin@vendor.example", "admin", name="Ada Admin", now=slack.clock.now(), actor="test")
        assert "Sales &gt; Prices" in str((await _dm(slack, "UANNA", "where is the current price list"))["blocks"])
        cam, admin = await Staff.get(email="cam@vendor.example"), await Staff.get(email="admin@vendor.example")
        anna = await Member.get(email="anna@acme.example")
        handed = await Question.create(member=anna, platform="slack", text=PARKING, asked_at=slack.clock.now(),
                                       abstained=True, channel_id="DUANNA", handoff_status="answered", cam=cam,
                                       reply_text="Yes, behind building B.")
        proposal, _ = await propose(handed.id, cam, ENTRY, now=slack.clock.now())
        kb_file = small_kb / "kb.yaml"
        good = kb_file.read_text(encoding="utf-8")
        kb_file.write_text(good.replace("    answer: Through", "    answr: Through"), encoding="utf-8")
        await decide(proposal.id, admin, approve=True, now=slack.clock.now(), kb_dir=small_kb)

        with caplog.at_level(logging.ERROR, logger="bot.service"):
            assert (await slack.herald.tick())["kb_reloaded"] == 0
            assert (await slack.herald.tick())["kb_reloaded"] == 0
        (logged,) = [r.getMessage() for r in caplog.records if r.name == "bot.service"]
        assert "stays in use until the files are fixed" in logged and "unknown field(s) answr" in logged
        assert "Sales &gt; Prices" in str((await _dm(slack, "UBO", "where is the current price list"))["blocks"])

        kb_file.write_text(good, encoding="utf-8")  # fixed: the next tick takes the learned entry
        assert (await slack.herald.tick())["kb_reloaded"] == 1
        assert "building B" in str((await _dm(slack, "UCY", PARKING))["blocks"])
    finally:
        await stop_harness(slack)


async def test_a_hand_off_after_an_unsure_offer_tells_the_cam_what_was_offered_and_lets_them_add_it(
        slack: SlackHarness) -> None:
    """Anna asks in German; the assistant is not sure and asks back ("If it is about 'Where can I
    find the current price list', press the button", Did you mean: price-list). She presses Ask my
    CAM instead. The hand-off used to say "The knowledge base had no answer." (the offer was not
    kept on the question) and had no "Add question to the suggested entry", the one-click way to
    teach the knowledge base this phrasing, exactly where the assistant was unsure. The offer is
    kept (`question.suggested_entry_id`, and `did_you_mean` in the audit trail); the hand-off says
    what was offered and that it was not confirmed, and the button proposes the phrasing."""
    from bot.core.onboarding.assistant import DID_YOU_MEAN_ACTION

    answer = await _dm(slack, "UANNA", "Wo finde ich die aktuelle Preisliste?")
    question = await Question.get()
    qid = str(question.id)
    assert "nicht sicher" in str(answer["blocks"]) and (DID_YOU_MEAN_ACTION, f"{qid}:price-list") in _buttons(
        answer["blocks"])
    assert (question.entry_id, question.suggested_entry_id, question.abstained) == ("", "price-list", True)
    (asked,) = await AuditEvent.filter(kind="question.asked")
    assert asked.data["did_you_mean"] == "price-list" and asked.data["entry"] is None

    assert await _hand_off(slack, "UANNA", question) == [
        (REPLY_ACTION, qid), (LEARN_PHRASING_ACTION, qid), (LEARN_ENTRY_ACTION, qid)]
    handoff = [c for c in slack.fake.calls_to("chat.postMessage") if c.channel == f"D{CAM_USER}"][-1]
    text = str(handoff.args["blocks"])
    assert "had no answer" not in text and "not sure" in text and "price-list" in text and "did not confirm" in text

    assert "another phrasing of entry price-list" in await _click(slack, LEARN_PHRASING_ACTION, qid, CAM_USER)
    proposal = await KBProposal.get()
    assert (proposal.kind, proposal.entry_id, proposal.question_text) == (
        "phrasing", "price-list", "Wo finde ich die aktuelle Preisliste?")


async def test_the_same_learned_answer_taught_twice_is_one_entry_and_never_offers_itself(
        db: str, small_kb: Path) -> None:
    """Two partners ask the CAM the same thing; the CAM replies the same to both and presses "Add
    my reply as a KB entry" under each. The admin used to be able to approve both: two identical
    entries (learned-1, learned-2), and the answer to that question carried "Did you mean: <the
    same title>?" offering the copy. The second click now joins the first proposal ("Already
    proposed"); a copy proposed before that is refused on approval ("the same as #N"); a new
    entry for a question an entry already asks is refused, saying which entry."""
    from bot.core.onboarding.assistant import DID_YOU_MEAN_ACTION

    slack = await start_harness(db, extra_settings={"kb_dir": small_kb, "kb_semantic": False})
    try:
        await seed_directory(slack.clock)
        await add_staff("admin@vendor.example", "admin", name="Ada Admin", now=slack.clock.now(), actor="test")
        cam, admin = await Staff.get(email="cam@vendor.example"), await Staff.get(email="admin@vendor.example")
        await _dm(slack, "UANNA", "where is the current price list")  # loads the knowledge base
        reply = "Yes: free visitor parking behind building B; register your plate at reception."
        proposals = []
        for email, text in (("anna@acme.example", PARKING), ("bo@acme.example", f"  {PARKING.upper()}?")):
            asked = await Question.create(member=await Member.get(email=email), platform="slack", text=text,
                                          asked_at=slack.clock.now(), abstained=True, handoff_status="answered",
                                          cam=cam, reply_text=reply)
            proposals.append(await propose(asked.id, cam, ENTRY, now=slack.clock.now()))
        (first, created), (second, again) = proposals
        assert created and not again and second.id == first.id  # Bo's click joins Anna's proposal
        assert await KBProposal.all().count() == 1
        await decide(first.id, admin, approve=True, now=slack.clock.now(), kb_dir=small_kb)

        # a copy proposed before proposals were joined: refused, saying which one it copies
        copy = await KBProposal.create(kind=ENTRY, entry_id="learned-99", question_text=PARKING, answer=reply,
                                       proposed_by=cam.email, proposed_at=slack.clock.now())
        with pytest.raises(UserError, match=f"the same as #{first.id}, approved already"):
            await decide(copy.id, admin, approve=True, now=slack.clock.now(), kb_dir=small_kb)
        # another answer to a question the knowledge base already asks: refused, naming the entry
        other = await KBProposal.create(kind=ENTRY, entry_id="learned-98", question_text="Where is the current "
                                        "price list?", answer="Ask your CAM.", proposed_by=cam.email,
                                        proposed_at=slack.clock.now())
        with pytest.raises(UserError, match="already a phrasing of entry price-list"):
            await decide(other.id, admin, approve=True, now=slack.clock.now(), kb_dir=small_kb)
        assert await KBProposal.filter(status="approved").count() == 1
        assert await AuditEvent.filter(kind="kb.approved").count() == 1

        await slack.herald.tick()
        answer = await _dm(slack, "UCY", PARKING)
        assert "building B" in str(answer["blocks"])
        assert not [v for a, v in _buttons(answer["blocks"]) if a == DID_YOU_MEAN_ACTION]
    finally:
        await stop_harness(slack)


# ---- two admins approving at once ----------------------------------------------------------------

def _checks_held_until_both_or_the_other_waits(real_check: Any, real_lock: Any) -> tuple[Any, Any]:
    """`real_check` (the approval's read of what is approved) returning to each caller only once
    the other caller has read it too, the moment where both checks are done before either approval
    commits; or once the other caller waits for the approvals' lock (`storage.db.take_turns`),
    which it cannot pass before this one commits. No sleeps."""
    read = locking = 0
    go = asyncio.Event()

    async def check(*args: Any, **kwargs: Any) -> Any:
        nonlocal read
        found = await real_check(*args, **kwargs)
        read += 1
        if read >= 2:
            go.set()
        await asyncio.wait_for(go.wait(), timeout=10)
        return found

    async def lock(*args: Any, **kwargs: Any) -> None:
        nonlocal locking
        locking += 1
        if locking >= 2:
            go.set()
        await real_lock(*args, **kwargs)
    return check, lock


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
async def test_two_new_entries_for_one_question_approved_at_once_are_not_both_approved(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two partners asked the same question and their CAMs replied differently: two pending
    proposals of a new entry, the same question. Approved one after the other, the second is refused
    (learning._refuse_what_the_knowledge_base_has: "a new entry would compete with it", the
    assistant's confidence in both would drop). Approved by two admins at the same moment (the
    console and `herald qa approve`), both checks read the overlay before either approval
    committed, and both were approved: two entries answering one question. The check and the
    approval are one transaction now, approvals taking turns (an advisory lock on PostgreSQL)."""
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    ada, _ = await add_staff("ada@vendor.example", "admin", now=now, actor="test")
    ben, _ = await add_staff("ben@vendor.example", "admin", now=now, actor="test")
    question = "Is there parking for visitors at your headquarters?"
    proposals = []
    for answer, cam in (("Yes, behind building B.", "cam@vendor.example"), ("Yes: level -2, ask reception.",
                                                                           "cam2@vendor.example")):
        proposal = await KBProposal.create(kind=ENTRY, entry_id="", question_text=question, answer=answer,
                                           source="reply", proposed_by=cam, proposed_at=now)
        proposal.entry_id = f"{learning.NEW_ENTRY_PREFIX}{proposal.id}"
        await proposal.save()
        proposals.append(proposal)
    kb_dir = default_directory()
    check, lock = _checks_held_until_both_or_the_other_waits(learning.approved_overlay, storage_db.take_turns)
    monkeypatch.setattr(learning, "approved_overlay", check)
    monkeypatch.setattr(storage_db, "take_turns", lock)

    outcomes = await asyncio.gather(
        decide(proposals[0].id, ada, approve=True, now=now, kb_dir=kb_dir),
        decide(proposals[1].id, ben, approve=True, now=now, kb_dir=kb_dir), return_exceptions=True)
    monkeypatch.undo()

    assert not [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, UserError)], outcomes
    approved = await KBProposal.filter(status=learning.APPROVED).count()
    assert approved == 1, f"{approved} new entries approved for the one question {question!r}"
    refused = [o for o in outcomes if isinstance(o, UserError)]
    assert len(refused) == 1 and "would compete with it" in str(refused[0]), outcomes
    overlay = await learning.approved_overlay()
    entries = [item["entry_id"] for item in overlay if item["kind"] == ENTRY]
    assert len(entries) == 1, f"the knowledge base now has entries {entries} asking the same question"
    assert await AuditEvent.filter(kind="kb.approved").count() == 1
