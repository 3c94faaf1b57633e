"""The onboarding assistant's conversation: a partner's question, the knowledge base's answer,
their feedback, and the hand-off to their CAM with the reply relayed back.

Platform-neutral: messages are `DirectMessage`s (title, lines, buttons) that the Slack and Teams
channels render; every step is stored and audited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.messages import staff_target
from bot.core.directory.permissions import may_act_as_cam, may_act_for_partner
from bot.core.directory.staff import cam_for_organisation
from bot.core.onboarding.handoffs import queue_handoff, queue_relay
from bot.core.onboarding.learning import LEARN_ENTRY_ACTION, LEARN_PHRASING_ACTION, suggested_entry
from bot.core.onboarding.phrases import phrase
from bot.core.onboarding.qa import Answer, KBEntry, KnowledgeBase, language_of, primary_language
from bot.core.ports import Button, Channel, DirectMessage
from storage.models import Member, PlatformAccount, Question, Staff, StaffRole

HELPFUL_ACTION = "herald_qa_helpful"
NOT_HELPFUL_ACTION = "herald_qa_not_helpful"
ASK_CAM_ACTION = "herald_qa_ask_cam"
REPLY_ACTION = "herald_qa_reply"
DID_YOU_MEAN_ACTION = "herald_qa_did_you_mean"  # value: "<question id>:<entry id>"
MAX_QUESTION = 2000
MAX_REPLY = 2800
ON_ITS_WAY = ("Your answer is on its way and will be sent to the partner in a moment. If it cannot be "
              "delivered, I'll tell you here and put the question back in your list.")
# a partner's message with files or pictures and no words (Slack's file_share, Teams' attachments)
FILES_NOT_READ = ("I can only read text, not files or images. Please type your question and I'll answer it, "
                  "or pass it to your channel account manager.")


@dataclass(frozen=True)
class Asked:
    question: Question
    answer: Answer
    message: DirectMessage


async def member_for(platform: str, workspace_id: str, user_id: str) -> Member | None:
    account = await PlatformAccount.filter(platform=platform, workspace_external_id=workspace_id.lower()
                                           if platform == "teams" else workspace_id,
                                           user_id=user_id.lower() if platform == "teams" else user_id,
                                           member__active=True).select_related("member__organisation").first()
    return account.member if account else None


async def ask(member: Member, text: str, kb: KnowledgeBase | None, *, platform: str, channel_id: str,
              now: datetime, thread_id: str = "") -> Asked:
    """Answer a question from the knowledge base (saying so when the entry is mainly for other
    partners), or say plainly that we do not know, or that the answer is confidential, and offer the CAM.
    ``kb`` None: no knowledge base could be loaded; the member is told so and offered the CAM."""
    asked, text = text.strip(), text.strip()[:MAX_QUESTION]
    organisation = member.organisation
    if kb is None:
        answer = Answer(entry=None, score=0.0, abstained=True, candidates=[])
    else:  # in a thread: the model's forward pass (about 18 ms, ONNX Runtime releases the GIL) must not
        # hold up the deliveries and clicks this event loop serves meanwhile
        answer = await asyncio.to_thread(kb.answer, text, role=member.role, tier=organisation.tier or None)
    async with in_transaction() as conn:
        question = await Question.create(
            member=member, platform=platform, text=text, asked_at=now, channel_id=channel_id, thread_id=thread_id,
            entry_id=_entry_id(answer), suggested_entry_id=answer.runner_up.id if answer.runner_up else "",
            score=answer.score, abstained=answer.abstained, using_db=conn)
        await record([audit_event("question.asked", now=now, actor=member.email, member_id=member.id,
                                  question_id=question.id, entry=question.entry_id or None,
                                  did_you_mean=question.suggested_entry_id or None,
                                  abstained=answer.abstained, score=round(answer.score, 4),
                                  withheld=answer.withheld is not None,
                                  **({"knowledge_base_unavailable": True} if kb is None else {}))], using_db=conn)
    metrics.question_answered(answer.abstained)
    # the language the knowledge base read the question in; without one, what its words say
    locale = question_locale(question) if kb is None else answer_locale(answer.language, member.locale)
    message = unavailable_message(question, locale) if kb is None else answer_message(question, answer, locale=locale)
    if len(asked) > MAX_QUESTION:  # said, not silently dropped: the CAM would get the same first part
        long = phrase("long_question", locale, shown=MAX_QUESTION, asked=len(asked))
        message = replace(message, lines=(*message.lines, long))
    return Asked(question, answer, message)


def answer_locale(question_language: str, member_locale: str) -> str:
    """The locale an answer is given in. A question asked in German is answered in German where the
    entry has it, whatever the directory says; in the member's own form of that language when it
    is theirs (a pt-BR member asking in Portuguese, which ``language_of`` tells as "pt", gets pt-BR).
    Otherwise the member's directory locale."""
    if not question_language or primary_language(member_locale) == question_language:
        return member_locale
    return question_language


