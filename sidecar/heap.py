"""Garbage-collector settings for the long-running sidecar process.

Why: the sidecar holds a large heap from the start (pydantic models, the
gRPC and Google client libraries, fifty ib_async sessions), and CPython's
full collections walk all of it. Measured at fifty followers: full
collections of 160 to 210 ms landed between a signal and its orders, in
about one signal out of two, on a process that is otherwise idle between
signals. What exists once start-up is over lives as long as the process, so
it is moved out of the collector's sight (``gc.freeze``), and young
collections run less often, so fewer of them (and fewer of the older ones
they trigger) fall into the few hundred milliseconds after a signal.
Garbage is still collected: cycles made later are found as before.
"""

from __future__ import annotations

import gc

#: Allocations (minus deallocations) between two young collections; CPython's default is 700.
YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Collect once, freeze the survivors, and space out young collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
