"""A refused write changes nothing: not the registration, not the group, and not the credential an
integration uses (found from the outside: a PUT refused with 412, 409 or 400 still replaced the
webhook URL in the rotator's vault, and the next rotation sent the new secret there). And the
preconditions answer as RFC 9110 section 13.1 says, concurrent requests included."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.test_applications_api import OBJECT_ID, registration

HOOK_URL = "https://hooks.example/webhooks/original-0123456789"
STRANGER_URL = "https://attacker.example/steal?sig=refused-0123456789"


def webhook(url: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "automation",
        "name": "hook",
        "target": "webhook",
        **({"webhookUrl": url} if url else {}),
        **extra,
    }


def credential_versions(sim_stack: Any, prefix: str) -> list[Any]:
    return sim_stack.keyvaults["rotator"].versions_named(prefix, include_deleted=True)


def test_a_refused_put_never_changes_the_credential_in_use(api: httpx.Client, sim_stack: Any) -> None:
    app_id = str(uuid.uuid4())
    created = api.put(f"/applications/{app_id}", json=registration(integrations=[webhook(HOOK_URL)]))
    assert created.status_code == 201, created.text
    reference = created.json()["integrations"][0]["webhookSecretName"]
    etag = created.headers["ETag"]
    vault = sim_stack.keyvaults["rotator"]
    assert [v.value for v in vault.versions(reference)] == [HOOK_URL]

    changed = api.put(
        f"/applications/{app_id}",
        json=registration(displayName="Renamed", integrations=[webhook(webhookSecretName=reference)]),
    )
    assert changed.status_code == 200, changed.text
    refusals = {
        # The helper's three examples: a stale If-Match, an objectId change without the flag, a
        # group that does not exist.
        412: (registration(integrations=[webhook(STRANGER_URL)]), {"If-Match": etag}),
        409: (registration(objectId=str(uuid.uuid4()), integrations=[webhook(STRANGER_URL)]), {}),
        400: (registration(groupId="no-such-group", integrations=[webhook(STRANGER_URL)]), {}),
    }
    for status, (body, headers) in refusals.items():
        refused = api.put(f"/applications/{app_id}", json=body, headers=headers)
        assert refused.status_code == status, refused.text
        assert api.get(f"/applications/{app_id}").json()["integrations"][0]["webhookSecretName"] == reference
        # Nothing stored: not a new version of the secret in use, not a secret of its own.
        assert [v.value for v in credential_versions(sim_stack, f"cred-{app_id}-")] == [HOOK_URL]

    # Accepted, the new URL is a secret of its own and the configuration names it.
    accepted = api.put(f"/applications/{app_id}", json=registration(integrations=[webhook(STRANGER_URL)]))
    assert accepted.status_code == 200, accepted.text
    renamed = accepted.json()["integrations"][0]["webhookSecretName"]
    assert renamed != reference and [v.value for v in vault.versions(renamed)] == [STRANGER_URL]
    assert [v.value for v in vault.versions(reference)] == [HOOK_URL]


def test_a_reference_must_be_the_one_stored_for_that_integration(api: httpx.Client, sim_stack: Any) -> None:
    """A caller cannot point one integration at another's credential, nor name one on a create."""
    app_id = str(uuid.uuid4())
    two = [webhook(HOOK_URL), webhook(STRANGER_URL, name="other")]
    created = api.put(f"/applications/{app_id}", json=registration(integrations=two))
    assert created.status_code == 201, created.text
    first, second = (i["webhookSecretName"] for i in created.json()["integrations"])
    swapped = [webhook(webhookSecretName=second), webhook(name="other", webhookSecretName=first)]
    refused = api.put(f"/applications/{app_id}", json=registration(integrations=swapped))
    assert refused.status_code == 400
    assert [(e["field"], e["allowed"]) for e in refused.json()["errors"]] == [
        ("integrations.0.webhookSecretName", first),
        ("integrations.1.webhookSecretName", second),
    ]
    new_app = str(uuid.uuid4())
    borrowed = api.put(
        f"/applications/{new_app}", json=registration(integrations=[webhook(webhookSecretName=first)])
    )
    assert borrowed.status_code == 400
    assert borrowed.json()["errors"][0]["field"] == "integrations.0.webhookSecretName"
    assert api.get(f"/applications/{new_app}").status_code == 404


