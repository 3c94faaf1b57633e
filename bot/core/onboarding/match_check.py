"""The assistant's second stage (issue 16): does the best entry cover what the question is about?

Retrieval scores (BM25 and embeddings) reward shared words and shared topics, so "how do I reset the
PIN of my bank card" lands on the portal-password entry with a good score: same verb, other object.
This stage looks at the (question, entry) pair once more and counts the question's content words by
what the knowledge base knows of them:

* **covered**: the word's stem is in the entry (its title, alternative questions, answer or
  translations; the alternative questions are the knowledge base's own synonyms for the entry);
* **in the vendor's world**: the stem is elsewhere in the knowledge base (a neighbouring entry may be
  meant; retrieval already weighs that, so these are not held against the entry);
* **alien**: a real English word the knowledge base never uses ("bank", "weather", "euro"): the
  question is about something the vendor's world does not have;
* **light**: an English word that never names what a question is about, whichever domain it is
  asked in (``LIGHT_WORDS``): times and dates ("moment", "night", "june"), indefinites ("someone",
  "stuff"), light verbs ("want", "get", "keep") and degree words ("instead", "quick"). "is there any
  bonus for reps at the moment" asks about bonuses, not moments. A light word the knowledge base
  does not use counts as a function word (evidence that the question is English), never as alien;
* **a verb**: an English word the knowledge base does not use, used as a verb in the question
  ("we keep getting *pinged*", "can my techs *push* the new software", "we don't *care* about"). A
  question's object is what it is about; its verbs are more often a new way of saying what the
  knowledge base's own verbs say (notify, install) than a new subject, and the near-domain
  questions this stage is for keep the verb and change the object ("reset the PIN of my bank
  card"). So such a verb counts like a light word. A word is used as a verb when LemmInflect's lexicon
  (``used_as_verbs``) has it only as a verb ("pinged", "arrived"), or as a verb and a noun or adjective
  with a verb's neighbours: after a pronoun, a modal, an auxiliary, "not" or "to", or before a
  determiner ("push *the*"); never right after a determiner ("the *parking* situation");
* **unjudged**: neither English nor in the knowledge base (another language, a product code, a
  name). When these are a large share of the question's words, its English function words
  included (``_MAX_UNJUDGED``), it is probably not in English and the check says nothing: the
  embedding model, which reads other languages, decides. ("how do I reset the admin pin on a
  honeywell keypad" has three names among five content words, but six English function words.)

The alien share (of the judged words) is subtracted, times a weight, from the retrieval confidence
before it is compared with the abstention threshold. The weight is calibrated per knowledge base
when it loads (``choose_weight``), on data made from the knowledge base itself: each title and
alternative question asked as a new question would be, with all of its entry's phrasings left out
of the indexes and of this check so that only the answer speaks for the entry (positives: at most
1 in 20 of those retrieval answers may be lost to the check), and the same phrasings with their
most specific word swapped for a common English word the knowledge base never uses (hard
negatives, e.g. "reset my portal password" -> "reset my harbour password"). A lexical check cannot
tell a new object ("bank card") from a new way of saying the same thing ("pinged" for
notifications): the calibration is what keeps the second kind's losses bounded.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from lemminflect import getAllLemmas

#: above this share of unjudged words the question is probably not English: no verdict
_MAX_UNJUDGED = 1 / 3
#: closed classes of English words that qualify a question (when, who, how much) but never name its
#: object, in any domain; see the module docstring. Chosen by class, not from any question set.
LIGHT_WORDS = frozenset("""
    today tomorrow yesterday tonight morning mornings afternoon afternoons evening evenings night nights
    week weeks weekend weekends month months year years moment moments now later soon time times day
    days hour hours minute minutes second seconds daily weekly monthly yearly annually quarterly
    currently recently lately ago
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december
    someone somebody something somewhere anyone anybody anything anywhere everyone everybody everything
    everywhere nothing nobody nowhere stuff thing things people person guy guys folks lot lots bit
    kind sort way ways
    want wants wanted wanting need needs needed like would get gets got getting give gives gave take
    takes took make makes made go goes going went come comes came put puts keep keeps kept let lets
    try tries tried
    instead actually really still already just quite pretty maybe perhaps please also even much many
    more most quick quickly fast again ever anyway basically
