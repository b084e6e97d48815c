"""Vercel REST API simulator (HTTPS): projects, their environment variables and deployments.

* ``GET /v10/projects?teamId=&limit=&until=&from=&search=`` (Find projects,
  vercel.com/docs/rest-api/reference/endpoints/projects/find-projects) lists the projects of the
  token's team (no ``teamId``: its personal projects), newest ``updatedAt`` first, as
  ``{"projects": [...], "pagination": {"count", "next", "prev"}}``. ``limit`` is 1..100 (default
  20); ``next`` is the ``updatedAt`` of the page's last project when more remain (else null) and is
  passed back as ``until`` (projects updated before it), as the Vercel CLI's ``project ls --next``
  does; ``from`` (what the current docs and @vercel/sdk ``GetProjectsRequest`` name: "timestamp or
  continuation token") is taken as the same cursor. ``prev`` is the first project's ``updatedAt``.
  ``search`` matches part of the name, case-insensitively.

* ``POST /v10/projects/{idOrName}/env[?upsert=true]`` with one variable or a list. The answer is
  ``201 {"created": ..., "failed": [...]}``: per-variable refusals go to ``failed`` (a key that
  exists for an overlapping target without ``upsert``, or the ``fail_env`` switch). With
  ``upsert`` a variable with the same key, git branch and an overlapping target is replaced
  (updated in place when the new targets cover it; otherwise the overlap moves to a new variable).
* ``PATCH /v9/projects/{idOrName}/env/{id}`` edits one variable's fields (key, value, type, target,
  gitBranch, comment, customEnvironmentIds), with the same checks as creation.
* Custom environments: a variable's ``customEnvironmentIds`` scope it to custom environments of
  the project (``add_custom_environment``) besides or instead of ``target``; one of the two is
  required (the create body's two variants in Vercel's OpenAPI, as the @vercel/sdk
  ``CreateProjectEnvRequestBody`` models show). Overlap and ``ENV_CONFLICT`` are computed over
  targets and custom environments alike. An id the project does not have is a 400 (the real
  API's answer for it is not documented; this is the simulator's choice).
* ``GET /v10/projects/{idOrName}/env`` lists ``{"envs": [...], "pagination": ...}``; sensitive
  values are never returned (``""``), encrypted ones only with ``decrypt=true``.
* ``GET /v6/deployments?projectId=&target=&state=&limit=`` newest first;
  ``POST /v13/deployments`` (``name`` required, ``project`` overrides it, ``deploymentId``
  redeploys) builds at once into the ``deployment_state`` switch (``READY``) and snapshots the
  variables for its target, so tests can see which value a deployment picked up;
  ``GET /v13/deployments/{id}``.

Auth: ``Authorization: Bearer <token>`` for tokens registered per team (``add_token``); every call
takes ``?teamId=`` (no team id: the token's personal scope). Errors are
``{"error": {"code", "message"}}``: missing token 401, unknown token 403 ``invalidToken``, another
team 403, unknown project 404. Rate limiting (``throttle``) answers 429 with ``X-RateLimit-*`` and
``Retry-After`` (``send_retry_after: false`` leaves only ``X-RateLimit-Reset``).

Switches: ``conflict_on_target_mismatch`` (an upsert whose targets differ from an existing
variable's answers ``ENV_CONFLICT`` in ``failed``, as reported for the real API), ``deny_access``
(403), ``fail_env`` (``{"count", "code", "message"}``: the next N
variables land in ``failed`` of a 201), ``deployment_state``, ``send_retry_after``, and the base
``throttle`` / ``fail_next`` / ``latency_seconds``.
"""

from __future__ import annotations

import random
import re
import ssl
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import (
    FaultRule,
    JsonDict,
    SimClock,
    SimHTTPError,
    SimRequest,
    SimResponse,
    SimulatorServer,
    cast_json_dict,
    json_response,
)

