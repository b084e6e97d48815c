"""Application registrations on Azure Table storage, with ETag optimistic concurrency.

Key design (table ``applications``)
-----------------------------------
All rows live in one partition, ``registry``, so that an application row and its schedule-index row
can change together in one entity-group transaction (Azure Tables transactions span one partition):

* ``app|{appId}``            the registration: config JSON, status JSON, and ``IndexKey`` (below).
* ``due|{attentionAt}|{appId}``  one index row per application the timer must look at some day;
  ``attentionAt`` is a fixed-width UTC timestamp, so RowKey order is time order.

The timer reads only the index rows with ``RowKey <= 'due|{now}|~'``: a key-range query whose cost
grows with the number of due applications, not with the size of the table. ``IndexKey`` on the app
row names its current index row, so a write can delete the old one in the same transaction; the
app row's ETag guards both. What the attention time is comes from ``shared.domain.schedule``.

One partition serves thousands of writes per second on Azure, far more than rotations need.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.domain.models import ApplicationConfig, ApplicationStatus
from shared.domain.schedule import SchedulePolicy, attention_at
from shared.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION = "registry"
# Rows that are not registrations (turns of periodic tasks); never read by the registry queries.
META_PARTITION = "meta"
APP_PREFIX = "app|"
INDEX_PREFIX = "due|"
TABLE_NAME = "applications"


def format_instant(moment: datetime) -> str:
    """Fixed-width UTC text that sorts in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def app_row_key(app_id: str) -> str:
    return f"{APP_PREFIX}{app_id}"


def index_row_key(moment: datetime, app_id: str) -> str:
    return f"{INDEX_PREFIX}{format_instant(moment)}|{app_id}"


@dataclass(frozen=True)
class StoredApplication:
    config: ApplicationConfig
    status: ApplicationStatus
    etag: str
    created_at: datetime
    updated_at: datetime
    index_key: str | None = None

    @property
    def app_id(self) -> str:
        return str(self.config.app_id)


@dataclass(frozen=True)
class DueApplication:
    app_id: str
    attention_at: datetime


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    continuation_token: str | None