""".split())
#: function words of the other languages partners write in (German, French, Spanish, Italian,
#: Portuguese, Dutch; accents dropped as ``qa.words`` drops them): articles, pronouns, prepositions,
#: conjunctions, auxiliaries and question words. Those that are English function words or common
#: English words too ("was", "come", "so", "man", "also", "ce") are left out; rarer clashes ("die",
#: "fur", "de", "un", "en") stay, since one of them never outweighs an English question's own
#: function words (``foreign``). A question with at least as many of these as English function
#: words is not judged: many of its words look English to a word list ("demander", "fonds",
#: "pagan") without being English. Chosen by word class, not from any question set.
FUNCTION_WORDS_BY_LANGUAGE = {language: frozenset(words.split()) for language, words in {
    "de": """der die des dem ein eine einen einem einer eines und oder ist sind wird werden wurde kann
             konnen muss mussen soll ich wir ihr mein meine meinen unser unsere unseren uns sich mich mir
             nicht kein keine keinen mit fur von vom zu zum zur bei beim uber wie wo wann warum welche
             welcher welches wer wieviel wieviele gibt haben habe noch auch bitte dass wenn ob""",
    "fr": """de un en le la les une des du au aux et est sont suis avons avez peut peuvent puis doit faut
             je nous vous il elle ils elles mon mes notre nos votre vos leur leurs cette ces qui que quel
             quelle quels quelles pourquoi quand combien avec pour dans sur chez sans ne pas tres""",
    "es": """de un en el la los las le les una unos unas que pero es soy somos esta estan este hay puedo
             puede pueden podemos debo debe tengo tiene tenemos yo ella nosotros usted ustedes mis nuestro
             nuestra nuestros nuestras sus cual cuales quien quienes como cuando donde cuanto cuantos por
             para con del al mi su lo se muy""",
    "it": """un il la le gli della delle degli dello del nel nella quale quali perche sono siamo posso puo
             possiamo mio""",
    "pt": """de que como para uma umas uns sao sou estao voce meu minha meus nosso nossa sem pelo pela
             onde qual quais porque""",
    "nl": """de en het een maar zijn wij jij hij zij mijn onze niet geen voor naar hoe wanneer waar waarom
             welke wat kunnen moet moeten""",
}.items()}
FOREIGN_FUNCTION_WORDS = frozenset().union(*FUNCTION_WORDS_BY_LANGUAGE.values())
#: a word right after one of these is used as a verb (if it can be one): subject pronouns, modals,
#: auxiliaries, "not" (contractions are spelled out first) and "to"
_BEFORE_A_VERB = frozenset("""i we you they he she it can could will would should shall must might do does
                              did not to""".split())
#: a word right after one of these is a noun (determiners and possessives); a verb can come before them
_BEFORE_A_NOUN = frozenset("the a an my our your their his her its this that these those".split())


def question_language(words: Sequence[str]) -> str | None:
    """The language whose function words the question uses most ("de", "fr", ...), or None when
    it uses none or two languages tie ("la" and "que" are French and Spanish alike)."""
    counts = Counter({language: sum(w in function for w in words)
                      for language, function in FUNCTION_WORDS_BY_LANGUAGE.items()})
    (first, most), *rest = counts.most_common()
    if not most or (rest and rest[0][1] == most):
        return None
    return first


def used_as_verbs(words: Sequence[str]) -> frozenset[str]:
    """The question's words that are used as verbs (see the module docstring). ``words`` in the
    question's order, function words included: the neighbours decide."""
    found = set()
    for i, word in enumerate(words):
        before = words[i - 1] if i else ""
        if before in _BEFORE_A_NOUN:
            continue
        readings = _readings(word)
        if "VERB" not in readings:
            continue
        only_a_verb = not readings & {"NOUN", "ADJ", "PROPN"}
        after = words[i + 1] if i + 1 < len(words) else ""
        if only_a_verb or before in _BEFORE_A_VERB or after in _BEFORE_A_NOUN:
            found.add(word)
    return frozenset(found)


def can_be_a_noun(word: str) -> bool:
    """Whether LemmInflect's lexicon has the word as a noun (hard negatives swap in objects)."""
    return "NOUN" in _readings(word)


@functools.lru_cache(maxsize=1 << 16)
def _readings(word: str) -> frozenset[str]:
    """The parts of speech LemmInflect's lexicon has for the word ("VERB", "NOUN", ...)."""
    return frozenset(getAllLemmas(word))


def foreign(words: Sequence[str], english_function_words: int) -> bool:
    """Whether a question is in another language: it has at least one of the other languages'
    function words and no more English ones."""
    count = sum(w in FOREIGN_FUNCTION_WORDS for w in words)
    return count > 0 and count >= english_function_words


#: the weights tried, smallest first
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
#: at most this share of the held-out positives may be lost to the check (as with the null questions,
#: about 1 in 20)
MAX_POSITIVE_LOSS = 0.05


#: what the check makes of a question's word (``KeyTermCheck.judge``)
COVERED, KNOWN, LIGHT, VERB, ALIEN, UNJUDGED = "covered", "known", "light", "verb", "alien", "unjudged"


