"""The onboarding assistant's question answering: behaviour, not scores (bench/qa.py measures those).

Questions here are written for these tests; none comes from the dev set.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from bot.core.onboarding import qa
from bot.core.onboarding.qa import ANY, Answer, KBEntry, KnowledgeBase, KnowledgeBaseError


@pytest.fixture(scope="module")
def kb(warm_knowledge_base: KnowledgeBase) -> KnowledgeBase:
    return warm_knowledge_base


def ask(kb: KnowledgeBase, question: str, **member: str | None) -> Answer:
    return kb.answer(question, role=member.get("role", ANY), tier=member.get("tier", ANY))


def test_default_knowledge_base_ships_with_the_package(kb: KnowledgeBase) -> None:
    assert kb.vendor == "Northwind Security"
    assert len(kb.entries) >= 40
    entry = kb.entries["deal-registration-how"]
    assert isinstance(entry, KBEntry)
    assert entry.title == "How do I register a deal?" and entry.link.startswith("https://")
    assert entry.roles == frozenset({"sales"}) and entry.tiers == frozenset()
    assert kb.entries["mdf-request"].tiers == frozenset({"gold", "platinum"})
    assert 0 < kb.threshold < 1


@pytest.mark.parametrize(("question", "expected"), [
    ("can we go back to the previous firmware version if the update misbehaves", "firmware-rollback"),
    ("who do I talk to when my ticket has been sitting there for a week", "escalation-contacts"),
    ("how much does a classroom course cost per person", "training-cost"),
    ("my shipment still hasn't arrived, how can I track it", "order-status"),
])
def test_paraphrase_finds_the_entry(kb: KnowledgeBase, question: str, expected: str) -> None:
    answer = ask(kb, question)
    assert not answer.abstained and answer.entry is not None
    assert answer.entry.id == expected, answer.candidates
    assert answer.score >= kb.threshold
    assert answer.candidates[0][0] == expected
    # the confidence is the best fused score plus its lead over the runner-up
    (_, best), (_, second) = answer.candidates[:2]
    assert answer.score == pytest.approx(best + qa._MARGIN_WEIGHT * (best - max(second, 0.0)), abs=1e-3)


@pytest.mark.parametrize(("question", "expected"), [
    ("how do i regsiter a deal", "deal-registration-how"),
    ("forgot my pasword for the partner portal", "portal-password-reset"),
    ("wich batteries does the smart lock use", "battery-guidance"),
    ("who is our chanel acount manager", "cam-contact"),
])
def test_typos_are_tolerated(kb: KnowledgeBase, question: str, expected: str) -> None:
    answer = ask(kb, question)
    assert answer.entry is not None and answer.entry.id == expected, answer.candidates


def test_typo_correction_uses_the_knowledge_base_vocabulary(kb: KnowledgeBase) -> None:
    assert "controller" in kb.query_words("the contrller is dead")
    assert "certification" in kb.query_words("certifcation exam")
    # real words are left alone, even inflected ones the knowledge base does not use
    assert kb.query_words("we keep getting pinged") == ["we", "keep", "getting", "pinged"]
    assert kb.query_words("will it rain") == ["will", "it", "rain"]


def test_case_and_punctuation_do_not_matter(kb: KnowledgeBase) -> None:
    variants = ["Where is the current price list?", "where is the current price list",
                "WHERE IS THE CURRENT PRICE LIST!!!", "where's the current price-list"]
    answers = [ask(kb, v) for v in variants]
    assert {a.entry.id for a in answers if a.entry} == {"price-list"}
    assert all(not a.abstained for a in answers)
    assert ask(kb, "whats the warranty on a lock").entry.id == "warranty-terms"  # apostrophe-less


@pytest.mark.parametrize("question", [
    "will it rain in berlin tomorrow",
    "what's a good recipe for lasagne",
    "can you write me a python script that renames files",
    "what is the weight limit for a cargo bike",
    "who won the champions league final",
])
def test_out_of_scope_questions_abstain(kb: KnowledgeBase, question: str) -> None:
    answer = ask(kb, question)
    assert answer.abstained and answer.entry is None, answer.candidates
    assert answer.score < kb.threshold
    assert answer.candidates  # still logged: what it would have said


def test_empty_or_stopword_only_question_abstains(kb: KnowledgeBase) -> None:
    for question in ("", "   ", "?!", "how do i"):
        answer = ask(kb, question)
        assert answer.abstained and answer.entry is None and answer.candidates == []


def test_tier_restricted_entry_is_not_offered_to_another_tier(kb: KnowledgeBase) -> None:
    question = "how do I request market development funds for a campaign"
    gold = ask(kb, question, role="marketing", tier="gold")
    assert gold.entry is not None and gold.entry.id == "mdf-request"

    silver = ask(kb, question, role="marketing", tier="silver")
    assert silver.entry is None or silver.entry.id != "mdf-request"
    assert "mdf-request" not in [c for c, _ in silver.candidates]  # filtered before ranking
    if silver.entry is not None:  # the next best entry this member may see
        assert silver.entry.offered_to("marketing", "silver")
        assert silver.entry.id == "mdf-eligibility"

    no_tier = ask(kb, question, role="marketing", tier=None)  # unknown tier: unrestricted entries only
    assert all(not kb.entries[c].tiers for c, _ in no_tier.candidates)


def test_role_restricted_entry_is_not_offered_to_another_role(kb: KnowledgeBase) -> None:
    question = "how do I register a deal"
    assert ask(kb, question, role="sales", tier="silver").entry.id == "deal-registration-how"
    support = ask(kb, question, role="support", tier="silver")
    assert "deal-registration-how" not in [c for c, _ in support.candidates]
    assert support.entry is None or support.entry.offered_to("support", "silver")
    assert all(kb.entries[c].offered_to("support", "silver") for c, _ in support.candidates)
    # role names are case-insensitive
    assert ask(kb, question, role="Sales", tier="Gold").entry.id == "deal-registration-how"


def test_member_with_nothing_to_see_gets_an_abstention(tmp_path: Path) -> None:
    (tmp_path / "kb.yaml").write_text(dedent("""\
        vendor: Acme
        entries:
          - id: secret
            title: What is the platinum secret?
            roles: [executive]
            tiers: [platinum]
            answer: Only platinum executives may know.
    """))
    kb = KnowledgeBase.load(tmp_path)
    assert kb.answer("what is the platinum secret", role="sales", tier="gold").abstained
    assert kb.answer("what is the platinum secret", role="executive", tier="platinum").entry.id == "secret"


# ---- loading and validation --------------------------------------------------------------------

GOOD_ENTRY = """\
  - id: {id}
    title: How do I reset my password?
    topic: operations
    roles: []
    tiers: []
    answer: Use the forgot password link on the sign-in page.
    link: https://example.test/help
    alt_questions: [forgot password]
