"""The expiry inventory through the HTTP API: every application the rotator can see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


def test_inventory_lists_unmanaged_applications_and_flags_expiring_passwords(
    api: httpx.Client, sim_stack: Any
) -> None:
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=200)).isoformat()
    expiring = sim_stack.entra.add_application(
        "Legacy reporting",
        passwords=[{"displayName": "old", "secretText": "inventory-secret-1", "endDateTime": soon}],
    )
    healthy = sim_stack.entra.add_application(
        "Healthy app",
        passwords=[{"displayName": "ok", "secretText": "inventory-secret-2", "endDateTime": later}],
    )
    items: dict[str, Any] = {}
    token = None
    while True:
        params = {
            "expiringWithinDays": "7",
            "pageSize": "50",
            **({"continuationToken": token} if token else {}),
        }
        response = api.get("/inventory", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items.update({item["appId"]: item for item in body["items"]})
        token = body["continuationToken"]
        if not token:
            break
    assert items[expiring.app_id]["expiringSoon"] is True
    assert items[expiring.app_id]["registered"] is False
    assert items[expiring.app_id]["passwords"][0]["managedByRotator"] is False
    assert items[healthy.app_id]["expiringSoon"] is False
    assert "inventory-secret" not in response.text
    assert api.get("/inventory", params={"expiringWithinDays": "0"}).status_code == 400


def test_inventory_names_the_missing_permission(api: httpx.Client, sim_stack: Any) -> None:
    sim_stack.entra.fail_next(1, 403, method="GET", path=r"/v1\.0/applications$")
    response = api.get("/inventory")
    assert response.status_code == 403
    assert "Application.Read.All" in response.json()["detail"]
