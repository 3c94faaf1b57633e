"""A long-running server's heap and Python's cyclic garbage collector.

After start-up the process holds some 100,000 objects that live as long as it does (modules,
the ORM's models, the clients' tables, the knowledge base). Every full collection walks all of
them: about 45 ms of the event loop each, ten of them during a 10,000-delivery broadcast
(`bench/fanout.py`). Freezing them once start-up is over (`gc.freeze`) takes them out of every
later collection; they are still freed when their last reference goes, only cycles among them
are never looked for, which for start-up state is what is wanted.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect the start-up's garbage, then freeze every object still alive. Returns how many
    objects are frozen (all of them so far, should it be called again)."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects out of the collector's walks (%.0f ms)",
             frozen, (time.perf_counter() - started) * 1000)
    return frozen
