"""Vercel destination: a project environment variable holding the new secret.

Scopes: the ``targets`` production, preview and development, and custom environments by id
(``customEnvironmentIds`` in the create and edit bodies, vercel.com/docs/rest-api/reference/endpoints/projects/create-one-or-more-environment-variables).
Type by scope (docs: vercel.com/docs/environment-variables/sensitive-environment-variables):
``sensitive`` for production, preview and custom (pre-production) environments, never readable
again; ``encrypted`` for development, where Vercel does not allow sensitive variables. One request
writes both variables.

Access comes from the application's group: ``Group.vercel`` names the team and the secret in the
rotator's own vault that holds the Vercel token (the token itself is never in the table).

* ``POST /v10/projects/{id}/env?upsert=true`` writes the variable. When a variable with the key
  also serves targets we do not manage, Vercel answers ``ENV_CONFLICT``: the rotator then updates
  per target (``_update_per_target``): the other targets keep their variable and value, ours get
  the new secret, and nothing keeps failing. The answer is ``201`` even when
  the variable was refused: refusals are listed in ``failed``, so that list is always checked.
* Vercel reads variables when a deployment is built, so with ``redeploy`` the latest production
  deployment is redeployed (``POST /v13/deployments?forceNew=1`` with its ``deploymentId``) and the
  new deployment's id is reported. The new deployment carries the key id in its ``meta``, which
  makes a retried deploy find it instead of deploying twice.
* Sensitive values cannot be read back, so verify checks that the variable exists for every
  target, is ``sensitive`` and was written by this rotation (its comment names the key id).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from shared.adapters.http import clip, retry_after_seconds
from shared.domain.fields import EnvVarName, GitBranch, IntegrationBase, VercelProject, matches, schema_rules
from shared.errors import (
    FieldProblem,
    NotFoundError,
    RotationError,
    ThrottledError,
    TransientServiceError,
)
from shared.integrations.base import DeployContext, DeployOutcome, WriteOnlyField

if TYPE_CHECKING:
    import httpx

    from shared.domain.models import ApplicationConfig
    from shared.domain.secret import SecretValue

logger = logging.getLogger("rotator.integrations.vercel")

SERVICE = "vercel"
COMMENT_PREFIX = "rotated by entra-secret-rotator key "
# Deployment meta entry naming the key a rotator-made deployment was built for.
META_KEY_ID = "entraSecretRotatorKeyId"
FAILED_STATES = frozenset({"ERROR", "CANCELED"})
# Clock skew allowed between Vercel's updatedAt and ours, for variables whose comment was changed.
SKEW_MS = 5 * 60 * 1000
STANDARD_TARGETS = ("production", "preview", "development")
MAX_CUSTOM_ENVIRONMENTS = 20

CustomEnvironmentId = Annotated[
    str, matches(r"env_[A-Za-z0-9]{1,64}", "a Vercel custom environment id such as env_1234567890")
]


class VercelIntegration(IntegrationBase):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            **{
                "properties": {
                    "targets": {"uniqueItems": True},
                    "customEnvironmentIds": {"uniqueItems": True},
                },
                "anyOf": [
                    {"properties": {"targets": {"minItems": 1}}, "required": ["targets"]},
                    {
                        "properties": {"customEnvironmentIds": {"minItems": 1}},
                        "required": ["customEnvironmentIds"],
                    },
                ],
                "if": {"properties": {"gitBranch": {"type": "string"}}, "required": ["gitBranch"]},
                "then": {
                    "properties": {
                        "targets": {"const": ["preview"]},
                        "customEnvironmentIds": {"maxItems": 0},
                    },
                    "required": ["targets"],
                },
            }
        )
    )

    requires_group: ClassVar[bool] = True

    kind: Literal["vercel"]
    project_id: VercelProject
    env_var_name: EnvVarName
    targets: Annotated[list[Literal["production", "preview", "development"]], Field(max_length=3)] = []
    # Custom environments (``env_...`` ids) that receive the variable too.
    custom_environment_ids: Annotated[
        list[CustomEnvironmentId], Field(max_length=MAX_CUSTOM_ENVIRONMENTS)
    ] = []
    git_branch: GitBranch | None = None
    redeploy: bool = False

    @model_validator(mode="after")
    def _targets_unique(self) -> VercelIntegration:
        if len(set(self.targets)) != len(self.targets):
            raise PydanticCustomError(
                "unique",
                "targets must not repeat",
                {"field": "targets", "allowed": "production, preview, development"},
            )
        if len(set(self.custom_environment_ids)) != len(self.custom_environment_ids):
            raise PydanticCustomError(
                "unique",
                "customEnvironmentIds must not repeat",
                {"field": "customEnvironmentIds", "allowed": "distinct custom environment ids"},
            )
        if not self.targets and not self.custom_environment_ids:
            raise PydanticCustomError(
                "required",
                "a vercel integration needs targets or customEnvironmentIds",
                {"field": "targets", "allowed": "at least one of production, preview, development"},
            )
        if self.git_branch is not None and (self.targets != ["preview"] or self.custom_environment_ids):
            raise PydanticCustomError(
                "git_branch",
                "gitBranch needs targets ['preview'] and no customEnvironmentIds",
                {"field": "gitBranch", "allowed": "targets: ['preview']"},
            )
        return self

    @property
    def scopes(self) -> list[str]:
        """Where the variable goes: the targets, then the custom environment ids."""
        return [*self.targets, *self.custom_environment_ids]


class VercelPlugin:
    kind = "vercel"
    settings_model = VercelIntegration
    write_only: tuple[WriteOnlyField, ...] = ()
    troubleshooting: tuple[str, ...] = (
        "Vercel: ensure the group's Vercel configuration is current (token not expired or revoked, the "
        "right team id) and that the project still exists.",
    )

    def __init__(self) -> None:
        # When this process wrote a variable, for verify's fallback when the comment was changed.
        self._written_at: OrderedDict[tuple[str, str, str], int] = OrderedDict()

    def check(self, settings: Any, app: ApplicationConfig) -> list[FieldProblem]:
        problems: list[FieldProblem] = []
        if not app.group_id:
            problems.append(
                FieldProblem("groupId", "a vercel integration needs the application's groupId", "a group id")
            )
        if settings.git_branch is not None and settings.scopes != ["preview"]:
            problems.append(FieldProblem("gitBranch", "needs targets ['preview']", "targets: ['preview']"))
        return problems

    def describe(self, settings: Any, app: ApplicationConfig) -> str:
        branch = f" on branch {settings.git_branch}" if settings.git_branch else ""
        then = ", then redeploy production" if settings.redeploy else ""
        return (
            f"set variable {settings.env_var_name} ({_describe_types(settings.scopes)}{branch}) "
            f"in Vercel project {settings.project_id} of group {app.group_id}{then}"
        )

    async def deploy(self, context: DeployContext) -> DeployOutcome:
        settings: VercelIntegration = context.settings
        client = await _client(context, step="deploy")
        self._remember(settings, context.key_id)
        data = await _write_variables(client, settings, context, settings.scopes, upsert=True)
        failed = data.get("failed") or []
        codes = {(f.get("error") or {}).get("code") if isinstance(f, dict) else None for f in failed}
        if failed and codes == {"ENV_CONFLICT"}:
            # An existing variable holds the key for other targets too: update per target.
            env_var_ids = await _update_per_target(client, settings, context)
        else:
            _raise_if_refused(settings, failed, context)
            env_var_ids = _created_ids(data)
        details: dict[str, Any] = {
            "projectId": settings.project_id,
            "envVarName": settings.env_var_name,
            "targets": list(settings.targets),
            "envVarIds": env_var_ids,
        }
        if settings.custom_environment_ids:
            details["customEnvironmentIds"] = list(settings.custom_environment_ids)
        summary = (
            f"set variable {settings.env_var_name} ({_describe_types(settings.scopes)}) "
            f"in Vercel project {settings.project_id}"
        )
        warnings: list[str] = []
        if settings.redeploy:
            deployment_id, reused = await _redeploy(client, settings, context.key_id)
            if deployment_id is None:
                warnings.append(
                    f"project {settings.project_id} has no production deployment to redeploy; "
                    "its next deployment will use the new value"
                )
            else:
                details["deploymentId"] = deployment_id
                summary += f"; production deployment {deployment_id} {'already ' if reused else ''}started"
        logger.info("vercel variable %s written in %s", settings.env_var_name, settings.project_id)
        return DeployOutcome(summary, warnings=warnings, details=details)

    async def verify(self, context: DeployContext) -> None:
        settings: VercelIntegration = context.settings
        client = await _client(context, step="verify")
        project = quote(settings.project_id, safe="")
        data = await client.call("GET", f"/v10/projects/{project}/env", params={}, action="list variables")
        envs = data.get("envs") if isinstance(data, dict) else None
        if not isinstance(envs, list):
            raise RotationError(
                "Vercel answered the variable list with something unexpected",
                step="verify",
                code="VercelUnexpectedResponse",
            )
        written_at = self._written_at.get(_memo_key(settings, context.key_id))
        for target in settings.scopes:
            matches = [
                env
                for env in envs
                if isinstance(env, dict)
                and env.get("key") == settings.env_var_name
                and target in _scopes(env)
                and (env.get("gitBranch") or None) == settings.git_branch
            ]
            where = f"variable {settings.env_var_name} ({target}) in Vercel project {settings.project_id}"
            if not matches:
                raise RotationError(
                    f"{where} is missing after writing it", step="verify", code="VerifyFailed"
                )
            env = matches[0]
            expected = _type_for(target)
            if env.get("type") != expected:
                raise RotationError(
                    f"{where} is of type {env.get('type')}, not {expected}",
                    step="verify",
                    code="VerifyFailed",
                )
            ours = context.key_id in str(env.get("comment") or "")
            updated = env.get("updatedAt")
            recent = (
                written_at is not None
                and isinstance(updated, int | float)
                and updated >= written_at - SKEW_MS
            )
            if not (ours or recent):
                raise RotationError(
                    f"{where} was not updated by this rotation (key {context.key_id})",
                    step="verify",
                    code="VerifyFailed",
                )
        if settings.redeploy:
            latest = await _latest_production(client, settings)
            if (
                latest is not None
                and _meta(latest).get(META_KEY_ID) == context.key_id
                and _state(latest) in FAILED_STATES
            ):
                raise RotationError(
                    f"The new production deployment {_deployment_id(latest)} of project "
                    f"{settings.project_id} ended in {_state(latest)}; the variable is set, the "
                    "running deployment still uses the old value",
                    step="verify",
                    code="VercelDeploymentFailed",
                )

    def _remember(self, settings: VercelIntegration, key_id: str) -> None:
        self._written_at[_memo_key(settings, key_id)] = int(time.time() * 1000)
        while len(self._written_at) > 1000:
            self._written_at.popitem(last=False)


def _memo_key(settings: VercelIntegration, key_id: str) -> tuple[str, str, str]:
    return (settings.project_id, settings.env_var_name, key_id)


def _type_for(target: str) -> str:
    """``sensitive`` wherever Vercel allows it; ``encrypted`` for development, where it does not
    (a custom environment is a pre-production environment: sensitive)."""
    return "encrypted" if target == "development" else "sensitive"


def _by_type(targets: Any) -> list[tuple[str, list[str]]]:
    """The targets grouped by variable type, sensitive first: one variable per type."""
    groups: dict[str, list[str]] = {}
    for target in targets:
        groups.setdefault(_type_for(target), []).append(target)
    return sorted(groups.items(), key=lambda item: item[0] != "sensitive")


async def _write_variables(
    client: _Client, settings: VercelIntegration, context: DeployContext, targets: Any, *, upsert: bool
) -> dict[str, Any]:
    """``POST /v10/projects/{id}/env``: one variable per type for ``targets``; the 201 answer."""
    project = quote(settings.project_id, safe="")
    payload: list[dict[str, Any]] = []
    for kind, group in _by_type(targets):
        variable: dict[str, Any] = {
            "key": settings.env_var_name,
            "value": context.secret.reveal(),
            "type": kind,
            **_scope_fields(group),
            "comment": f"{COMMENT_PREFIX}{context.key_id}",
        }
        if settings.git_branch:
            variable["gitBranch"] = settings.git_branch
        payload.append(variable)
    try:
        data = await client.call(
            "POST",
            f"/v10/projects/{project}/env",
            params={"upsert": "true"} if upsert else {},
            body=payload,
            action="write",
        )
    finally:
        for variable in payload:
            variable.clear()  # the only structures holding the value
    if not isinstance(data, dict):
        raise RotationError(
            "Vercel answered the variable write with something unexpected",
            step="deploy",
            code="VercelUnexpectedResponse",
        )
    return data


def _raise_if_refused(settings: VercelIntegration, failed: list[Any], context: DeployContext) -> None:
    """A 201 lists refused variables in ``failed``: the first one's code and message, as an error."""
    if not failed:
        return
    first = failed[0].get("error") if isinstance(failed[0], dict) else None
    first = first if isinstance(first, dict) else {}
    # Only code and message: a failed entry may echo the value sent.
    code = str(first.get("code") or "VercelEnvRejected")
    message = clip(str(first.get("message") or "no reason given"), context.secret)
    raise RotationError(
        f"Vercel refused variable {settings.env_var_name} in project {settings.project_id}: {message} ({code})",
        step="deploy",
        code=code,
    )


