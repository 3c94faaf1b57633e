"""Answers in the member's language (issue 16 item 5): an entry's optional ``translations:`` are shown
to members whose directory ``locale`` matches; others get the English answer, told it is English."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.onboarding.qa import ANY, KnowledgeBase, KnowledgeBaseError, default_directory
from storage.models import Question
from tests.fakes.slack_signing import event_body
from tests.support import TEAM, directory_csv, seed_directory, start_harness, stop_harness, wait_until

ENTRY = """\
vendor: Acme
entries:
  - id: warranty
    title: How long is the warranty?
    answer: Three years.
    translations:
      de: {title: "Wie lange gilt die Garantie?", answer: Drei Jahre.}
      pt-br: {answer: Três anos.}
"""


def _load(tmp_path: Path, text: str) -> KnowledgeBase:
    (tmp_path / "kb.yaml").write_text(text, encoding="utf-8")
    return KnowledgeBase.load(tmp_path, semantic=False)


def test_translations_are_chosen_by_locale_with_the_language_as_fallback(tmp_path: Path) -> None:
    """A BCP 47 lookup, case-insensitive and "_" as "-": the tag, then shorter ones, then another
    region of the same language. "pt" (what `language_of` tells a Portuguese question by) and
    "pt-PT" get the "pt-br" text; they used to get English."""
    entry = _load(tmp_path, ENTRY).entries["warranty"]
    assert entry.translated("de") == ("Wie lange gilt die Garantie?", "Drei Jahre.")
    assert entry.translated("de-AT") == entry.translated("DE_at") == entry.translated("de-Latn-AT") == \
        entry.translated("de")
    assert entry.translated("pt-BR") == ("How long is the warranty?", "Três anos.")  # no title: the English one
    assert entry.translated("pt") == entry.translated("pt_PT") == entry.translated("PT-br")
    assert entry.translated("fr") is None and entry.translated("fr-CA") is None and entry.translated("") is None


@pytest.mark.parametrize(("translations", "message"), [
    ("translations: [de]", "must map a locale"),
    ("translations: {deutsch!: {answer: x}}", "is not a locale"),
    ("translations: {de: {title: x}}", "'answer' is required"),
    ("translations: {de: {answer: x, link: y}}", "must have an 'answer'"),
])
def test_malformed_translations_are_refused_with_the_entry_named(tmp_path: Path, translations: str, message: str) -> None:
    text = ENTRY.split("    translations:")[0] + "    " + translations + "\n"
    with pytest.raises(KnowledgeBaseError, match=message) as raised:
        _load(tmp_path, text)
    assert "(warranty)" in str(raised.value)


def test_the_sample_knowledge_base_has_translations_and_they_do_not_change_retrieval() -> None:
    kb = KnowledgeBase.load(default_directory(), semantic=False)
    assert kb.entries["warranty-terms"].translated("de")[0] == "Was deckt die Hardware-Garantie ab?"
    assert kb.answer("is water damage covered", role=ANY, tier=ANY).entry.id == "warranty-terms"


async def test_each_member_gets_the_answer_in_their_language_or_is_told_it_is_english(db: str) -> None:
    slack = await start_harness(db, extra_settings={"kb_semantic": False})
    try:
        await _seed(slack)
        await _ask_all(slack)
    finally:
        await stop_harness(slack)


async def _seed(slack) -> None:  # noqa: ANN001
    await seed_directory(slack.clock, csv_text=directory_csv([
        f"acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example,anna@acme.example,Anna Berg,sales,Europe/Berlin,de-DE,{TEAM},UANNA,,",
        f"acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example,eva@acme.example,Eva Ruiz,sales,Europe/Madrid,es,{TEAM},UEVA,,",
        f"acme,Acme Locks,gold,emea,de,security,large,distributor,cam@vendor.example,ian@acme.example,Ian Lee,sales,Europe/London,en-GB,{TEAM},UIAN,,",
    ]))
    slack.fake.add_user(TEAM, "UEVA")
    slack.fake.add_user(TEAM, "UIAN")


async def _ask_all(slack) -> None:  # noqa: ANN001
    answers = {}
    for user in ("UANNA", "UEVA", "UIAN"):
        before = slack.fake.call_count("chat.postMessage")
        event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user,
                 "text": "is water damage covered", "ts": "1700000000.000500"}
        assert (await slack.post_signed(event_body(event, TEAM))).status == 200
        await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
        answers[user] = str(slack.fake.calls_to("chat.postMessage")[-1].args["blocks"])
    assert "Was deckt die Hardware-Garantie ab?" in answers["UANNA"] and "Garantie" in answers["UANNA"]
    assert "only available in English" not in answers["UANNA"]
    assert "What does the hardware warranty cover?" in answers["UEVA"]
    assert "(Esta respuesta solo está disponible en inglés.)" in answers["UEVA"]  # said in her language
    assert "What does the hardware warranty cover?" in answers["UIAN"] and "only available in English" not in answers["UIAN"]
    assert {q.entry_id for q in await Question.all()} == {"warranty-terms"}


@pytest.mark.usefixtures("warm_knowledge_base")
async def test_a_question_in_another_language_is_answered_in_it_where_the_entry_has_it(db: str) -> None:
    """Ian's directory locale is en-GB; asked in German, the answer is the entry's German text; asked
    in Spanish, for which the entry has none, it is the English text, saying so."""
    slack = await start_harness(db)
    try:
        await _seed(slack)
        answers = []
        for text in ("Was deckt die Garantie für die Hardware ab?", "¿Qué cubre la garantía del hardware?"):
            before = slack.fake.call_count("chat.postMessage")
            event = {"type": "message", "channel_type": "im", "channel": "DUIAN", "user": "UIAN", "text": text,
                     "ts": f"1700000000.00060{len(answers)}"}
            assert (await slack.post_signed(event_body(event, TEAM))).status == 200
            await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
            answers.append(str(slack.fake.calls_to("chat.postMessage")[-1].args["blocks"]))
        german, spanish = answers
        assert "Was deckt die Hardware-Garantie ab?" in german and "only available in English" not in german
        assert "What does the hardware warranty cover?" in spanish
        assert "(Esta respuesta solo está disponible en inglés.)" in spanish  # in the language asked in
    finally:
        await stop_harness(slack)


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


async def test_a_question_in_portuguese_from_a_pt_br_member_gets_the_pt_br_translation(
        db: str, tmp_path: Path) -> None:
    """Lia's directory locale is pt-BR and the entry has a `pt-br` translation. Asked in English she
    gets Portuguese; asked in Portuguese (which `language_of` reads as "pt") she used to get the
    English text with "(This answer is only available in English.)": the question's bare language
    replaced her locale, and "pt" did not fall back to "pt-br". Her own form of the language is
    kept (`answer_locale`, which Did you mean uses too)."""
    from bot.core.onboarding.assistant import answer_locale

    assert answer_locale("pt", "pt-BR") == "pt-BR" and answer_locale("de", "pt-BR") == "de"
    assert answer_locale("", "pt-BR") == "pt-BR" and answer_locale("pt", "") == "pt"
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (kb_dir / "kb.yaml").write_text(PRICE_KB, encoding="utf-8")
    slack = await start_harness(db, extra_settings={"kb_dir": kb_dir, "kb_semantic": False})
    try:
        await seed_directory(slack.clock, csv_text=directory_csv([
            f"lusa,Lusa Seguranca,gold,amer,br,security,large,distributor,cam@vendor.example,lia@lusa.example,"
            f"Lia Souza,sales,America/Sao_Paulo,pt-BR,{TEAM},ULIA,,"]))
        slack.fake.add_user(TEAM, "ULIA")
        answers = []
        for n, text in enumerate(("where do I find the current price list", "Onde encontro a lista de preços?")):
            before = slack.fake.call_count("chat.postMessage")
            event = {"type": "message", "channel_type": "im", "channel": "DULIA", "user": "ULIA", "text": text,
                     "ts": f"1700000000.00070{n}"}
            assert (await slack.post_signed(event_body(event, TEAM))).status == 200
            await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
            answers.append(str(slack.fake.calls_to("chat.postMessage")[-1].args["blocks"]))
        assert {q.entry_id for q in await Question.all()} == {"price-list"}  # the right entry both times
        for blocks in answers:
            assert "No portal de parceiros" in blocks and "only available in English" not in blocks, blocks
    finally:
        await stop_harness(slack)


def test_the_language_of_a_question_is_told_by_its_function_words() -> None:
    from bot.core.onboarding.qa import language_of

    assert language_of("Was deckt die Garantie für die Hardware ab?") == "de"
    assert language_of("Que couvre la garantie du matériel ?") == "fr"
    assert language_of("¿Qué cubre la garantía del hardware?") == "es"
    assert language_of("Hoe kan ik een deal registreren?") == "nl"
    assert language_of("what does the hardware warranty cover") == ""


def _labels(blocks: list[dict]) -> list[str]:
    return [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def _slack_dm(slack, user: str, text: str) -> dict:  # noqa: ANN001
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text,
             "ts": f"1700000000.0008{before:02d}"}
    assert (await slack.post_signed(event_body(event, TEAM))).status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def _slack_click(slack, action: str, value: str, user: str) -> str:  # noqa: ANN001
    await slack.click(action, value, user=user)
    (response,) = await slack.responses(slack.last_click_key)
    return response.args["text"]


async def test_the_assistants_own_words_are_in_the_answers_language_in_slack(db: str) -> None:
    """Issue 16 item 5 gave German members the entry's German text, but the assistant's own words
    around it stayed English: the buttons, "(This answer is only available in English.)", the
    reply to Not helpful, the hand-off's confirmation, "I don't know that one yet". They are in the
    answer's language now (de, fr, es; English otherwise), from one table (``phrases``)."""
    from bot.core.onboarding.assistant import ASK_CAM_ACTION, NOT_HELPFUL_ACTION

    slack = await start_harness(db, extra_settings={"kb_semantic": False})
    try:
        await _seed(slack)
        await slack.herald.knowledge_base()
        for user, email, words in (("UANNA", "anna@acme.example", ("Hilfreich", "Nicht hilfreich", "Meinen CAM fragen")),
                                   ("UIAN", "ian@acme.example", ("Helpful", "Not helpful", "Ask my CAM"))):
            answer = await _slack_dm(slack, user, "is water damage covered")
            assert _labels(answer["blocks"]) == list(words), answer["blocks"]
            qid = str((await Question.filter(member__email=email).order_by("-id").first()).id)
            told = await _slack_click(slack, NOT_HELPFUL_ACTION, qid, user)
            assert told == ("Danke für den Hinweis. Drücken Sie *Meinen CAM fragen*, wenn Ihnen eine Person "
                            "antworten soll." if user == "UANNA" else
                            "Thanks for telling me. Press *Ask my CAM* if you'd like a person to answer.")
            told = await _slack_click(slack, ASK_CAM_ACTION, qid, user)
            assert told == ("Ich habe Ihre Frage an Casey CAM weitergeleitet; die Antwort erscheint hier."
                            if user == "UANNA" else "I've passed your question to Casey CAM; their answer will "
                                                    "appear here.")

        unknown = await _slack_dm(slack, "UANNA", "is there parking for visitors at your headquarters")
        assert "Das weiß ich noch nicht" in str(unknown["blocks"]) and "I don't know" not in str(unknown["blocks"])
        assert _labels(unknown["blocks"]) == ["Meinen CAM fragen"]
        spanish = str((await _slack_dm(slack, "UEVA", "is water damage covered"))["blocks"])
        assert "What does the hardware warranty cover?" in spanish  # the sample has no Spanish text
        assert "(Esta respuesta solo está disponible en inglés.)" in spanish and "Útil" in spanish
    finally:
        await stop_harness(slack)