TARGETS = ("production", "preview", "development")
TYPES = ("system", "encrypted", "plain", "sensitive", "secret")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEPLOYMENT_STATES = ("QUEUED", "INITIALIZING", "BUILDING", "READY", "ERROR", "CANCELED")
_ALNUM = string.ascii_letters + string.digits
_ID = r"(?P<id>[^/]+)"
PERSONAL_ACCOUNT_ID = "simulated-user"  # the accountId of a token's personal projects (the creator uid)


def _random_id(prefix: str = "", length: int = 28) -> str:
    return prefix + "".join(random.choice(_ALNUM) for _ in range(length))


@dataclass
class EnvVar:
    id: str
    key: str
    value: str
    type: str
    target: list[str]
    git_branch: str | None
    comment: str | None
    created_at: int  # Unix milliseconds, as Vercel sends them
    updated_at: int
    created_by: str
    custom_environment_ids: list[str] = field(default_factory=list)

    @property
    def scopes(self) -> set[str]:
        """Targets and custom environment ids: where the variable applies."""
        return {*self.target, *self.custom_environment_ids}

    def to_json(self, *, decrypt: bool = False, reveal: bool = False) -> JsonDict:
        if reveal or self.type == "plain" or (decrypt and self.type == "encrypted"):
            value = self.value
        elif self.type == "sensitive":
            value = ""  # never readable once written
        else:
            value = "enc:" + _random_id(length=24)  # an opaque ciphertext
        data: JsonDict = {
            "id": self.id,
            "key": self.key,
            "value": value,
            "type": self.type,
            "target": list(self.target),
            "configurationId": None,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "createdBy": self.created_by,
            "updatedBy": self.created_by,
            "decrypted": bool(decrypt and self.type == "encrypted") or self.type == "plain",
        }
        if self.git_branch:
            data["gitBranch"] = self.git_branch
        if self.custom_environment_ids:
            data["customEnvironmentIds"] = list(self.custom_environment_ids)
        if self.comment is not None:
            data["comment"] = self.comment
        return data


@dataclass
class Deployment:
    uid: str
    name: str
    project_id: str
    url: str
    target: str | None
    state: str
    created_at: int
    meta: dict[str, str]
    source: str
    redeploy_of: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # what the build read (simulator only)

    def to_json(self) -> JsonDict:
        return {
            "uid": self.uid,
            "name": self.name,
            "url": self.url,
            "created": self.created_at,
            "createdAt": self.created_at,
            "buildingAt": self.created_at,
            "ready": self.created_at if self.state == "READY" else None,
            "state": self.state,
            "readyState": self.state,
            "type": "LAMBDAS",
            "creator": {"uid": "simulated-user", "username": "simulator"},
            "target": self.target,
            "projectId": self.project_id,
            "meta": dict(self.meta),
            "source": self.source,
            "inspectorUrl": f"https://vercel.com/simulated/{self.name}/{self.uid.removeprefix('dpl_')}",
        }

    def created_json(self) -> JsonDict:
        """The answer of POST /v13/deployments (``id`` rather than ``uid``)."""
        data = self.to_json()
        data["id"] = data.pop("uid")
        data["status"] = self.state
        data["alias"] = []
        return data


@dataclass
class Project:
    id: str
    name: str
    team_id: str | None
    envs: list[EnvVar] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    custom_environments: dict[str, str] = field(default_factory=dict)  # id -> slug
    created_at: int = 0  # Unix milliseconds
    updated_at: int = 0  # Unix milliseconds; unique per simulator, so the list order is total
    framework: str | None = None

    def to_json(self) -> JsonDict:
        """A project as Find projects lists it (a subset of @vercel/sdk ``GetProjectsProjects``)."""
        newest = max(self.deployments, key=lambda d: d.created_at, default=None)
        return {
            "accountId": self.team_id or PERSONAL_ACCOUNT_ID,
            "createdAt": self.created_at,
            "directoryListing": False,
            "framework": self.framework,
            "id": self.id,
            "latestDeployments": [] if newest is None else [newest.to_json()],
            "name": self.name,
            "nodeVersion": "22.x",
            "updatedAt": self.updated_at,
        }


@dataclass
class EnvFailure:
    remaining: int
    code: str
    message: str


