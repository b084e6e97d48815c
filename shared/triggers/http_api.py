"""HTTP triggers: the configuration and manual-refresh API the portal calls.

Each handler parses the request, calls the registry service, and shapes the JSON answer. Routes
sit under the host's ``/api`` prefix and need a function key, except health and the OpenAPI document.
"""

import json
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.api.http import (
    app_id_param,
    bool_param,
    handle_errors,
    if_match,
    json_response,
    json_text_response,
    page_params,
    parse_model,
    read_json,
)
from shared.errors import FieldProblem, ValidationError
from shared.services import get_services

if TYPE_CHECKING:
    from shared.storage.applications import ListedApplication

bp = func.Blueprint()

# Fields a client may send back from a GET; they belong to the rotator and are ignored on PUT.
READ_ONLY_FIELDS = ("status", "etag", "createdAt", "updatedAt")


def iso(moment: Any) -> str | None:
    """UTC timestamps as the rest of the API writes them (RFC 3339, ``...Z``)."""
    from shared.domain.models import rfc3339

    return rfc3339(moment) if moment else None


def application_body(stored: Any) -> dict[str, Any]:
    from shared.domain.schedule import shown_next_update

    body: dict[str, Any] = stored.config.to_json_dict()
    status: dict[str, Any] = stored.status.to_json_dict()
    # Derived at read time (the threshold may have changed since the status was written): "now"
    # when due, and left out when nothing is scheduled (disabled, or rotation off).
    next_update = shown_next_update(stored.config, stored.status, get_services().clock())
    status.pop("nextUpdateAt", None)
    if next_update is not None:
        status["nextUpdateAt"] = iso(next_update)
    body["status"] = status
    body["etag"] = stored.etag
    body["createdAt"] = iso(stored.created_at)
    body["updatedAt"] = iso(stored.updated_at)
    return body


