"""The simulator stack's snapshot and restore (the local stack's ROTATOR_LOCAL_KEEP_DATA=1 restart).

Regression (found driving ``make run``): a restore dropped every Key Vault secret's attributes, so a
staged secret read back after a restart had no expiry ("exp", learn.microsoft.com/rest/api/keyvault/
secrets/get-secret/get-secret#secretattributes), a resumed rotation recorded none, and the next scan
rotated the application again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def stack(sim_stack: Any) -> Iterator[Any]:
    sim_stack.reset()
    yield sim_stack
    sim_stack.reset()


def test_a_restore_keeps_each_secret_version_as_it_was(stack: Any) -> None:
    vault = stack.keyvaults["rotator"]
    staged = vault.set_secret(
        "staged-secret", "value-1", content_type="text/plain", not_before=1_800_000_000, expires=1_900_000_000
    )
    plain = vault.set_secret("staged-secret", "value-2")
    snapshot = stack.snapshot()
    stack.reset()
    assert vault.secret_names() == []
    stack.restore(snapshot)
    restored = {version.version: version for version in vault.versions("staged-secret")}
    assert restored == {staged.version: staged, plain.version: plain}
    assert restored[staged.version].attributes()["exp"] == 1_900_000_000