def question_locale(question: Question) -> str:
    """The locale of the answer to ``question`` and of everything the assistant says around it
    (its buttons, the replies to them, the hand-off's confirmation, the CAM's relayed answer).
    ``question.member`` must be loaded."""
    return answer_locale(language_of(question.text), question.member.locale)


def _entry_id(answer: Answer) -> str:
    """The entry a question is filed under: the answer's, or the confidential one withheld (so the
    CAM sees which entry it was); "" when the knowledge base had nothing."""
    entry = answer.entry or answer.withheld
    return entry.id if entry else ""


def unavailable_message(question: Question, locale: str = "") -> DirectMessage:
    """The answer while no knowledge base can be loaded (its files were broken before one was)."""
    return DirectMessage(
        title=phrase("unavailable_title", locale),
        lines=(phrase("unavailable", locale), phrase("cam_can_help", locale, ask_cam=phrase("ask_cam", locale))),
        buttons=(_ask_cam_button(str(question.id), locale, "primary"),))


def answer_message(question: Question, answer: Answer, *, locale: str = "") -> DirectMessage:
    """The answer, or why there is none, with its buttons; the assistant's own words in ``locale``'s
    language (``phrases``), the entry's in its translation for ``locale`` where it has one."""
    qid = str(question.id)
    ask_cam = phrase("ask_cam", locale)
    if answer.withheld is not None:  # never show the entry's text, nor its title
        return DirectMessage(
            title=phrase("confidential_title", locale),
            lines=(phrase("confidential", locale), phrase("cam_can_help", locale, ask_cam=ask_cam)),
            buttons=(_ask_cam_button(qid, locale, "primary"),))
    if answer.entry is None and answer.runner_up is not None:  # not sure: ask instead of guessing
        runner_up = answer.runner_up
        unsure = phrase("unsure_language" if answer.other_language else "unsure_words", locale)
        return DirectMessage(
            title=phrase("unsure_title", locale),
            lines=(f"{unsure} {phrase('unsure_offer', locale, title=_title_in(runner_up, locale))}",
                   phrase("otherwise_cam", locale, ask_cam=ask_cam)),
            buttons=(_did_you_mean_button(qid, runner_up, locale), _ask_cam_button(qid, locale, "primary")))
    if answer.entry is None:
        return DirectMessage(
            title=phrase("unknown_title", locale),
            lines=(phrase("unknown", locale), phrase("cam_can_help", locale, ask_cam=ask_cam)),
            buttons=(_ask_cam_button(qid, locale, "primary"),))
    buttons = list(_answer_buttons(qid, locale))
    if answer.runner_up is not None:  # two entries fit about equally: ask instead of guessing
        buttons.append(_did_you_mean_button(qid, answer.runner_up, locale))
    title, lines = _entry_text(answer.entry, locale, for_others=answer.for_others)
    return DirectMessage(title=title, lines=lines, buttons=tuple(buttons))


def _answer_buttons(qid: str, locale: str) -> tuple[Button, ...]:
    return (Button(phrase("helpful", locale), HELPFUL_ACTION, qid),
            Button(phrase("not_helpful", locale), NOT_HELPFUL_ACTION, qid), _ask_cam_button(qid, locale))


def _ask_cam_button(qid: str, locale: str, style: str | None = None) -> Button:
    return Button(phrase("ask_cam", locale), ASK_CAM_ACTION, qid, style)