def _created_ids(data: dict[str, Any]) -> list[str]:
    created = data.get("created")
    items = created if isinstance(created, list) else [created] if created else []
    return [str(c["id"]) for c in items if isinstance(c, dict) and c.get("id")]


async def _update_per_target(
    client: _Client, settings: VercelIntegration, context: DeployContext
) -> list[str]:
    """Write the secret for exactly our targets when variables with the key span others.

    Each existing variable with the key (and git branch) that shares a target with ours: one that
    also serves targets we do not manage keeps them (and its value) and loses ours
    (``PATCH /v9/projects/{id}/env/{envId}``, vercel.com/docs/rest-api/projects/edit-an-environment-variable);
    one that serves only ours gets the new value in place (only its development target when it
    mixes types, as development cannot be sensitive). Our targets left without a variable get new
    ones (``POST /v10/projects/{id}/env``). Returns the variable ids written.
    """
    project = quote(settings.project_id, safe="")
    data = await client.call("GET", f"/v10/projects/{project}/env", params={}, action="list variables")
    envs = data.get("envs") if isinstance(data, dict) else None
    covered: set[str] = set()
    written: list[str] = []
    for env in envs if isinstance(envs, list) else []:
        if not isinstance(env, dict) or env.get("key") != settings.env_var_name or not env.get("id"):
            continue
        if (env.get("gitBranch") or None) != settings.git_branch:
            continue
        theirs = _scopes(env)
        mine = [t for t in theirs if t in settings.scopes]
        if not mine:
            continue
        path = f"/v9/projects/{project}/env/{quote(str(env['id']), safe='')}"
        keep = [t for t in theirs if t not in settings.scopes]
        if keep:
            # It keeps what is not ours; ours get variables of their own below.
            await client.call(
                "PATCH", path, params={}, body=_scope_fields(keep, edit=True), action="update variable"
            )
            continue
        if len({_type_for(t) for t in mine}) > 1:
            mine = [t for t in mine if _type_for(t) == "encrypted"]
        body = {
            **_scope_fields(mine, edit=True),
            "value": context.secret.reveal(),
            "type": _type_for(mine[0]),
            "comment": f"{COMMENT_PREFIX}{context.key_id}",
        }
        try:
            await client.call("PATCH", path, params={}, body=body, action="update variable")
        finally:
            body.clear()
        covered |= set(mine)
        written.append(str(env["id"]))
    missing = [t for t in settings.scopes if t not in covered]
    if missing:
        created = await _write_variables(client, settings, context, missing, upsert=False)
        _raise_if_refused(settings, created.get("failed") or [], context)
        written += _created_ids(created)
    return written


