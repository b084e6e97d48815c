"""A list entry read from the ``Listing`` column equals what the application's own answer shows
(issue 11), for generated configurations, statuses and moments; the entry is spliced from the
column's text, so names include the text it is split at."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.models import ApplicationConfig, ApplicationStatus, RotationClaim, RotationResult
from shared.storage.applications import (
    StoredApplication,
    _split_scheduled,
    format_instant,
    listed,
    listing_text,
)
from shared.triggers import http_api

BASE = datetime(2026, 12, 1, tzinfo=UTC)
moments = st.integers(-60 * 24 * 60, 60 * 24 * 60).map(
    lambda minutes: BASE + timedelta(minutes=minutes, microseconds=minutes % 997)
)


# Names that look like the member a listing is split at (the entry is spliced from stored text),
# and any text the API accepts.
display_names = st.sampled_from(
    ["Payroll", "ops ä", "x" * 80, 'a,"scheduledAt":null}', '\\",\\"scheduledAt\\":"x"}', "\\"]
) | st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=40)


@st.composite
def applications(draw: Any) -> tuple[ApplicationConfig, ApplicationStatus]:
    config = ApplicationConfig.model_validate(
        {
            "appId": str(uuid.UUID(int=draw(st.integers(1, 2**64)))),
            "objectId": str(uuid.uuid4()),
            "displayName": draw(display_names),
            "state": draw(st.sampled_from(["Active", "Disabled"])),
            "rotation": {"enabled": draw(st.booleans()), "updateThresholdHours": draw(st.integers(1, 23))},
            "integrations": [
                {"kind": "keyVault", "vaultUrl": f"https://kv{i}.vault.azure.net"}
                for i in range(draw(st.integers(0, 3)))
            ],
        },
        strict=False,
    )
    claim = None
    if draw(st.booleans()):
        claimed = draw(moments)
        claim = RotationClaim(
            rotation_id="r", owner="o", claimed_at=claimed, expires_at=claimed + timedelta(minutes=30)
        )
    status = ApplicationStatus(
        current_key_id=draw(st.none() | st.just("k")),
        expires_at=draw(st.none() | moments),
        last_updated_at=draw(st.none() | moments),
        last_result=draw(st.sampled_from(list(RotationResult))),
        in_progress=claim,
    )
    return config, status


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # patched per example
@given(applications(), moments)
def test_a_list_entry_shows_what_the_application_shows(
    monkeypatch: pytest.MonkeyPatch, application: tuple[ApplicationConfig, ApplicationStatus], now: datetime
) -> None:
    config, status = application
    with monkeypatch.context() as patch:
        patch.setattr(http_api, "get_services", lambda: SimpleNamespace(clock=lambda: now))
        stored = StoredApplication(config, status, 'W/"e"', BASE, BASE)
        body = http_api.application_body(stored)
        # Through the column's JSON, as a listing reads it.
        text = listing_text(config, status)
        assert _split_scheduled(text) is not None  # spliced, not read whole
        entry = json.loads(http_api.application_summary(listed(text, 'W/"e"'), format_instant(now)))
    assert entry == {
        "appId": body["appId"],
        "objectId": body["objectId"],
        "displayName": body["displayName"],
        "state": body["state"],
        "rotationEnabled": body["rotation"]["enabled"],
        "lastUpdatedAt": body["status"]["lastUpdatedAt"],
        "expiresAt": body["status"]["expiresAt"],
        "nextUpdateAt": body["status"].get("nextUpdateAt"),
        "lastResult": body["status"]["lastResult"],
        "rotationInProgress": body["status"]["inProgress"] is not None,
        "integrationCount": len(body["integrations"]),
        "etag": body["etag"],
    }


@given(moments)
def test_an_instant_reads_as_the_answers_timestamps_write_it(moment: datetime) -> None:
    """The splice writes ``nextUpdateAt`` from stored instant text; the answer's own form is
    ``rfc3339`` (a zero fraction left out)."""
    from shared.domain.fields import rfc3339
    from shared.storage.applications import instant_as_rfc3339

    assert instant_as_rfc3339(format_instant(moment)) == rfc3339(moment)
    whole = moment.replace(microsecond=0)
    assert instant_as_rfc3339(format_instant(whole)) == rfc3339(whole)


@pytest.mark.parametrize(
    "text",
    [
        # Another writer's spacing and member order: read whole.
        '{"scheduledAt": "2026-12-01T00:00:00Z", "appId": "a", "displayName": "n"}',
        '{"appId":"a","displayName":"n"}',
        '{"appId":"a","scheduledAt":"2026-12-01T00:00:00+00:00","displayName":"n"}',
    ],
)
def test_a_listing_written_otherwise_is_read_whole(text: str) -> None:
    entry = json.loads(
        http_api.application_summary(listed(text, 'W/"e"'), format_instant(BASE - timedelta(days=1)))
    )
    fields = json.loads(text)
    when = fields.pop("scheduledAt", None)
    assert entry == {
        **fields,
        "nextUpdateAt": None if when is None else "2026-12-01T00:00:00Z",
        "etag": 'W/"e"',
    }