def _did_you_mean_button(qid: str, entry: KBEntry, locale: str) -> Button:
    return Button(_did_you_mean_label(_title_in(entry, locale), locale), DID_YOU_MEAN_ACTION, f"{qid}:{entry.id}")


def _title_in(entry: KBEntry, locale: str) -> str:
    """The entry's title in ``locale`` where the knowledge base has it, without its question mark."""
    translated = entry.translated(locale)
    return (translated[0] if translated else entry.title).rstrip("?").rstrip()


def _entry_text(entry: KBEntry, locale: str, *, for_others: bool = False) -> tuple[str, tuple[str, ...]]:
    """The entry's title and lines in the member's locale where the knowledge base has a
    translation; otherwise in English, saying so to a member whose locale is another language.
    ``for_others``: the entry is mainly for other roles/tiers, which the answer says."""
    translated = entry.translated(locale)
    title, answer = translated or (entry.title, entry.answer)
    lines = [answer.strip()]
    if for_others:
        lines.append(audience_note(entry, locale))
    if translated is None and locale and not locale.strip().lower().startswith("en"):
        lines.append(phrase("english_only", locale))
    if entry.link:
        lines.append(phrase("more", locale, link=entry.link))
    return title, tuple(lines)


def audience_note(entry: KBEntry, locale: str = "") -> str:
    """Whom the entry is mainly for, e.g. "(This is mainly for sales and marketing at Gold and
    Platinum partners.)"; the role and tier names are the directory's."""
    roles = _joined(sorted(entry.roles), locale)
    tiers = _joined([t.title() for t in sorted(entry.tiers)], locale)
    if roles and tiers:
        who = phrase("roles_at_tiers", locale, roles=roles, tiers=tiers)
    else:
        who = roles or phrase("tiers_partners", locale, tiers=tiers)
    return phrase("mainly_for", locale, who=who)


def _joined(names: list[str], locale: str = "") -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {phrase('and', locale)} {names[-1]}"


def _did_you_mean_label(title: str, locale: str = "", limit: int = 75) -> str:
    """Slack allows 75 characters on a button: a long title is cut, the frame around it kept."""
    label = phrase("did_you_mean", locale, title=title)
    if len(label) <= limit:
        return label
    frame = len(label) - len(title) + 1  # the frame and the ellipsis
    return phrase("did_you_mean", locale, title=f"{title[:limit - frame]}…")


@dataclass(frozen=True)
class RunnerUpChosen:
    message: DirectMessage  # the chosen entry, with Helpful / Not helpful / Ask my CAM
    already: bool  # a press again (a double click, Slack's retry): nothing recorded, nothing to post again


async def choose_runner_up(value: str, member: Member | None, kb: KnowledgeBase, *, now: datetime) -> RunnerUpChosen:
    """The member pressed "Did you mean: ...?": give them that entry, and remember it was the one
    (the question is answered by it from then on, even when the assistant was not sure at first).
    Once: pressing it again records nothing (``already``)."""
    question_id, _, entry_id = value.partition(":")
    if not question_id.isdigit() or not entry_id:
        raise UserError("that button is out of date; please ask again")
    question = await _own_question(int(question_id), member)
    entry = kb.entries.get(entry_id)
    role, tier = question.member.role, question.member.organisation.tier or None
    if entry is None or entry.withheld_from(role, tier):
        raise UserError("that answer is no longer in the knowledge base; please ask again")
    async with in_transaction() as conn:
        changed = await Question.filter(Q(entry_id__not=entry.id) | Q(abstained=True), id=question.id).using_db(
            conn).update(entry_id=entry.id, abstained=False)
        if changed:
            await record([audit_event("question.runner_up_chosen", now=now, actor=question.member.email,
                                      member_id=question.member.id, question_id=question.id, entry=entry.id,
                                      first_answer=question.entry_id or None)], using_db=conn)
    locale = question_locale(question)
    title, lines = _entry_text(entry, locale, for_others=not entry.offered_to(role, tier))
    message = DirectMessage(title=title, lines=lines, buttons=_answer_buttons(str(question.id), locale))
    return RunnerUpChosen(message, already=not changed)


async def _own_question(question_id: int, member: Member | None) -> Question:
    question = await Question.get_or_none(id=question_id).select_related("member__organisation")
    if question is None:
        raise NotFound("that question no longer exists")
    if member is None or question.member_id != member.id:  # type: ignore[attr-defined]
        raise PermissionDenied("Only the person who asked can use these buttons.")
    return question