"""


def write(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(body, encoding="utf-8")


@pytest.mark.parametrize(("body", "message"), [
    ("vendor: Acme\nentries:\n  - id: no-title\n    answer: Something.\n", r"kb\.yaml: entry 1 \(no-title\): 'title' is required"),
    ("vendor: Acme\nentries:\n  - id: blank\n    title: A question?\n    answer: '  '\n", r"kb\.yaml: entry 1 \(blank\): 'answer' is required"),
    ("vendor: Acme\nentries:\n  - title: No id?\n    answer: None.\n", r"kb\.yaml: entry 1: 'id' is required"),
    ("vendor: Acme\nentries:\n  - id: typo\n    title: T?\n    answer: A.\n    alt_question: [x]\n", r"kb\.yaml: entry 1 \(typo\): unknown field\(s\) alt_question"),
    ("vendor: Acme\nentries:\n  - id: roles\n    title: T?\n    answer: A.\n    roles: 5\n", r"\(roles\): 'roles' must be a list"),
    ("vendor: Acme\nentries: [\n", r"kb\.yaml: cannot be read as YAML"),
    ("just a string\n", r"kb\.yaml: expected a mapping with 'vendor' and a list of 'entries'"),
])
def test_malformed_file_gives_a_clear_error(tmp_path: Path, body: str, message: str) -> None:
    write(tmp_path, "kb.yaml", body)
    with pytest.raises(KnowledgeBaseError, match=message):
        KnowledgeBase.load(tmp_path)


def test_duplicate_ids_across_files_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "vendor: Acme\nentries:\n" + GOOD_ENTRY.format(id="reset"))
    write(tmp_path, "b.yaml", "vendor: Acme\nentries:\n" + GOOD_ENTRY.format(id="other") + GOOD_ENTRY.format(id="reset"))
    with pytest.raises(KnowledgeBaseError, match=r"b\.yaml: entry 2 \(reset\): duplicate id, already used in a\.yaml"):
        KnowledgeBase.load(tmp_path)


def test_empty_or_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="no knowledge base files"):
        KnowledgeBase.load(tmp_path)
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeBase.load(tmp_path / "missing")


def test_entries_from_several_files_are_merged(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "vendor: Acme\nentries:\n" + GOOD_ENTRY.format(id="reset"))
    write(tmp_path, "b.yaml", dedent("""\
        entries:
          - id: invoices
            title: Where are my invoices?
            answer: Invoices are under Billing > Invoices in the portal.
    """))
    kb = KnowledgeBase.load(tmp_path)
    assert kb.vendor == "Acme" and list(kb.entries) == ["reset", "invoices"]
    assert kb.entries["invoices"].alt_questions == () and kb.entries["invoices"].roles == frozenset()


# ---- a different knowledge base, written here: the same code must work on it ----------------------

SOLAR_KB = """\
vendor: Brightwave Solar
entries:
  - id: inverter-warranty
    title: How long is the inverter warranty?
    topic: support
    roles: []
    tiers: []
    answer: |
      Brightwave string inverters carry a 10-year warranty from the installation date, extendable to
      20 years when the system is registered online within 60 days. Damage from lightning or flooding
      is not covered.
    link: https://brightwave.example/warranty
    alt_questions:
      - inverter guarantee period
      - extend the inverter warranty
  - id: panel-cleaning
    title: How often should panels be cleaned?
    topic: support
    roles: []
    tiers: []
    answer: |
      Rain keeps most roof arrays clean. In dusty areas or under trees, rinse the modules with
      de-ionised water twice a year; never use a pressure washer or abrasive brushes.
    link: https://brightwave.example/maintenance
    alt_questions:
      - washing solar modules
      - dirty panels losing output
  - id: commission-payments
    title: When are installer commissions paid?
    topic: incentives
    roles: [sales]
    tiers: []
    answer: |
      Commissions are calculated at the end of each month for systems commissioned in that month and
      paid by bank transfer on the 15th of the following month.
    link: https://brightwave.example/commissions
    alt_questions:
      - payout date for commission
  - id: grid-permit
    title: How do I apply for a grid connection permit?
    topic: operations
    roles: []
    tiers: []
    answer: |
      Submit the single-line diagram, inverter certificate and site plan to the local network operator.
      Brightwave's permit desk can prepare the paperwork for systems above 30 kW.
    link: https://brightwave.example/permits
    alt_questions:
      - utility interconnection application
  - id: premier-webinars
    title: Where are the premier training webinars?
    topic: training
    roles: []
    tiers: [premier]
    answer: |
      Premier partners get monthly live design webinars with recordings in the Academy.
    link: https://brightwave.example/academy
    alt_questions:
      - advanced design training sessions
  - id: battery-sizing
    title: How do I size a home battery?
    topic: product
    roles: []
    tiers: []
    answer: |
      Use the evening and night consumption from the customer's meter data: a household using 8 kWh
      after sunset needs about a 10 kWh battery to allow for depth of discharge and losses.
    link: https://brightwave.example/storage
    alt_questions:
      - what battery capacity does a customer need