def test_a_write_that_loses_a_race_after_storing_deletes_what_it_stored(
    app_host: Any, api: httpx.Client, sim_stack: Any
) -> None:
    """The store happens after every check, so only a concurrent write can refuse a request after
    it: the registration read, then another write, then this one's conditional save fails. With
    If-Match that is a 412 and the secret it stored is deleted; without, it applies on top."""
    from shared.credentials import extract_integration_credentials
    from shared.domain.models import ApplicationConfig
    from shared.registry import PreconditionFailed
    from shared.services import get_services

    app_id = str(uuid.uuid4())
    created = api.put(f"/applications/{app_id}", json=registration(integrations=[webhook(HOOK_URL)]))
    reference = created.json()["integrations"][0]["webhookSecretName"]
    services = get_services()
    stale = app_host.run_coroutine(services.applications.find(app_id))
    kept = registration(displayName="Concurrent", integrations=[webhook(webhookSecretName=reference)])
    assert api.put(f"/applications/{app_id}", json=kept).status_code == 200

    def put_with_stale_read(if_match: str | None) -> Any:
        body = {"appId": app_id, **registration(integrations=[webhook(STRANGER_URL)])}
        credentials = extract_integration_credentials(body, app_id, services.plugins)
        config = ApplicationConfig.model_validate(body, strict=False)
        store, reads = services.applications, []
        real_find = store.find

        async def find(wanted: str) -> Any:
            reads.append(wanted)
            return stale if len(reads) == 1 else await real_find(wanted)

        store.find = find  # type: ignore[method-assign]
        try:
            return app_host.run_coroutine(
                services.registry.put(config, if_match=if_match, create_only=False, credentials=credentials)
            )
        finally:
            del store.find

    with pytest.raises(PreconditionFailed):
        put_with_stale_read(stale.etag)
    vault = sim_stack.keyvaults["rotator"]
    assert api.get(f"/applications/{app_id}").json()["integrations"][0]["webhookSecretName"] == reference
    assert [v.name for v in vault.versions_named(f"cred-{app_id}-")] == [reference]
    assert len(vault.deleted_names()) >= 1 and STRANGER_URL not in [
        v.value for v in vault.versions_named(f"cred-{app_id}-")
    ]

    result = put_with_stale_read(None)
    renamed = result.application.config.integrations[0].webhook_secret_name
    assert api.get(f"/applications/{app_id}").json()["integrations"][0]["webhookSecretName"] == renamed
    assert [v.value for v in vault.versions(renamed)] == [STRANGER_URL]


def test_a_refused_group_put_never_changes_its_token(api: httpx.Client, sim_stack: Any) -> None:
    group_id = f"web-{uuid.uuid4().hex[:8]}"
    created = api.put(
        f"/groups/{group_id}", json={"displayName": "Web", "vercel": {"token": "token-one-0123456789"}}
    )
    assert created.status_code == 201, created.text
    reference, etag = created.json()["vercel"]["tokenSecretName"], created.headers["ETag"]
    kept = {"displayName": "Web team", "vercel": {"tokenSecretName": reference}}
    assert api.put(f"/groups/{group_id}", json=kept).status_code == 200
    stale = api.put(
        f"/groups/{group_id}",
        json={"displayName": "Web", "vercel": {"token": "REJECTED-TOKEN-1"}},
        headers={"If-Match": etag},
    )
    assert stale.status_code == 412, stale.text  # as for applications (it was a 409)
    assert api.get(f"/groups/{group_id}").json()["vercel"]["tokenSecretName"] == reference
    assert [v.value for v in credential_versions(sim_stack, f"cred-group-{group_id}-")] == [
        "token-one-0123456789"
    ]
    borrowed = api.put(
        f"/groups/{group_id}", json={"displayName": "Web", "vercel": {"tokenSecretName": "cred-x"}}
    )
    assert borrowed.status_code == 400 and borrowed.json()["errors"][0]["allowed"] == reference