async def give_feedback(question_id: int, member: Member | None, *, helpful: bool, now: datetime) -> Question:
    question = await _own_question(question_id, member)
    value = "helpful" if helpful else "not_helpful"
    async with in_transaction() as conn:
        await Question.filter(id=question.id).using_db(conn).update(feedback=value)
        await record([audit_event("question.feedback", now=now, actor=question.member.email,
                                  member_id=question.member.id, question_id=question.id, feedback=value)],
                     using_db=conn)
    question.feedback = value
    return question


def feedback_note(question: Question, *, helpful: bool, emphasis: Callable[[str], str] = str) -> str:
    """The reply to Helpful / Not helpful, in the answer's language; ``emphasis`` marks up the
    button's name as the platform does (Slack: bold)."""
    locale = question_locale(question)
    if helpful:
        return phrase("thanks_helpful", locale)
    return phrase("thanks_not_helpful", locale, ask_cam=emphasis(phrase("ask_cam", locale)))


@dataclass(frozen=True)
class HandOff:
    question: Question
    cam: Staff
    message: DirectMessage
    already: bool
    queued: bool = False  # the DM to the CAM is in the outbox (False: the CAM has no chat account)
    answered_by: str = ""  # handed off before and answered: who answered (their name, else e-mail)


async def hand_off(question_id: int, member: Member | None, *, now: datetime,
                   channels: dict[str, Channel] | None = None) -> HandOff:
    """Pass the question to the member's CAM (once; a second click says it is on its way). With
    `channels`, the DM to the CAM is queued in the outbox in the same transaction (the caller
    wakes the outbox)."""
    question = await _own_question(question_id, member)
    # handed off already: with the CAM it is filed under (the organisation's current CAM when they
    # are staff, bot.core.directory.handoff_owners), whose list it is in and who may reply
    filed = question.cam_id if question.handoff_status in ("open", "answered") else None  # type: ignore[attr-defined]
    cam = await Staff.get_or_none(id=filed) if filed else await cam_for_organisation(question.member.organisation)
    if cam is None:
        raise UserError("Your organisation has no channel account manager on file yet; "
                        "please contact the partner team directly.")
    message = handoff_message(question)
    target = await staff_target(cam, channels) if channels else None
    already = question.handoff_status in ("open", "answered")
    if not already:
        async with in_transaction() as conn:
            changed = await Question.filter(id=question.id, handoff_status="").using_db(conn).update(
                handoff_status="open", handed_off_at=now, cam=cam)
            if changed:
                await record([audit_event("question.handed_off", now=now, actor=question.member.email,
                                          member_id=question.member.id, question_id=question.id,
                                          cam=cam.email)], using_db=conn)
                if target is not None:
                    await queue_handoff(question, cam, message, target, now=now, using_db=conn)
            already = not changed
        if changed:
            metrics.question_handed_off()
        return HandOff(question, cam, message, already, queued=target is not None)
    # pressed again: answered already (nothing more is coming), or still with the CAM
    answered_by = ""
    if question.handoff_status == "answered":
        answered_by = await replier_name(question) or cam.name or cam.email
    return HandOff(question, cam, message, already, queued=target is not None, answered_by=answered_by)


def handoff_note(handoff: HandOff, *, emphasis: Callable[[str], str] = str) -> str:
    """What the member is told after Ask my CAM, in the answer's language; ``emphasis`` marks up a
    button's name as the platform does (Slack: bold)."""
    name, locale = handoff.cam.name or handoff.cam.email, question_locale(handoff.question)
    if handoff.answered_by:
        return phrase("handoff_answered", locale, name=handoff.answered_by,
                      ask_cam=emphasis(phrase("ask_cam", locale)))
    if handoff.already:
        return phrase("handoff_already", locale, name=name)
    return phrase("handoff_passed" if handoff.queued else "handoff_noted", locale, name=name)


