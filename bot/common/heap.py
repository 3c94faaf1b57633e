"""A long-running server's heap and Python's cyclic garbage collector.

Once `herald serve` is connected to its database, the process holds some 190,000 objects that
live as long as it does (modules, the ORM's models, the clients' tables). Every full collection
walks all of them: about 45 ms of the event loop each, ten of them in `bench/fanout.py`'s timed
parts (two runs of the bare client and a 10,000-delivery broadcast). Freezing them (`gc.freeze`)
takes them out of every later collection. A frozen object is still freed when its last reference
goes, but cycles among frozen objects are never looked for. So the freeze comes before the
knowledge base is loaded: it has reference cycles and is replaced whenever an approved phrasing
changes it, and a frozen one would never be freed (37 MB each time for the sample's keyword index).
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
