"""Building the knowledge base's semantic index without holding up anyone.

Embedding a knowledge base's texts (and the calibration questions) costs some 40 s of CPU on a cold
start. The serving process must neither make a question wait for that nor lose its interpreter to
it while the outbox is delivering, so:

* questions are answered from a keyword-only knowledge base (built in milliseconds) until the
  semantic one is ready;
* the vectors are computed in a **child process** (``python -m bot.core.onboarding.index``, at a
  lower CPU priority and with one thread for NumPy's BLAS and ONNX Runtime, see
  ``mpnet_graph.session``), which writes them to the vector store under ``HERALD_CACHE_DIR`` and
  a marker named after the knowledge base's content hash;
* the serving process then loads the knowledge base from those stored vectors (the model's
  weights, about 3 s, plus a fraction of a second) and switches over.

A warm start (the marker for this exact knowledge base is there) skips the child. So does a knowledge
base that carries its own vectors in a ``vectors/`` directory beside its files (``shipped_store``;
the sample in ``config/kb`` does, so a first start loads them in about 3 s): they are read from
there and never written. ``herald qa build-index`` (``--ship``: into the knowledge base's own
directory) runs the same build ahead of time, e.g. while building a container image. Any change to
the knowledge base files changes the hash, so stale vectors are never used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.core.onboarding.encoder import MODEL_NAME, MODEL_VARIANT

log = logging.getLogger(__name__)

#: Bump when the texts the index embeds change shape (qa.py's _build_semantic / _calibrate).
INDEX_VERSION = "3"  # 2: the key-term check's hard negatives are embedded too; 3: they swap objects for nouns
MARKER_SUFFIX = ".ready"
SHIPPED_DIRECTORY = "vectors"  # a knowledge base's own vectors, beside its *.yaml files

_LOADED: dict[str, object] = {}  # fingerprint -> KnowledgeBase, semantic ones loaded in this process
_LOADED_LOCK = threading.Lock()


def fingerprint(directory: Path, overlay: Sequence[dict[str, Any]] = ()) -> str:
    """A hash of the knowledge base's files (names and bytes), the learned overlay, the model and
    the index version."""
    digest = hashlib.sha256(f"{MODEL_VARIANT}\0{INDEX_VERSION}".encode())
    for path in sorted(Path(directory).glob("*.yaml")):
        digest.update(b"\0" + path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    if overlay:
        digest.update(b"\0overlay\0" + json.dumps(list(overlay), sort_keys=True).encode())
    return digest.hexdigest()[:32]


def marker(store: Path, print_: str) -> Path:
    return Path(store) / f"index-{print_}{MARKER_SUFFIX}"


def vectors_ready(directory: Path, store: Path, overlay: Sequence[dict[str, Any]] = ()) -> bool:
    """Whether a build already stored every vector this exact knowledge base needs."""
    return marker(store, fingerprint(directory, overlay)).is_file()


def shipped_store(directory: Path) -> Path:
    """Where a knowledge base may carry its own vectors (read-only: builds go to the cache)."""
    return Path(directory) / SHIPPED_DIRECTORY


def ready_store(directory: Path, store: Path, overlay: Sequence[dict[str, Any]] = ()) -> Path | None:
    """The store holding every vector this exact knowledge base needs: ``store`` (the cache) or the
    knowledge base's own ``vectors/`` directory; None when they have to be built."""
    for candidate in (Path(store), shipped_store(directory)):
        if vectors_ready(directory, candidate, overlay):
            return candidate
    return None


def already_loaded(directory: Path, overlay: Sequence[dict[str, Any]] = ()):  # noqa: ANN201 - KnowledgeBase | None
    """The semantic knowledge base of these files if this process already has it, else None."""
    with _LOADED_LOCK:
        return _LOADED.get(fingerprint(directory, overlay))


def load_semantic(directory: Path, store: Path | None, overlay: Sequence[dict[str, Any]] = ()):  # noqa: ANN201
    """Load (and index) the knowledge base with the embedding model; vectors come from / go to
    ``store``. Marks the store ready for these files and remembers the result in this process."""
    from bot.core.onboarding.qa import KnowledgeBase

    print_ = fingerprint(directory, overlay)
    kb = KnowledgeBase.load(directory, semantic=True, vector_store=store, overlay=overlay)
    if kb.semantic:
        if store is not None and not marker(store, print_).is_file():  # a shipped store stays as it is
            _write_marker(marker(store, print_))
        with _LOADED_LOCK:
            _LOADED[print_] = kb
    return kb


def _write_marker(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{MODEL_NAME} index {INDEX_VERSION}\n", encoding="utf-8")
    except OSError as exc:  # the next start builds again; nothing is wrong with this one
        log.warning("could not mark the vector store %s ready: %s", path.parent, exc)


def child_command(directory: Path, store: Path, overlay_file: Path | None = None) -> list[str]:
    """The command that builds the vectors in a child process."""
    command = [sys.executable, "-m", "bot.core.onboarding.index", "--kb-dir", str(directory), "--store", str(store)]
    return command + (["--overlay", str(overlay_file)] if overlay_file is not None else [])


def write_overlay(store: Path, overlay: Sequence[dict[str, Any]]) -> Path:
    """The overlay as a JSON file beside the vectors, for the child process."""
    path = Path(store) / f"overlay-{fingerprint(Path('/nonexistent'), overlay)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(overlay)), encoding="utf-8")
    return path


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """One thread (BLAS, OpenMP, ONNX Runtime's pool): the child takes one core at most, never both."""
    env = dict(os.environ if base is None else base)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compute and store the knowledge base's vectors.")
    parser.add_argument("--kb-dir", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--overlay", type=Path, default=None, help="approved learned items (JSON list)")
    parser.add_argument("--niceness", type=int, default=10, help="CPU priority decrease (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.niceness:
        try:
            os.nice(args.niceness)
        except OSError as exc:  # not fatal: the build still runs in its own process
            log.warning("could not lower the index build's priority: %s", exc)
    try:  # fail before spending a minute of CPU on vectors that could not be kept
        args.store.mkdir(parents=True, exist_ok=True)
        probe = args.store / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        log.error("cannot write the vector store %s (HERALD_CACHE_DIR): %s", args.store, exc)
        return 3
    overlay = json.loads(args.overlay.read_text(encoding="utf-8")) if args.overlay else []
    kb = load_semantic(args.kb_dir, args.store, overlay)
    if not kb.semantic:
        log.error("no embedding model: nothing to build")
        return 2
    log.info("stored the vectors of %d entries in %s", len(kb.entries), args.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