class VercelSimulator(SimulatorServer):
    kind = "vercel"

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        clock: SimClock | None = None,
        name: str = "vercel",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(name=name, host=host, port=port, ssl_context=ssl_context, clock=clock)
        self.deny_access = False
        self.deployment_state = "READY"
        self.send_retry_after = True
        # As reported for the real API: an upsert whose targets differ from those of an existing
        # variable with the key is refused with ENV_CONFLICT instead of splitting it.
        self.conflict_on_target_mismatch = False
        self._env_failures: list[EnvFailure] = []
        self._tokens: dict[str, set[str | None]] = {}
        self._projects: dict[str, Project] = {}

        self.route("GET", r"/v10/projects/?", self._list_projects)
        self.route("POST", rf"/v10/projects/{_ID}/env/?", self._create_env)
        self.route("GET", rf"/v10/projects/{_ID}/env/?", self._list_env)
        # vercel.com/docs/rest-api/projects/edit-an-environment-variable
        self.route("PATCH", rf"/v9/projects/{_ID}/env/(?P<env_id>[^/]+)/?", self._edit_env)
        self.route("GET", r"/v6/deployments/?", self._list_deployments)
        self.route("POST", r"/v13/deployments/?", self._create_deployment)
        self.route("GET", rf"/v13/deployments/{_ID}/?", self._get_deployment)

        self.admin_route("POST", "/tokens", self._admin_add_token)
        self.admin_route("POST", "/projects", self._admin_add_project)
        self.admin_route("POST", "/deployments", self._admin_add_deployment)

    # ----------------------------------------------------------------- Python admin API

    def add_token(self, token: str, team_id: str | None = None) -> None:
        """Let ``token`` act on ``team_id`` (None: the token owner's personal projects)."""
        with self._lock:
            self._tokens.setdefault(token, set()).add(team_id)

    def add_project(
        self,
        name: str,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        framework: str | None = None,
        updated_at: int | None = None,
    ) -> Project:
        """Create a project; ``updated_at`` (Unix ms) defaults to now, made unique among projects."""
        with self._lock:
            if updated_at is None:
                updated_at = self._now_ms()
                if self._projects:
                    updated_at = max(updated_at, max(p.updated_at for p in self._projects.values()) + 1)
            project = Project(
                project_id or _random_id("prj_"),
                name,
                team_id,
                created_at=updated_at,
                updated_at=updated_at,
                framework=framework,
            )
            self._projects[project.id] = project
            return project

    def add_custom_environment(self, project: str, slug: str, environment_id: str | None = None) -> str:
        """Give the project a custom environment; its id (``env_...``)."""
        with self._lock:
            environment_id = environment_id or _random_id("env_", 16)
            self.project(project).custom_environments[environment_id] = slug
            return environment_id

    def add_env(
        self,
        project: str,
        key: str,
        value: str,
        *,
        kind: str = "encrypted",
        target: list[str],
        custom_environment_ids: list[str] | None = None,
    ) -> EnvVar:
        """Seed a variable (as if someone had created it in the dashboard)."""
        with self._lock:
            now = self._now_ms()
            env = EnvVar(
                _random_id(length=16),
                key,
                value,
                kind,
                list(target),
                None,
                None,
                now,
                now,
                "dashboard",
                list(custom_environment_ids or []),
            )
            self.project(project).envs.append(env)
            return env

    def add_deployment(
        self, project: str, *, target: str | None = "production", meta: dict[str, str] | None = None
    ) -> Deployment:
        """Seed a deployment (as if git had triggered it), built from the current variables."""
        with self._lock:
            found = self._project_by_id_or_name(project, None, any_team=True)
            if found is None:
                raise KeyError(project)
            return self._deploy(found, target, meta or {"githubCommitRef": "main"}, "git", None)

    def project(self, id_or_name: str) -> Project:
        with self._lock:
            found = self._project_by_id_or_name(id_or_name, None, any_team=True)
            if found is None:
                raise KeyError(id_or_name)
            return found

    def env_vars(self, project: str) -> list[EnvVar]:
        with self._lock:
            return list(self.project(project).envs)

    def env_var(self, project: str, key: str, target: str = "production") -> EnvVar | None:
        """The variable ``key`` for ``target`` or custom environment id (not branch-specific)."""
        with self._lock:
            return next(
                (
                    e
                    for e in self.project(project).envs
                    if e.key == key and target in e.scopes and not e.git_branch
                ),
                None,
            )

    def deployments(self, project: str) -> list[Deployment]:
        """Newest first."""
        with self._lock:
            return sorted(self.project(project).deployments, key=lambda d: d.created_at, reverse=True)

    def fail_env_next(
        self, count: int = 1, *, code: str = "ENV_CONFLICT", message: str | None = None
    ) -> None:
        with self._lock:
            self._env_failures.append(
                EnvFailure(count, code, message or "The environment variable could not be saved.")
            )

    def seed(self, data: Mapping[str, Any]) -> None:
        """Load ``{"tokens": [{"token", "teamIds"}], "projects": [{"name", "teamId"?, "id"?, "framework"?,
        "updatedAt"? (Unix ms), "customEnvironments"?: [{"slug", "id"?}], "productionDeployment"?: true}]}``."""
        for spec in data.get("tokens") or []:
            for team_id in spec.get("teamIds") or [None]:
                self.add_token(str(spec["token"]), team_id)
        for spec in data.get("projects") or []:
            project = self._project_from_json(spec)
            if spec.get("productionDeployment"):
                self.add_deployment(project.id)

    def state(self) -> JsonDict:
        with self._lock:
            return {
                "tokens": {token: sorted(t or "" for t in teams) for token, teams in self._tokens.items()},
                "projects": {
                    p.id: {
                        "name": p.name,
                        "teamId": p.team_id,
                        "framework": p.framework,
                        "createdAt": p.created_at,
                        "updatedAt": p.updated_at,
                        "envs": [e.to_json(reveal=True) for e in p.envs],
                        "deployments": [{**d.to_json(), "env": dict(d.env)} for d in p.deployments],
                    }
                    for p in self._projects.values()
                },
                "switches": self.switches(),
            }

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._tokens.clear()
            self._projects.clear()
            self._env_failures.clear()
            self.deny_access = False
            self.deployment_state = "READY"
            self.send_retry_after = True
            self.conflict_on_target_mismatch = False

    def switches(self) -> JsonDict:
        data = super().switches()
        data.update(
            {
                "deny_access": self.deny_access,
                "deployment_state": self.deployment_state,
                "send_retry_after": self.send_retry_after,
                "fail_env": [vars(f) for f in self._env_failures],
            }
        )
        return data

    def apply_switch(self, name: str, value: Any) -> bool:
        if name == "deny_access":
            self.deny_access = bool(value)
        elif name == "send_retry_after":
            self.send_retry_after = bool(value)
        elif name == "conflict_on_target_mismatch":
            self.conflict_on_target_mismatch = bool(value)
        elif name == "deployment_state":
            if value not in DEPLOYMENT_STATES:
                raise ValueError(f"deployment_state must be one of {DEPLOYMENT_STATES}")
            self.deployment_state = str(value)
        elif name == "fail_env":
            spec = {"count": value} if isinstance(value, int) else dict(value)
            self._env_failures.append(
                EnvFailure(
                    int(spec.get("count", 1)),
                    str(spec.get("code") or "ENV_CONFLICT"),
                    str(spec.get("message") or "The environment variable could not be saved."),
                )
            )
        else:
            return False
        return True

    def endpoints(self) -> JsonDict:
        return {"vercel_url": self.url}

    # ----------------------------------------------------------------- protocol helpers

    @staticmethod
    def vercel_error(
        status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> SimResponse:
        return json_response(status, {"error": {"code": code, "message": message, **extra}}, headers)

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self.vercel_error(
                401, "not_authenticated", "The request is missing an authentication token", missingToken=True
            )
        teams = self._tokens.get(token.strip())
        if teams is None:
            return self.vercel_error(403, "forbidden", "Not authorized", invalidToken=True)
        team_id = request.arg("teamId")
        if team_id not in teams or self.deny_access:
            return self.vercel_error(403, "forbidden", "You don't have permission to access this resource.")
        request.principal = f"token:{team_id or 'personal'}"
        return None

    def fault_response(self, request: SimRequest, rule: FaultRule) -> SimResponse:
        if rule.status == 429:
            wait = rule.retry_after if rule.retry_after is not None else 1
            # Reset is real Unix time (like token lifetimes), so clients can compute the wait.
            reset = int(time.time()) + wait
            headers = {
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            }
            if self.send_retry_after:
                headers["Retry-After"] = str(wait)
            return self.vercel_error(
                429,
                "rate_limited",
                f"Rate limit exceeded. Try again in {wait} seconds.",
                headers=headers,
                limit={"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": 100},
            )
        retry = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
        return self.vercel_error(
            rule.status, "internal_server_error", "An unexpected internal error occurred.", headers=retry
        )

    def not_found(self, request: SimRequest) -> SimResponse:
        return self.vercel_error(404, "not_found", "The requested resource was not found.")

    def _now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def _project_by_id_or_name(
        self, id_or_name: str, team_id: str | None, *, any_team: bool = False
    ) -> Project | None:
        for project in self._projects.values():
            if (any_team or project.team_id == team_id) and id_or_name in (project.id, project.name):
                return project
        return None

    def _project_or_404(self, request: SimRequest, id_or_name: str) -> Project:
        project = self._project_by_id_or_name(id_or_name, request.arg("teamId"))
        if project is None:
            raise SimHTTPError(
                self.vercel_error(404, "not_found", "Project not found.", projectId=id_or_name)
            )
        return project

    def _bad_request(self, message: str) -> SimHTTPError:
        return SimHTTPError(self.vercel_error(400, "bad_request", message))

    # ----------------------------------------------------------------- project handlers

    def _list_projects(self, request: SimRequest) -> SimResponse:
        """Find projects (vercel.com/docs/rest-api/reference/endpoints/projects/find-projects): the
        team's projects newest ``updatedAt`` first; ``pagination.next`` goes back as ``until``."""
        team_id = request.arg("teamId")
        try:
            limit = int(request.arg("limit") or 20)
        except ValueError:
            raise self._bad_request("Invalid request: `limit` should be a number.") from None
        if not 1 <= limit <= 100:
            raise self._bad_request("Invalid request: `limit` should be between 1 and 100.")
        cursor_text = request.arg("until") or request.arg("from")
        cursor: int | None = None
        if cursor_text:
            try:
                cursor = int(cursor_text)
            except ValueError:
                raise self._bad_request("Invalid request: `until` should be a timestamp.") from None
        search = (request.arg("search") or "").lower()
        if len(search) > 100:
            raise self._bad_request("Invalid request: `search` should be at most 100 characters.")
        projects = sorted(
            (
                p
                for p in self._projects.values()
                if p.team_id == team_id
                and (cursor is None or p.updated_at < cursor)
                and (not search or search in p.name.lower())
            ),
            key=lambda p: (p.updated_at, p.id),
            reverse=True,
        )
        page = projects[:limit]
        return json_response(
            200,
            {
                "projects": [p.to_json() for p in page],
                "pagination": {
                    "count": len(page),
                    "next": page[-1].updated_at if len(projects) > limit else None,
                    "prev": page[0].updated_at if page else None,
                },
            },
        )

    # ----------------------------------------------------------------- env handlers

    def _parse_env(
        self, item: Any, project: Project
    ) -> tuple[str, str, str, list[str], str | None, str | None, list[str]]:
        if not isinstance(item, dict):
            raise self._bad_request("Invalid request: each environment variable must be an object.")
        key, value, kind = item.get("key"), item.get("value"), item.get("type")
        target, branch, comment = item.get("target"), item.get("gitBranch"), item.get("comment")
        if not isinstance(key, str) or not ENV_KEY.match(key):
            raise self._bad_request("Invalid request: `key` should be a valid environment variable name.")
        if not isinstance(value, str):
            raise self._bad_request("Invalid request: missing required property `value`.")
        if kind not in TYPES:
            raise self._bad_request(f"Invalid request: `type` should be one of {', '.join(TYPES)}.")
        custom = item.get("customEnvironmentIds")
        custom = [] if custom is None else custom
        if not isinstance(custom, list) or any(not isinstance(c, str) for c in custom):
            raise self._bad_request("Invalid request: `customEnvironmentIds` should be a list of ids.")
        unknown = [c for c in custom if c not in project.custom_environments]
        if unknown:
            raise self._bad_request(f"Invalid request: custom environment {unknown[0]} was not found.")
        target = [] if target is None and custom else target
        if not isinstance(target, list) or not (target or custom) or any(t not in TARGETS for t in target):
            raise self._bad_request(
                "Invalid request: `target` should be a list of production, preview, development."
            )
        if branch is not None and (not isinstance(branch, str) or target != ["preview"] or custom):
            raise self._bad_request("Invalid request: `gitBranch` can only be set with the target preview.")
        if kind == "sensitive" and "development" in target:
            raise self._bad_request(
                "Sensitive environment variables cannot be created in the Development environment."
            )
        if comment is not None and (not isinstance(comment, str) or len(comment) > 500):
            raise self._bad_request(
                "Invalid request: `comment` should be a string of at most 500 characters."
            )
        return key, value, str(kind), [str(t) for t in target], branch, comment, [str(c) for c in custom]

    def _create_env(self, request: SimRequest) -> SimResponse:
        project = self._project_or_404(request, request.params["id"])
        try:
            body = request.json()
        except ValueError as error:
            raise self._bad_request(str(error)) from None
        items = body if isinstance(body, list) else [body]
        parsed = [self._parse_env(item, project) for item in items]  # 400 before anything is written
        upsert = (request.arg("upsert") or "").lower() == "true"
        created: list[JsonDict] = []
        failed: list[JsonDict] = []
        for key, value, kind, target, branch, comment, custom in parsed:
            scopes = {*target, *custom}
            if self._env_failures:
                failure = self._env_failures[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._env_failures.pop(0)
                failed.append(
                    {
                        "error": {
                            "code": failure.code,
                            "message": failure.message,
                            "key": key,
                            "envVarKey": key,
                            "target": target,
                        }
                    }
                )
                continue
            overlapping = [
                e for e in project.envs if e.key == key and e.git_branch == branch and e.scopes & scopes
            ]
            if (
                overlapping
                and upsert
                and self.conflict_on_target_mismatch
                and any(e.scopes != scopes for e in overlapping)
            ):
                failed.append(
                    {
                        "error": {
                            "code": "ENV_CONFLICT",
                            "message": "A conflicting variable exists.",
                            "key": key,
                            "envVarKey": key,
                            "envVarId": overlapping[0].id,
                            "target": target,
                        }
                    }
                )
                continue
            if overlapping and not upsert:
                failed.append(
                    {
                        "error": {
                            "code": "ENV_ALREADY_EXISTS",
                            "message": f"A variable with the name `{key}` already exists for the target "
                            f"{sorted(overlapping[0].scopes)[0]} on branch {branch}",
                            "key": key,
                            "envVarKey": key,
                            "envVarId": overlapping[0].id,
                            "target": target,
                        }
                    }
                )
                continue
            created.append(
                self._upsert(project, overlapping, key, value, kind, target, branch, comment, custom)
            )
        answer: JsonDict = {
            "created": created if isinstance(body, list) else (created[0] if created else None),
            "failed": failed,
        }
        return json_response(201, answer)

    def _upsert(
        self,
        project: Project,
        overlapping: list[EnvVar],
        key: str,
        value: str,
        kind: str,
        target: list[str],
        branch: str | None,
        comment: str | None,
        custom: list[str],
    ) -> JsonDict:
        now = self._now_ms()
        scopes = {*target, *custom}
        covered = [e for e in overlapping if e.scopes <= scopes]
        if len(overlapping) == 1 and covered:
            env = overlapping[0]  # replaced in place: same id
            env.value, env.type, env.target, env.comment, env.updated_at = (
                value,
                kind,
                list(target),
                comment,
                now,
            )
            env.custom_environment_ids = list(custom)
        else:
            # The new scopes move to a new variable; what the old ones kept for other scopes stays.
            for old in overlapping:
                old.target = [t for t in old.target if t not in scopes]
                old.custom_environment_ids = [c for c in old.custom_environment_ids if c not in scopes]
                old.updated_at = now
            project.envs = [e for e in project.envs if e.scopes]
            env = EnvVar(
                _random_id(length=16),
                key,
                value,
                kind,
                list(target),
                branch,
                comment,
                now,
                now,
                "simulated-user",
                list(custom),
            )
            project.envs.append(env)
        return env.to_json()

    def _edit_env(self, request: SimRequest) -> SimResponse:
        """``PATCH /v9/projects/{idOrName}/env/{id}``: the given fields of one variable, by id."""
        project = self._project_or_404(request, request.params["id"])
        env = next((e for e in project.envs if e.id == request.params["env_id"]), None)
        if env is None:
            raise SimHTTPError(self.vercel_error(404, "not_found", "Environment variable not found."))
        try:
            body = request.json()
        except ValueError as error:
            raise self._bad_request(str(error)) from None
        if not isinstance(body, dict):
            raise self._bad_request("Invalid request: the body must be an object.")
        merged = {
            "key": body.get("key", env.key),
            "value": body.get("value", env.value),
            "type": body.get("type", env.type),
            "target": body.get("target", env.target),
            "gitBranch": body.get("gitBranch", env.git_branch),
            "comment": body.get("comment", env.comment),
            "customEnvironmentIds": body.get("customEnvironmentIds", env.custom_environment_ids),
        }
        key, value, kind, target, branch, comment, custom = self._parse_env(merged, project)
        env.custom_environment_ids = custom
        env.key, env.value, env.type, env.target, env.git_branch, env.comment = (
            key,
            value,
            kind,
            target,
            branch,
            comment,
        )
        env.updated_at = self._now_ms()
        return json_response(200, env.to_json())

    def _list_env(self, request: SimRequest) -> SimResponse:
        project = self._project_or_404(request, request.params["id"])
        decrypt = (request.arg("decrypt") or "").lower() == "true"
        branch = request.arg("gitBranch")
        envs = [
            e.to_json(decrypt=decrypt)
            for e in project.envs
            if branch is None or e.git_branch in (None, branch)
        ]
        return json_response(
            200, {"envs": envs, "pagination": {"count": len(envs), "next": None, "prev": None}}
        )

    # ----------------------------------------------------------------- deployment handlers

    def _deploy(
        self, project: Project, target: str | None, meta: dict[str, str], source: str, redeploy_of: str | None
    ) -> Deployment:
        created = self._now_ms()
        # Never two deployments with the same timestamp, so "newest first" is well defined.
        if project.deployments:
            created = max(created, max(d.created_at for d in project.deployments) + 1)
        environment = target or "preview"
        uid = _random_id("dpl_")
        deployment = Deployment(
            uid=uid,
            name=project.name,
            project_id=project.id,
            url=f"{project.name}-{uid[4:13].lower()}.vercel.app",
            target=target,
            state=self.deployment_state,
            created_at=created,
            meta=dict(meta),
            source=source,
            redeploy_of=redeploy_of,
            env={e.key: e.value for e in project.envs if environment in e.target and not e.git_branch},
        )
        project.deployments.append(deployment)
        return deployment

    def _list_deployments(self, request: SimRequest) -> SimResponse:
        team_id = request.arg("teamId")
        project_filter = request.arg("projectId")
        target = request.arg("target")
        states = {s.strip().upper() for s in (request.arg("state") or "").split(",") if s.strip()}
        try:
            limit = max(1, min(100, int(request.arg("limit") or 20)))
        except ValueError:
            raise self._bad_request("Invalid request: `limit` should be a number.") from None
        deployments = [
            d
            for p in self._projects.values()
            if p.team_id == team_id and (project_filter is None or project_filter in (p.id, p.name))
            for d in p.deployments
            if (target is None or d.target == target) and (not states or d.state in states)
        ]
        deployments.sort(key=lambda d: d.created_at, reverse=True)
        page = deployments[:limit]
        return json_response(
            200,
            {
                "deployments": [d.to_json() for d in page],
                "pagination": {
                    "count": len(page),
                    "next": page[-1].created_at if len(deployments) > limit else None,
                    "prev": None,
                },
            },
        )

    def _create_deployment(self, request: SimRequest) -> SimResponse:
        try:
            body = cast_json_dict(request.json())
        except ValueError as error:
            raise self._bad_request(str(error)) from None
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise self._bad_request("Invalid request: missing required property `name`.")
        project = self._project_or_404(request, str(body.get("project") or name))
        target = body.get("target")
        if target is not None and target not in ("production", "staging"):
            raise self._bad_request("Invalid request: `target` should be production or staging.")
        source_id = body.get("deploymentId")
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else None
        if source_id is not None:
            source = next((d for d in project.deployments if d.uid == source_id), None)
            if source is None:
                return self.vercel_error(404, "not_found", "Deployment not found.", deploymentId=source_id)
            deployment = self._deploy(
                project,
                target if target is not None else source.target,
                {str(k): str(v) for k, v in (meta if meta is not None else source.meta).items()},
                "redeploy",
                source.uid,
            )
        elif body.get("files") or body.get("gitSource"):
            deployment = self._deploy(
                project, target, {str(k): str(v) for k, v in (meta or {}).items()}, "api", None
            )
        else:
            raise self._bad_request(
                "Invalid request: one of `files`, `gitSource` or `deploymentId` is required."
            )
        return json_response(200, deployment.created_json())

    def _get_deployment(self, request: SimRequest) -> SimResponse:
        team_id = request.arg("teamId")
        wanted = request.params["id"]
        for project in self._projects.values():
            if project.team_id != team_id:
                continue
            for deployment in project.deployments:
                if wanted in (deployment.uid, deployment.url):
                    return json_response(200, deployment.created_json())
        return self.vercel_error(404, "not_found", "The deployment could not be found.")

    # ----------------------------------------------------------------- admin HTTP

    def _admin_add_token(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        for team_id in body.get("teamIds") or [None]:
            self.add_token(str(body["token"]), team_id)
        return json_response(201, {"teams": sorted(t or "" for t in self._tokens[str(body["token"])])})

    def _project_from_json(self, spec: Mapping[str, Any]) -> Project:
        """``{"name", "teamId"?, "id"?, "framework"?, "updatedAt"? (Unix ms), "customEnvironments"?}``."""
        updated_at = spec.get("updatedAt")
        project = self.add_project(
            str(spec["name"]),
            team_id=spec.get("teamId"),
            project_id=spec.get("id"),
            framework=spec.get("framework"),
            updated_at=None if updated_at is None else int(updated_at),
        )
        for environment in spec.get("customEnvironments") or []:
            self.add_custom_environment(project.id, str(environment["slug"]), environment.get("id"))
        return project

    def _admin_add_project(self, request: SimRequest) -> SimResponse:
        project = self._project_from_json(cast_json_dict(request.json()))
        return json_response(
            201,
            {
                "id": project.id,
                "name": project.name,
                "teamId": project.team_id,
                "framework": project.framework,
                "createdAt": project.created_at,
                "updatedAt": project.updated_at,
                "customEnvironments": [
                    {"id": env_id, "slug": slug} for env_id, slug in project.custom_environments.items()
                ],
            },
        )

    def _admin_add_deployment(self, request: SimRequest) -> SimResponse:
        body = cast_json_dict(request.json())
        deployment = self.add_deployment(str(body["project"]), target=body.get("target", "production"))
        return json_response(201, deployment.to_json())