def test_if_match_star_never_creates(api: httpx.Client) -> None:
    """RFC 9110 13.1.1: ``If-Match: *`` is false when there is no current representation (it was
    a 201 for an application that did not exist)."""
    app_id = str(uuid.uuid4())
    refused = api.put(f"/applications/{app_id}", json=registration(), headers={"If-Match": "*"})
    assert refused.status_code == 412, refused.text
    assert api.get(f"/applications/{app_id}").status_code == 404
    group_id = f"web-{uuid.uuid4().hex[:8]}"
    refused = api.put(f"/groups/{group_id}", json={"displayName": "Web"}, headers={"If-Match": "*"})
    assert refused.status_code == 412, refused.text
    assert api.get(f"/groups/{group_id}").status_code == 404


def test_delete_of_a_group_honours_if_match(api: httpx.Client) -> None:
    """It was ignored: ``DELETE /groups/{id}`` with ``If-Match: "garbage"`` deleted the group."""
    group_id = f"web-{uuid.uuid4().hex[:8]}"
    created = api.put(f"/groups/{group_id}", json={"displayName": "Web"})
    for stale in ('"garbage"', "", "W/\"datetime'2020-01-01T00%3A00%3A00Z'\""):
        refused = api.delete(f"/groups/{group_id}", headers={"If-Match": stale})
        assert refused.status_code == 412, (stale, refused.text)
        assert api.get(f"/groups/{group_id}").status_code == 200
    assert api.delete(f"/groups/{group_id}", headers={"If-Match": created.headers["ETag"]}).status_code == 204
    assert api.get(f"/groups/{group_id}").status_code == 404


def test_concurrent_create_only_puts_make_one_201_and_the_rest_412(api: httpx.Client) -> None:
    """Ten at once for one new application: it was 1x201, 2x412 and 7x409; one at a time, 412."""
    app_id = str(uuid.uuid4())

    def create() -> int:
        answer = api.put(f"/applications/{app_id}", json=registration(), headers={"If-None-Match": "*"})
        return answer.status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        statuses = sorted(pool.map(lambda _: create(), range(10)))
    assert statuses == [201] + [412] * 9
    assert api.get(f"/applications/{app_id}").json()["objectId"] == OBJECT_ID


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["none", "current", "stale", "garbage", "*"]),  # If-Match
            st.booleans(),  # objectId changed (without the flag)
            st.booleans(),  # a group that does not exist
            st.booleans(),  # a new webhook URL (else the reference sent back)
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_generated_puts_change_the_credential_only_when_accepted(
    api: httpx.Client, sim_stack: Any, steps: list[tuple[str, bool, bool, bool]]
) -> None:
    """Any sequence of PUTs, accepted or refused: the answer is what the preconditions say, and the
    credential the registration names is always the URL of the last accepted PUT that sent one."""
    app_id = str(uuid.uuid4())
    created = api.put(f"/applications/{app_id}", json=registration(integrations=[webhook(HOOK_URL)]))
    etag, stale = created.headers["ETag"], created.headers["ETag"]
    reference, in_use = created.json()["integrations"][0]["webhookSecretName"], HOOK_URL
    vault = sim_stack.keyvaults["rotator"]
    for number, (precondition, other_object, no_group, new_url) in enumerate(steps):
        url = f"https://hooks.example/webhooks/step-{number}-{uuid.uuid4().hex}"
        integration = webhook(url) if new_url else webhook(webhookSecretName=reference)
        body = registration(
            integrations=[integration],
            displayName=f"Step {number}",
            **({"objectId": str(uuid.uuid4())} if other_object else {}),
            **({"groupId": "no-such-group"} if no_group else {}),
        )
        sent = {"current": etag, "stale": stale, "garbage": '"garbage"', "*": "*"}.get(precondition)
        answer = api.put(f"/applications/{app_id}", json=body, headers={"If-Match": sent} if sent else {})
        expected = (
            400 if no_group else 409 if other_object else 412 if precondition in ("stale", "garbage") else 200
        )
        if precondition == "stale" and stale == etag:
            expected = 400 if no_group else 409 if other_object else 200  # nothing changed since
        assert answer.status_code == expected, (precondition, other_object, no_group, answer.text)
        if expected == 200:
            stale, etag = etag, answer.headers["ETag"]
            reference = answer.json()["integrations"][0]["webhookSecretName"]
            in_use = url if new_url else in_use
        assert api.get(f"/applications/{app_id}").json()["integrations"][0]["webhookSecretName"] == reference
        assert [v.value for v in vault.versions(reference)] == [in_use]