def encode_continuation(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def decode_continuation(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        padded = text + "=" * (-len(text) % 4)
        token = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        token = None
    if not isinstance(token, dict) or not all(isinstance(v, str) for v in token.values()):
        from shared.errors import FieldProblem

        raise ValidationError(
            "Invalid continuation token",
            [
                FieldProblem(
                    "continuationToken", "is not a token this API returned", "a token from a previous page"
                )
            ],
        )
    return token


class ApplicationStore:
    """The registrations. Every write keeps the app row and its index row consistent."""

    def __init__(self, table: TableClient, policy: SchedulePolicy) -> None:
        self._table = table
        self._policy = policy

    async def get(self, app_id: str) -> StoredApplication:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = await self._table.get_entity(PARTITION, app_row_key(app_id))
        except ResourceNotFoundError:
            raise NotFoundError("Application is not registered", app_id=app_id) from None
        return _from_entity(entity)

    async def find(self, app_id: str) -> StoredApplication | None:
        try:
            return await self.get(app_id)
        except NotFoundError:
            return None

    async def list_page(self, page_size: int, continuation_token: str | None) -> Page[StoredApplication]:
        token = decode_continuation(continuation_token)
        pages = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": PARTITION, "lo": APP_PREFIX, "hi": APP_PREFIX[:-1] + "}"},
            results_per_page=page_size,
        ).by_page(continuation_token=token)
        items: list[StoredApplication] = []
        async for page in pages:
            items = [_from_entity(entity) async for entity in page]
            break
        return Page(items, encode_continuation(getattr(pages, "continuation_token", None)))

    async def create(
        self, config: ApplicationConfig, status: ApplicationStatus, now: datetime
    ) -> StoredApplication:
        from azure.data.tables import TableTransactionError

        app_id = str(config.app_id)
        entity, index_key = self._entities(config, status, created_at=now, updated_at=now)
        operations: list[Any] = [("create", entity)]
        if index_key:
            operations.append(("upsert", {"PartitionKey": PARTITION, "RowKey": index_key, "AppId": app_id}))
        try:
            results = await self._table.submit_transaction(operations)
        except TableTransactionError as error:
            if error.error_code == "EntityAlreadyExists" or error.status_code == 409:
                raise ConflictError("Application is already registered", app_id=app_id) from None
            raise
        return StoredApplication(config, status, _etag(results[0]), now, now, index_key)

    async def save(
        self,
        current: StoredApplication,
        config: ApplicationConfig,
        status: ApplicationStatus,
        now: datetime,
        *,
        etag: str | None = None,
    ) -> StoredApplication:
        """Replace the row that was read as ``current``; 412-style conflict if it changed since.

        ``etag`` overrides ``current.etag`` (the caller's If-Match).
        """
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        app_id = str(config.app_id)
        entity, index_key = self._entities(config, status, created_at=current.created_at, updated_at=now)
        operations: list[Any] = [
            (
                "update",
                entity,
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": etag or current.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        ]
        if current.index_key != index_key:
            if current.index_key:
                operations.append(("delete", {"PartitionKey": PARTITION, "RowKey": current.index_key}))
            if index_key:
                operations.append(
                    ("upsert", {"PartitionKey": PARTITION, "RowKey": index_key, "AppId": app_id})
                )
        try:
            results = await self._table.submit_transaction(operations)
        except TableTransactionError as error:
            raise _conflict_or_missing(error, app_id) from None
        return StoredApplication(config, status, _etag(results[0]), current.created_at, now, index_key)

    async def delete(self, current: StoredApplication, *, etag: str | None = None) -> None:
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError

        operations: list[Any] = [
            (
                "delete",
                {"PartitionKey": PARTITION, "RowKey": app_row_key(current.app_id)},
                {"etag": etag or current.etag, "match_condition": MatchConditions.IfNotModified},
            )
        ]
        if current.index_key:
            operations.append(("delete", {"PartitionKey": PARTITION, "RowKey": current.index_key}))
        try:
            await self._table.submit_transaction(operations)
        except TableTransactionError as error:
            raise _conflict_or_missing(error, current.app_id) from None

    async def take_turn(self, task: str, now: datetime, interval: timedelta) -> tuple[bool, dict[str, Any]]:
        """Whether this instance runs ``task`` now: at most once per ``interval`` across every
        instance. The turn is a row in the ``meta`` partition, taken by an ETag-conditional write
        (a lost race is "not your turn"). Returns (taken, what the last turn recorded)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        try:
            entity: Any = await self._table.get_entity(META_PARTITION, task)
        except ResourceNotFoundError:
            entity = None
        if entity is not None:
            last = entity.get("LastRun")
            if isinstance(last, datetime) and timedelta(0) <= now - _as_utc(last) < interval:
                return False, dict(entity)
        row = {"PartitionKey": META_PARTITION, "RowKey": task, "LastRun": now}
        try:
            if entity is None:
                await self._table.create_entity(row)
            else:
                await self._table.update_entity(
                    row,
                    mode=UpdateMode.MERGE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False, dict(entity or {})
        return True, dict(entity or {})

    async def record_turn(self, task: str, values: dict[str, Any]) -> None:
        """Store what a turn of ``task`` found (read back by the instances that skip their turn)."""
        from azure.data.tables import UpdateMode

        await self._table.upsert_entity(
            {"PartitionKey": META_PARTITION, "RowKey": task, **values}, mode=UpdateMode.MERGE
        )

    async def due_batches(self, now: datetime, batch_size: int) -> AsyncIterator[list[DueApplication]]:
        """Every index row whose attention time has come, oldest first, in batches of
        ``batch_size`` (one Table page each, followed by its continuation token), so a scan can
        drain any number of due applications without holding them all."""
        upper = f"{INDEX_PREFIX}{format_instant(now)}|~"
        pages = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
            parameters={"pk": PARTITION, "lo": INDEX_PREFIX, "hi": upper},
            results_per_page=min(batch_size, 1000),
            select=["RowKey", "AppId"],
        ).by_page()
        async for page in pages:
            batch = []
            async for entity in page:
                _, instant, app_id = str(entity["RowKey"]).split("|", 2)
                batch.append(DueApplication(app_id, _parse_instant(instant)))
            if batch:
                yield batch

    def _entities(
        self,
        config: ApplicationConfig,
        status: ApplicationStatus,
        *,
        created_at: datetime,
        updated_at: datetime,
    ) -> tuple[dict[str, Any], str | None]:
        app_id = str(config.app_id)
        attention = attention_at(config, status, self._policy)
        index_key = index_row_key(attention, app_id) if attention else None
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": app_row_key(app_id),
            "AppId": app_id,
            "DisplayName": config.display_name,
            "Config": json.dumps(config.to_json_dict(), separators=(",", ":")),
            "Status": json.dumps(status.to_json_dict(), separators=(",", ":")),
            "IndexKey": index_key or "",
            "CreatedAt": created_at,
            "UpdatedAt": updated_at,
        }
        return entity, index_key


def _from_entity(entity: Any) -> StoredApplication:
    # Stored JSON was written by this code from validated models: re-validate leniently (no strict
    # re-check of ranges that may have been legal when written).
    config = ApplicationConfig.model_validate(json.loads(entity["Config"]), strict=False)
    status = ApplicationStatus.model_validate(json.loads(entity["Status"]), strict=False)
    return StoredApplication(
        config=config,
        status=status,
        etag=entity.metadata["etag"],
        created_at=_as_utc(entity["CreatedAt"]),
        updated_at=_as_utc(entity["UpdatedAt"]),
        index_key=entity.get("IndexKey") or None,
    )


def _etag(result: Any) -> str:
    return str(result["etag"]) if isinstance(result, dict) else str(result)


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _conflict_or_missing(error: Any, app_id: str) -> Exception:
    if error.status_code == 404 or error.error_code == "ResourceNotFound":
        return NotFoundError("Application is not registered", app_id=app_id)
    if error.status_code in (409, 412) or error.error_code in (
        "UpdateConditionNotSatisfied",
        "ConditionNotMet",
    ):
        return ConflictError("Application was changed by someone else; read it again", app_id=app_id)
    return error  # type: ignore[no-any-return]


__all__: Sequence[str] = (
    "ApplicationStore",
    "DueApplication",
    "Page",
    "StoredApplication",
    "TABLE_NAME",
)
