"""The Azure DevOps plugin over real sockets against the DevOps simulator, alone and in the engine."""

from __future__ import annotations

import base64
import logging
import ssl
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from shared.adapters.vault import credential_secret_name
from shared.domain.models import ApplicationConfig, JobReason, RotationResult
from shared.domain.secret import SecretValue
from shared.errors import RotationError, ThrottledError, TransientServiceError
from shared.integrations.azure_devops import DEVOPS_RESOURCE, PLUGIN, AzureDevOpsIntegration
from shared.integrations.base import DeployContext
from tests.integrations.conftest import (
    Rotator,
    current_staged,
    receive_job,
    register_with_integrations,
    seed_vercel,
    use_plugins,
)

NEW_SECRET = "n3w-Secret~Value.0123456789abcdefABCDEF"
ORG, PROJECT = "contoso", "Payroll Platform"
PAT = "simulated-pat-0123456789abcdefghijklmnopqrstuv"


def app_config(app_id: str | None = None) -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {"appId": app_id or str(uuid.uuid4()), "objectId": str(uuid.uuid4()), "displayName": "Payroll API"},
        strict=False,
    )


def integration(connection_id: str, **extra: Any) -> AzureDevOpsIntegration:
    return AzureDevOpsIntegration.model_validate(
        {
            "kind": "azureDevOps",
            "name": "pipelines",
            "organization": ORG,
            "project": PROJECT,
            "serviceConnectionId": connection_id,
            **extra,
        },
        strict=False,
    )


def context(
    rotator: Rotator, app: ApplicationConfig, settings: AzureDevOpsIntegration, secret: str = NEW_SECRET
) -> DeployContext:
    return DeployContext(
        app=app,
        settings=settings,
        rotation_id=str(uuid.uuid4()),
        key_id=str(uuid.uuid4()),
        secret=SecretValue(secret),
        expires_at=None,
        services=rotator.services,
    )


def seed(devops_sim: Any, app: ApplicationConfig, **extra: Any) -> Any:
    return devops_sim.add_service_connection(
        ORG, PROJECT, name="payroll-prod", service_principal_id=str(app.app_id), **extra
    )


def assert_no_leak(secret: str, *texts: object) -> None:
    for text in texts:
        assert secret not in str(text)
        assert secret not in repr(text)


def error_texts(error: BaseException) -> list[object]:
    return [error, error.args, getattr(error, "context", None), error.__cause__, error.__context__]


# --- the plugin on its own ---------------------------------------------------------------------