def handoff_message(question: Question) -> DirectMessage:
    """The hand-off as its CAM gets it: who asked, the question, what the knowledge base had, the buttons."""
    organisation = question.member.organisation
    member_ = question.member
    lines = (f"From {member_.name or member_.email} <{member_.email}> ({member_.role}), "
             f"{organisation.name} ({organisation.tier or 'no tier'}):",
             f"\"{question.text}\"",
             _handoff_kb_line(question))
    if question.feedback == "not_helpful":
        lines = (*lines, "The partner marked that answer as not helpful.")
    return DirectMessage(title="A partner asked you a question", lines=lines,
                         buttons=handoff_buttons(question))


def _handoff_kb_line(question: Question) -> str:
    # abstained with an entry: the confidential entry withheld (a Did-you-mean choice answers the question)
    if question.abstained and question.entry_id:
        return (f"The knowledge base has a confidential answer ({question.entry_id}) that is not shared "
                "with this partner's role or tier.")
    if question.abstained and question.suggested_entry_id:  # not sure: it asked back instead of answering
        return (f"The knowledge base was not sure; it asked whether the question is about {question.suggested_entry_id}, "
                "which the partner did not confirm.")
    if question.abstained:
        return "The knowledge base had no answer."
    offered = question.suggested_entry_id
    also = f" It also offered {offered} (Did you mean)." if offered and offered != question.entry_id else ""
    return f"The knowledge base suggested: {question.entry_id}.{also}"


def handoff_buttons(question: Question) -> tuple[Button, ...]:
    """Reply, and the one-click "add to the knowledge base" (issue 16): as a phrasing of the entry
    the assistant suggested (when it suggested one), or the CAM's reply as a new entry (once replied)."""
    qid = str(question.id)
    buttons = [Button("Reply", REPLY_ACTION, qid, "primary")]
    if suggested_entry(question):
        buttons.append(Button("Add question to the suggested entry", LEARN_PHRASING_ACTION, qid))
    buttons.append(Button("Add my reply as a KB entry", LEARN_ENTRY_ACTION, qid))
    return tuple(buttons)


async def _answerable(question_id: int, staff: Staff | None) -> Question:
    """The handed-off question, if `staff` may answer it: the CAM it is filed under, the
    organisation's CAM, or an admin (`permissions.may_act_for_partner`: a compliance officer
    or an inactive staff member never talks to partners)."""
    question = await Question.get_or_none(id=question_id).select_related("member__organisation")
    if question is None:
        raise NotFound("that question no longer exists")
    if not may_act_for_partner(staff, cam_email=question.member.organisation.cam_email,
                               owner_id=question.cam_id):  # type: ignore[attr-defined]
        filed = await Staff.get_or_none(id=question.cam_id) if question.cam_id else None  # type: ignore[attr-defined]
        if filed is not None and staff is not None and filed.id != staff.id:  # e.g. moved to the partner's new CAM
            raise PermissionDenied(f"This question is now with {filed.name or filed.email}, "
                                   f"{question.member.organisation.name}'s CAM; only they or an admin can answer it.")
        raise PermissionDenied("Only the partner's CAM or an admin can answer this question.")
    return question


async def replier_name(question: Question) -> str:
    """Who answered the question, as people know them: their name where Herald has one on file,
    else the email the answer was recorded under ("" when none was)."""
    if not question.replied_by:
        return ""
    replier = await Staff.get_or_none(email=question.replied_by)
    return (replier.name if replier is not None and replier.name else "") or question.replied_by


async def handoff_for(question_id: int, staff: Staff | None) -> DirectMessage:
    """The hand-off as the CAM got it (the question, the partner, the knowledge base's suggestion,
    its buttons: Reply again, the knowledge-base ones) and the reply once there is one, for a
    platform whose reply form replaces the hand-off message (Teams' cards)."""
    question = await _answerable(question_id, staff)
    message = handoff_message(question)
    if not question.reply_text:
        return message
    mine = staff is not None and question.replied_by == staff.email
    who = "Your answer" if mine else f"Answered by {await replier_name(question)}"
    return replace(message, lines=(*message.lines, f"{who}: \"{question.reply_text}\""))


