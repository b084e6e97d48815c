"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/openapi.json``.

Schemas come from the same pydantic models that validate requests, so they cannot drift; a test
checks that the paths and methods here are exactly the routes the app registers.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from shared.api.http import DEFAULT_PAGE_SIZE, PAGE_SIZE

API_PREFIX = "/api"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


APP_ID = {
    "name": "appId",
    "in": "path",
    "required": True,
    "description": "The Entra application's client (app) id.",
    "schema": {"type": "string", "format": "uuid"},
}
GROUP_ID = {
    "name": "groupId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
}
PAGING = [
    {
        "name": "pageSize",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": PAGE_SIZE[0],
            "maximum": PAGE_SIZE[1],
            "default": DEFAULT_PAGE_SIZE,
        },
    },
    {
        "name": "continuationToken",
        "in": "query",
        "description": "Opaque token from the previous page.",
        "schema": {"type": "string"},
    },
]
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "description": "ETag from a previous read; the write fails with 412 if the resource changed since.",
    "schema": {"type": "string", "maxLength": 256},
}
COMMON_ERRORS = {
    "400": _problem("Invalid input; `errors` names each field and what is allowed."),
    "401": {"description": "Missing or invalid function key (`x-functions-key` header or `code` query)."},
    # Without content: the app answers problem+json, but the host answers a path no function
    # matches with an empty 404 (azure-functions-host#10098).
    "404": {"description": "Not found: problem+json from the app, or an empty body when no route matches."},
}


