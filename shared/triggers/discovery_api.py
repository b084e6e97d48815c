"""HTTP triggers for the portal's destination pickers, consumer discovery and sign-in evidence.

Read-only: each lists what the rotator's identity can see (``shared.discovery``), one page at a
time, with no secret values. A missing permission answers 403 naming what to grant.
"""

import azure.functions as func

from shared.api.http import app_id_param, handle_errors, json_response, page_params, text_param
from shared.services import get_services

bp = func.Blueprint()

GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
SUBSCRIPTION_ALLOWED = "a subscription id (GUID)"
RESOURCE_GROUP = r"[-\w.()]{0,89}[-\w()]"
RESOURCE_GROUP_ALLOWED = (
    "a resource group name: 1 to 90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"
)
ORGANIZATION = r"[A-Za-z0-9][A-Za-z0-9-]{0,49}"
PROJECT = r"[^\x00-\x1f/\\]{1,64}"
GROUP_ID = r"[a-z0-9][a-z0-9-]{0,62}"
ACCOUNT_ID = (
    r"/subscriptions/"
    + GUID
    + r"/resourceGroups/"
    + RESOURCE_GROUP
    + r"/providers/Microsoft\.Automation/automationAccounts/[-A-Za-z0-9_]{1,50}"
)


def _subscription(req: func.HttpRequest) -> str:
    return str(text_param(req, "subscriptionId", GUID, SUBSCRIPTION_ALLOWED)).lower()


def _resource_group(req: func.HttpRequest, *, required: bool) -> str | None:
    return text_param(req, "resourceGroup", RESOURCE_GROUP, RESOURCE_GROUP_ALLOWED, required=required)


@bp.route(route="destinations/subscriptions", methods=["GET"])
@handle_errors
async def pick_subscriptions(req: func.HttpRequest) -> func.HttpResponse:
    """Subscriptions the rotator's identity can read (needs Reader on each)."""
    from shared.discovery import pickers

    page_size, token = page_params(req)
    return json_response((await pickers.subscriptions(get_services(), page_size, token)).to_json())


@bp.route(route="destinations/keyVaults", methods=["GET"])
@handle_errors
async def pick_key_vaults(req: func.HttpRequest) -> func.HttpResponse:
    """Key Vaults of a subscription (or one resource group), with their permission model and
    whether the rotator may already write secrets there."""
    from shared.discovery import pickers

    subscription = _subscription(req)
    group = _resource_group(req, required=False)
    page_size, token = page_params(req)
    page = await pickers.key_vaults(get_services(), subscription, group, page_size, token)
    return json_response(page.to_json())


@bp.route(route="destinations/logicAppConnections", methods=["GET"])
@handle_errors
async def pick_logic_app_connections(req: func.HttpRequest) -> func.HttpResponse:
    """API connections (``Microsoft.Web/connections``) in a resource group, with their client ids."""
    from shared.discovery import pickers

    subscription, group = _subscription(req), str(_resource_group(req, required=True))
    page_size, token = page_params(req)
    page = await pickers.logic_app_connections(get_services(), subscription, group, page_size, token)
    return json_response(page.to_json())


@bp.route(route="destinations/appServices", methods=["GET"])
@handle_errors
async def pick_app_services(req: func.HttpRequest) -> func.HttpResponse:
    """App Service and Function Apps (``Microsoft.Web/sites``) in a resource group."""
    from shared.discovery import pickers

    subscription, group = _subscription(req), str(_resource_group(req, required=True))
    page_size, token = page_params(req)
    page = await pickers.app_services(get_services(), subscription, group, page_size, token)
    return json_response(page.to_json())


@bp.route(route="destinations/automationAccounts", methods=["GET"])
@handle_errors
async def pick_automation_accounts(req: func.HttpRequest) -> func.HttpResponse:
    """Automation accounts in a resource group."""
    from shared.discovery import pickers

    subscription, group = _subscription(req), str(_resource_group(req, required=True))
    page_size, token = page_params(req)
    page = await pickers.automation_accounts(get_services(), subscription, group, page_size, token)
    return json_response(page.to_json())


@bp.route(route="destinations/runbooks", methods=["GET"])
@handle_errors
async def pick_runbooks(req: func.HttpRequest) -> func.HttpResponse:
    """Runbooks of an Automation account."""
    from shared.discovery import pickers

    account = str(
        text_param(
            req, "automationAccountId", ACCOUNT_ID, "a Microsoft.Automation/automationAccounts resource id"
        )
    )
    page_size, token = page_params(req)
    return json_response((await pickers.runbooks(get_services(), account, page_size, token)).to_json())


@bp.route(route="destinations/devOpsProjects", methods=["GET"])
@handle_errors
async def pick_devops_projects(req: func.HttpRequest) -> func.HttpResponse:
    """Projects of an Azure DevOps organization the rotator's identity belongs to."""
    from shared.discovery import pickers

    organization = str(text_param(req, "organization", ORGANIZATION, "an Azure DevOps organization name"))
    page_size, token = page_params(req)
    return json_response(
        (await pickers.devops_projects(get_services(), organization, page_size, token)).to_json()
    )