async def reply_to_question(question_id: int, staff: Staff | None, text: str, *,
                            now: datetime) -> tuple[Question, DirectMessage]:
    """Record the CAM's reply and, in the same transaction, queue it in the outbox for the member
    in the conversation they asked in (the caller wakes the outbox). Returns the question and the
    relayed message."""
    question = await _answerable(question_id, staff)
    if not question.member.active:  # removed from the partner directory: Herald sends them nothing more
        raise UserError(f"{question.member.name or question.member.email} was removed from the partner "
                        "directory, so the reply was not sent")
    text = text.strip()
    if not text:
        raise UserError("the reply is empty")
    text = text[:MAX_REPLY]
    account = await PlatformAccount.filter(member_id=question.member_id, platform=question.platform).first()  # type: ignore[attr-defined]
    if account is None:
        raise UserError("the partner's chat account is gone, so the reply could not be delivered")
    locale = question_locale(question)
    relay = DirectMessage(title=phrase("relay_title", locale, name=staff.name or staff.email),  # type: ignore[union-attr]
                          lines=(phrase("you_asked", locale, question=question.text), text))
    async with in_transaction() as conn:
        # a replayed submission (the same reply, already queued or delivered) changes nothing
        if await queue_relay(question, staff, account, relay, text, now=now, using_db=conn):  # type: ignore[arg-type]
            await Question.filter(id=question.id).using_db(conn).update(
                handoff_status="answered", reply_text=text, replied_at=now, replied_by=staff.email)  # type: ignore[union-attr]
            await record([audit_event("question.answered", now=now, actor=staff.email, member_id=question.member_id,  # type: ignore[union-attr, attr-defined]
                                      question_id=question.id, reply=text)], using_db=conn)
    return await Question.get(id=question.id).select_related("member"), relay


HANDOFF_PAGE = 25  # open hand-offs a console page shows (each with its own reply form)


@dataclass(frozen=True)
class HandoffPage:
    """One page of a CAM's open hand-offs, oldest first."""

    questions: list[Question]
    next_after: int | None  # the last one's id, to continue after; None on the last page


async def open_handoffs(staff: Staff | None) -> list[Question]:
    """The open hand-offs filed under a CAM (every one for an admin), oldest first. They follow
    the organisation's CAM (bot.core.directory.handoff_owners)."""
    return await _handoffs(staff, "open").order_by("handed_off_at", "id")


async def open_handoffs_page(staff: Staff | None, *, after: int | None = None,
                             limit: int = HANDOFF_PAGE) -> HandoffPage:
    """`limit` open hand-offs, oldest first, after the one with id `after`: a keyset on
    (handed_off_at, id), so replies and new hand-offs between two pages neither skip nor repeat
    one. Nothing but the CAM's reply closes a hand-off, so the list only grows while unanswered."""
    query = _handoffs(staff, "open")
    anchor = await _handed_off_at(after) if after else None
    if anchor is not None:
        query = query.filter(Q(handed_off_at__gt=anchor) | Q(handed_off_at=anchor, id__gt=after))
    found = await query.order_by("handed_off_at", "id").limit(limit + 1)
    page = found[:limit]
    return HandoffPage(page, page[-1].id if len(found) > limit else None)


async def answered_handoffs(staff: Staff | None, limit: int = 10) -> list[Question]:
    """The hand-offs answered last (what a CAM may add to the knowledge base), newest first."""
    return await _handoffs(staff, "answered").order_by("-replied_at").limit(limit)


async def _handed_off_at(question_id: int) -> datetime | None:
    found = await Question.filter(id=question_id).values_list("handed_off_at", flat=True)
    return found[0] if found else None


def _handoffs(staff: Staff | None, status: str):  # noqa: ANN202 - a QuerySet
    if not may_act_as_cam(staff):
        raise PermissionDenied("Only CAMs and admins have hand-offs.")
    assert staff is not None
    query = Question.filter(handoff_status=status)
    if status == "open":  # a member removed from the directory has nobody to answer
        query = query.filter(member__active=True)
    if staff.role == StaffRole.CAM.value:
        query = query.filter(cam_id=staff.id)
    return query.select_related("member__organisation")


async def unanswered_questions(limit: int = 200) -> list[Question]:
    """Questions the knowledge base could not answer or answered unhelpfully, newest first."""
    from tortoise.expressions import Q

    return await Question.filter(Q(abstained=True) | Q(feedback="not_helpful")).select_related(
        "member__organisation").order_by("-asked_at").limit(limit)
