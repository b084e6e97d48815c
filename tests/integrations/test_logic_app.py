"""Logic App API connections: the plugin's real HTTP client against the ARM simulator, over TLS."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.adapters.retry import RetryPolicy, retry
from shared.errors import RotationError, ThrottledError, TransientServiceError
from shared.integrations.logic_app import LogicAppConnectionPlugin
from tests.integrations.conftest import (
    CONNECTION_ID,
    NEW_SECRET,
    app_logs,
    assert_secret_absent,
    current_staged,
    install_plugins,
    plugin_context,
    register_with_integrations,
)
from tests.rotation.conftest import Rotator

TENANT = "00000000-0000-0000-0000-00000000cafe"
INTEGRATION = {"kind": "logicAppConnection", "resourceId": CONNECTION_ID}


def context(services: Any, **kwargs: Any) -> Any:
    return plugin_context(services, INTEGRATION, **kwargs)


async def test_older_connection_gets_the_secret_and_keeps_its_other_parameters(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context(arm_services)
    arm_sim.add_connection(
        CONNECTION_ID,
        client_id=str(ctx.app.app_id).upper(),  # casing of a GUID does not matter
        tenant_id=TENANT,
        extra_parameters={"vaultName": "payroll-kv"},
    )
    plugin = LogicAppConnectionPlugin()

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    connection = arm_sim.connection(CONNECTION_ID)
    assert connection.secret == NEW_SECRET
    assert connection.shape == "parameterValues" and connection.puts == 1
    assert connection.parameters == {
        "token:clientId": str(ctx.app.app_id).upper(),
        "token:clientSecret": NEW_SECRET,
        "token:TenantId": TENANT,
        "token:grantType": "client_credentials",
        "vaultName": "payroll-kv",
    }
    assert connection.status == "Connected"
    assert outcome.details["parameterShape"] == "parameterValues"
    assert_secret_absent(NEW_SECRET, outcome, logs=app_logs(caplog))


async def test_newer_connection_keeps_its_parameter_set_and_key_spelling(
    arm_sim: Any, arm_services: Any
) -> None:
    ctx = context(arm_services)
    arm_sim.add_connection(
        CONNECTION_ID,
        client_id=str(ctx.app.app_id),
        tenant_id=TENANT,
        shape="parameterValueSet",
        set_name="servicePrincipal",
        key_spelling={"tenant": "token:tenantId"},
        kind="V2",
    )

    await LogicAppConnectionPlugin().deploy(ctx)
    await LogicAppConnectionPlugin().verify(ctx)

    connection = arm_sim.connection(CONNECTION_ID)
    assert connection.shape == "parameterValueSet" and connection.set_name == "servicePrincipal"
    # Spelled as the connection spells them; nothing the connector does not define was added
    # (the simulator refuses unknown parameters with ParameterNotDefined, as connectors do).
    assert connection.parameters == {
        "token:clientId": str(ctx.app.app_id),
        "token:tenantId": TENANT,
        "token:clientSecret": NEW_SECRET,
    }
    assert connection.kind == "V2"


async def test_connection_of_another_application_is_left_alone(arm_sim: Any, arm_services: Any) -> None:
    arm_sim.add_connection(CONNECTION_ID, client_id="99999999-9999-4999-8999-999999999999", tenant_id=TENANT)

    with pytest.raises(RotationError) as caught:
        await LogicAppConnectionPlugin().deploy(context(arm_services))

    assert caught.value.code == "ConnectionClientMismatch"
    assert "99999999-9999-4999-8999-999999999999" in caught.value.message
    assert arm_sim.connection(CONNECTION_ID).puts == 0
    assert arm_sim.connection(CONNECTION_ID).secret == "old-connection-secret"


async def test_connection_without_a_client_id_is_refused(arm_sim: Any, arm_services: Any) -> None:
    connection = arm_sim.add_connection(CONNECTION_ID, client_id="x", shape="parameterValueSet")
    del connection.parameters["token:clientId"]  # e.g. a managed-identity or OAuth connection

    with pytest.raises(RotationError) as caught:
        await LogicAppConnectionPlugin().deploy(context(arm_services))
    assert caught.value.code == "ConnectionNotServicePrincipal"
    assert connection.puts == 0


async def test_missing_connection_is_a_clear_error(arm_services: Any, arm_sim: Any) -> None:
    with pytest.raises(RotationError) as caught:
        await LogicAppConnectionPlugin().deploy(context(arm_services))
    assert caught.value.code == "ResourceNotFound"
    assert "API connection 'payroll-kv' was not found" in caught.value.message


async def test_forbidden_names_the_role_the_rotator_needs(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context(arm_services)
    arm_sim.add_connection(CONNECTION_ID, client_id=str(ctx.app.app_id), tenant_id=TENANT)
    arm_sim.set_switches(deny_access="connections/payroll-kv")

    with pytest.raises(RotationError) as caught:
        await LogicAppConnectionPlugin().deploy(ctx)

    message = caught.value.message
    assert "'Logic App Contributor' role" in message and CONNECTION_ID in message
    assert caught.value.code == "AuthorizationFailed"
    assert_secret_absent(NEW_SECRET, caught.value, logs=app_logs(caplog))


async def test_throttled_put_is_retried_after_the_advised_delay(arm_sim: Any, arm_services: Any) -> None:
    ctx = context(arm_services)
    arm_sim.add_connection(CONNECTION_ID, client_id=str(ctx.app.app_id), tenant_id=TENANT)
    arm_sim.throttle_next(1, retry_after=7, method="PUT")
    plugin = LogicAppConnectionPlugin()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(ThrottledError) as caught:
        await plugin.deploy(ctx)
    assert caught.value.retry_after == 7
    arm_sim.throttle_next(1, retry_after=7, method="PUT")
    await retry(lambda: plugin.deploy(ctx), policy=RetryPolicy(), describe="deploy", sleep=sleep)

    assert waits == [7]
    assert arm_sim.connection(CONNECTION_ID).secret == NEW_SECRET


async def test_server_errors_are_transient(arm_sim: Any, arm_services: Any) -> None:
    ctx = context(arm_services)
    arm_sim.add_connection(CONNECTION_ID, client_id=str(ctx.app.app_id), tenant_id=TENANT)
    arm_sim.fail_next(1, 503, method="GET")

    with pytest.raises(TransientServiceError) as caught:
        await LogicAppConnectionPlugin().deploy(ctx)
    assert caught.value.status == 503
    await LogicAppConnectionPlugin().deploy(ctx)
    assert arm_sim.connection(CONNECTION_ID).secret == NEW_SECRET


@pytest.mark.parametrize("style", ["azure-async", "location"])
async def test_long_running_update_is_followed_to_its_end(
    arm_sim: Any, arm_services: Any, style: str
) -> None:
    ctx = context(arm_services)
    arm_sim.add_connection(CONNECTION_ID, client_id=str(ctx.app.app_id), tenant_id=TENANT)
    arm_sim.set_switches(lro=style, lro_polls=2, lro_retry_after=0)

    await LogicAppConnectionPlugin().deploy(ctx)

    assert arm_sim.connection(CONNECTION_ID).secret == NEW_SECRET
    assert len(arm_sim.requests(method="GET", path="Microsoft.Simulator")) == 3


async def test_failed_long_running_update_is_a_rotation_error(arm_sim: Any, arm_services: Any) -> None:
    ctx = context(arm_services)
    arm_sim.add_connection(CONNECTION_ID, client_id=str(ctx.app.app_id), tenant_id=TENANT)
    arm_sim.set_switches(lro="azure-async", lro_polls=0, lro_retry_after=0, lro_fail=True)

    with pytest.raises(RotationError) as caught:
        await LogicAppConnectionPlugin().deploy(ctx)
    assert caught.value.code == "Conflict"
    assert arm_sim.connection(CONNECTION_ID).secret == "old-connection-secret"


async def test_verify_fails_when_the_connection_reports_an_error(
    arm_sim: Any, arm_services: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context(arm_services)
    arm_sim.add_connection(CONNECTION_ID, client_id=str(ctx.app.app_id), tenant_id=TENANT)
    arm_sim.set_switches(connection_error=True)
    plugin = LogicAppConnectionPlugin()

    await plugin.deploy(ctx)
    with pytest.raises(RotationError) as caught:
        await plugin.verify(ctx)

    assert caught.value.code == "ConnectionNotConnected"
    assert "'Error'" in caught.value.message and "Unauthorized" in caught.value.message
    assert_secret_absent(NEW_SECRET, caught.value, logs=app_logs(caplog))


async def test_rotation_delivers_the_staged_secret_to_the_connection(
    arm_rotator: Rotator, arm_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entra_app = arm_rotator.seed_entra_app()
    arm_sim.add_connection(
        CONNECTION_ID, client_id=entra_app.app_id, tenant_id=TENANT, shape="parameterValueSet"
    )
    install_plugins(arm_rotator.services, LogicAppConnectionPlugin())
    await register_with_integrations(arm_rotator, entra_app, [INTEGRATION])

    assert await arm_rotator.services.engine.handle(arm_rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(arm_rotator, entra_app.app_id)
    assert arm_sim.connection(CONNECTION_ID).secret == staged.value
    status = await arm_rotator.status(entra_app.app_id)
    assert status.last_result == "succeeded"
    assert status.integrations["logicAppConnection-1"].result == "succeeded"
    assert staged.value not in app_logs(caplog)
    page = await arm_rotator.services.rotation_log.list_page(entra_app.app_id, 100, None)
    assert all(staged.value not in entry.model_dump_json() for entry in page.items)
