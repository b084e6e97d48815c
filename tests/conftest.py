"""Shared fixtures: a real Azurite per test session, settings pointed at it, clean storage per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
TENANT_ID = "00000000-0000-0000-0000-00000000cafe"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Azurite on free ports; yields its connection string.

    ``TEST_AZURITE_CONNECTION_STRING`` points the suite at an Azurite that is already running.
    """
    existing = os.environ.get("TEST_AZURITE_CONNECTION_STRING")
    if existing:
        yield existing
        return
    from devhost.testing import AzuriteProcess

    with AzuriteProcess(tmp_path_factory.mktemp("azurite")) as process:
        yield process.connection_string


def base_environment(connection_string: str, **overrides: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": connection_string,
        "ROTATOR_TENANT_ID": TENANT_ID,
        "ROTATOR_VAULT_URL": "https://localhost:1",
        "ROTATOR_HTTP_TIMEOUT_SECONDS": "10",
    }
    env.update(overrides)
    return env


@pytest.fixture
def settings(azurite: str) -> Settings:
    return load_settings(base_environment(azurite))


@pytest.fixture
def clean_storage(azurite: str) -> Iterator[None]:
    """Empty the app's tables and queues before a test (sync clients: no event loop involved)."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    tables = TableServiceClient.from_connection_string(azurite)
    queues = QueueServiceClient.from_connection_string(azurite)
    for name in ("applications", "rotationdue", "secretexpiry", "rotationlog"):
        tables.create_table_if_not_exists(name)
        table = tables.get_table_client(name)
        entities = list(table.list_entities(select=["PartitionKey", "RowKey"]))
        for entity in entities:
            table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    for name in ("rotations", "rotations-poison"):
        queue = queues.get_queue_client(name)
        try:
            queue.create_queue()
        except Exception:  # already exists
            queue.clear_messages()
    yield


@pytest.fixture(scope="session")
def sim_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The simulated Entra ID, managed identity and Key Vaults, for the whole session."""
    from simulators.stack import SimulatorStack

    with SimulatorStack(
        tmp_path_factory.mktemp("simulators"), keyvaults=("rotator", "destination"), tenant_id=TENANT_ID
    ) as stack:
        yield stack


def identity_credential(stack: Any) -> Any:
    """The rotator's managed identity, pointed at the simulated identity endpoint."""
    from azure.identity.aio import ManagedIdentityCredential

    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.msi.environment().items():
            patch.setenv(name, value)
        return ManagedIdentityCredential()


@pytest.fixture(autouse=True)
def _no_ambient_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must never pick up a developer's real Azure identity or settings.
    for name in list(os.environ):
        if name.startswith(("ROTATOR_", "AZURE_", "AzureWebJobs")) or name in (
            "IDENTITY_ENDPOINT",
            "MSI_ENDPOINT",
        ):
            monkeypatch.delenv(name, raising=False)
