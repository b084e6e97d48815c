"""The Vercel plugin over real sockets against the Vercel simulator, alone and in the engine."""

from __future__ import annotations

import logging
import ssl
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from shared.adapters.vault import credential_secret_name
from shared.domain.models import (
    ApplicationConfig,
    Group,
    JobReason,
    RotationResult,
    VercelGroupSettings,
)
from shared.domain.secret import SecretValue
from shared.errors import RotationError, ThrottledError, TransientServiceError
from shared.integrations.base import DeployContext
from shared.integrations.vercel import META_KEY_ID, VercelIntegration, VercelPlugin
from tests.integrations.conftest import (
    Rotator,
    current_staged,
    receive_job,
    register_with_integrations,
    seed_vercel,
    use_plugins,
)

NEW_SECRET = "n3w-Vercel~Secret.0123456789abcdefABCDEF"
KEY = "AZURE_CLIENT_SECRET"
TOKEN = "vercel-token-web"  # what seed_vercel registers for group "web", team "team_web"


def app_config(group_id: str = "web") -> ApplicationConfig:
    return ApplicationConfig.model_validate(
        {
            "appId": str(uuid.uuid4()),
            "objectId": str(uuid.uuid4()),
            "displayName": "Payroll API",
            "groupId": group_id,
        },
        strict=False,
    )


def integration(project_id: str, **extra: Any) -> VercelIntegration:
    return VercelIntegration.model_validate(
        {
            "kind": "vercel",
            "name": "web",
            "projectId": project_id,
            "envVarName": KEY,
            "targets": ["production", "preview"],
            **extra,
        },
        strict=False,
    )


def context(
    rotator: Rotator,
    settings: VercelIntegration,
    app: ApplicationConfig | None = None,
    key_id: str | None = None,
) -> DeployContext:
    return DeployContext(
        app=app or app_config(),
        settings=settings,
        rotation_id=str(uuid.uuid4()),
        key_id=key_id or str(uuid.uuid4()),
        secret=SecretValue(NEW_SECRET),
        expires_at=None,
        services=rotator.services,
    )


def assert_no_leak(*texts: object) -> None:
    for text in texts:
        assert NEW_SECRET not in str(text) and NEW_SECRET not in repr(text)
        assert TOKEN not in str(text) and TOKEN not in repr(text)


def error_texts(error: BaseException) -> list[object]:
    return [error, error.args, getattr(error, "context", None), error.__cause__, error.__context__]


# --- the plugin on its own ---------------------------------------------------------------------


