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

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.queue.aio import QueueClient, QueueServiceClient

    from shared.adapters.entra import EntraDirectory, TokenVerifier
    from shared.adapters.vault import StagingVault, VaultClient
    from shared.api.auth import EntraTokenValidator
    from shared.config import Settings
    from shared.domain.schedule import SchedulePolicy
    from shared.groups import GroupService
    from shared.integrations.base import PluginRegistry
    from shared.inventory import InventoryService
    from shared.notifications.email import EmailNotifier
    from shared.registry import RegistryService
    from shared.rotation.engine import RotationEngine
    from shared.rotation.events import EventRecorder
    from shared.rotation.ports import Checkpoint, Notifier, SignInEvidence
    from shared.rotation.scanner import Scanner, ThresholdAlerter
    from shared.storage.applications import ApplicationStore
    from shared.storage.budget import RateBudget
    from shared.storage.expiry_index import ExpiryIndex
    from shared.storage.groups import GroupStore
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
        # Tests replace these: where to stop a worker, and how to wait.
        self.checkpoint: Checkpoint | None = None
        self.sleep: Callable[[float], Any] = asyncio.sleep
        self._vaults: dict[str, VaultClient] = {}

    # --- identity -----------------------------------------------------------------------------
    @property
    def credential(self) -> AsyncTokenCredential:
        """The rotator's own identity: a managed identity in Azure (no secret held anywhere), or
        the developer's sign-in elsewhere (``ROTATOR_CREDENTIAL``, ``shared.config.credential_kind``)."""
        if self._credential is None:
            import os

            from shared.config import credential_kind

            kind = credential_kind(self.settings.credential, os.environ)
            if kind == "cli":
                from azure.identity.aio import AzureCliCredential

                self._credential = AzureCliCredential()
            elif kind == "default":
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(exclude_managed_identity_credential=True)
            else:
                from azure.identity.aio import ManagedIdentityCredential

                self._credential = ManagedIdentityCredential(
                    client_id=self.settings.managed_identity_client_id
                )
            self._closers.append(self._credential.close)
        return self._credential

    # --- storage ------------------------------------------------------------------------------
    def _storage_kwargs(self) -> dict[str, Any]:
        from shared.adapters.tls import azure_transport

        timeout = self.settings.http_timeout_seconds
        return {
            "connection_timeout": timeout,
            "read_timeout": timeout,
            "retry_total": 3,
            "transport": azure_transport(None, timeout_seconds=timeout),
        }

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
        from azure.storage.queue.aio import QueueServiceClient

        storage = self.settings.storage
        if storage.connection_string:
            client = QueueServiceClient.from_connection_string(
                storage.connection_string, **self._storage_kwargs()
            )
        else:
            client = QueueServiceClient(
                storage.queue_endpoint, credential=self._storage_credential(), **self._storage_kwargs()
            )
        self._closers.append(client.close)
        return client

    def queue_client(self, queue_name: str) -> QueueClient:
        """A queue client that writes base64, as the Functions host reads queue messages by default.

        (``QueueServiceClient.get_queue_client`` would drop the encode policy, so build it here.)
        """
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        storage = self.settings.storage
        codec: dict[str, Any] = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
            **self._storage_kwargs(),
        }
        if storage.connection_string:
            client = QueueClient.from_connection_string(storage.connection_string, queue_name, **codec)
        else:
            client = QueueClient(
                storage.queue_endpoint, queue_name, credential=self._storage_credential(), **codec
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
        from shared.domain.schedule import SchedulePolicy

        claim_timeout = timedelta(minutes=self.settings.claim_timeout_minutes)
        return SchedulePolicy(claim_timeout=claim_timeout, requeue_after=claim_timeout)

    @cached_property
    def applications(self) -> ApplicationStore:
        from shared.storage import due_index
        from shared.storage.applications import TABLE_NAME, ApplicationStore

        return ApplicationStore(
            self.table_service.get_table_client(TABLE_NAME),
            self.schedule_policy,
            due_index.DueIndex(self.table_service.get_table_client(due_index.TABLE_NAME)),
        )

    @cached_property
    def expiry_index(self) -> ExpiryIndex:
        from shared.storage.expiry_index import TABLE_NAME, ExpiryIndex

        return ExpiryIndex(self.table_service.get_table_client(TABLE_NAME))

    @cached_property
    def rotation_log(self) -> RotationLogStore:
        from shared.storage.rotation_log import TABLE_NAME, RotationLogStore

        return RotationLogStore(self.table_service.get_table_client(TABLE_NAME))

    @cached_property
    def groups(self) -> GroupStore:
        from shared.storage.applications import TABLE_NAME
        from shared.storage.groups import GroupStore

        return GroupStore(self.table_service.get_table_client(TABLE_NAME))

    @cached_property
    def rotation_queue(self) -> RotationQueue:
        from shared.storage.queue import QUEUE_NAME, RotationQueue

        return RotationQueue(self.queue_client(QUEUE_NAME))

    @cached_property
    def group_service(self) -> GroupService:
        from shared.groups import GroupService

        return GroupService(self.groups, self.registry, self.vault, self.settings.vault_url)

    @cached_property
    def registry(self) -> RegistryService:
        from shared.registry import RegistryService

        return RegistryService(
            self.applications,
            self.rotation_log,
            self.rotation_queue,
            self.clock,
            events=self.events,
            plugins=self.plugins,
            groups=self.groups,
            rotator_vault_url=self.settings.vault_url,
            vaults=self.vault,
        )

    # --- rotation -----------------------------------------------------------------------------
    @cached_property
    def directory(self) -> EntraDirectory:
        from shared.adapters.budgeted import BudgetedDirectory
        from shared.adapters.entra import GraphDirectory

        directory = GraphDirectory(
            self.credential,
            self.settings.graph_url,
            self.settings.graph_scope,
            timeout_seconds=self.settings.http_timeout_seconds,
            ca_bundle=self.settings.ca_bundle,
        )
        self._closers.append(directory.close)
        return BudgetedDirectory(directory, self.graph_write_budget)

    # --- rate budgets shared by every instance (shared.storage.budget) ------------------------
    def _budget(self, name: str, rate_per_second: float, burst: float, batch: int = 1) -> RateBudget:
        from shared.storage.applications import TABLE_NAME
        from shared.storage.budget import Limit, RateBudget

        return RateBudget(
            self.table_service.get_table_client(TABLE_NAME),
            name,
            Limit(rate_per_second, burst),
            clock=self.clock,
            sleep=self.sleep,
            batch=batch,
        )

    @cached_property
    def graph_write_budget(self) -> RateBudget:
        from shared.storage.budget import graph_write_limit

        limit = graph_write_limit(self.settings.graph_writes_per_second)
        # Batches of 2: a rotation's addPassword and its removal of the superseded credential.
        return self._budget(
            f"graph-writes|{self.settings.tenant_id}", limit.rate_per_second, limit.burst, batch=2
        )

    @cached_property
    def email_budget(self) -> RateBudget:
        per_hour = self.settings.emails_per_hour
        burst = max(1.0, per_hour / 10)
        # Burst + an hour of refill stays within the hourly quota.
        return self._budget("email", max(per_hour - burst, 1) / 3600, burst)

    @cached_property
    def arm_write_budget(self) -> RateBudget:
        rate = self.settings.arm_writes_per_second
        # ARM's bucket is 200 refilling 10/s per principal: keep the burst below it.
        return self._budget("arm-writes", rate, 150)

    @cached_property
    def verifier(self) -> TokenVerifier:
        from shared.adapters.entra import TokenVerifier

        verifier = TokenVerifier(
            self.settings.tenant_id,
            self.settings.login_authority,
            self.settings.graph_scope,
            ca_bundle=self.settings.ca_bundle,
            timeout_seconds=self.settings.http_timeout_seconds,
        )
        self._closers.append(verifier.close)
        return verifier

    def vault(self, vault_url: str) -> VaultClient:
        """A client for any vault (the rotator's own, or a destination), cached per URL."""
        from shared.adapters.vault import VaultClient

        key = vault_url.rstrip("/").lower()
        if key not in self._vaults:
            client = VaultClient(
                vault_url,
                self.credential,
                timeout_seconds=self.settings.http_timeout_seconds,
                ca_bundle=self.settings.ca_bundle,
            )
            self._closers.append(client.close)
            self._vaults[key] = client
        return self._vaults[key]

    @cached_property
    def http(self) -> httpx.AsyncClient:
        """Shared HTTP client for REST integrations (DevOps, Vercel, ARM, webhooks)."""
        import httpx

        from shared.adapters.tls import ssl_context

        client = httpx.AsyncClient(
            timeout=self.settings.http_timeout_seconds,
            verify=ssl_context(self.settings.ca_bundle),
            follow_redirects=False,
        )
        self._closers.append(client.aclose)
        return client

    @cached_property
    def staging(self) -> StagingVault:
        from shared.adapters.vault import StagingVault

        return StagingVault(self.vault(self.settings.vault_url))

    @cached_property
    def plugins(self) -> PluginRegistry:
        from shared.integrations.registry import default_registry

        return default_registry()

    @cached_property
    def events(self) -> EventRecorder:
        from shared.rotation.events import EventRecorder

        return EventRecorder(self.rotation_log, self.clock)

    @cached_property
    def notifier(self) -> Notifier:
        if self.settings.email_enabled:
            return self.email
        from shared.rotation.ports import NullNotifier

        return NullNotifier()

    @cached_property
    def alerter(self) -> ThresholdAlerter:
        if self.settings.email_enabled:
            return self.email
        from shared.rotation.scanner import LogOnlyAlerter

        return LogOnlyAlerter(self.events)

    @cached_property
    def email(self) -> EmailNotifier:
        from shared.notifications.email import AcsEmailTransport, EmailNotifier

        settings = self.settings
        assert settings.acs_endpoint and settings.email_sender, "email is not configured"
        from shared.adapters.budgeted import BudgetedEmailTransport

        transport = AcsEmailTransport(
            settings.acs_endpoint,
            self.credential,
            timeout_seconds=settings.http_timeout_seconds,
            ca_bundle=settings.ca_bundle,
        )
        self._closers.append(transport.close)
        return EmailNotifier(
            BudgetedEmailTransport(transport, self.email_budget),
            sender_address=settings.email_sender,
            clock=self.clock,
            events=self.events,
            applications=self.applications,
            sleep=self.sleep,
        )

    @cached_property
    def inventory(self) -> InventoryService:
        from shared.inventory import GraphApplicationReader, InventoryService

        reader = GraphApplicationReader(
            self.credential,
            self.settings.graph_url,
            self.settings.graph_scope,
            timeout_seconds=self.settings.http_timeout_seconds,
            ca_bundle=self.settings.ca_bundle,
        )
        self._closers.append(reader.close)
        return InventoryService(
            reader,
            self.clock,
            credential_prefix=self.settings.credential_prefix,
            applications=self.applications,
        )

    @cached_property
    def engine(self) -> RotationEngine:
        from shared.rotation.engine import EngineSettings, RotationEngine

        return RotationEngine(
            applications=self.applications,
            events=self.events,
            directory=self.directory,
            verifier=self.verifier,
            staging=self.staging,
            plugins=self.plugins,
            notifier=self.notifier,
            settings=EngineSettings(
                credential_prefix=self.settings.credential_prefix,
                claim_timeout=timedelta(minutes=self.settings.claim_timeout_minutes),
                verify_timeout_seconds=self.settings.verify_timeout_seconds,
            ),
            clock=self.clock,
            services=self,
            groups=self.groups,
            rotator_vault_url=self.settings.vault_url,
            sleep=self.sleep,
            checkpoint=self.checkpoint or (lambda step: None),
            sign_ins=self.sign_ins,
        )

    @cached_property
    def api_auth(self) -> EntraTokenValidator:
        from shared.api.auth import EntraTokenValidator

        settings = self.settings
        return EntraTokenValidator(
            self.http,
            authority=settings.login_authority,
            tenant_id=settings.tenant_id,
            audience=str(settings.api_audience),
            role=settings.api_role,
        )

    @cached_property
    def sign_ins(self) -> SignInEvidence:
        from shared.discovery.signins import GraphSignInReader

        return GraphSignInReader(
            self.credential, self.settings.graph_url, self.settings.graph_scope, self.http
        )

    @cached_property
    def scanner(self) -> Scanner:
        from shared.rotation.scanner import Scanner

        return Scanner(
            self.applications,
            self.rotation_queue,
            self.schedule_policy,
            self.alerter,
            self.clock,
            events=self.events,
        )

    async def ensure_storage(self) -> None:
        """Create the tables and queues if missing (local stack and tests; Bicep does it in Azure)."""
        from azure.core.exceptions import ResourceExistsError

        from shared.storage import applications, due_index, expiry_index, queue, rotation_log

        tables = (
            applications.TABLE_NAME,
            due_index.TABLE_NAME,
            expiry_index.TABLE_NAME,
            rotation_log.TABLE_NAME,
        )
        for table in tables:
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
        # Imported here: the settings machinery is not needed to index the functions (cold start).
        from shared.config import load_settings

        _services = Services(load_settings())
    return _services


def set_services(services: Services | None) -> None:
    """Install services built elsewhere (tests, the local host); None resets to the default."""
    global _services
    _services = services
