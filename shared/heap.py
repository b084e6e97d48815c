"""Keep what lives as long as the process out of the garbage collector's full passes.

The SDKs this app loads on first use (Azure Tables, msgraph, pydantic models and their schemas)
are hundreds of thousands of objects that live until the process ends. CPython's full collection
walks every tracked object, so on a busy instance it ran every few seconds and stalled the event
loop: a list page took 100 ms instead of 35 at p99 (docs/benchmarks.md, API latency). After the
first invocation of each function (its imports and clients now loaded), one collection clears the
garbage and ``gc.freeze`` moves the survivors to the permanent generation, which later collections
skip (docs.python.org/3/library/gc.html#gc.freeze).
"""

from __future__ import annotations

import gc

_settled: set[str] = set()


def settle_after_first(function_name: str) -> None:
    """Collect, then freeze the heap, the first time ``function_name`` finishes in this process
    (a no-op every later time). Costs one full collection, once per function."""
    if function_name in _settled:
        return
    _settled.add(function_name)
    gc.collect()
    gc.freeze()