async def test_deploy_writes_a_sensitive_variable_and_verify_accepts_it(
    devops_vercel_rotator: Rotator, vercel_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    plugin = VercelPlugin()
    ctx = context(devops_vercel_rotator, integration(project.id))

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    [env] = vercel_sim.env_vars(project.id)
    assert (env.key, env.value, env.type) == (KEY, NEW_SECRET, "sensitive")
    assert sorted(env.target) == ["preview", "production"]
    assert env.comment == f"rotated by entra-secret-rotator key {ctx.key_id}"
    assert outcome.details == {
        "projectId": project.id,
        "envVarName": KEY,
        "targets": ["production", "preview"],
        "envVarIds": [env.id],
    }
    assert outcome.warnings == []
    assert {r.raw_path.split("?")[1] for r in vercel_sim.requests()} == {
        "upsert=true&teamId=team_web",
        "teamId=team_web",
    }
    assert_no_leak(outcome, caplog.text)


async def test_a_sensitive_value_is_never_listed(devops_vercel_rotator: Rotator, vercel_sim: Any) -> None:
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    await VercelPlugin().deploy(context(devops_vercel_rotator, integration(project.id)))
    verify = ssl.create_default_context(cafile=str(devops_vercel_rotator.stack.ca_pem))
    async with httpx.AsyncClient(verify=verify) as client:
        listed = await client.get(
            f"{vercel_sim.url}/v10/projects/{project.id}/env",
            params={"teamId": "team_web", "decrypt": "true"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert listed.status_code == 200
    assert NEW_SECRET not in listed.text
    assert listed.json()["envs"][0]["value"] == ""


async def test_upsert_replaces_an_existing_variable(devops_vercel_rotator: Rotator, vercel_sim: Any) -> None:
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    plugin = VercelPlugin()
    await plugin.deploy(context(devops_vercel_rotator, integration(project.id)))
    [first] = vercel_sim.env_vars(project.id)
    ctx = context(devops_vercel_rotator, integration(project.id))
    await plugin.deploy(ctx)
    await plugin.verify(ctx)
    [second] = vercel_sim.env_vars(project.id)
    assert second.id == first.id and ctx.key_id in (second.comment or "")


async def test_redeploy_starts_a_production_build_that_reads_the_new_value(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    old = vercel_sim.add_deployment(project.id, target="production")
    vercel_sim.add_deployment(project.id, target=None)  # a newer preview: not the one to redeploy
    plugin = VercelPlugin()
    ctx = context(devops_vercel_rotator, integration(project.id, redeploy=True))

    outcome = await plugin.deploy(ctx)
    await plugin.verify(ctx)

    new = vercel_sim.deployments(project.id)[0]
    assert outcome.details["deploymentId"] == new.uid
    assert new.redeploy_of == old.uid and new.target == "production" and new.state == "READY"
    assert new.env[KEY] == NEW_SECRET  # the build picked up the new value
    assert new.meta == {"githubCommitRef": "main", META_KEY_ID: ctx.key_id}
    [create] = vercel_sim.requests(method="POST", path="/v13/deployments")
    assert "forceNew=1" in create.raw_path and "teamId=team_web" in create.raw_path

    # A retried deploy (same key) finds its deployment instead of building again.
    again = await plugin.deploy(ctx)
    assert again.details["deploymentId"] == new.uid
    assert len(vercel_sim.requests(method="POST", path="/v13/deployments")) == 1
    assert_no_leak(outcome, again)


async def test_redeploy_without_a_production_deployment_warns(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    outcome = await VercelPlugin().deploy(
        context(devops_vercel_rotator, integration(project.id, redeploy=True))
    )
    assert "deploymentId" not in outcome.details
    [warning] = outcome.warnings
    assert "no production deployment" in warning


async def test_verify_fails_when_the_new_build_fails(devops_vercel_rotator: Rotator, vercel_sim: Any) -> None:
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    vercel_sim.add_deployment(project.id)
    vercel_sim.set_switches(deployment_state="ERROR")
    plugin = VercelPlugin()
    ctx = context(devops_vercel_rotator, integration(project.id, redeploy=True))
    await plugin.deploy(ctx)
    with pytest.raises(RotationError) as caught:
        await plugin.verify(ctx)
    assert caught.value.code == "VercelDeploymentFailed" and "ERROR" in caught.value.message


async def test_verify_refuses_a_variable_this_rotation_did_not_write(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    await VercelPlugin().deploy(context(devops_vercel_rotator, integration(project.id)))
    # Another process (no memory of the write) verifying another key.
    with pytest.raises(RotationError) as caught:
        await VercelPlugin().verify(context(devops_vercel_rotator, integration(project.id)))
    assert caught.value.code == "VerifyFailed" and "not updated by this rotation" in caught.value.message


async def test_a_failed_entry_in_a_201_is_a_clear_refusal(
    devops_vercel_rotator: Rotator, vercel_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    # (ENV_CONFLICT is handled by updating per target: see test_env_conflict_updates_exactly_our_targets.)
    vercel_sim.fail_env_next(code="ENV_REFUSED", message="The variable could not be saved.")
    with pytest.raises(RotationError) as caught:
        await VercelPlugin().deploy(context(devops_vercel_rotator, integration(project.id)))
    assert caught.value.code == "ENV_REFUSED"
    assert "The variable could not be saved." in caught.value.message and KEY in caught.value.message
    assert [r.status for r in vercel_sim.requests()] == [201]
    assert vercel_sim.env_vars(project.id) == []
    assert_no_leak(*error_texts(caught.value), caplog.text)


async def test_a_bad_token_points_at_the_groups_token(
    devops_vercel_rotator: Rotator, vercel_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    vercel_sim.reset()  # forgets the token
    vercel_sim.add_project("payroll-web", team_id="team_web", project_id=project.id)
    with pytest.raises(RotationError) as caught:
        await VercelPlugin().deploy(context(devops_vercel_rotator, integration(project.id)))
    assert caught.value.code == "VercelForbidden"
    assert "check the Vercel token of group 'web'" in caught.value.message
    assert_no_leak(*error_texts(caught.value), caplog.text)


async def test_an_unknown_project_is_not_found(devops_vercel_rotator: Rotator, vercel_sim: Any) -> None:
    await seed_vercel(devops_vercel_rotator, vercel_sim)
    with pytest.raises(RotationError) as caught:
        await VercelPlugin().deploy(context(devops_vercel_rotator, integration("prj_doesnotexist")))
    assert caught.value.code == "VercelProjectNotFound" and "not found" in caught.value.message


async def test_rate_limits_and_server_errors_are_retryable(
    devops_vercel_rotator: Rotator, vercel_sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project = await seed_vercel(devops_vercel_rotator, vercel_sim)
    plugin = VercelPlugin()
    ctx = context(devops_vercel_rotator, integration(project.id))

    vercel_sim.throttle_next(1, retry_after=9)
    with pytest.raises(ThrottledError) as with_retry_after:
        await plugin.deploy(ctx)
    assert with_retry_after.value.retry_after == 9

    vercel_sim.set_switches(send_retry_after=False)  # only X-RateLimit-Reset
    vercel_sim.throttle_next(1, retry_after=20)
    with pytest.raises(ThrottledError) as with_reset:
        await plugin.deploy(ctx)
    assert with_reset.value.retry_after is not None and 17 <= with_reset.value.retry_after <= 20

    vercel_sim.fail_next(1, 502)
    with pytest.raises(TransientServiceError) as failed:
        await plugin.deploy(ctx)
    assert failed.value.status == 502

    assert vercel_sim.env_vars(project.id) == []
    await plugin.deploy(ctx)
    assert vercel_sim.env_var(project.id, KEY).value == NEW_SECRET
    for error in (with_retry_after.value, with_reset.value, failed.value):
        assert_no_leak(*error_texts(error))
    assert_no_leak(caplog.text)


async def test_a_group_without_vercel_access_is_named(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    services = devops_vercel_rotator.services
    project = vercel_sim.add_project("payroll-web", team_id="team_web")
    plugin = VercelPlugin()

    with pytest.raises(RotationError) as missing_group:
        await plugin.deploy(context(devops_vercel_rotator, integration(project.id), app_config("nogroup")))
    assert missing_group.value.code == "VercelGroupNotConfigured" and "nogroup" in missing_group.value.message

    await services.groups.put(Group(group_id="bare", display_name="Bare"), if_match=None)
    with pytest.raises(RotationError) as no_token:
        await plugin.deploy(context(devops_vercel_rotator, integration(project.id), app_config("bare")))
    assert no_token.value.code == "VercelGroupNotConfigured"

    name = credential_secret_name("vercel", "lost")
    await services.groups.put(
        Group(
            group_id="lost",
            display_name="Lost",
            vercel=VercelGroupSettings(team_id="team_web", token_secret_name=name),
        ),
        if_match=None,
    )
    with pytest.raises(RotationError) as lost:
        await plugin.deploy(context(devops_vercel_rotator, integration(project.id), app_config("lost")))
    assert lost.value.code == "VercelTokenMissing" and name in lost.value.message
    assert vercel_sim.requests() == []


def test_check_and_describe() -> None:
    plugin = VercelPlugin()
    app = app_config()
    assert plugin.check(integration("prj_1"), app) == []
    # Development is written as an encrypted variable (Vercel has no sensitive ones there).
    assert plugin.check(integration("prj_1", targets=["production", "development"]), app) == []
    assert plugin.check(integration("prj_1", targets=["preview"], gitBranch="release"), app) == []
    description = plugin.describe(integration("prj_1", redeploy=True), app)
    assert "\n" not in description and KEY in description and "redeploy" in description


# --- in the engine -----------------------------------------------------------------------------


async def test_engine_delivers_to_vercel_and_redeploys(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "vercel")
    entra_app = rotator.seed_entra_app()
    project = await seed_vercel(rotator, vercel_sim)
    vercel_sim.add_deployment(project.id)
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {
                "kind": "vercel",
                "projectId": project.id,
                "envVarName": KEY,
                "targets": ["production"],
                "redeploy": True,
            }
        ],
        group_id="web",
    )

    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(rotator, entra_app.app_id)
    assert vercel_sim.env_var(project.id, KEY).value == staged.value
    assert vercel_sim.deployments(project.id)[0].env[KEY] == staged.value
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.SUCCEEDED
    assert status.integrations["vercel-1"].result == "succeeded"
    page = await rotator.services.rotation_log.list_page(entra_app.app_id, 50, None)
    deployed = next(e for e in page.items if e.event == "integration.deployed")
    assert deployed.details["deploymentId"] == vercel_sim.deployments(project.id)[0].uid
    assert staged.value not in str([e.model_dump() for e in page.items])


async def test_every_documented_target_including_development_is_delivered(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    """Issue 10: sensitive for production and preview, encrypted for development, one write."""
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "vercel")
    entra_app = rotator.seed_entra_app()
    project = await seed_vercel(rotator, vercel_sim)
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {
                "kind": "vercel",
                "projectId": project.id,
                "envVarName": KEY,
                "targets": ["production", "preview", "development"],
            }
        ],
        group_id="web",
    )
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    staged = current_staged(rotator, entra_app.app_id)
    for target, kind in (("production", "sensitive"), ("preview", "sensitive"), ("development", "encrypted")):
        variable = vercel_sim.env_var(project.id, KEY, target)
        assert variable is not None and variable.value == staged.value and variable.type == kind
    assert (await rotator.status(entra_app.app_id)).integrations["vercel-1"].result == "succeeded"
    assert len(vercel_sim.requests(method="POST", path=r"/env$")) == 1


async def test_env_conflict_updates_exactly_our_targets(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    """Issue 10: a variable with the key for other targets too (Vercel answers ENV_CONFLICT to the
    upsert) is split: ours get the new secret, the others keep their value, and nothing fails."""
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "vercel")
    entra_app = rotator.seed_entra_app()
    project = await seed_vercel(rotator, vercel_sim)
    vercel_sim.add_env(
        project.id, KEY, "someone-elses-preview-value", kind="sensitive", target=["production", "preview"]
    )
    vercel_sim.set_switches(conflict_on_target_mismatch=True)
    await register_with_integrations(
        rotator,
        entra_app,
        [{"kind": "vercel", "projectId": project.id, "envVarName": KEY, "targets": ["production"]}],
        group_id="web",
    )
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    staged = current_staged(rotator, entra_app.app_id)
    assert vercel_sim.env_var(project.id, KEY, "production").value == staged.value
    assert vercel_sim.env_var(project.id, KEY, "preview").value == "someone-elses-preview-value"
    assert (await rotator.status(entra_app.app_id)).integrations["vercel-1"].result == "succeeded"
    # The next rotation finds a variable with exactly its targets: a plain upsert again.
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    staged = current_staged(rotator, entra_app.app_id)
    assert vercel_sim.env_var(project.id, KEY, "production").value == staged.value
    assert vercel_sim.env_var(project.id, KEY, "preview").value == "someone-elses-preview-value"


async def test_engine_waits_out_vercel_rate_limits(devops_vercel_rotator: Rotator, vercel_sim: Any) -> None:
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "vercel")
    entra_app = rotator.seed_entra_app()
    project = await seed_vercel(rotator, vercel_sim)
    await register_with_integrations(
        rotator,
        entra_app,
        [{"kind": "vercel", "projectId": project.id, "envVarName": KEY, "targets": ["production"]}],
        group_id="web",
    )
    vercel_sim.throttle_next(1, retry_after=1, method="POST")

    started = time.monotonic()
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    assert time.monotonic() - started >= 1

    assert [r.status for r in vercel_sim.requests(method="POST")] == [429, 201]
    assert vercel_sim.env_var(project.id, KEY).value == current_staged(rotator, entra_app.app_id).value
    assert (await rotator.status(entra_app.app_id)).integrations["vercel-1"].result == "succeeded"


async def test_a_refused_variable_does_not_stop_devops_and_is_retried_later(
    devops_vercel_rotator: Rotator, devops_sim: Any, vercel_sim: Any
) -> None:
    rotator = devops_vercel_rotator
    services = rotator.services
    use_plugins(services, "azureDevOps", "vercel")
    entra_app = rotator.seed_entra_app()
    connection = devops_sim.add_service_connection(
        "contoso", "Payroll", name="payroll-prod", service_principal_id=entra_app.app_id
    )
    project = await seed_vercel(rotator, vercel_sim)
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {"kind": "vercel", "projectId": project.id, "envVarName": KEY, "targets": ["production"]},
            {
                "kind": "azureDevOps",
                "organization": "contoso",
                "project": "Payroll",
                "serviceConnectionId": connection.id,
            },
        ],
        group_id="web",
    )
    vercel_sim.fail_env_next(code="ENV_REFUSED", message="The variable could not be saved.")

    assert await services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"

    staged = current_staged(rotator, entra_app.app_id)
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.DEGRADED
    assert status.integrations["vercel-1"].result == "failed"
    error = status.integrations["vercel-1"].error
    assert error is not None and error.code == "ENV_REFUSED"
    assert status.integrations["azureDevOps-2"].result == "succeeded"
    assert devops_sim.service_principal_key(connection.id) == staged.value
    assert vercel_sim.env_vars(project.id) == []

    # The conflict was a one-off; the timer's retry delivers the staged secret.
    rotator.clock.advance(timedelta(minutes=16))
    report = await services.scanner.scan()
    assert report.enqueued == {"retryIntegrations": 1}
    job = await receive_job(services)
    assert job.reason == JobReason.RETRY
    assert await services.engine.handle(job) == "delivered"

    assert vercel_sim.env_var(project.id, KEY).value == staged.value
    assert len(rotator.managed(entra_app)) == 1  # no second secret in Entra
    assert devops_sim.service_principal_key(connection.id) == staged.value
    status = await rotator.status(entra_app.app_id)
    assert status.last_result == RotationResult.SUCCEEDED and status.retry_at is None
    assert status.integrations["vercel-1"].result == "succeeded"
    assert len(devops_sim.requests(method="PUT")) == 1  # the delivered one was not sent again


# --- the simulator's admin surface -------------------------------------------------------------


async def test_simulator_seed_state_and_switches_over_http(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    vercel_sim.seed(
        {
            "tokens": [{"token": TOKEN, "teamIds": ["team_web"]}],
            "projects": [
                {"name": "seeded", "teamId": "team_web", "id": "prj_seeded", "productionDeployment": True}
            ],
        }
    )
    verify = ssl.create_default_context(cafile=str(devops_vercel_rotator.stack.ca_pem))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=vercel_sim.url, verify=verify) as client:
        switches = (
            await client.post("/_sim/switches", json={"fail_env": {"count": 1, "code": "SIM_REFUSED"}})
        ).json()
        refused = await client.post(
            "/v10/projects/seeded/env",
            params={"teamId": "team_web", "upsert": "true"},
            json={"key": KEY, "value": "v1-value", "type": "sensitive", "target": ["production"]},
            headers=auth,
        )
        created = await client.post(
            "/v10/projects/seeded/env",
            params={"teamId": "team_web"},
            json=[{"key": KEY, "value": "v2-value", "type": "sensitive", "target": ["production"]}],
            headers=auth,
        )
        duplicate = await client.post(
            "/v10/projects/seeded/env",
            params={"teamId": "team_web"},
            json={"key": KEY, "value": "v3-value", "type": "sensitive", "target": ["production"]},
            headers=auth,
        )
        development = await client.post(
            "/v10/projects/seeded/env",
            params={"teamId": "team_web"},
            json={"key": "OTHER", "value": "x", "type": "sensitive", "target": ["development"]},
            headers=auth,
        )
        other_team = await client.get(
            "/v10/projects/seeded/env", params={"teamId": "team_other"}, headers=auth
        )
        state = (await client.get("/_sim/state")).json()
    assert switches["fail_env"] == [
        {"remaining": 1, "code": "SIM_REFUSED", "message": "The environment variable could not be saved."}
    ]
    assert refused.status_code == 201 and refused.json()["created"] is None
    assert refused.json()["failed"][0]["error"]["code"] == "SIM_REFUSED"
    assert created.status_code == 201 and created.json()["failed"] == []
    assert created.json()["created"][0]["value"] == ""  # sensitive: never returned
    assert duplicate.json()["failed"][0]["error"]["code"] == "ENV_ALREADY_EXISTS"
    assert development.status_code == 400 and development.json()["error"]["code"] == "bad_request"
    assert other_team.status_code == 403 and other_team.json()["error"]["code"] == "forbidden"
    [env] = state["projects"]["prj_seeded"]["envs"]
    assert env["value"] == "v2-value"  # the simulator's own view is decrypted
    assert len(state["projects"]["prj_seeded"]["deployments"]) == 1


async def test_custom_environments_are_delivered_with_the_targets_and_alone(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    """Issue 10: custom environments (``customEnvironmentIds``) get the secret like the targets,
    as a sensitive variable in the same write; an integration may name only custom environments."""
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "vercel")
    entra_app = rotator.seed_entra_app()
    project = await seed_vercel(rotator, vercel_sim)
    staging = vercel_sim.add_custom_environment(project.id, "staging")
    qa = vercel_sim.add_custom_environment(project.id, "qa")
    await register_with_integrations(
        rotator,
        entra_app,
        [
            {
                "kind": "vercel",
                "projectId": project.id,
                "envVarName": KEY,
                "targets": ["production", "development"],
                "customEnvironmentIds": [staging],
            },
            {
                "kind": "vercel",
                "projectId": project.id,
                "envVarName": "QA_SECRET",
                "customEnvironmentIds": [qa],
            },
        ],
        group_id="web",
    )
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    staged = current_staged(rotator, entra_app.app_id)
    for key, scope, kind in (
        (KEY, "production", "sensitive"),
        (KEY, staging, "sensitive"),
        (KEY, "development", "encrypted"),
        ("QA_SECRET", qa, "sensitive"),
    ):
        variable = vercel_sim.env_var(project.id, key, scope)
        assert variable is not None and variable.value == staged.value and variable.type == kind, (key, scope)
    assert vercel_sim.env_var(project.id, KEY, qa) is None
    assert vercel_sim.env_var(project.id, KEY, "preview") is None
    status = await rotator.status(entra_app.app_id)
    assert {status.integrations[name].result for name in ("vercel-1", "vercel-2")} == {"succeeded"}


async def test_env_conflict_over_a_custom_environment_keeps_the_other_scopes(
    devops_vercel_rotator: Rotator, vercel_sim: Any
) -> None:
    """Issue 10: a variable with the key serving preview and a custom environment; ours is the
    custom environment only. Vercel answers ENV_CONFLICT; preview keeps its value, ours is updated."""
    rotator = devops_vercel_rotator
    use_plugins(rotator.services, "vercel")
    entra_app = rotator.seed_entra_app()
    project = await seed_vercel(rotator, vercel_sim)
    staging = vercel_sim.add_custom_environment(project.id, "staging")
    vercel_sim.add_env(
        project.id,
        KEY,
        "someone-elses-preview-value",
        kind="sensitive",
        target=["preview"],
        custom_environment_ids=[staging],
    )
    vercel_sim.set_switches(conflict_on_target_mismatch=True)
    await register_with_integrations(
        rotator,
        entra_app,
        [{"kind": "vercel", "projectId": project.id, "envVarName": KEY, "customEnvironmentIds": [staging]}],
        group_id="web",
    )
    assert await rotator.services.engine.handle(rotator.job(entra_app.app_id)) == "rotated"
    staged = current_staged(rotator, entra_app.app_id)
    assert vercel_sim.env_var(project.id, KEY, staging).value == staged.value
    assert vercel_sim.env_var(project.id, KEY, "preview").value == "someone-elses-preview-value"
    assert (await rotator.status(entra_app.app_id)).integrations["vercel-1"].result == "succeeded"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"targets": []}, "targets"),
        ({"targets": ["preview"], "customEnvironmentIds": ["env_abc"], "gitBranch": "main"}, "gitBranch"),
        ({"targets": ["preview"], "customEnvironmentIds": ["env_abc", "env_abc"]}, "customEnvironmentIds"),
        ({"customEnvironmentIds": ["staging"]}, "customEnvironmentIds"),
    ],
)
def test_vercel_scopes_are_validated(extra: dict[str, Any], field: str) -> None:
    import json

    from pydantic import ValidationError

    body = {
        "appId": "11111111-2222-3333-4444-555555555555",
        "objectId": "11111111-2222-3333-4444-555555555556",
        "displayName": "x",
        "groupId": "web",
        "integrations": [{"kind": "vercel", "projectId": "p", "envVarName": KEY, **extra}],
    }
    with pytest.raises(ValidationError) as raised:
        ApplicationConfig.model_validate_json(json.dumps(body))
    assert field in str(raised.value)