def _describe_types(targets: Any) -> str:
    """``sensitive: production, preview; encrypted: development``."""
    return "; ".join(f"{kind}: {', '.join(group)}" for kind, group in _by_type(targets))


def _scope_fields(scopes: list[str], *, edit: bool = False) -> dict[str, list[str]]:
    """``target`` and ``customEnvironmentIds`` of a create or edit body for ``scopes``. An edit
    states both, so a variable loses exactly the scopes not listed."""
    targets = [s for s in scopes if s in STANDARD_TARGETS]
    custom = [s for s in scopes if s not in STANDARD_TARGETS]
    fields: dict[str, list[str]] = {}
    if targets or edit:
        fields["target"] = targets
    if custom or edit:
        fields["customEnvironmentIds"] = custom
    return fields


def _scopes(env: dict[str, Any]) -> list[str]:
    """A listed variable's targets and custom environment ids."""
    target = env.get("target")
    targets = [target] if isinstance(target, str) else target if isinstance(target, list) else []
    custom = env.get("customEnvironmentIds")
    return [str(t) for t in targets] + ([str(c) for c in custom] if isinstance(custom, list) else [])


def _state(deployment: dict[str, Any]) -> str:
    return str(deployment.get("readyState") or deployment.get("state") or "").upper()


def _meta(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment.get("meta")
    return meta if isinstance(meta, dict) else {}


def _deployment_id(deployment: dict[str, Any]) -> str | None:
    value = deployment.get("uid") or deployment.get("id")
    return str(value) if value else None


async def _latest_production(client: _Client, settings: VercelIntegration) -> dict[str, Any] | None:
    data = await client.call(
        "GET",
        "/v6/deployments",
        params={"projectId": settings.project_id, "target": "production", "limit": "1"},
        action="list deployments",
    )
    deployments = data.get("deployments") if isinstance(data, dict) else None
    if not deployments or not isinstance(deployments[0], dict):
        return None
    latest: dict[str, Any] = deployments[0]
    return latest


async def _redeploy(client: _Client, settings: VercelIntegration, key_id: str) -> tuple[str | None, bool]:
    """A new production build from the latest one, so it reads the new value. (id, already done)."""
    latest = await _latest_production(client, settings)
    if latest is None:
        return None, False
    meta = _meta(latest)
    if meta.get(META_KEY_ID) == key_id and _state(latest) not in FAILED_STATES:
        return _deployment_id(latest), True  # a retried deploy: this key's deployment exists
    body = {
        "name": str(latest.get("name") or settings.project_id),
        "project": settings.project_id,
        "deploymentId": _deployment_id(latest),
        "target": "production",
        # Keep the original's meta (git details) and add which key this build is for.
        "meta": {**{str(k): str(v) for k, v in meta.items()}, META_KEY_ID: key_id},
    }
    data = await client.call(
        "POST", "/v13/deployments", params={"forceNew": "1"}, body=body, action="redeploy"
    )
    created = _deployment_id(data) if isinstance(data, dict) else None
    if created is None:
        raise RotationError(
            f"Vercel did not return the new deployment of project {settings.project_id}",
            step="deploy",
            code="VercelUnexpectedResponse",
        )
    return created, False


async def _client(context: DeployContext, *, step: str) -> _Client:
    """The group's Vercel team and token (from the rotator's vault)."""
    app = context.app
    services = context.services
    if not app.group_id:
        raise RotationError(
            "The application has no groupId, so there is no Vercel token to use",
            step=step,
            code="VercelGroupNotConfigured",
        )
    try:
        group, _etag = await services.groups.get(app.group_id)
    except NotFoundError:
        raise RotationError(
            f"Group '{app.group_id}' does not exist, so there is no Vercel token to use",
            step=step,
            code="VercelGroupNotConfigured",
        ) from None
    vercel = group.vercel
    if vercel is None or not vercel.token_secret_name:
        raise RotationError(
            f"Group '{app.group_id}' has no Vercel token; set the group's Vercel settings",
            step=step,
            code="VercelGroupNotConfigured",
        )
    stored = await services.vault(services.settings.vault_url).get(vercel.token_secret_name)
    if stored is None:
        raise RotationError(
            f"The Vercel token of group '{app.group_id}' is missing from the rotator's vault "
            f"(secret '{vercel.token_secret_name}'); set the group's token again",
            step=step,
            code="VercelTokenMissing",
        )
    from shared.credentials import header_safe

    if not header_safe(stored.value.reveal()):  # stored before the API checked it
        raise RotationError(
            f"The Vercel token of group '{app.group_id}' cannot be sent in an HTTP header; "
            "set the group's token again",
            step=step,
            code="VercelTokenMissing",
        )
    return _Client(
        services.http,
        services.settings.vercel_url,
        stored.value,
        vercel.team_id,
        group_id=app.group_id,
        secret=context.secret,
        step=step,
    )


class _Client:
    """Vercel REST calls with the group's token; errors become the rotator's error types."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: SecretValue,
        team_id: str | None,
        *,
        group_id: str,
        secret: SecretValue,
        step: str,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token
        self._team_id = team_id
        self._group_id = group_id
        self._secret = secret
        self._step = step

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str],
        body: dict[str, Any] | list[dict[str, Any]] | None = None,
        action: str,
    ) -> Any:
        import httpx

        query = dict(params)
        if self._team_id:
            query["teamId"] = self._team_id
        headers = {"Authorization": f"Bearer {self._token.reveal()}", "Accept": "application/json"}
        try:
            response = await self._http.request(
                method, self._base + path, params=query, json=body, headers=headers
            )
        except httpx.TimeoutException:
            raise TransientServiceError(
                f"Vercel did not answer the {action} in time", service=SERVICE
            ) from None
        except httpx.TransportError as error:
            raise TransientServiceError(
                f"Could not reach Vercel ({type(error).__name__})", service=SERVICE
            ) from None
        return self._result(response, action)

    def _result(self, response: httpx.Response, action: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json() if response.content.strip() else None
            except ValueError:
                raise RotationError(
                    f"Vercel answered the {action} with invalid JSON",
                    step=self._step,
                    code="VercelUnexpectedResponse",
                ) from None
        code, message = self._error_of(response)
        detail = f": {message} ({code})" if message else f" ({code})" if code else ""
        if status == 429:
            raise ThrottledError(
                f"Vercel rate-limited the {action}{detail}",
                retry_after=_retry_after(response),
                service=SERVICE,
                status=status,
                code=code or "rate_limited",
            )
        if status >= 500:
            raise TransientServiceError(
                f"Vercel failed the {action} with {status}{detail}", service=SERVICE, status=status, code=code
            )
        if status in (401, 403):
            team = f" for team {self._team_id}" if self._team_id else ""
            raise RotationError(
                f"Vercel refused the {action} ({status}{detail}): check the Vercel token of group "
                f"'{self._group_id}' (expired, revoked, or without access to the project{team})",
                step=self._step,
                code="VercelForbidden" if status == 403 else "VercelUnauthorized",
            )
        if status == 404:
            team = f" in team {self._team_id}" if self._team_id else ""
            raise RotationError(
                f"Vercel project or deployment not found{team} during the {action}{detail}",
                step=self._step,
                code="VercelProjectNotFound",
            )
        raise RotationError(
            f"Vercel refused the {action} with {status}{detail}",
            step=self._step,
            code=code or "VercelRequestRefused",
        )

    def _error_of(self, response: httpx.Response) -> tuple[str | None, str]:
        """``{"error": {"code", "message"}}``; other fields are ignored (they may echo input)."""
        try:
            data = response.json()
        except ValueError:
            return None, ""
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return None, ""
        code = str(error["code"]) if error.get("code") else None
        return code, clip(str(error.get("message") or ""), self._secret, self._token)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait: ``Retry-After`` if sent, else ``X-RateLimit-Reset`` (Unix seconds)."""
    seconds = retry_after_seconds(response.headers)
    reset = response.headers.get("X-RateLimit-Reset")
    if seconds is None and reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return seconds


PLUGIN = VercelPlugin()
