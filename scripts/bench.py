"""``make bench``: every benchmark in one run, printed and written to docs/benchmarks.md with the
machine and the method. Ratios are measured within this one run; nothing here is a test.

    .venv/bin/python -m scripts.bench [--sizes 1000 10000 100000] [--registered 10000]
                                      [--directory 2000] [--due 1000] [--latency-ms 20]
                                      [--scale-apps 10000] [--instances 40]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from scripts import bench_api, bench_drain, bench_scale, bench_timer

T = TypeVar("T")


def isolated(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh interpreter (multiprocessing, spawn); its result back here.

    A plain (not daemonic) process, so the benchmark may start processes of its own."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_send_result, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        outcome = receiver.recv()
    except EOFError:
        outcome = RuntimeError(f"{function.__name__} ended without a result")
    process.join()
    if isinstance(outcome, BaseException):
        raise outcome
    result: T = outcome
    return result


def _send_result(sender: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        sender.send(function(*args))
    except BaseException as error:
        sender.send(RuntimeError(f"{function.__name__} failed: {error!r}"))
        raise


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--registered", type=int, default=10000, help="registrations for the API latencies")
    parser.add_argument("--directory", type=int, default=2000, help="directory applications for /inventory")
    parser.add_argument("--due", type=int, default=1000, help="due applications for the drain")
    parser.add_argument("--latency-ms", type=int, default=20, help="simulator latency for the drain")
    parser.add_argument("--scale-apps", type=int, default=10000, help="due applications for the scale-out")
    parser.add_argument("--instances", type=int, default=40, help="worker instances for the scale-out")
    args = parser.parse_args()

    print(f"machine: {bench_timer.machine()}")
    # Each benchmark in a fresh interpreter, as the app runs in a worker process of its own: what
    # one leaves in the process (100,000 seeded rows' worth of allocations, frozen heaps, clients)
    # must not weigh on the next.
    timer, ratios = isolated(bench_timer.timer_table, args.sizes)
    cold, heavy = bench_timer.cold_start()  # fresh interpreters of its own
    latencies, page_cost, seeded = isolated(bench_api.run, args.registered, args.directory)
    api = [bench_api.HEADER, *(result.row() for result in latencies)]
    idle, busy = latencies[2], latencies[3]
    api_ratio = f"GET one application during an inventory walk: p99 {busy.percentile(0.99) / idle.percentile(0.99):.2f}x idle."
    print("\n".join(api))
    print(api_ratio)
    print(page_cost.line())
    drain = isolated(bench_drain.run, args.due, args.latency_ms)
    print("\n".join(drain.rows()))
    scale = isolated(bench_scale.run, args.scale_apps, args.instances, args.latency_ms)
    print("\n".join(scale.rows()))

    text = f"""# Benchmarks

Written by `make bench` (`scripts/bench.py`) on {datetime.now(UTC):%Y-%m-%d}; nothing here comes
from timed unit tests. Ratios are measured within this one run.

**Machine:** {bench_timer.machine()}.

## A timer run against the registry's size

Method: {bench_timer.TIMER_METHOD}

{chr(10).join(timer)}

{ratios}

Rows read follow the due work, not the registry: the scan reads the due-index rows and the expiry
report reads the changes and the window entries since its last turn (plus its turn row). This
process's CPU time follows them (its ratio is above; it moves 10-25% between runs here). What
grows with N is Azurite's: its LokiJS store costs time in proportion to the whole table for every
query and every write. A query runs its filter on every entity of its table and sorts the
matches: the registry table holds one row per registration (the app row), the due index's own
table and the expiry index's own table one each (the registry held all three until the expiry
index, then the due index, moved out). A delete, and a replace (which Azurite does as a delete and an insert), renumbers
both of the collection's binary indices (PartitionKey, RowKey); a merge updates the document in
place but still scans both indices for its position. The app row is therefore written with a merge
that names every column (on Azure the same one entity write as a replace): with a replace, a CPU
profile of Azurite (`node --cpu-prof`) over the 100,000 pass put 46% of its time in
`Collection.remove`; with the merge, 41% is query filters and 19% the merges. Azure Table
storage seeks the key range of a partition and writes an entity by its key ("Design for
querying", learn.microsoft.com/azure/storage/tables/table-storage-design-for-query). A pass cannot
do less than four range queries (due index, the registry's `due|` rows an earlier version may have
written, changes, window entries) and one write per due
application (the queued mark that makes its job durable; one entity write, not a batch). Azurite
runs in memory here: with files it also rewrites its whole database every 5 s while anything
changes (LokiJS autosave), which at 100,000 registrations blocked it for about 3 s of a 5 s pass.

## Due rotations through the local host

Method: {bench_drain.__doc__.split("Method:", 1)[1].strip() if bench_drain.__doc__ else ""}

{chr(10).join(drain.rows())}

## A scale-out against Graph's write quota

Method: {bench_scale.__doc__.split("Method:", 1)[1].strip() if bench_scale.__doc__ else ""}

{chr(10).join(scale.rows())}

{scale.verdict()}

## API latency

Method: the real `function_app` in the local host on Azurite (in memory) and the simulators,
{args.registered:,} registrations (seeded in {seeded:.0f} s as the app writes them; app ids are
random GUIDs, as Entra assigns them, the same every run) and
{args.directory:,} applications in the simulated directory. One client walks
`GET /applications?pageSize=100` page by page, then 8 clients at once (every client in a process
of its own); `GET /applications/{{appId}}` is timed {bench_api.GET_SAMPLES:,} times idle and
{bench_api.GET_SAMPLES:,} times while another process walks `/inventory` pages of 100 (as portal
users are other processes: client threads in the host's process would take its interpreter lock).

{chr(10).join(api)}

{api_ratio}

{page_cost.line()} With 8 clients each page waits for the others' queries in
Azurite, which serves one at a time and runs each query's filter on every row of the table (one
row per registration in the registry table since the due index has a table of its own; see
above). The
filter names first the key bound that excludes the most rows, so most rows fail at its first
comparison (an `and` stops at its first false side), and every page, a walk's first included,
reads only the key range one page is expected to span (the token carries the span the page before
covered), so what Azurite sorts and returns does not grow with the registry. The host splices each
entry from the row's stored listing text rather than parsing it and writing it again. What
remains is Azurite's pass over the whole table for every query, and a machine whose 2 cores serve
Azurite, the host and the 8 clients at once.

## Cold start

Method: a fresh interpreter per run, the two imports alternating, median of 11, wall time of the
import statement alone, and peak resident memory (`VmHWM` of that process). Both read bytecode, as
in a deployment: pip writes the libraries' when it installs them, and the package hook writes the
app's (`scripts/compile_app.py`, hash-checked), because a Flex Consumption app runs from its
package mounted read-only, where Python cannot cache what it compiles. Without it the app's modules
were compiled at every import: about 25 ms, 1.21x to 1.32x in runs on this machine.

{chr(10).join(cold)}

Loaded by `import function_app` among the heavy libraries: {heavy} (`tests/unit/test_cold_start.py`
keeps it so): each is imported in the code path that first needs it.
"""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    path.write_text(text)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
