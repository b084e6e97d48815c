"""The due index's layout (issue 11): ``status``, ``contract`` and ``expand``.

    python -m scripts.due_index status|contract|expand

Run with the Function app's storage setting in the environment (``AzureWebJobsStorage`` or its
identity-based form); the app's other settings are not needed. Versions before the ``rotationdue``
table kept the due index as ``due|`` rows in the registry table. An install they used gets the
``both`` layout, in which every write keeps those rows too, so rolling back to such a version keeps
every application rotating (``shared.storage.applications``).

* ``status``: the recorded layout (or that none is yet: the first write of this version records
  one), and how many ``due|`` rows the registry still holds. It only reads.
* ``contract``: record the ``table`` layout. Every instance stops writing ``due|`` rows within
  ``LAYOUT_REFRESH_SECONDS``, and each scan deletes the ones it reads that no app row still needs.
  Run it once every instance runs this version and a rollback below it is no longer wanted: a
  version before would not find the applications written after it until ``expand`` ran.
* ``expand``: record the ``both`` layout, wait until every instance writes it
  (``LAYOUT_REFRESH_SECONDS``), then write once every application that has no ``due|`` row, so
  each has one again. Run it before deploying a version before ``rotationdue``.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from shared.errors import ConflictError, NotFoundError
from shared.storage.applications import (
    LAYOUT_BOTH,
    LAYOUT_REFRESH_SECONDS,
    LAYOUT_TABLE,
    ApplicationStore,
)

# An application whose every write meets another writer is left for the next run (reported).
ATTEMPTS = 3


@dataclass
class Expanded:
    written: int = 0
    unchanged: int = 0
    left: int = 0  # changed by someone else on every attempt: run ``expand`` again


async def status(store: ApplicationStore) -> tuple[str | None, int]:
    """(the recorded layout, None while none is; the registry's ``due|`` rows). Reads only: a
    status must not decide the layout the first write of this version would decide."""
    return await store.recorded_layout(), len(await store.legacy_due_keys())


async def contract(store: ApplicationStore) -> None:
    await store.set_layout(LAYOUT_TABLE)


async def expand(store: ApplicationStore, wait_seconds: float = LAYOUT_REFRESH_SECONDS + 30) -> Expanded:
    """Record ``both``, wait ``wait_seconds`` (every instance reads the layout again), then
    write every application that needs attention some day and has no ``due|`` row."""
    from datetime import UTC, datetime

    from shared.domain.schedule import attention_at

    await store.set_layout(LAYOUT_BOTH)
    await asyncio.sleep(wait_seconds)
    result = Expanded()
    token: str | None = None
    while True:
        page = await store.list_page(100, token)
        for listed in page.items:
            for _ in range(ATTEMPTS):
                try:
                    current = await store.get(listed.app_id)
                except NotFoundError:
                    break  # removed meanwhile
                if current.index_key or attention_at(current.config, current.status, store.policy) is None:
                    result.unchanged += 1
                    break
                try:
                    await store.save(current, current.config, current.status, datetime.now(UTC))
                except ConflictError:
                    continue
                result.written += 1
                break
            else:
                result.left += 1
        token = page.continuation_token
        if token is None:
            return result


# Settings the app requires that these commands never use (they touch the tables only).
UNUSED_SETTINGS = {
    "ROTATOR_TENANT_ID": "00000000-0000-0000-0000-000000000000",
    "ROTATOR_VAULT_URL": "https://unused.vault.azure.net/",
}


async def main(command: str) -> int:
    import os
    import sys

    from shared.config import load_settings
    from shared.errors import ConfigurationError
    from shared.services import Services

    try:
        settings = load_settings({**UNUSED_SETTINGS, **os.environ})
    except ConfigurationError as error:
        print(f"due_index: {error}", file=sys.stderr)
        return 2
    services = Services(settings)
    try:
        store = services.applications
        if command == "contract":
            await contract(store)
        elif command == "expand":
            print(f"layout both recorded; writing applications in {LAYOUT_REFRESH_SECONDS + 30:.0f} s")
            done = await expand(store)
            print(f"written {done.written}, unchanged {done.unchanged}, left for another run {done.left}")
        layout, rows = await status(store)
        shown = layout or "not recorded yet (the first write of this version records it)"
        print(f"layout {shown}; registry due| rows {rows}")
        return 0
    finally:
        await services.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("status", "contract", "expand"))
    raise SystemExit(asyncio.run(main(parser.parse_args().command)))