async def test_the_assistants_own_words_are_in_the_answers_language_in_teams(db: str) -> None:
    """The same in Teams: a German member's card has German buttons and the replies to them are
    German; an English member's stay English."""
    from bot.core.directory.importer import import_directory
    from bot.core.onboarding.assistant import ASK_CAM_ACTION, HELPFUL_ACTION
    from tests.teams_support import TENANT, actions_of, card_of, start_teams_rig, stop_teams_rig, texts_of

    teams = await start_teams_rig(db, kb_semantic=False)
    try:
        result = await import_directory(directory_csv([
            f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,hans@teamsco.example,"
            f"Hans Weber,sales,Europe/Berlin,de,,,{TENANT},aad-hans",
            f"teamsco,Teams Co,gold,emea,fr,retail,large,distributor,cam@vendor.example,joe@teamsco.example,"
            f"Joe Hill,sales,Europe/London,en,,,{TENANT},aad-joe"]), now=teams.clock.now(), actor="test")
        assert not result.rejected, result.rejected
        await teams.post(teams.activity("installationUpdate", "aad-cam", action="add"))  # hand-offs reach the CAM
        for aad, words in (("aad-hans", ["Hilfreich", "Nicht hilfreich", "Meinen CAM fragen"]),
                           ("aad-joe", ["Helpful", "Not helpful", "Ask my CAM"])):
            teams.connector.open_conversation(aad, TENANT)
            answer = card_of(await teams.say(aad, "is water damage covered"))
            assert [a["title"] for a in actions_of(answer)] == words, actions_of(answer)
            shown = " ".join(texts_of(answer))
            assert ("Mehr: https://" in shown) == (aad == "aad-hans") and ("More: https://" in shown) == (aad == "aad-joe")
            qid = str(actions_of(answer)[0]["data"]["value"])
            thanks = await teams.invoke(aad, HELPFUL_ACTION, {"value": qid})
            assert thanks["value"] == ("Danke, schön, dass es geholfen hat." if aad == "aad-hans"
                                       else "Thanks, glad it helped.")
            told = await teams.invoke(aad, ASK_CAM_ACTION, {"value": qid})
            assert ("an Casey CAM weitergeleitet" in told["value"]) == (aad == "aad-hans")
            assert ("passed your question to Casey CAM" in told["value"]) == (aad == "aad-joe")
        unknown = card_of(await teams.say("aad-hans", "is there parking for visitors at your headquarters"))
        assert "Das weiß ich noch nicht" in " ".join(texts_of(unknown))
        assert [a["title"] for a in actions_of(unknown)] == ["Meinen CAM fragen"]
    finally:
        await stop_teams_rig(teams)