@bp.route(route="destinations/devOpsServiceConnections", methods=["GET"])
@handle_errors
async def pick_devops_service_connections(req: func.HttpRequest) -> func.HttpResponse:
    """Service connections of a project; only azurerm service-principal ones with a secret are
    ``supported``, the others say why not."""
    from shared.discovery import pickers

    organization = str(text_param(req, "organization", ORGANIZATION, "an Azure DevOps organization name"))
    project = str(text_param(req, "project", PROJECT, "a project name of 1 to 64 characters"))
    page_size, token = page_params(req)
    page = await pickers.devops_service_connections(get_services(), organization, project, page_size, token)
    return json_response(page.to_json())


@bp.route(route="destinations/vercelProjects", methods=["GET"])
@handle_errors
async def pick_vercel_projects(req: func.HttpRequest) -> func.HttpResponse:
    """Vercel projects the group's token can see."""
    from shared.discovery import pickers

    group_id = str(text_param(req, "groupId", GROUP_ID, "1 to 63 lowercase letters, digits or '-'"))
    page_size, token = page_params(req)
    return json_response(
        (await pickers.vercel_projects(get_services(), group_id, page_size, token)).to_json()
    )


RESOURCE_GROUP_ID = r"/subscriptions/" + GUID + r"/resourceGroups/" + RESOURCE_GROUP
DEVOPS_PROJECT = ORGANIZATION + r"/[^\x00-\x1f/\\,]{1,64}"
MAX_EXTRA_SCOPES = 20


def scope_list(item: str) -> str:
    """Up to ``MAX_EXTRA_SCOPES`` comma-separated ``item``s (the pattern the OpenAPI document states)."""
    return f"(?:{item})(?:,(?:{item})){{0,{MAX_EXTRA_SCOPES - 1}}}"


RESOURCE_GROUP_IDS = scope_list(RESOURCE_GROUP_ID)
DEVOPS_PROJECTS = scope_list(DEVOPS_PROJECT)


def discovery_scopes(req: func.HttpRequest) -> tuple[list[str], list[tuple[str, str]]]:
    """``resourceGroupId`` and ``devOpsProject``: comma-separated lists, at most 20 each."""
    groups = text_param(
        req,
        "resourceGroupId",
        RESOURCE_GROUP_IDS,
        f"up to {MAX_EXTRA_SCOPES} comma-separated /subscriptions/<GUID>/resourceGroups/<name>",
        required=False,
    )
    projects = text_param(
        req,
        "devOpsProject",
        DEVOPS_PROJECTS,
        f"up to {MAX_EXTRA_SCOPES} comma-separated <organization>/<project>",
        required=False,
    )
    pairs = [(p.split("/", 1)[0], p.split("/", 1)[1]) for p in projects.split(",")] if projects else []
    return groups.split(",") if groups else [], pairs


@bp.route(route="applications/{appId}/consumers", methods=["GET"])
@handle_errors
async def list_consumers(req: func.HttpRequest) -> func.HttpResponse:
    """Where the application's secret is used: each consumer found, whether an integration covers
    it, and a ready-to-PUT integration for those that are not covered (``shared.discovery.consumers``)."""
    from shared.discovery.consumers import discover

    services = get_services()
    stored = await services.registry.get(app_id_param(req))
    groups, projects = discovery_scopes(req)
    found = await discover(services, stored, resource_groups=groups, devops_projects=projects)
    return json_response(found.to_json())


@bp.route(route="applications/{appId}/credentialUsage", methods=["GET"])
@handle_errors
async def credential_usage(req: func.HttpRequest) -> func.HttpResponse:
    """Each password of the application with when it last signed in (Graph's sign-in activity
    report, beta; needs AuditLog.Read.All, else 403 naming it). Never a secret value."""
    from shared.domain.models import rfc3339

    services = get_services()
    stored = await services.registry.get(app_id_param(req))
    config, status = stored.config, stored.status
    used = await services.sign_ins.last_used(str(config.app_id))
    app = await services.directory.get_application(str(config.object_id))
    prefix = f"{services.settings.credential_prefix}:"
    items = []
    for password in app.passwords:
        role = (
            "current"
            if password.key_id == status.current_key_id
            else "previous"
            if password.key_id == status.previous_key_id
            else "other"
        )
        last = used.get(password.key_id.lower())
        items.append(
            {
                "keyId": password.key_id,
                "displayName": password.display_name,
                "hint": password.hint,
                "startAt": rfc3339(password.start) if password.start else None,
                "endAt": rfc3339(password.end) if password.end else None,
                "managed": (password.display_name or "").startswith(prefix),
                "role": role,
                "lastSignInAt": rfc3339(last) if last else None,
            }
        )
    hours = config.rotation.retire_unused_previous_after_hours
    return json_response(
        {
            "appId": str(config.app_id),
            "items": items,
            "earlyRetirement": {"enabled": hours is not None, "unusedForHours": hours},
        }
    )