def _query(name: str, pattern: str, description: str, *, required: bool = True) -> dict[str, Any]:
    """A string query parameter; ``pattern`` is the one the handler checks in full."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string", "pattern": f"^(?:{pattern})$"},
    }


def _discovery_scopes() -> list[dict[str, Any]]:
    from shared.triggers import discovery_api as api

    return [
        _query(
            "resourceGroupId",
            api.RESOURCE_GROUP_IDS,
            "More resource groups to search: up to 20 comma-separated resource group ids.",
            required=False,
        ),
        _query(
            "devOpsProject",
            api.DEVOPS_PROJECTS,
            "More Azure DevOps projects to search: up to 20 comma-separated `organization/project`.",
            required=False,
        ),
    ]


def _picker_paths() -> dict[str, Any]:
    """The destination pickers (``shared.triggers.discovery_api``)."""
    from shared.triggers import discovery_api as api

    subscription = _query("subscriptionId", api.GUID, "The subscription id.")
    group = _query("resourceGroup", api.RESOURCE_GROUP, "The resource group name.")
    organization = _query("organization", api.ORGANIZATION, "The Azure DevOps organization.")
    pickers = {
        "/destinations/subscriptions": (
            "pickSubscriptions",
            "Subscriptions the rotator can read",
            [],
            "Subscription",
        ),
        "/destinations/keyVaults": (
            "pickKeyVaults",
            "Key Vaults in a subscription (or resource group), with their permission model and whether "
            "the rotator may write secrets there",
            [subscription, {**group, "required": False}],
            "KeyVaultChoice",
        ),
        "/destinations/logicAppConnections": (
            "pickLogicAppConnections",
            "API connections in a resource group, with the client id each signs in with",
            [subscription, group],
            "ResourceChoice",
        ),
        "/destinations/appServices": (
            "pickAppServices",
            "App Service and Function Apps in a resource group",
            [subscription, group],
            "ResourceChoice",
        ),
        "/destinations/automationAccounts": (
            "pickAutomationAccounts",
            "Automation accounts in a resource group",
            [subscription, group],
            "ResourceChoice",
        ),
        "/destinations/runbooks": (
            "pickRunbooks",
            "Runbooks of an Automation account",
            [_query("automationAccountId", api.ACCOUNT_ID, "The Automation account's resource id.")],
            "ResourceChoice",
        ),
        "/destinations/devOpsProjects": (
            "pickDevOpsProjects",
            "Projects of an Azure DevOps organization",
            [organization],
            "DevOpsProject",
        ),
        "/destinations/devOpsServiceConnections": (
            "pickDevOpsServiceConnections",
            "Service connections of a project; `supported` tells those the rotator can update "
            "(Azure Resource Manager, service principal with a secret) and `reason` why not otherwise",
            [organization, _query("project", api.PROJECT, "The project name.")],
            "ServiceConnectionChoice",
        ),
        "/destinations/vercelProjects": (
            "pickVercelProjects",
            "Vercel projects the group's token can see",
            [_query("groupId", api.GROUP_ID, "The group whose Vercel token to use.")],
            "VercelProjectChoice",
        ),
    }
    paths: dict[str, Any] = {}
    for path, (operation, summary, parameters, item) in pickers.items():
        paths[path] = {
            "get": {
                "operationId": operation,
                "summary": summary,
                "parameters": [*parameters, *PAGING],
                "responses": {
                    "200": _json(_page(item), "A page; `continuationToken` continues it."),
                    **COMMON_ERRORS,
                    "403": _problem("The rotator may not list these; the detail names what to grant."),
                    "409": _problem("The group has no Vercel token."),
                    "502": _problem("The service failed or throttled the call; try again."),
                },
            }
        }
    return paths


def _paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness probe",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The app is up.")},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
            }
        },
        "/applications": {
            "get": {
                "operationId": "listApplications",
                "summary": "List registered applications with their secret metadata",
                "parameters": PAGING,
                "responses": {
                    "200": _json(_ref("ApplicationPage"), "A page of applications."),
                    "400": COMMON_ERRORS["400"],
                    "401": COMMON_ERRORS["401"],
                },
            }
        },
        "/applications/{appId}": {
            "parameters": [APP_ID],
            "get": {
                "operationId": "getApplication",
                "summary": "Get an application's registration, settings and status",
                "responses": {
                    "200": _json(_ref("Application"), "The application; its ETag is in the ETag header."),
                    **COMMON_ERRORS,
                },
            },
            "put": {
                "operationId": "putApplication",
                "summary": "Create or replace an application's registration and rotation settings",
                "description": "Status is kept on replace. `status`, `etag`, `createdAt` and "
                "`updatedAt` in the body are ignored, so a GET body can be edited and sent back. "
                "Write-only credentials: `personalAccessToken` on an azureDevOps integration and "
                "`webhookUrl` on an automation webhook are stored in the rotator's Key Vault and "
                "replaced by a reference (`patSecretName`, `webhookSecretName`); they are never returned. "
                "Changing the `objectId` of an existing registration needs `allowObjectIdChange: true` "
                "in the body (400 naming `objectId` otherwise).",
                "parameters": [
                    IF_MATCH,
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "description": "`*` to create only (412 if it exists).",
                        "schema": {"type": "string", "enum": ["*"]},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ApplicationInput")}},
                },
                "responses": {
                    "200": _json(_ref("Application"), "Replaced."),
                    "201": _json(_ref("Application"), "Created."),
                    "400": COMMON_ERRORS["400"],
                    "401": COMMON_ERRORS["401"],
                    "409": _problem(
                        "objectId differs from the registered one (send allowObjectIdChange: true), or the "
                        "application changes too often."
                    ),
                    "412": _problem(
                        "If-Match did not hold (the application changed) or If-None-Match: * and it exists."
                    ),
                    "413": _problem("Body larger than 64 KiB."),
                },
            },
            "delete": {
                "operationId": "deleteApplication",
                "summary": "Remove an application's registration (its rotation log is kept)",
                "parameters": [
                    IF_MATCH,
                    {
                        "name": "leaveCredentials",
                        "in": "query",
                        "description": "Delete even while credentials wait for the rotator to remove them "
                        "from Entra ID, leaving them there; the log entry "
                        "registration.deletedLeavingCredentials names them.",
                        "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
                    },
                ],
                "responses": {
                    "204": {"description": "Deleted."},
                    **COMMON_ERRORS,
                    "409": _problem(
                        "A rotation holds its claim (also one whose worker stopped: the timer resumes it), "
                        "or credentials wait for the rotator to remove them from Entra ID (a failed "
                        "rotation's, what an unanswered addPassword may still create, or a compromised "
                        "rotation's revocation; the timer removes them, also while rotation is disabled); "
                        "delete after that, or with leaveCredentials=true."
                    ),
                    "412": _problem("If-Match did not hold."),
                },
            },
        },
        "/applications/{appId}/log": {
            "parameters": [APP_ID],
            "get": {
                "operationId": "getRotationLog",
                "summary": "The application's rotation log, newest first",
                "parameters": PAGING,
                "responses": {
                    "200": _json(_ref("RotationLogPage"), "A page of log entries."),
                    **COMMON_ERRORS,
                },
            },
        },
        "/applications/{appId}/plan": {
            "parameters": [APP_ID],
            "get": {
                "operationId": "planRotation",
                "summary": "Dry run: what a rotation would do and any problem in the settings (creates nothing)",
                "description": "With `consumers=true` (the default) the plan also searches for the secret's "
                "consumers (read-only, as `/consumers` does in the application's own scopes) and shows "
                "the blast radius: the consumers the next rotation updates and those it does not.",
                "parameters": [
                    {
                        "name": "consumers",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"], "default": "true"},
                    }
                ],
                "responses": {"200": _json(_ref("RotationPlan"), "The plan."), **COMMON_ERRORS},
            },
        },
        "/applications/{appId}/consumers": {
            "parameters": [APP_ID],
            "get": {
                "operationId": "listConsumers",
                "summary": "Where the application's secret is used, and which uses no integration covers",
                "description": "Searches the scopes the application's integrations name plus the ones given: "
                "DevOps service connections whose service principal is the app, API connections whose "
                "client id is the app, App Service settings holding the staged secret (compared by SHA-256 "
                "digest, never returned) or referencing a Key Vault secret of the app, Key Vault secrets "
                "tagged with the appId, and Vercel variables of the group's projects by name. Each "
                "uncovered consumer comes with a ready-to-PUT integration. A scope the rotator may not "
                "read is listed in `gaps` with the permission it needs.",
                "parameters": _discovery_scopes(),
                "responses": {"200": _json(_ref("ConsumerList"), "The consumers found."), **COMMON_ERRORS},
            },
        },
        "/applications/{appId}/credentialUsage": {
            "parameters": [APP_ID],
            "get": {
                "operationId": "getCredentialUsage",
                "summary": "Each password of the application and when it last signed in",
                "description": "From Microsoft Graph's appCredentialSignInActivities report (beta). Needs the "
                "AuditLog.Read.All application permission: without it, 403 naming it (early retirement "
                "then stays off and credentials are retired when they expire).",
                "responses": {
                    "200": _json(_ref("CredentialUsage"), "The passwords with their last sign-in."),
                    **COMMON_ERRORS,
                    "403": _problem("The rotator's identity lacks AuditLog.Read.All (named in the detail)."),
                    "502": _problem("Microsoft Graph failed."),
                },
            },
        },
        **_picker_paths(),
        "/inventory": {
            "get": {
                "operationId": "listInventory",
                "summary": "Every application the rotator can see, with each password's expiry (managed or not)",
                "parameters": [
                    {
                        "name": "expiringWithinDays",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 365, "default": 30},
                    },
                    *PAGING,
                ],
                "responses": {
                    "200": _json(_ref("InventoryPage"), "A page of applications."),
                    "400": COMMON_ERRORS["400"],
                    "401": COMMON_ERRORS["401"],
                    "403": _problem("The rotator's identity lacks Application.Read.All."),
                    "502": _problem("Microsoft Graph failed."),
                },
            }
        },
        "/groups": {
            "get": {
                "operationId": "listGroups",
                "summary": "List groups (shared settings such as a Vercel account)",
                "responses": {"200": _json(_ref("GroupList"), "All groups."), "401": COMMON_ERRORS["401"]},
            }
        },
        "/groups/{groupId}": {
            "parameters": [GROUP_ID],
            "get": {
                "operationId": "getGroup",
                "summary": "Get a group",
                "responses": {"200": _json(_ref("Group"), "The group."), **COMMON_ERRORS},
            },
            "put": {
                "operationId": "putGroup",
                "summary": "Create or replace a group; `vercel.token` is write-only (stored in the rotator's vault)",
                "parameters": [IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("GroupInput")}},
                },
                "responses": {
                    "200": _json(_ref("Group"), "Replaced."),
                    "201": _json(_ref("Group"), "Created."),
                    "400": COMMON_ERRORS["400"],
                    "401": COMMON_ERRORS["401"],
                    "409": _problem("The group kept changing; try again."),
                    "412": _problem("If-Match did not hold (any If-Match for a group that does not exist)."),
                },
            },
            "delete": {
                "operationId": "deleteGroup",
                "summary": "Delete a group",
                "parameters": [IF_MATCH],
                "responses": {
                    "204": {"description": "Deleted."},
                    **COMMON_ERRORS,
                    "409": _problem("Applications use the group (named in the detail)."),
                    "412": _problem("If-Match did not hold."),
                },
            },
        },
        "/applications/{appId}/refresh": {
            "parameters": [APP_ID],
            "post": {
                "operationId": "refreshSecret",
                "summary": "Rotate the secret now (manual refresh)",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RefreshRequest")}},
                },
                "responses": {
                    "202": _json(
                        _ref("RefreshAccepted"),
                        "Queued, or joined the rotation already queued or running (``joined``: the same "
                        "rotation id; a compromised request escalates it). The rotation id always ends in "
                        "the log with a terminal outcome: succeeded, degraded, failed, merged or superseded.",
                    ),
                    **COMMON_ERRORS,
                    "409": _problem("The application is Disabled."),
                },
            },
        },
    }


def _schemas() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    from shared.credentials import credential_schema
    from shared.domain.models import (
        ApplicationConfig,
        ApplicationStatus,
        Group,
        RefreshRequest,
        RotationLogEntry,
    )

    _, top = models_json_schema(
        [
            (ApplicationConfig, "validation"),
            (ApplicationStatus, "serialization"),
            (RotationLogEntry, "serialization"),
            (RefreshRequest, "validation"),
            (Group, "validation"),
        ],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    _write_only_credentials(schemas)
    config = schemas["ApplicationConfig"]
    # What a PUT takes: the registration, appId from the URL (read-only in the body: a GET body can
    # be sent back), and the explicit objectId-change flag.
    schemas["ApplicationInput"] = {
        **config,
        "title": "ApplicationInput",
        "properties": {
            **config["properties"],
            "appId": {**config["properties"]["appId"], "readOnly": True},
            "allowObjectIdChange": {
                "type": "boolean",
                "writeOnly": True,
                "description": "Needed (true) to change the objectId of an existing registration.",
            },
            **{field: {"readOnly": True} for field in ("status", "etag", "createdAt", "updatedAt")},
        },
        "required": [name for name in config.get("required", []) if name != "appId"],
    }
    # What GET answers: the registration merged with what the rotator adds (one object: a closed
    # schema under allOf could never be satisfied by a real body).
    schemas["Application"] = {
        "type": "object",
        "title": "Application",
        "properties": {
            **config["properties"],
            "status": _ref("ApplicationStatus"),
            "etag": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
        },
        "required": sorted({*config.get("required", []), "status", "etag", "createdAt", "updatedAt"}),
    }
    status = schemas["ApplicationStatus"]
    # Shown only while a rotation is scheduled (see shared.domain.schedule.shown_next_update).
    status["required"] = [name for name in status.get("required", []) if name != "nextUpdateAt"]
    status["properties"]["nextUpdateAt"] = {"type": "string", "format": "date-time"}
    schemas["ApplicationSummary"] = {
        "type": "object",
        "properties": {
            "appId": {"type": "string", "format": "uuid"},
            "objectId": {"type": "string", "format": "uuid"},
            "displayName": {"type": "string"},
            "state": {"type": "string", "enum": ["Active", "Disabled"]},
            "rotationEnabled": {"type": "boolean"},
            "lastUpdatedAt": {"type": ["string", "null"], "format": "date-time"},
            "expiresAt": {"type": ["string", "null"], "format": "date-time"},
            "nextUpdateAt": {"type": ["string", "null"], "format": "date-time"},
            "lastResult": {"type": "string", "enum": ["never", "succeeded", "degraded", "failed"]},
            "rotationInProgress": {"type": "boolean"},
            "integrationCount": {"type": "integer"},
            "etag": {"type": "string"},
        },
    }
    schemas["ApplicationPage"] = _page("ApplicationSummary")
    schemas["RotationLogPage"] = _page("RotationLogEntry")
    schemas["RefreshAccepted"] = {
        "type": "object",
        "properties": {
            "appId": {"type": "string"},
            "rotationId": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running"]},
            "joined": {"type": "boolean"},
            "compromised": {"type": "boolean"},
            "log": {"type": "string"},
        },
    }
    schemas["RotationPlan"] = {
        "type": "object",
        "properties": {
            "appId": {"type": "string"},
            "wouldRotateNow": {"type": "boolean"},
            "nextUpdateAt": {"type": ["string", "null"], "format": "date-time"},
            "ready": {"type": "boolean"},
            "steps": {"type": "array", "items": {"type": "string"}},
            "integrations": {"type": "array", "items": {"type": "object"}},
            "problems": {"type": "array", "items": {"type": "object"}},
            "blastRadius": {
                "type": "object",
                "properties": {
                    "updated": {"type": "array", "items": _ref("Consumer")},
                    "notUpdated": {"type": "array", "items": _ref("Consumer")},
                    "gaps": {"type": "array", "items": _ref("DiscoveryGap")},
                    "scanned": {"type": "object"},
                },
            },
        },
    }
    password = {
        "type": "object",
        "properties": {
            "keyId": {"type": "string"},
            "displayName": {"type": ["string", "null"]},
            "hint": {"type": ["string", "null"]},
            "startDateTime": {"type": ["string", "null"], "format": "date-time"},
            "endDateTime": {"type": ["string", "null"], "format": "date-time"},
            "expired": {"type": "boolean"},
            "expiringSoon": {"type": "boolean"},
            "managedByRotator": {"type": "boolean"},
        },
    }
    schemas["InventoryPage"] = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "appId": {"type": "string"},
                        "objectId": {"type": "string"},
                        "displayName": {"type": "string"},
                        "registered": {"type": "boolean"},
                        "expiringSoon": {"type": "boolean"},
                        "nextExpiry": {"type": ["string", "null"], "format": "date-time"},
                        "passwords": {"type": "array", "items": password},
                    },
                },
            },
            "continuationToken": {"type": ["string", "null"]},
            "expiringWithinDays": {"type": "integer"},
            "generatedAt": {"type": "string", "format": "date-time"},
        },
    }
    schemas["GroupList"] = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("Group")}},
    }
    group = schemas["Group"]
    vercel_settings = schemas["VercelGroupSettings"]
    schemas["GroupInput"] = {
        **group,
        "title": "GroupInput",
        "properties": {
            **group["properties"],
            "groupId": {**group["properties"]["groupId"], "readOnly": True},
            "etag": {"readOnly": True},
            "vercel": {
                "anyOf": [
                    {
                        **vercel_settings,
                        "properties": {
                            **vercel_settings["properties"],
                            "token": {
                                **credential_schema(),
                                "writeOnly": True,
                                "description": "The Vercel token; stored in the rotator's vault, never returned.",
                            },
                        },
                    },
                    {"type": "null"},
                ]
            },
        },
        "required": [name for name in group.get("required", []) if name != "groupId"],
    }
    schemas["Group"] = {
        **group,
        "properties": {**group["properties"], "etag": {"type": "string"}},
        "additionalProperties": False,
    }
    _discovery_schemas(schemas)
    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                        "allowed": {"type": "string"},
                    },
                },
            },
        },
    }
    return schemas


def _write_only_credentials(schemas: dict[str, Any]) -> None:
    """The credentials each plugin declares (``write_only``): write-only in the document, and the
    references the API sets in their place read-only (a GET body may send them back)."""
    from shared.credentials import credential_schema
    from shared.integrations.registry import default_registry

    for plugin in default_registry().plugins():
        properties = schemas[plugin.settings_model.__name__]["properties"]
        for declared in plugin.write_only:
            properties[declared.input_field] = {
                **credential_schema(https=declared.https),
                "writeOnly": True,
                "description": declared.description,
            }
            properties[declared.reference_field] = {**properties[declared.reference_field], "readOnly": True}
    group = schemas["VercelGroupSettings"]["properties"]
    group["tokenSecretName"] = {**group["tokenSecretName"], "readOnly": True}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "continuationToken": {"type": ["string", "null"]},
        },
    }


def _every_operation_documents_400(paths: dict[str, Any]) -> dict[str, Any]:
    """Any operation answers 400 to a query parameter it does not take (``shared.api.http``)."""
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters":
                operation["responses"].setdefault("400", COMMON_ERRORS["400"])
    return paths


@cache
def build_openapi(entra: bool = False) -> dict[str, Any]:
    """The document; ``entra``: for ``ROTATOR_API_AUTH=entra`` (bearer tokens, checked by the app,
    so 401 and 403 are problem+json) instead of function keys (401 from the host, no body)."""
    paths = _every_operation_documents_400(_paths())
    if entra:
        for item in paths.values():
            for method, operation in item.items():
                if method == "parameters" or operation.get("security") == []:
                    continue
                operation["responses"]["401"] = _problem(
                    "No valid Microsoft Entra ID access token (the `WWW-Authenticate` header says why)."
                )
                operation["responses"].setdefault(
                    "403", _problem("The token lacks the app role the API needs (named in the detail).")
                )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Entra ID secret rotator",
            "version": "1.0.0",
            "description": "Configuration and manual-refresh API for automated Entra ID client-secret rotation.",
        },
        "servers": [{"url": API_PREFIX}],
        "security": [{"entraId": []}] if entra else [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"entraId": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            if entra
            else {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
            "schemas": _schemas(),
        },
    }


def _discovery_schemas(schemas: dict[str, Any]) -> None:
    text, nullable = {"type": "string"}, {"type": ["string", "null"]}
    schemas["Subscription"] = {
        "type": "object",
        "properties": {"subscriptionId": text, "displayName": text, "state": text},
    }
    schemas["KeyVaultChoice"] = {
        "type": "object",
        "properties": {
            "resourceId": text,
            "name": text,
            "location": text,
            "vaultUrl": text,
            "permissionModel": {"type": "string", "enum": ["rbac", "accessPolicy"]},
            "canWriteSecrets": {
                "type": ["boolean", "null"],
                "description": "null: the rotator may not tell.",
            },
            "selectable": {"type": "boolean"},
            "reason": text,
        },
    }
    schemas["ResourceChoice"] = {
        "type": "object",
        "description": "An API connection (displayName, api, clientId), a site (kind, state, "
        "defaultHostName), an Automation account (location) or a runbook (runbookType, state).",
        "properties": {"resourceId": text, "name": text},
        "additionalProperties": nullable,
    }
    schemas["DevOpsProject"] = {"type": "object", "properties": {"id": text, "name": text}}
    schemas["ServiceConnectionChoice"] = {
        "type": "object",
        "properties": {
            "id": text,
            "name": text,
            "type": text,
            "authorizationScheme": text,
            "servicePrincipalId": nullable,
            "supported": {"type": "boolean"},
            "reason": text,
        },
    }
    schemas["VercelProjectChoice"] = {
        "type": "object",
        "properties": {"id": text, "name": text, "framework": nullable},
    }
    schemas["Consumer"] = {
        "type": "object",
        "properties": {
            "kind": {
                "type": "string",
                "enum": [
                    "azureDevOpsServiceConnection",
                    "logicAppConnection",
                    "appServiceSetting",
                    "keyVaultSecret",
                    "vercelEnvironmentVariable",
                ],
            },
            "resource": text,
            "name": text,
            "evidence": text,
            "confidence": {"type": "string", "enum": ["exact", "name"]},
            "covered": {"type": "boolean"},
            "coveredBy": nullable,
            "supported": {"type": "boolean"},
            "reason": text,
            "integration": {"type": ["object", "null"], "description": "Ready to add to `integrations`."},
        },
    }
    schemas["DiscoveryGap"] = {
        "type": "object",
        "properties": {"scope": text, "reason": text, "permission": nullable},
    }
    schemas["ConsumerList"] = {
        "type": "object",
        "properties": {
            "appId": text,
            "items": {"type": "array", "items": _ref("Consumer")},
            "gaps": {"type": "array", "items": _ref("DiscoveryGap")},
            "scanned": {"type": "object"},
        },
    }
    schemas["CredentialUsage"] = {
        "type": "object",
        "properties": {
            "appId": text,
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "keyId": text,
                        "displayName": nullable,
                        "hint": nullable,
                        "startAt": {"type": ["string", "null"], "format": "date-time"},
                        "endAt": {"type": ["string", "null"], "format": "date-time"},
                        "managed": {"type": "boolean"},
                        "role": {"type": "string", "enum": ["current", "previous", "other"]},
                        "lastSignInAt": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
            "earlyRetirement": {
                "type": "object",
                "properties": {
                    "enabled": {"type": "boolean"},
                    "unusedForHours": {"type": ["integer", "null"]},
                },
            },
        },
    }