def application_summary(listed: "ListedApplication", now: str) -> str:
    """A listing's entry at ``now`` (``format_instant`` text) as JSON text: the fields of
    ``application_body`` a list shows, spliced from the row's ``Listing`` column
    (``shared.storage.applications.listing_text``), not built from the whole configuration and
    status of each (a page has a hundred)."""
    from shared.storage.applications import instant_as_rfc3339

    # As application_body: "now" when due, null when nothing is scheduled. Both instants are
    # fixed-width ``format_instant`` text (digits and "-:.TZ", nothing to escape), so text order
    # is time order.
    scheduled = listed.scheduled_at
    next_update = "null" if scheduled is None else f'"{instant_as_rfc3339(max(scheduled, now))}"'
    members = listed.shown[1:-1]
    return (
        f'{{{members}{"," if members else ""}"nextUpdateAt":{next_update},"etag":{json.dumps(listed.etag)}}}'
    )


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness: answers without touching storage or any SDK (cheap for probes)."""
    return json_response({"status": "ok"})


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.openapi import build_openapi

    return json_response(build_openapi(get_services().settings.api_auth == "entra"))


@bp.route(route="applications", methods=["GET"])
@handle_errors
async def list_applications(req: func.HttpRequest) -> func.HttpResponse:
    page_size, token = page_params(req)
    page = await get_services().registry.list(page_size, token)
    from shared.storage.applications import format_instant

    now = format_instant(get_services().clock())
    items = ",".join(application_summary(item, now) for item in page.items)
    return json_text_response(
        f'{{"items":[{items}],"continuationToken":{json.dumps(page.continuation_token)}}}'
    )


@bp.route(route="applications/{appId}", methods=["GET"])
@handle_errors
async def get_application(req: func.HttpRequest) -> func.HttpResponse:
    stored = await get_services().registry.get(app_id_param(req))
    return json_response(application_body(stored), headers={"ETag": stored.etag})


@bp.route(route="applications/{appId}", methods=["PUT"])
@handle_errors
async def put_application(req: func.HttpRequest) -> func.HttpResponse:
    from shared.domain.models import ApplicationConfig

    app_id = app_id_param(req)
    data = read_json(req)
    allow_object_id_change = False
    if isinstance(data, dict):
        allow = data.get("allowObjectIdChange", False)
        if not isinstance(allow, bool):
            raise ValidationError(
                "allowObjectIdChange must be a boolean",
                [FieldProblem("allowObjectIdChange", "must be true or false", "true or false")],
            )
        allow_object_id_change = allow
        data = {
            key: value
            for key, value in data.items()
            if key not in READ_ONLY_FIELDS and key != "allowObjectIdChange"
        }
        body_app_id = data.setdefault("appId", app_id)
        if isinstance(body_app_id, str) and body_app_id.lower() != app_id:
            raise ValidationError(
                "appId in the body differs from the URL",
                [FieldProblem("appId", "must match the application id in the URL", app_id)],
            )
    from shared.credentials import extract_integration_credentials

    credentials = extract_integration_credentials(data, app_id, get_services().plugins)
    config = parse_model(ApplicationConfig, data)
    raw_if_none_match = req.headers.get("If-None-Match")
    if_none_match = raw_if_none_match.strip() if raw_if_none_match is not None else None
    if if_none_match not in (None, "*"):
        raise ValidationError(
            "Unsupported If-None-Match",
            [FieldProblem("If-None-Match", "only '*' (create only) is supported", "*")],
        )
    result = await get_services().registry.put(
        config,
        if_match=if_match(req),
        create_only=if_none_match == "*",
        allow_object_id_change=allow_object_id_change,
        credentials=credentials,
    )
    stored = result.application
    return json_response(
        application_body(stored),
        status=201 if result.created else 200,
        headers={"ETag": stored.etag, "Location": f"/api/applications/{app_id}"},
    )


@bp.route(route="applications/{appId}", methods=["DELETE"])
@handle_errors
async def delete_application(req: func.HttpRequest) -> func.HttpResponse:
    """``leaveCredentials=true``: delete even while credentials wait for the rotator to remove
    them from Entra ID, leaving them there (the log names them; ``RegistryService.delete``)."""
    leave = bool_param(req, "leaveCredentials", default=False)
    await get_services().registry.delete(app_id_param(req), if_match=if_match(req), leave_credentials=leave)
    return func.HttpResponse(status_code=204)


@bp.route(route="applications/{appId}/log", methods=["GET"])
@handle_errors
async def get_rotation_log(req: func.HttpRequest) -> func.HttpResponse:
    app_id = app_id_param(req)
    page_size, token = page_params(req)
    page = await get_services().registry.log(app_id, page_size, token)
    return json_response(
        {
            "items": [entry.to_json_dict() for entry in page.items],
            "continuationToken": page.continuation_token,
        }
    )


@bp.route(route="applications/{appId}/refresh", methods=["POST"])
@handle_errors
async def refresh_secret(req: func.HttpRequest) -> func.HttpResponse:
    from shared.domain.models import RefreshRequest

    app_id = app_id_param(req)
    request = parse_model(RefreshRequest, read_json(req, required=False))
    outcome = await get_services().registry.request_refresh(
        app_id,
        compromised=request.compromised,
        revoke_unmanaged=request.revoke_unmanaged_credentials,
    )
    return json_response(
        {
            "appId": app_id,
            "rotationId": outcome.rotation_id,
            "status": outcome.state,
            "joined": outcome.joined,
            "compromised": outcome.compromised,
            "log": f"/api/applications/{app_id}/log",
        },
        status=202,
        headers={"Location": f"/api/applications/{app_id}"},
    )


@bp.route(route="applications/{appId}/plan", methods=["GET"])
@handle_errors
async def plan_rotation(req: func.HttpRequest) -> func.HttpResponse:
    """Dry run: what a rotation would touch and any problem in the settings; creates nothing.

    With ``consumers`` (default ``true``) it also searches for the secret's consumers (read-only)
    and shows the blast radius: those the next rotation updates and those it does not."""
    from shared.rotation.checks import registration_problems
    from shared.rotation.plan import blast_radius, build_plan

    services = get_services()
    stored = await services.registry.get(app_id_param(req))
    consumers = bool_param(req, "consumers", default=True)
    problems = await registration_problems(
        stored.config, services.plugins, services.groups, rotator_vault_url=services.settings.vault_url
    )
    plan = build_plan(
        stored, services.plugins, services.settings.credential_prefix, services.clock(), problems
    )
    if consumers:
        from shared.discovery.consumers import discover

        plan["blastRadius"] = blast_radius(await discover(services, stored))
    return json_response(plan)


def _group_id(req: func.HttpRequest) -> str:
    import re

    group_id = str(req.route_params.get("groupId", ""))
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", group_id):
        raise ValidationError(
            "Invalid group id",
            [FieldProblem("groupId", "must be a group id", "1 to 63 lowercase letters, digits or '-'")],
        )
    return group_id


def group_body(group: Any, etag: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = group.to_json_dict()
    if etag:
        body["etag"] = etag
    return body


@bp.route(route="groups", methods=["GET"])
@handle_errors
async def list_groups(req: func.HttpRequest) -> func.HttpResponse:
    groups = await get_services().groups.list_all()
    return json_response({"items": [group_body(group) for group in groups]})


@bp.route(route="groups/{groupId}", methods=["GET"])
@handle_errors
async def get_group(req: func.HttpRequest) -> func.HttpResponse:
    group, etag = await get_services().groups.get(_group_id(req))
    return json_response(group_body(group, etag), headers={"ETag": etag})


@bp.route(route="groups/{groupId}", methods=["PUT"])
@handle_errors
async def put_group(req: func.HttpRequest) -> func.HttpResponse:
    from shared.domain.models import Group

    group_id = _group_id(req)
    data = read_json(req)
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key != "etag"}
        data.setdefault("groupId", group_id)
        if data["groupId"] != group_id:
            raise ValidationError(
                "groupId in the body differs from the URL",
                [FieldProblem("groupId", "must match the group id in the URL", group_id)],
            )
    from shared.credentials import extract_group_credentials

    credentials = extract_group_credentials(data, group_id)
    group = parse_model(Group, data)
    etag, created = await get_services().group_service.put(
        group, if_match=if_match(req), credentials=credentials
    )
    return json_response(group_body(group, etag), status=201 if created else 200, headers={"ETag": etag})


@bp.route(route="groups/{groupId}", methods=["DELETE"])
@handle_errors
async def delete_group(req: func.HttpRequest) -> func.HttpResponse:
    await get_services().group_service.delete(_group_id(req), if_match=if_match(req))
    return func.HttpResponse(status_code=204)


@bp.route(route="inventory", methods=["GET"])
@handle_errors
async def list_inventory(req: func.HttpRequest) -> func.HttpResponse:
    """Every application the rotator can see, with each password's expiry (managed or not)."""
    from shared.api.http import problem_response
    from shared.errors import ExternalServiceError
    from shared.inventory import expiry_window

    days = expiry_window(req.params.get("expiringWithinDays"))
    page_size, token = page_params(req)
    try:
        page = await get_services().inventory.list(days, page_size, token)
    except ExternalServiceError as error:
        if error.code == "InsufficientPermission":
            return problem_response(403, "Missing Graph permission", error.message, "insufficient-permission")
        raise
    return json_response(page.to_json())
