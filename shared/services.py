"""The one place that builds the SDK clients and the services around them.

Triggers ask ``get_services()`` for what they need; tests and the local host install their own
``Services`` (pointed at Azurite and the simulators) with ``set_services``. Construction has no I/O:
clients connect on first use, and heavy SDKs are imported only when a client is first built, so a
cold start that serves ``/api/health`` never pays for msgraph or Key Vault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shared.config import Settings, load_settings
from shared.domain.schedule import SchedulePolicy

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    from shared.registry import RegistryService
    from shared.storage.applications import ApplicationStore
    from shared.storage.queue import RotationQueue
    from shared.storage.rotation_log import RotationLogStore

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Services:
    """Lazily built, shared adapters. One instance per process (per event loop)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._credential = credential
        self._closers: list[Callable[[], Any]] = []

    # --- identity -----------------------------------------------------------------------------
    @property
    def credential(self) -> AsyncTokenCredential:
        """The rotator's own identity: a managed identity in Azure (no secret held anywhere)."""
        if self._credential is None:
            from azure.identity.aio import ManagedIdentityCredential

            self._credential = ManagedIdentityCredential(
                client_id=self.settings.managed_identity_client_id
            )
            self._closers.append(self._credential.close)
        return self._credential

    # --- storage ------------------------------------------------------------------------------
    def _storage_kwargs(self) -> dict[str, Any]:
        timeout = self.settings.http_timeout_seconds
        return {"connection_timeout": timeout, "read_timeout": timeout, "retry_total": 3}

    @cached_property
    def table_service(self) -> TableServiceClient:
        from azure.data.tables.aio import TableServiceClient

        storage = self.settings.storage
        if storage.connection_string:
            client = TableServiceClient.from_connection_string(
                storage.connection_string, **self._storage_kwargs()
            )
        else:
            client = TableServiceClient(
                storage.table_endpoint, credential=self._storage_credential(), **self._storage_kwargs()
            )
        self._closers.append(client.close)
        return client

    @cached_property
    def queue_service(self) -> QueueServiceClient:
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueServiceClient

        storage = self.settings.storage
        # Base64, because the Functions host decodes queue messages as base64 by default.
        codec = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
        }
        if storage.connection_string:
            client = QueueServiceClient.from_connection_string(
                storage.connection_string, **codec, **self._storage_kwargs()
            )
        else:
            client = QueueServiceClient(
                storage.queue_endpoint,
                credential=self._storage_credential(),
                **codec,
                **self._storage_kwargs(),
            )
        self._closers.append(client.close)
        return client

    def _storage_credential(self) -> AsyncTokenCredential:
        storage_client_id = self.settings.storage.client_id
        if storage_client_id and storage_client_id != self.settings.managed_identity_client_id:
            from azure.identity.aio import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=storage_client_id)
            self._closers.append(credential.close)
            return credential
        return self.credential

    @cached_property
    def schedule_policy(self) -> SchedulePolicy:
        claim_timeout = timedelta(minutes=self.settings.claim_timeout_minutes)
        return SchedulePolicy(claim_timeout=claim_timeout, requeue_after=claim_timeout)

    @cached_property
    def applications(self) -> ApplicationStore:
        from shared.storage.applications import TABLE_NAME, ApplicationStore

        return ApplicationStore(self.table_service.get_table_client(TABLE_NAME), self.schedule_policy)

    @cached_property
    def rotation_log(self) -> RotationLogStore:
        from shared.storage.rotation_log import TABLE_NAME, RotationLogStore

        return RotationLogStore(self.table_service.get_table_client(TABLE_NAME))

    @cached_property
    def rotation_queue(self) -> RotationQueue:
        from shared.storage.queue import QUEUE_NAME, RotationQueue

        return RotationQueue(self.queue_service.get_queue_client(QUEUE_NAME))

    @cached_property
    def registry(self) -> RegistryService:
        from shared.registry import RegistryService

        return RegistryService(self.applications, self.rotation_log, self.rotation_queue, self.clock)

    async def ensure_storage(self) -> None:
        """Create the tables and queues if missing (local stack and tests; Bicep does it in Azure)."""
        from azure.core.exceptions import ResourceExistsError

        from shared.storage import applications, queue, rotation_log

        for table in (applications.TABLE_NAME, rotation_log.TABLE_NAME):
            await self.table_service.create_table_if_not_exists(table)
        for name in (queue.QUEUE_NAME, queue.POISON_QUEUE_NAME):
            try:
                await self.queue_service.create_queue(name)
            except ResourceExistsError:
                pass

    async def close(self) -> None:
        for close in reversed(self._closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result
        self._closers.clear()


_services: Services | None = None


def get_services() -> Services:
    """The process-wide services, built from the environment on first use."""
    global _services
    if _services is None:
        _services = Services(load_settings())
    return _services


def set_services(services: Services | None) -> None:
    """Install services built elsewhere (tests, the local host); None resets to the default."""
    global _services
    _services = services
