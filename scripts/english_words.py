#!/usr/bin/env python
"""Regenerate bot/core/onboarding/english_words.txt from the embedding model's tokenizer.

    python scripts/english_words.py

The file lets the keyword-only assistant (no model installed) tell real words from typos and build
its abstention threshold's null questions from the same common words as the semantic one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core.onboarding.encoder import read_model_files  # noqa: E402
from bot.core.onboarding.qa import ENGLISH_WORDS_FILE  # noqa: E402

HEADER = ("# The whole English words of the all-mpnet-base-v2 tokenizer (Apache-2.0), as \"id word\" lines,\n"
          "# ids roughly by frequency. Used without the model too: to tell real words from typos, and for\n"
          "# the abstention threshold's null questions (qa.py). Regenerate: scripts/english_words.py\n")


def main() -> int:
    _, tokenizer = read_model_files()
    vocab = json.loads(tokenizer)["model"]["vocab"]
    lines = [f"{i} {w}\n" for i, w in sorted((i, w) for w, i in vocab.items() if w.isalpha())]
    ENGLISH_WORDS_FILE.write_text(HEADER + "".join(lines), encoding="utf-8")
    print(f"{len(lines)} words -> {ENGLISH_WORDS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