@dataclass(frozen=True)
class Verdict:
    alien: int
    judged: int

    @property
    def share(self) -> float:
        return self.alien / self.judged if self.judged else 0.0


class KeyTermCheck:
    """Counts of the knowledge base's stems, per entry and overall, by the texts that use them."""

    def __init__(self, entry_texts: Sequence[Sequence[list[str]]], is_english: Callable[[str], bool],
                 stem: Callable[[Iterable[str]], list[str]]) -> None:
        """``entry_texts``: per entry, its texts as lists of content words."""
        self._stem = stem
        self._is_english = is_english
        self._entry: list[Counter[str]] = []
        self._all: Counter[str] = Counter()
        for texts in entry_texts:
            counts: Counter[str] = Counter()
            for text in texts:
                counts.update(set(stem(text)))
            self._entry.append(counts)
            self._all.update(counts)

    def verdict(self, content_words: Sequence[str], entry: int, held_out: Sequence[Sequence[str]] = (),
                function_words: int = 0, verbs: frozenset[str] = frozenset()) -> Verdict:
        """How many of the question's distinct content words are alien to the knowledge base, of
        those judged. ``held_out``: texts of the knowledge base to leave out (their content words),
        for calibration on its own phrasings. ``function_words``: how many English function words
        ("how", "the", "on") the question has; they are evidence that it is in English, so a
        question with a few names in it ("the admin pin on a honeywell keypad") is still judged.
        ``verbs``: the question's words used as verbs (``used_as_verbs``), never alien."""
        kinds = Counter(kind for _, kind in self.judge(content_words, entry, held_out, verbs))
        judged = kinds[COVERED] + kinds[KNOWN] + kinds[ALIEN]
        function_words += kinds[LIGHT] + kinds[VERB]
        if kinds[UNJUDGED] > _MAX_UNJUDGED * (judged + kinds[UNJUDGED] + function_words):
            return Verdict(0, 0)
        return Verdict(kinds[ALIEN], judged)

    def judge(self, content_words: Sequence[str], entry: int, held_out: Sequence[Sequence[str]] = (),
              verbs: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """Each distinct content word (3+ letters) with what the check makes of it: ``COVERED``,
        ``KNOWN``, ``LIGHT``, ``VERB``, ``ALIEN`` or ``UNJUDGED`` (see the module docstring)."""
        distinct = list(dict.fromkeys(w for w in content_words if w.isalpha() and len(w) >= 3))
        removed: Counter[str] = Counter()
        for text in held_out:
            removed.update(set(self._stem(text)))
        out = []
        for word, stem in zip(distinct, self._stem(distinct), strict=True):
            if self._entry[entry][stem] - removed[stem] > 0:
                kind = COVERED
            elif self._all[stem] - removed[stem] > 0:
                kind = KNOWN
            elif word in LIGHT_WORDS:
                kind = LIGHT
            elif word in verbs:
                kind = VERB
            elif self._is_english(word):
                kind = ALIEN
            else:
                kind = UNJUDGED
            out.append((word, kind))
        return out

    def knows(self, word: str) -> bool:
        """Whether the knowledge base uses this word (by stem)."""
        return self._all[self._stem([word])[0]] > 0


def choose_weight(positives: Sequence[tuple[float, float]], negatives: Sequence[tuple[float, float]],
                  threshold: float) -> tuple[float, dict[str, float]]:
    """The largest weight that loses at most ``MAX_POSITIVE_LOSS`` more of the positives than no
    check does, and the figures behind it. Items are (retrieval confidence, alien share)."""
    base = _kept(positives, 0.0, threshold)
    chosen = 0.0
    for weight in WEIGHTS:
        if base - _kept(positives, weight, threshold) <= MAX_POSITIVE_LOSS * len(positives):
            chosen = weight
    return chosen, weight_figures(positives, negatives, threshold, chosen)


def weight_figures(positives: Sequence[tuple[float, float]], negatives: Sequence[tuple[float, float]],
                   threshold: float, weight: float) -> dict[str, float]:
    """What `weight` does to the calibration's positives and hard negatives, against no check."""
    n_pos, n_neg = max(len(positives), 1), max(len(negatives), 1)
    return {"positives": len(positives), "negatives": len(negatives),
            "positives_kept_before": round(_kept(positives, 0.0, threshold) / n_pos, 4),
            "positives_kept_after": round(_kept(positives, weight, threshold) / n_pos, 4),
            "negatives_declined_before": round(1 - _kept(negatives, 0.0, threshold) / n_neg, 4),
            "negatives_declined_after": round(1 - _kept(negatives, weight, threshold) / n_neg, 4)}


def _kept(items: Sequence[tuple[float, float]], weight: float, threshold: float) -> int:
    return sum(c - weight * s >= threshold for c, s in items)