async def test_deploy_sets_the_key_and_verify_accepts_it(
    devops_vercel_rotator: Rotator, devops_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_config()
    connection = seed(devops_sim, app, shared_with=("Other Project",))
    ctx = context(devops_vercel_rotator, app, integration(connection.id))

    outcome = await PLUGIN.deploy(ctx)
    await PLUGIN.verify(ctx)

    assert devops_sim.service_principal_key(connection.id) == NEW_SECRET
    stored = devops_sim.state()["serviceConnections"][connection.id]
    assert stored["authorization"]["parameters"]["authenticationType"] == "spnKey"
    # The whole object went back: both project references survived the update.
    assert len(stored["serviceEndpointProjectReferences"]) == 2
    assert outcome.details == {
        "organization": ORG,
        "project": PROJECT,
        "serviceConnectionId": connection.id,
        "serviceConnectionName": "payroll-prod",
    }
    # GET at project level, PUT at organization level (no project segment), as managed identity.
    calls = [(r.method, r.path, r.principal) for r in devops_sim.requests()]
    endpoint = f"_apis/serviceendpoint/endpoints/{connection.id}"
    assert calls == [
        ("GET", f"/{ORG}/{PROJECT}/{endpoint}", "rotator"),
        ("PUT", f"/{ORG}/{endpoint}", "rotator"),
        ("GET", f"/{ORG}/{PROJECT}/{endpoint}", "rotator"),
    ]
    assert_no_leak(NEW_SECRET, outcome, caplog.text)


async def test_the_api_never_returns_the_key(devops_vercel_rotator: Rotator, devops_sim: Any) -> None:
    app = app_config()
    connection = seed(devops_sim, app)
    token = devops_vercel_rotator.stack.issuer.issue("someone", DEVOPS_RESOURCE).token
    verify = ssl.create_default_context(cafile=str(devops_vercel_rotator.stack.ca_pem))
    async with httpx.AsyncClient(verify=verify) as client:
        response = await client.get(
            f"{devops_sim.url}/{ORG}/{PROJECT}/_apis/serviceendpoint/endpoints/{connection.id}",
            params={"api-version": "7.1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        unknown = await client.get(
            f"{devops_sim.url}/{ORG}/{PROJECT}/_apis/serviceendpoint/endpoints/{uuid.uuid4()}",
            params={"api-version": "7.1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        anonymous = await client.get(
            f"{devops_sim.url}/{ORG}/{PROJECT}/_apis/serviceendpoint/endpoints/{connection.id}",
            params={"api-version": "7.1"},
        )
    assert response.status_code == 200
    assert response.json()["authorization"]["parameters"]["serviceprincipalkey"] is None
    assert unknown.status_code == 200 and unknown.json() is None  # DevOps's "not found"
    assert anonymous.status_code == 203 and "text/html" in anonymous.headers["content-type"]


async def test_pat_authentication_reads_the_pat_from_the_rotators_vault(
    devops_vercel_rotator: Rotator, devops_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_config()
    connection = seed(devops_sim, app)
    name = credential_secret_name("devops", ORG, "pat")
    devops_vercel_rotator.stack.keyvaults["rotator"].set_secret(name, PAT)
    devops_sim.add_pat(PAT, principal="release-bot")
    ctx = context(
        devops_vercel_rotator, app, integration(connection.id, authentication="pat", patSecretName=name)
    )

    await PLUGIN.deploy(ctx)
    await PLUGIN.verify(ctx)

    assert devops_sim.service_principal_key(connection.id) == NEW_SECRET
    assert {r.principal for r in devops_sim.requests()} == {"release-bot"}
    assert PAT not in caplog.text and base64.b64encode(f":{PAT}".encode()).decode() not in caplog.text


async def test_a_pat_without_the_manage_scope_is_refused_clearly(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    app = app_config()
    connection = seed(devops_sim, app)
    name = credential_secret_name("devops", ORG, "pat")
    devops_vercel_rotator.stack.keyvaults["rotator"].set_secret(name, PAT)
    devops_sim.add_pat(PAT, scopes={"vso.serviceendpoint"})
    ctx = context(
        devops_vercel_rotator, app, integration(connection.id, authentication="pat", patSecretName=name)
    )
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(ctx)
    assert caught.value.code == "DevOpsUnauthorized"
    assert "PAT is invalid" in caught.value.message
    assert devops_sim.service_principal_key(connection.id) == "initial-key"


async def test_a_missing_pat_secret_is_named(devops_vercel_rotator: Rotator, devops_sim: Any) -> None:
    app = app_config()
    connection = seed(devops_sim, app)
    ctx = context(
        devops_vercel_rotator,
        app,
        integration(connection.id, authentication="pat", patSecretName="cred-gone"),
    )
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(ctx)
    assert caught.value.code == "DevOpsPatMissing" and "cred-gone" in caught.value.message


def test_check_and_describe() -> None:
    app = app_config()
    connection_id = str(uuid.uuid4())
    assert PLUGIN.check(integration(connection_id), app) == []
    [problem] = PLUGIN.check(integration(connection_id, authentication="pat"), app)
    assert problem.field == "patSecretName"
    description = PLUGIN.describe(integration(connection_id), app)
    assert "\n" not in description and connection_id in description and f"{ORG}/{PROJECT}" in description


async def test_a_connection_of_another_application_is_never_written(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    app = app_config()
    other = str(uuid.uuid4())
    connection = devops_sim.add_service_connection(
        ORG, PROJECT, name="someone-else", service_principal_id=other
    )
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(context(devops_vercel_rotator, app, integration(connection.id)))
    assert caught.value.code == "ServiceConnectionPrincipalMismatch"
    assert other in caught.value.message and "would break it" in caught.value.message
    assert devops_sim.requests(method="PUT") == []
    assert devops_sim.service_principal_key(connection.id) == "initial-key"


async def test_workload_identity_connections_are_refused(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    app = app_config()
    connection = seed(devops_sim, app, scheme="WorkloadIdentityFederation", key=None)
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(context(devops_vercel_rotator, app, integration(connection.id)))
    assert caught.value.code == "ServiceConnectionUnsupported"
    assert "WorkloadIdentityFederation" in caught.value.message


async def test_an_unknown_connection_is_not_found(devops_vercel_rotator: Rotator, devops_sim: Any) -> None:
    app = app_config()
    devops_sim.add_project(ORG, PROJECT)
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(context(devops_vercel_rotator, app, integration(str(uuid.uuid4()))))
    assert caught.value.code == "ServiceConnectionNotFound"
    assert "not found" in caught.value.message


async def test_forbidden_names_the_role_to_grant(
    devops_vercel_rotator: Rotator, devops_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_config()
    connection = seed(devops_sim, app, administrators={"someone-else"})
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(context(devops_vercel_rotator, app, integration(connection.id)))
    assert caught.value.code == "DevOpsForbidden"
    assert "Endpoint Administrator" in caught.value.message
    assert "vso.serviceendpoint_manage" in caught.value.message
    assert_no_leak(NEW_SECRET, *error_texts(caught.value), caplog.text)


async def test_an_identity_that_is_not_in_the_organization_gets_a_clear_401(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    app = app_config()
    connection = seed(devops_sim, app)
    devops_sim.set_members(ORG, {"somebody"})
    with pytest.raises(RotationError) as caught:
        await PLUGIN.deploy(context(devops_vercel_rotator, app, integration(connection.id)))
    assert caught.value.code == "DevOpsUnauthorized"
    assert f"user of the organization '{ORG}'" in caught.value.message


async def test_throttling_and_server_errors_are_retryable(
    devops_vercel_rotator: Rotator, devops_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_config()
    connection = seed(devops_sim, app)
    ctx = context(devops_vercel_rotator, app, integration(connection.id))

    devops_sim.throttle_next(1, retry_after=7, method="PUT")
    with pytest.raises(ThrottledError) as throttled:
        await PLUGIN.deploy(ctx)
    assert throttled.value.retry_after == 7 and throttled.value.status == 429
    assert "TF400733" in throttled.value.message

    devops_sim.fail_next(1, 503, method="PUT")
    with pytest.raises(TransientServiceError) as failed:
        await PLUGIN.deploy(ctx)
    assert failed.value.status == 503

    assert devops_sim.service_principal_key(connection.id) == "initial-key"
    await PLUGIN.deploy(ctx)
    assert devops_sim.service_principal_key(connection.id) == NEW_SECRET
    for error in (throttled.value, failed.value):
        assert_no_leak(NEW_SECRET, *error_texts(error))
    assert_no_leak(NEW_SECRET, caplog.text)


async def test_verify_reports_a_connection_that_failed_validation(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    app = app_config()
    connection = seed(devops_sim, app)
    devops_sim.set_switches(fail_validation=1)
    ctx = context(devops_vercel_rotator, app, integration(connection.id))
    await PLUGIN.deploy(ctx)
    with pytest.raises(RotationError) as caught:
        await PLUGIN.verify(ctx)
    assert caught.value.code == "ServiceConnectionFailed" and "AADSTS7000215" in caught.value.message


# --- in the engine -----------------------------------------------------------------------------


async def test_engine_delivers_to_the_service_connection(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "azureDevOps")
    entra_app = rotator.seed_entra_app()
    connection = devops_sim.add_service_connection(
        ORG, PROJECT, name="payroll-prod", service_principal_id=entra_app.app_id
    )
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {
                "kind": "azureDevOps",
                "organization": ORG,
                "project": PROJECT,
                "serviceConnectionId": connection.id,
            }
        ],
    )

    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(rotator, entra_app.app_id)
    assert devops_sim.service_principal_key(connection.id) == staged.value
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.SUCCEEDED
    assert status.integrations["azureDevOps-1"].result == "succeeded"
    assert status.integrations["azureDevOps-1"].key_id == staged.tags["keyId"]
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    deployed = next(e for e in page.items if e.event == "integration.deployed")
    assert deployed.details["serviceConnectionId"] == connection.id
    assert staged.value not in str([e.model_dump() for e in page.items])


async def test_engine_waits_out_devops_throttling(devops_vercel_rotator: Rotator, devops_sim: Any) -> None:
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "azureDevOps")
    entra_app = rotator.seed_entra_app()
    connection = devops_sim.add_service_connection(
        ORG, PROJECT, name="payroll-prod", service_principal_id=entra_app.app_id
    )
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {
                "kind": "azureDevOps",
                "organization": ORG,
                "project": PROJECT,
                "serviceConnectionId": connection.id,
            }
        ],
    )
    devops_sim.throttle_next(1, retry_after=1, method="PUT")

    started = time.monotonic()
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    assert time.monotonic() - started >= 1

    assert [r.status for r in devops_sim.requests(method="PUT")] == [429, 200]
    assert devops_sim.service_principal_key(connection.id) == current_staged(rotator, entra_app.app_id).value
    status = await rotator.status(entra_app.app_id)
    assert status.integrations["azureDevOps-1"].result == "succeeded"


async def test_a_refused_connection_does_not_stop_vercel_and_is_retried_later(
    devops_vercel_rotator: Rotator, devops_sim: Any, vercel_sim: Any
) -> None:
    rotator = devops_vercel_rotator
    services = rotator.services
    use_plugins(services, "azureDevOps", "vercel")
    entra_app = rotator.seed_entra_app()
    connection = devops_sim.add_service_connection(
        ORG, PROJECT, name="payroll-prod", service_principal_id=entra_app.app_id
    )
    project = await seed_vercel(rotator, vercel_sim)
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {
                "kind": "azureDevOps",
                "organization": ORG,
                "project": PROJECT,
                "serviceConnectionId": connection.id,
            },
            {
                "kind": "vercel",
                "projectId": project.id,
                "envVarName": "AZURE_CLIENT_SECRET",
                "targets": ["production"],
            },
        ],
        group_id="web",
    )
    devops_sim.set_switches(deny_access=True)  # 403: a permanent refusal

    assert await services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(rotator, entra_app.app_id)
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.DEGRADED
    assert status.integrations["azureDevOps-1"].result == "failed"
    error = status.integrations["azureDevOps-1"].error
    assert error is not None and error.code == "DevOpsForbidden" and "Endpoint Administrator" in error.message
    assert status.integrations["vercel-2"].result == "succeeded"
    assert vercel_sim.env_var(project.id, "AZURE_CLIENT_SECRET").value == staged.value
    assert devops_sim.service_principal_key(connection.id) == "initial-key"
    assert status.retry_at is not None

    # The operator grants access; the timer's retry delivers the staged secret, no new credential.
    devops_sim.set_switches(deny_access=False)
    rotator.clock.advance(timedelta(minutes=16))
    report = await services.scanner.scan()
    assert report.enqueued == {"retryIntegrations": 1}
    job = await receive_job(services)
    assert job.reason == JobReason.RETRY and job.app_id == entra_app.app_id
    assert await services.engine.handle(job) == "delivered"

    assert devops_sim.service_principal_key(connection.id) == staged.value
    assert len(rotator.managed(entra_app)) == 1
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.SUCCEEDED and status.retry_at is None
    assert {name: s.result for name, s in status.integrations.items()} == {
        "azureDevOps-1": "succeeded",
        "vercel-2": "succeeded",
    }


# --- the simulator's admin surface -------------------------------------------------------------


async def test_simulator_seed_state_and_switches_over_http(
    devops_vercel_rotator: Rotator, devops_sim: Any
) -> None:
    app_id = str(uuid.uuid4())
    devops_sim.seed(
        {
            "serviceConnections": [
                {
                    "organization": ORG,
                    "project": PROJECT,
                    "name": "seeded",
                    "servicePrincipalId": app_id,
                    "id": "6a1f1d38-0000-4000-8000-000000000001",
                    "key": "seeded-key",
                }
            ],
            "pats": [{"token": PAT, "principal": "bot"}],
        }
    )
    verify = ssl.create_default_context(cafile=str(devops_vercel_rotator.stack.ca_pem))
    async with httpx.AsyncClient(base_url=devops_sim.url, verify=verify) as client:
        state = (await client.get("/_sim/state")).json()
        switches = (
            await client.post(
                "/_sim/switches", json={"fail_validation": 2, "throttle": {"count": 1, "retry_after": 3}}
            )
        ).json()
        throttled = await client.get(
            f"/{ORG}/{PROJECT}/_apis/serviceendpoint/endpoints/6a1f1d38-0000-4000-8000-000000000001",
            params={"api-version": "7.1"},
            headers={"Authorization": "Basic " + base64.b64encode(f"x:{PAT}".encode()).decode()},
        )
    connection = state["serviceConnections"]["6a1f1d38-0000-4000-8000-000000000001"]
    assert connection["authorization"]["parameters"]["serviceprincipalkey"] == "seeded-key"
    assert switches["fail_validation"] == 2 and switches["faults"][0]["retry_after"] == 3
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    body = throttled.json()
    assert body["typeKey"] == "RequestBlockedException" and body["message"].startswith("TF400733")
    assert set(body) == {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}
