"""The expiry inventory through msgraph-sdk against the simulated Graph: every application, each
password's expiry, paging, and a clear answer when the rotator may not list applications."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from shared.errors import ExternalServiceError, ValidationError
from shared.inventory import (
    REQUIRED_PERMISSION,
    GraphApplicationReader,
    InventoryService,
    decode_continuation,
    expiry_window,
)
from tests.notifications.conftest import EmailRotator


@pytest.fixture
async def inventory(email_rotator: EmailRotator) -> AsyncIterator[InventoryService]:
    services = email_rotator.services
    reader = GraphApplicationReader(
        services.credential,
        services.settings.graph_url,
        services.settings.graph_scope,
        timeout_seconds=services.settings.http_timeout_seconds,
        ca_bundle=services.settings.ca_bundle,
    )
    try:
        yield InventoryService(
            reader,
            services.clock,
            credential_prefix=services.settings.credential_prefix,
            applications=services.applications,
        )
    finally:
        await reader.close()


def password(name: str, ends_in: timedelta, rotator: EmailRotator) -> dict[str, Any]:
    return {
        "displayName": name,
        "secretText": f"{name}-secret-text-0123456789abcdef",
        "endDateTime": (rotator.clock() + ends_in).isoformat(),
    }


async def test_lists_every_application_with_each_password_and_flags_the_expiring(
    email_rotator: EmailRotator, inventory: InventoryService
) -> None:
    entra = email_rotator.stack.entra
    soon = entra.add_application(
        "Legacy CRM",
        passwords=[
            password("old", timedelta(days=-3), email_rotator),
            password("soon", timedelta(days=5), email_rotator),
        ],
    )
    later = entra.add_application(
        "Reporting", passwords=[password("later", timedelta(days=200), email_rotator)]
    )
    empty = entra.add_application("No Secrets")
    managed = email_rotator.seed_entra_app()  # Payroll API, registered and rotated below
    await email_rotator.register_app(managed)
    await email_rotator.services.engine.handle(email_rotator.job(managed.app_id))

    page = await inventory.list(expiring_within_days=30, page_size=100, continuation=None)

    assert page.continuation_token is None
    by_app = {item.app_id: item for item in page.items}
    assert set(by_app) == {soon.app_id, later.app_id, empty.app_id, managed.app_id}
    crm = by_app[soon.app_id]
    assert crm.display_name == "Legacy CRM" and crm.registered is False
    assert crm.expiring_soon
    assert [(p.display_name, p.expired, p.expiring_soon) for p in crm.passwords] == [
        ("old", True, False),
        ("soon", False, True),
    ]
    assert crm.next_expiry == crm.passwords[1].end
    assert not by_app[later.app_id].expiring_soon
    assert by_app[empty.app_id].passwords == () and by_app[empty.app_id].next_expiry is None
    payroll = by_app[managed.app_id]
    assert payroll.registered is True
    assert {p.managed_by_rotator for p in payroll.passwords} == {True, False}  # hand-made one kept
    assert payroll.expiring_soon  # the new secret expires in 21 days
    body = page.to_json()
    assert body["expiringWithinDays"] == 30
    item = next(i for i in body["items"] if i["appId"] == soon.app_id)
    assert item["passwords"][1]["expiringSoon"] is True and "secretText" not in str(item)
    # Never a secret in the answer.
    assert "secret-text" not in str(body)


async def test_pages_follow_graph_next_links(
    email_rotator: EmailRotator, inventory: InventoryService
) -> None:
    for index in range(5):
        email_rotator.stack.entra.add_application(f"App {index}")
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await inventory.list(expiring_within_days=7, page_size=2, continuation=token)
        pages += 1
        seen += [item.display_name for item in page.items]
        token = page.continuation_token
        if token is None:
            break
    assert pages == 3 and sorted(seen) == [f"App {i}" for i in range(5)]
    requests = email_rotator.stack.entra.requests(method="GET", path=r"^/v1\.0/applications$")
    assert len(requests) == 3
    assert "%24skiptoken=sim2" in requests[1].raw_path or "$skiptoken=sim2" in requests[1].raw_path


async def test_missing_permission_names_application_read_all(
    email_rotator: EmailRotator, inventory: InventoryService
) -> None:
    email_rotator.stack.entra.fail_next(1, 403, method="GET", path=r"^/v1\.0/applications$")
    with pytest.raises(ExternalServiceError) as refused:
        await inventory.list(expiring_within_days=30, page_size=10, continuation=None)
    error = refused.value
    assert error.code == "InsufficientPermission" and error.status == 403
    assert REQUIRED_PERMISSION == "Application.Read.All"
    assert "Application.Read.All" in error.message
    assert error.context["missing_permission"] == "Application.Read.All"


async def test_throttling_is_retried(email_rotator: EmailRotator, inventory: InventoryService) -> None:
    email_rotator.stack.entra.add_application("Only")
    email_rotator.stack.entra.throttle_next(1, retry_after=1, method="GET", path=r"^/v1\.0/applications$")
    page = await inventory.list(expiring_within_days=30, page_size=10, continuation=None)
    assert [item.display_name for item in page.items] == ["Only"]


def test_inputs_are_validated() -> None:
    assert expiry_window(None) == 30 and expiry_window("7") == 7
    for bad in ("0", "366", "-1", "x"):
        with pytest.raises(ValidationError):
            expiry_window(bad)
    with pytest.raises(ValidationError):
        decode_continuation("%%%not-a-token")
    assert decode_continuation(None) is None