"""


@pytest.fixture(scope="module")
def solar(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    directory = tmp_path_factory.mktemp("solar-kb")
    write(directory, "solar.yaml", SOLAR_KB)
    return KnowledgeBase.load(directory)


@pytest.mark.parametrize(("question", "expected"), [
    ("what's the guarantee on the inverters and can it be made longer", "inverter-warranty"),
    ("how oftn do the pannels need washing", "panel-cleaning"),
    ("the customer wants storage, how big a battery should we quote", "battery-sizing"),
    ("what paperwork does the network operator need before we connect a system", "grid-permit"),
    ("WHEN DO I GET MY COMMISSION", "commission-payments"),
])
def test_a_different_knowledge_base_works_too(solar: KnowledgeBase, question: str, expected: str) -> None:
    answer = solar.answer(question, role="sales", tier="premier")
    assert answer.entry is not None and answer.entry.id == expected, answer.candidates


@pytest.mark.parametrize("question", [
    "what's a good recipe for banana bread",
    "how do I reset my car's tyre pressure sensor",
    "which football team won yesterday",
])
def test_a_different_knowledge_base_abstains_out_of_scope(solar: KnowledgeBase, question: str) -> None:
    answer = solar.answer(question, role="sales", tier="premier")
    assert answer.abstained and answer.entry is None, answer.candidates


def test_a_different_knowledge_base_filters_by_tier(solar: KnowledgeBase) -> None:
    question = "where can I watch the premier design webinars"
    assert solar.answer(question, role="sales", tier="premier").entry.id == "premier-webinars"
    other = solar.answer(question, role="sales", tier="standard")
    assert other.entry is None or other.entry.id != "premier-webinars"


def test_keyword_search_alone_still_answers(tmp_path: Path) -> None:
    """Without the embedding model (packages missing) the assistant falls back to BM25 alone."""
    write(tmp_path, "solar.yaml", SOLAR_KB)
    kb = KnowledgeBase.load(tmp_path, semantic=False)
    assert not kb.semantic
    assert kb.answer("how long is the inverter warranty", role=ANY, tier=ANY).entry.id == "inverter-warranty"
    assert kb.answer("how oftn should panels be cleand", role=ANY, tier=ANY).entry.id == "panel-cleaning"
    assert kb.answer("what's a good recipe for banana bread", role=ANY, tier=ANY).abstained


async def test_the_embedding_model_can_be_switched_off_by_configuration(tmp_path: Path) -> None:
    from bot.service import Herald
    from config.settings import load_settings

    write(tmp_path, "solar.yaml", SOLAR_KB)
    herald = Herald(load_settings(database_url="sqlite://:memory:", kb_dir=tmp_path, kb_semantic=False))
    try:
        kb = await herald.knowledge_base()
        assert not kb.semantic and await herald.knowledge_base() is kb
        assert kb.answer("how long is the inverter warranty", role=ANY, tier=ANY).entry.id == "inverter-warranty"
    finally:
        await herald.close()


def test_a_knowledge_base_rebuilt_from_its_vector_store_is_the_same(tmp_path: Path) -> None:
    write(tmp_path, "solar.yaml", SOLAR_KB)
    store = tmp_path / "vectors"
    first = KnowledgeBase.load(tmp_path, vector_store=store)
    assert len(list(store.glob("*.npy"))) == 2  # the entries' texts, and the calibration questions
    again = KnowledgeBase.load(tmp_path, vector_store=store)
    assert again.threshold == first.threshold
    question = "how oftn do the pannels need washing"
    assert again.answer(question, role=ANY, tier=ANY) == first.answer(question, role=ANY, tier=ANY)
