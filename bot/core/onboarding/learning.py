"""Learning from hand-offs (issue 16): a CAM adds a handed-off question to the knowledge base with
one click, an admin approves it, and the assistant picks it up without a restart.

A proposal is either a new **phrasing** of the entry the assistant suggested (the question becomes
one of its ``alt_questions``) or a new **entry** whose title is the question and whose answer is the
CAM's reply. Approved proposals are an overlay on the ``HERALD_KB_DIR`` files: the files stay the
source an operator edits; the overlay lives in the database (``kb_proposal``) and every step is in
the audit trail. The service compares the overlay with the one its index was built from on every
tick and rebuilds the index (in a child process, see ``index.py``) when it changed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.common.text import without_control_characters
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.permissions import may_act_for_partner, partner_scope
from bot.core.onboarding.qa import KnowledgeBaseError, entry_ids, normalised, phrasings
from storage import db as storage_db
from storage.models import KBProposal, Question, Staff, StaffRole

PHRASING = "phrasing"
ENTRY = "entry"
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
#: Button action ids (value = the question id): offered to the CAM under a handed-off question.
LEARN_PHRASING_ACTION = "herald_qa_learn_phrasing"
LEARN_ENTRY_ACTION = "herald_qa_learn_entry"
NEW_ENTRY_PREFIX = "learned-"


def suggested_entry(question: Question) -> str:
    """The entry a question may become a phrasing of: the one it was answered with (or withheld
    from the member as confidential), else the one offered as "Did you mean" when the assistant
    was not sure; "" when the assistant suggested none."""
    return question.entry_id or question.suggested_entry_id


def _may_teach(staff: Staff | None, question: Question) -> bool:
    """Who may answer the hand-off may teach from it: the same rule (`may_act_for_partner`)."""
    return may_act_for_partner(staff, cam_email=question.member.organisation.cam_email,
                               owner_id=question.cam_id)  # type: ignore[attr-defined]


async def propose(question_id: int, staff: Staff | None, kind: str, *, now: datetime) -> tuple[KBProposal, bool]:
    """The CAM's one click: propose the question for the knowledge base. Returns (proposal, created);
    a second click returns the first proposal."""
    if kind not in (PHRASING, ENTRY):
        raise UserError(f"unknown kind of proposal {kind!r}")
    question = await Question.get_or_none(id=question_id).select_related("member__organisation")
    if question is None:
        raise NotFound("that question no longer exists")
    if not _may_teach(staff, question):
        raise PermissionDenied("Only the partner's CAM or an admin can add this question to the knowledge base.")
    assert staff is not None
    existing = await KBProposal.get_or_none(question_id=question.id, kind=kind)
    if existing is not None:
        return existing, False
    if kind == PHRASING:
        entry_id, answer = suggested_entry(question), ""
        if not entry_id:
            raise UserError("The assistant suggested no entry for this question; add your reply as a new entry instead.")
    else:
        if not question.reply_text:
            raise UserError("Reply to the partner first; your reply becomes the new entry's answer.")
        entry_id, answer = "", question.reply_text
    same = await _same_as(kind, entry_id, question.text, answer, statuses=(PENDING, APPROVED))
    if same is not None:  # another hand-off taught the same: one proposal for the admin, not a copy
        return same, False
    source = "not_helpful" if question.feedback == "not_helpful" else "reply"
    try:
        async with in_transaction() as conn:
            proposal = await KBProposal.create(
                question=question, kind=kind, entry_id=entry_id, question_text=question.text, answer=answer,
                source=source, proposed_by=staff.email, proposed_at=now, using_db=conn)
            if kind == ENTRY:
                proposal.entry_id = f"{NEW_ENTRY_PREFIX}{proposal.id}"
                await proposal.save(update_fields=["entry_id"], using_db=conn)
            await record([audit_event("kb.proposed", now=now, actor=staff.email, member_id=question.member_id,  # type: ignore[attr-defined]
                                      proposal_id=proposal.id, question_id=question.id, proposal_kind=kind,
                                      entry=proposal.entry_id, question=question.text, answer=answer or None,
                                      source=source)], using_db=conn)
    except IntegrityError:  # a concurrent click won
        return await KBProposal.get(question_id=question.id, kind=kind), False
    return proposal, True


async def _same_as(kind: str, entry_id: str, question: str, answer: str, *, statuses: tuple[str, ...],
                   other_than: int | None = None) -> KBProposal | None:
    """The first proposal in ``statuses`` that teaches the same (``normalised`` question, and the
    same answer for a new entry or the same entry for a phrasing), or None."""
    query = KBProposal.filter(kind=kind, status__in=statuses)
    if kind == PHRASING:
        query = query.filter(entry_id=entry_id)
    if other_than is not None:
        query = query.exclude(id=other_than)
    wanted = (normalised(question), normalised(answer))
    for candidate in await query.order_by("id"):
        if (normalised(candidate.question_text), normalised(candidate.answer)) == wanted:
            return candidate
    return None


def proposal_note(proposal: KBProposal, created: bool) -> str:
    """What the CAM is told after the click."""
    what = (f"as another phrasing of entry {proposal.entry_id}" if proposal.kind == PHRASING
            else "as a new entry with your reply as its answer")
    if not created:
        return f"Already proposed (#{proposal.id}, {proposal.status}): \"{one_line(proposal.question_text)}\" {what}."
    return (f"Proposed #{proposal.id}: \"{one_line(proposal.question_text)}\" {what}. An admin approves it "
            f"with `herald qa approve {proposal.id}` or under Knowledge base in the console; the assistant then "
            f"uses it without a restart.")


async def proposals_of(question_ids: list[int]) -> dict[int, list[KBProposal]]:
    """The proposals made from these questions, by question id."""
    found: dict[int, list[KBProposal]] = {}
    for proposal in await KBProposal.filter(question_id__in=question_ids).order_by("id"):
        found.setdefault(proposal.question_id, []).append(proposal)  # type: ignore[attr-defined]
    return found


async def pending(staff: Staff | None = None, *, operator: bool = False) -> list[KBProposal]:
    """The proposals waiting for an admin: every one for an admin, compliance or the command line
    (`operator`); for a CAM only those they made or that come from their own partners' questions
    (a proposal holds the partner's question and the CAM's reply)."""
    query = KBProposal.filter(status=PENDING)
    scope = None if operator else partner_scope(staff)
    if scope is not None:
        query = query.filter(Q(proposed_by=scope) | Q(question__member__organisation__cam_email__iexact=scope))
    return await query.order_by("proposed_at", "id")


async def decide(proposal_id: int, staff: Staff | None, *, approve: bool, now: datetime, kb_dir: Path,
                 origin: dict[str, str] | None = None) -> KBProposal:
    """An admin approves or rejects a pending proposal (once). ``kb_dir``: the knowledge base's files
    (``HERALD_KB_DIR``); a phrasing of an entry that is no longer there (nor an approved learned
    entry) is refused, since the knowledge base would drop it. ``origin``: where the decision came
    from, for the audit trail (e.g. ``{"via": "cli", "os_user": "ops"}``)."""
    if staff is None or not staff.active or staff.role != StaffRole.ADMIN.value:
        raise PermissionDenied("Only an admin can approve or reject knowledge-base proposals.")
    status = APPROVED if approve else REJECTED
    async with in_transaction() as conn:
        if approve:
            # approvals take turns, each checking what those before it approved: two admins
            # approving two new entries for one question at once would otherwise approve both
            await storage_db.take_turns(conn, storage_db.KB_APPROVAL_LOCK_KEY)
            await _refuse_a_phrasing_of_a_missing_entry(proposal_id, kb_dir)
            await _refuse_what_the_knowledge_base_has(proposal_id, kb_dir)
        changed = await KBProposal.filter(id=proposal_id, status=PENDING).using_db(conn).update(
            status=status, decided_by=staff.email, decided_at=now)
        proposal = await KBProposal.get_or_none(id=proposal_id).using_db(conn)
        if proposal is None:
            raise NotFound(f"there is no knowledge-base proposal {proposal_id}")
        if not changed:
            raise UserError(f"proposal {proposal_id} was already {proposal.status} by {proposal.decided_by}")
        await record([audit_event(f"kb.{status}", now=now, actor=staff.email, proposal_id=proposal.id,
                                  proposal_kind=proposal.kind, entry=proposal.entry_id, question=proposal.question_text,
                                  answer=proposal.answer or None, **(origin or {}))], using_db=conn)
    return proposal


async def _refuse_a_phrasing_of_a_missing_entry(proposal_id: int, kb_dir: Path) -> None:
    proposal = await KBProposal.get_or_none(id=proposal_id)
    if proposal is None or proposal.kind != PHRASING or proposal.status != PENDING:
        return  # the decision says what is wrong
    try:
        known = await asyncio.to_thread(entry_ids, kb_dir, await approved_overlay())
    except KnowledgeBaseError as exc:
        raise UserError(f"The knowledge base cannot be read, so proposal {proposal_id} cannot be checked: "
                        f"{exc}") from None
    if proposal.entry_id not in known:
        raise UserError(f"Proposal {proposal_id} adds a phrasing to entry {proposal.entry_id}, which is no longer "
                        "in the knowledge base, so approving it would change nothing. Reject it, or restore "
                        "the entry and approve it then.")


async def _refuse_what_the_knowledge_base_has(proposal_id: int, kb_dir: Path) -> None:
    """A copy of an approved item, or a new entry for a question an entry already asks, would give
    the knowledge base two entries answering it: the answer would offer one as "Did you mean" for
    the other, and the assistant's confidence in both would drop."""
    proposal = await KBProposal.get_or_none(id=proposal_id)
    if proposal is None or proposal.status != PENDING:
        return  # the decision says what is wrong
    same = await _same_as(proposal.kind, proposal.entry_id, proposal.question_text, proposal.answer,
                          statuses=(APPROVED,), other_than=proposal.id)
    if same is not None:
        raise UserError(f"Proposal {proposal_id} is the same as #{same.id}, approved already (the same question "
                        f"{'and answer' if proposal.kind == ENTRY else 'for entry ' + proposal.entry_id}): reject it.")
    if proposal.kind != ENTRY:
        return
    try:
        asked = await asyncio.to_thread(phrasings, kb_dir, await approved_overlay())
    except KnowledgeBaseError:
        return  # a new entry does not depend on the files; the next load says what is wrong with them
    entry_id = asked.get(normalised(proposal.question_text))
    if entry_id is not None:
        raise UserError(f"Proposal {proposal_id}'s question is already a phrasing of entry {entry_id}, so a new entry "
                        f"would compete with it. Reject it, and change entry {entry_id}'s answer in the knowledge "
                        "base files if the reply is better.")


async def approved_overlay() -> list[dict[str, Any]]:
    """The approved proposals as plain data, oldest first: what ``KnowledgeBase.load`` applies."""
    rows = await KBProposal.filter(status=APPROVED).order_by("id")
    return [{"id": p.id, "kind": p.kind, "entry_id": p.entry_id, "question": p.question_text,
             "answer": p.answer} for p in rows]


_SPACE = re.compile(r"\s+")


def one_line(text: str, limit: int = 80) -> str:
    """A partner's or CAM's text on one line of a listing: no line breaks to forge rows, no control
    characters (terminal escape sequences), at most `limit` characters."""
    text = _SPACE.sub(" ", without_control_characters(text)).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"
