"""The Bicep templates, checked from pycep's parse tree (there is no Bicep compiler here).

What a compiler would catch only in part (a module param that does not exist, an output that is
never declared) and what matters for security (no keys, TLS, RBAC, the exact role set, the Graph
permission) are asserted on the parsed tree. Text is read only where the tree keeps text:
interpolated strings, and the files that are not Bicep.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.config import SETTINGS

from .bicep import (
    INFRA,
    ROOT,
    accessor,
    bicep_files,
    conditional,
    decorator,
    function_name,
    interpolations,
    modules,
    one_resource,
    operator,
    param_default,
    parse,
    resolve,
    resources,
    strings,
    template,
    variable,
    walk,
)

DEPLOYED_SETTINGS = sorted(spec.name for spec in SETTINGS if spec.deployed)
LOCAL_ONLY_SETTINGS = sorted(spec.name for spec in SETTINGS if not spec.deployed)

# Built-in Azure role definition ids, from the Azure built-in roles reference.
ROLE_NAMES = {
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "09976791-48a7-449e-bb21-39d1a415f350": "Communication and Email Service Owner",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
}
# The identity's whole Azure role set: role -> the resource type it is scoped to.
EXPECTED_ROLES = {
    "Storage Table Data Contributor": "Microsoft.Storage/storageAccounts",
    "Storage Queue Data Contributor": "Microsoft.Storage/storageAccounts",
    "Storage Blob Data Owner": "Microsoft.Storage/storageAccounts",
    "Key Vault Secrets Officer": "Microsoft.KeyVault/vaults",
    "Communication and Email Service Owner": "Microsoft.Communication/communicationServices",
    "Monitoring Metrics Publisher": "Microsoft.Insights/components",
}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_APP_ROLES = {
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
}
# Opt-in Graph read permissions: (grant resource in graph-permission.bicep, its bool param, app role).
OPT_IN_GRAPH_ROLES = {
    "Application.Read.All": (
        "inventoryAppRole",
        "grantInventoryRead",
        "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    ),
    "AuditLog.Read.All": (
        "signInActivityAppRole",
        "grantSignInActivityRead",
        "b0afded3-3588-46d8-8b3d-9842eff778da",
    ),
}
# Every opt-in permission switch: main.bicep param -> the azd environment value that sets it.
OPT_IN_PARAMS = {
    "grantInventoryRead": "ROTATOR_GRANT_INVENTORY_READ",
    "grantSignInActivityRead": "ROTATOR_GRANT_SIGN_IN_ACTIVITY_READ",
    "grantSubscriptionReader": "ROTATOR_GRANT_SUBSCRIPTION_READER",
}


def app_settings() -> dict[str, Any]:
    site = one_resource(template("app/function.bicep"), "Microsoft.Web/sites")
    entries = site.properties["siteConfig"]["appSettings"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {entry["name"]: entry["value"] for entry in entries}


# --- every file parses, and the modules fit together -------------------------------------------


def test_infra_has_the_expected_templates() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in bicep_files()}
    assert {
        "main.bicep",
        "app/function.bicep",
        "app/storage.bicep",
        "app/keyvault.bicep",
        "app/monitoring.bicep",
        "app/communication.bicep",
        "app/identity.bicep",
        "app/rbac.bicep",
        "app/graph-permission.bicep",
        "app/network.bicep",
        "app/subscription-rbac.bicep",
    } <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    tree = parse(path)
    assert tree.get("resources") or tree.get("modules"), f"{path} declares nothing"


def test_main_is_subscription_scoped_and_uses_every_module() -> None:
    main = template("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    used = {module.path for module in modules(main).values()}
    on_disk = {path.relative_to(INFRA).as_posix() for path in bicep_files()} - {"main.bicep"}
    assert used == on_disk, "every module file is deployed by main.bicep, and every module exists"


@pytest.mark.parametrize("symbol", sorted(modules(template("main.bicep"))))
def test_module_params_match_the_module(symbol: str) -> None:
    """What the compiler would say: unknown params, missing required params, unknown outputs."""
    main = template("main.bicep")
    module = modules(main)[symbol]
    child = template(module.path)
    declared = child.get("parameters", {})
    passed = set(module.params)
    assert passed <= set(declared), f"{symbol}: unknown params {passed - set(declared)}"
    required = {name for name, spec in declared.items() if "default" not in spec}
    assert required <= passed, f"{symbol}: required params not passed {required - passed}"


def test_module_outputs_used_by_main_exist() -> None:
    main = template("main.bicep")
    outputs_of = {
        symbol: set(template(module.path).get("outputs", {})) for symbol, module in modules(main).items()
    }
    references: set[tuple[str, str]] = set()
    for node in walk(main):
        chain = accessor(node)
        if len(chain) >= 3 and chain[1] == "outputs" and chain[0] in outputs_of:
            references.add((chain[0], chain[2]))
    for expression in interpolations(main):  # '${storage.outputs.blobEndpoint}' stays text
        for symbol, output in re.findall(r"(\w+)\.outputs\.(\w+)", expression):
            references.add((symbol, output))
    assert references, "main.bicep reads module outputs"
    missing = {(s, o) for s, o in references if o not in outputs_of.get(s, set())}
    assert not missing, f"outputs used but not declared: {missing}"


def test_abbreviations_used_by_main_exist() -> None:
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = {
        name
        for expression in interpolations(template("main.bicep"))
        for name in re.findall(r"abbrs\.(\w+)", expression)
    }
    assert used and used <= set(abbreviations), f"unknown abbreviations: {used - set(abbreviations)}"


def test_parameters_file_matches_main() -> None:
    main = template("main.bicep")
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(parameters) <= set(main["parameters"])
    required = {name for name, spec in main["parameters"].items() if "default" not in spec}
    assert required <= set(parameters), "azd must be able to fill every required parameter"
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_param_has_a_description(path: Path) -> None:
    tree = parse(path)
    for name in tree.get("parameters", {}):
        assert decorator(tree, "parameters", name, "description"), f"{path}: {name}"


@pytest.mark.parametrize(("param", "variable_name"), sorted(OPT_IN_PARAMS.items()))
def test_opt_in_permissions_are_off_by_default_everywhere(param: str, variable_name: str) -> None:
    """Least privilege: each extra permission is a bool that defaults to false in main.bicep and
    in the azd parameters file, and the deployment guide names its azd environment value."""
    main = template("main.bicep")
    assert main["parameters"][param]["type"] == "bool"
    assert param_default(main, param) is False
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters[param]["value"] == f"${{{variable_name}=false}}"
    assert f"`{variable_name}` | `{param}` | `false`" in (ROOT / "docs" / "deployment.md").read_text()


def test_every_azd_value_of_the_parameters_file_is_documented() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name, spec in parameters.items():
        (variable_name,) = re.findall(r"\$\{(\w+)", spec["value"])
        assert f"| `{variable_name}` | `{name}` |" in guide, f"{variable_name} is not in the settings table"


# --- app settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEPLOYED_SETTINGS)
def test_every_deployed_setting_is_an_app_setting(name: str) -> None:
    assert name in app_settings(), f"{name} (shared/config.py, deployed=True) is not set by the template"


@pytest.mark.parametrize("name", LOCAL_ONLY_SETTINGS)
def test_local_only_settings_are_not_deployed(name: str) -> None:
    # AzureWebJobsStorage would be a connection string; ROTATOR_CA_BUNDLE is for simulators.
    assert name not in app_settings()


def test_host_and_telemetry_settings() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["ROTATOR_MANAGED_IDENTITY_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "Authorization=AAD;ClientId=${identityClientId}"
    )
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    # Flex Consumption rejects these: the runtime comes from functionAppConfig.
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings
    assert "FUNCTIONS_EXTENSION_VERSION" not in settings


def test_tenant_id_comes_from_the_deployment_tenant() -> None:
    assert accessor(app_settings()["ROTATOR_TENANT_ID"]) == [{"function": {"type": "tenant"}}, "tenantId"]


def test_cloud_urls_come_from_environment() -> None:
    main = template("main.bicep")
    params = modules(main)["functionApp"].params
    environment = {"function": {"type": "environment"}}
    assert accessor(params["loginAuthority"]) == [environment, "authentication", "loginEndpoint"]
    assert accessor(params["armUrl"]) == [environment, "resourceManager"]
    # environment().graph is the retired Azure AD Graph (graph.windows.net), not Microsoft Graph:
    # the Graph URL is picked per cloud name, with a parameter to override it.
    assert params["graphUrl"] == "effectiveGraphUrl"
    chosen = conditional(variable(main, "effectiveGraphUrl"))
    assert chosen is not None
    assert function_name(chosen[0]) == "empty"
    by_cloud = variable(main, "graphUrlByCloud")
    assert by_cloud["AzureCloud"] == "https://graph.microsoft.com"
    for node in walk(main):
        assert accessor(node)[:2] != [environment, "graph"], "environment().graph is Azure AD Graph"


def test_numeric_settings_keep_the_app_limits() -> None:
    main = template("main.bicep")
    for setting, param in [
        ("ROTATOR_CLAIM_TIMEOUT_MINUTES", "claimTimeoutMinutes"),
        ("ROTATOR_VERIFY_TIMEOUT_SECONDS", "verifyTimeoutSeconds"),
        ("ROTATOR_HTTP_TIMEOUT_SECONDS", "httpTimeoutSeconds"),
    ]:
        spec = next(s for s in SETTINGS if s.name == setting)
        assert decorator(main, "parameters", param, "min_value") == spec.minimum
        assert decorator(main, "parameters", param, "max_value") == spec.maximum
        assert str(param_default(main, param)) == spec.default


# --- no keys, HTTPS and TLS 1.2 ----------------------------------------------------------------

KEY_TEXT = re.compile(r"listKeys|listConnectionStrings|AccountKey=|SharedAccessKey|primaryKey", re.IGNORECASE)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_keys_or_connection_strings_with_keys(path: Path) -> None:
    tree = parse(path)
    for node in walk(tree):
        op = operator(node)
        if op is not None and op["type"] == "function_accessor":  # resource.listKeys()
            assert not op["operands"]["func_name"].lower().startswith("list"), path
        assert function_name(node) != "list_func", f"{path} calls a list* function"
    # Interpolated strings are raw text in the tree; comments are not in the tree at all.
    for text in strings(tree):
        assert not KEY_TEXT.search(text), f"{path}: {text!r}"


def test_storage_is_https_tls12_and_keyless() -> None:
    storage = one_resource(template("app/storage.bicep"), "Microsoft.Storage/storageAccounts")
    props = storage.properties
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True


def test_storage_holds_the_tables_queues_and_deployment_container() -> None:
    tree = template("app/storage.bicep")
    tables = one_resource(tree, "Microsoft.Storage/storageAccounts/tableServices/tables")
    queues = one_resource(tree, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert tables.loop is not None and queues.loop is not None
    from shared.storage import applications, due_index, expiry_index, rotation_log

    # The names the code uses, in the order ensure_storage creates them.
    assert resolve(tree, tables.loop["detail"]["array_name"]) == [
        applications.TABLE_NAME,
        due_index.TABLE_NAME,
        expiry_index.TABLE_NAME,
        rotation_log.TABLE_NAME,
    ]
    assert resolve(tree, queues.loop["detail"]["array_name"]) == ["rotations", "rotations-poison"]
    container = one_resource(tree, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container.properties["publicAccess"] == "None"
    assert container.body["name"] == "deploymentContainerName"
    main = template("main.bicep")
    # The same container is the one Flex Consumption deploys from.
    assert modules(main)["storage"].params["deploymentContainerName"] == "deploymentContainerName"
    assert modules(main)["functionApp"].params["deploymentContainerUrl"] == (
        "${storage.outputs.blobEndpoint}${storage.outputs.deploymentContainerName}"
    )


def test_function_app_is_flex_python_https_only() -> None:
    tree = template("app/function.bicep")
    plan = one_resource(tree, "Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan.properties["reserved"] is True
    site = one_resource(tree, "Microsoft.Web/sites")
    assert site.body["kind"] == "functionapp,linux"
    assert site.properties["httpsOnly"] is True
    config = site.properties["siteConfig"]
    assert config["minTlsVersion"] == "1.2"
    assert config["scmMinTlsVersion"] == "1.2"
    flex = site.properties["functionAppConfig"]
    assert flex["runtime"] == {"name": "python", "version": "3.11"}
    assert flex["deployment"]["storage"]["type"] == "blobContainer"
    assert flex["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert site.body["identity"]["type"] == "UserAssigned"
    policies = {
        r.body["name"]: r.properties["allow"]
        for r in resources(tree, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert policies == {"ftp": False, "scm": False}


def test_azd_service_matches_the_function_app_tag() -> None:
    text = (ROOT / "azure.yaml").read_text()
    services = text.split("services:", 1)[1]
    names = re.findall(r"^  (\w[\w-]*):\s*$", services, re.MULTILINE)
    assert len(names) == 1, "one service"
    assert re.search(r"^    project: \.\s*$", services, re.MULTILINE)
    assert re.search(r"^    language: python\s*$", services, re.MULTILINE)
    assert re.search(r"^    host: function\s*$", services, re.MULTILINE)
    assert param_default(template("app/function.bicep"), "azdServiceName") == names[0]


# --- Key Vault, monitoring, email ---------------------------------------------------------------


def test_key_vault_uses_rbac_with_soft_delete_and_purge_protection() -> None:
    vault = one_resource(template("app/keyvault.bicep"), "Microsoft.KeyVault/vaults")
    props = vault.properties
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert props["softDeleteRetentionInDays"] == 90
    assert "accessPolicies" not in props


def test_telemetry_needs_entra_auth() -> None:
    tree = template("app/monitoring.bicep")
    workspace = one_resource(tree, "Microsoft.OperationalInsights/workspaces")
    assert workspace.properties["features"]["disableLocalAuth"] is True
    component = one_resource(tree, "Microsoft.Insights/components")
    assert component.properties["DisableLocalAuth"] is True
    assert accessor(component.properties["WorkspaceResourceId"]) == [workspace.symbol, "id"]


def test_failure_alerts_query_the_workspace() -> None:
    tree = template("app/monitoring.bicep")
    workspace = one_resource(tree, "Microsoft.OperationalInsights/workspaces")
    queries = {}
    for rule in resources(tree, "Microsoft.Insights/scheduledQueryRules"):
        assert [accessor(scope) for scope in rule.properties["scopes"]] == [[workspace.symbol, "id"]]
        assert rule.properties["enabled"] is True
        (criterion,) = rule.properties["criteria"]["allOf"]
        assert criterion["operator"] == "GreaterThan" and criterion["threshold"] == 0
        queries[rule.symbol] = resolve(tree, criterion["query"])
    assert sorted(queries.values()) == [
        'AppTraces | where Properties.event == "integration.failed"',
        'AppTraces | where Properties.event == "rotation.failed"',
    ]


def test_email_uses_an_azure_managed_domain_and_entra_auth() -> None:
    tree = template("app/communication.bicep")
    domain = one_resource(tree, "Microsoft.Communication/emailServices/domains")
    assert domain.properties["domainManagement"] == "AzureManaged"
    acs = one_resource(tree, "Microsoft.Communication/communicationServices")
    assert [accessor(d) for d in acs.properties["linkedDomains"]] == [[domain.symbol, "id"]]
    assert acs.properties["disableLocalAuth"] is True
    outputs = tree["outputs"]
    assert outputs["endpoint"]["value"] == f"https://${{{acs.symbol}.properties.hostName}}"
    assert (
        outputs["senderAddress"]["value"]
        == f"DoNotReply@${{{domain.symbol}.properties.mailFromSenderDomain}}"
    )
    params = modules(template("main.bicep"))["functionApp"].params
    assert accessor(params["acsEndpoint"]) == ["communication", "outputs", "endpoint"]
    assert accessor(params["emailSender"]) == ["communication", "outputs", "senderAddress"]


# --- the identity's permissions ----------------------------------------------------------------


def test_identity_role_set_is_exactly_the_listed_roles() -> None:
    tree = template("app/rbac.bicep")
    scopes = {r.symbol: r.type for r in resources(tree) if r.existing}
    granted = {}
    for assignment in resources(tree, "Microsoft.Authorization/roleAssignments"):
        definition = assignment.properties["roleDefinitionId"]["function"]
        assert definition["type"] == "subscription_resource_id"
        assert definition["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        role_variable = definition["parameters"]["resource_name_1"]
        role_name = ROLE_NAMES[resolve(tree, role_variable)]
        assert role_name not in granted, f"{role_name} granted twice"
        scope = assignment.body["scope"]
        granted[role_name] = scopes[scope]
        # Deterministic name: guid(scope.id, principalId, roleId).
        name = assignment.body["name"]["function"]
        assert name["type"] == "guid"
        assert list(name["parameters"].values()) == [
            {"operator": {"type": "property_accessor", "operands": {"operand_1": scope, "operand_2": "id"}}},
            "principalId",
            role_variable,
        ]
        assert assignment.properties["principalId"] == "principalId"
        assert assignment.properties["principalType"] == "ServicePrincipal"
    assert granted == EXPECTED_ROLES


def test_no_other_template_assigns_roles() -> None:
    for path in bicep_files():
        if path.name not in {"rbac.bicep", "subscription-rbac.bicep"}:
            assert not resources(parse(path), "Microsoft.Authorization/roleAssignments"), path
            assert not resources(parse(path), "Microsoft.Authorization/roleDefinitions"), path


def test_roles_go_to_the_rotator_identity() -> None:
    main = template("main.bicep")
    assert accessor(modules(main)["rbac"].params["principalId"]) == ["identity", "outputs", "principalId"]
    assert accessor(modules(main)["graphGrant"].params["principalId"]) == [
        "identity",
        "outputs",
        "principalId",
    ]
    assert accessor(modules(main)["subscriptionRbac"].params["principalId"]) == [
        "identity",
        "outputs",
        "principalId",
    ]
    assert "rbac" in modules(main)["functionApp"].depends_on


def test_subscription_reader_is_opt_in() -> None:
    """Reader on the subscription (destination pickers, consumer discovery) only with
    grantSubscriptionReader: the module that assigns it is deployed only then."""
    main = template("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    assert main["parameters"]["grantSubscriptionReader"]["type"] == "bool"
    assert param_default(main, "grantSubscriptionReader") is False
    module = modules(main)["subscriptionRbac"]
    assert module.path == "app/subscription-rbac.bicep"
    assert module.condition == "grantSubscriptionReader"
    body = main["modules"]["subscriptionRbac"]["config"]["config"]
    assert function_name(body["scope"]) == "subscription"
    assert body["scope"]["function"]["parameters"] == {"subscription_id": None}, "this subscription"
    # Subscription-scope deployment names are shared by every environment of the subscription.
    assert "${resourceToken}" in body["name"]


def test_subscription_reader_is_exactly_reader_on_the_subscription() -> None:
    tree = template("app/subscription-rbac.bicep")
    assert tree["globals"]["scope"]["value"] == "subscription"
    assert set(tree["parameters"]) == {"principalId"}
    (assignment,) = resources(tree)
    assert assignment.type == "Microsoft.Authorization/roleAssignments"
    assert "scope" not in assignment.body, "the deployment's scope: the subscription"
    assert assignment.condition is None and assignment.loop is None, "main.bicep gates the module"
    definition = assignment.properties["roleDefinitionId"]["function"]
    assert definition["type"] == "subscription_resource_id"
    assert definition["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    role_variable = definition["parameters"]["resource_name_1"]
    assert ROLE_NAMES[resolve(tree, role_variable)] == "Reader"
    assert resolve(tree, role_variable) == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    # Deterministic name: guid(subscription().id, principalId, roleId).
    name = assignment.body["name"]["function"]
    assert name["type"] == "guid"
    scope, principal, role = name["parameters"].values()
    assert accessor(scope) == [
        {"function": {"type": "subscription", "parameters": {"subscription_id": None}}},
        "id",
    ]
    assert (principal, role) == ("principalId", role_variable)
    assert assignment.properties["principalId"] == "principalId"
    assert assignment.properties["principalType"] == "ServicePrincipal"


def test_graph_permission_defaults_to_owned_by() -> None:
    allowed = sorted(GRAPH_APP_ROLES)
    for relative in ("main.bicep", "app/graph-permission.bicep"):
        tree = template(relative)
        assert param_default(tree, "graphPermission") == "Application.ReadWrite.OwnedBy", relative
        assert sorted(decorator(tree, "parameters", "graphPermission", "allowed")) == allowed, relative
    assert modules(template("main.bicep"))["graphGrant"].params["graphPermission"] == "graphPermission"


def test_graph_app_role_is_assigned_with_the_graph_extension() -> None:
    tree = template("app/graph-permission.bicep")
    assert "microsoftGraphV1" in tree["extensions"]
    config = json.loads(
        "\n".join(
            line
            for line in (INFRA / "bicepconfig.json").read_text().splitlines()
            if not line.strip().startswith("//")
        )
    )
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )

    graph = one_resource(tree, "Microsoft.Graph/servicePrincipals", existing=True)
    assert resolve(tree, graph.body["appId"]) == GRAPH_APP_ID
    role_ids = {key.strip("'"): resolve(tree, value) for key, value in variable(tree, "appRoleIds").items()}
    assert role_ids == GRAPH_APP_ROLES
    grants = {r.symbol: r for r in resources(tree, "Microsoft.Graph/appRoleAssignedTo")}
    assert set(grants) == {"graphAppRole"} | {symbol for symbol, _, _ in OPT_IN_GRAPH_ROLES.values()}
    # The tenant-wide read permissions (inventory, sign-in evidence) are opt-in only.
    main = template("main.bicep")
    for symbol, param, app_role in OPT_IN_GRAPH_ROLES.values():
        opt_in = grants[symbol]
        assert opt_in.condition == param
        assert tree["parameters"][param]["type"] == "bool"
        assert param_default(tree, param) is False
        assert resolve(tree, opt_in.body["appRoleId"]) == app_role
        assert opt_in.body["principalId"] == "principalId"
        assert accessor(opt_in.body["resourceId"]) == [graph.symbol, "id"]
        assert modules(main)["graphGrant"].params[param] == param, "main.bicep passes it through"
    grant = grants["graphAppRole"]
    assert grant.condition is None
    assert grant.body["appRoleId"] == {
        "operator": {
            "type": "index_accessor",
            "operands": {"operand_1": "appRoleIds", "operand_2": "graphPermission"},
        }
    }
    assert grant.body["principalId"] == "principalId"
    assert accessor(grant.body["resourceId"]) == [graph.symbol, "id"]


# --- optional private networking ---------------------------------------------------------------


def test_private_networking_is_off_by_default_and_gates_the_network_module() -> None:
    main = template("main.bicep")
    assert param_default(main, "enablePrivateNetworking") is False
    assert modules(main)["network"].condition == "enablePrivateNetworking"
    subnet = conditional(modules(main)["functionApp"].params["subnetId"])
    assert subnet is not None and subnet[0] == "enablePrivateNetworking"
    assert accessor(subnet[1]) == ["network", "outputs", "appSubnetId"]


@pytest.mark.parametrize(
    ("relative", "type_"),
    [
        ("app/storage.bicep", "Microsoft.Storage/storageAccounts"),
        ("app/keyvault.bicep", "Microsoft.KeyVault/vaults"),
    ],
)
def test_private_networking_closes_public_access(relative: str, type_: str) -> None:
    props = one_resource(template(relative), type_).properties
    assert conditional(props["publicNetworkAccess"]) == ("enablePrivateNetworking", "Disabled", "Enabled")
    assert conditional(props["networkAcls"]["defaultAction"]) == ("enablePrivateNetworking", "Deny", "Allow")


def test_private_endpoints_cover_storage_and_key_vault() -> None:
    tree = template("app/network.bicep")
    links = variable(tree, "privateLinks")
    assert {link["name"]: link["resourceId"] for link in links} == {
        "blob": "storageAccountId",
        "queue": "storageAccountId",
        "table": "storageAccountId",
        "vault": "keyVaultId",
    }
    for resource_type in (
        "Microsoft.Network/privateEndpoints",
        "Microsoft.Network/privateDnsZones",
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
        "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
    ):
        looped = one_resource(tree, resource_type)
        assert looped.loop is not None and looped.loop["detail"]["array_name"] == "privateLinks", (
            resource_type
        )
    vnet = one_resource(tree, "Microsoft.Network/virtualNetworks")
    app_subnet = vnet.properties["subnets"][0]
    delegations = app_subnet["properties"]["delegations"]
    assert [d["properties"]["serviceName"] for d in delegations] == ["Microsoft.App/environments"]


# --- the checkov configuration -----------------------------------------------------------------


def test_every_checkov_skip_is_justified() -> None:
    lines = (INFRA / ".checkov.yaml").read_text().splitlines()
    skipped = 0
    for index, line in enumerate(lines):
        if re.match(r"^\s*-\s", line):
            skipped += 1
            assert index > 0 and lines[index - 1].strip().startswith("#"), f"unjustified skip: {line.strip()}"
    assert skipped, "the file lists its skips"


def test_flex_site_config_has_no_property_flex_rejects() -> None:
    """Issue 12: Flex Consumption rejects ftpsState and vnetRouteAllEnabled in siteConfig (ARM
    error 51021); FTP stays off through the basic-publishing policies."""
    site = one_resource(template("app/function.bicep"), "Microsoft.Web/sites")
    config = site.properties["siteConfig"]
    assert "ftpsState" not in config and "vnetRouteAllEnabled" not in config


def test_the_worker_exports_only_the_rotators_loggers() -> None:
    """Issue 12: without PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME the worker exports the root logger
    (the exporter's own records and every HTTP request line); every logger of the app is under it."""
    import re as regex

    settings = app_settings()
    assert settings["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"] == "rotator"
    names = set()
    for path in Path(ROOT, "shared").rglob("*.py"):
        # The loggers the app writes its records to (module-level ``x = logging.getLogger(...)``).
        names |= set(regex.findall(r'(?m)^\w+ = logging\.getLogger\(\s*"([^"]+)"\s*\)', path.read_text()))
    assert names and all(name == "rotator" or name.startswith("rotator.") for name in names), names


def test_host_json_pairs_the_worker_telemetry_with_open_telemetry_mode() -> None:
    import json as jsonlib

    host = jsonlib.loads(Path(ROOT, "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"


def test_storage_is_reached_by_service_uris_from_the_account() -> None:
    """Issue 12: accountName implies core.windows.net (wrong in sovereign clouds): the service URIs
    come from the storage account's primaryEndpoints."""
    settings = app_settings()
    assert "AzureWebJobsStorage__accountName" not in settings
    for service in ("blob", "queue", "table"):
        assert (
            settings[f"AzureWebJobsStorage__{service}ServiceUri"] == f"storage{service.capitalize()}Endpoint"
        )
    storage = Path(ROOT, "infra", "app", "storage.bicep").read_text()
    for service in ("blob", "queue", "table"):
        assert f"storage.properties.primaryEndpoints.{service}" in storage
    assert "core.windows.net" not in "".join(p.read_text() for p in Path(ROOT, "infra").rglob("*.bicep"))


def test_instance_count_keeps_the_flex_bounds() -> None:
    text = Path(ROOT, "infra", "app", "function.bicep").read_text()
    assert "@minValue(40)\n@maxValue(1000)\nparam maximumInstanceCount int" in text


def test_the_graph_grant_waits_for_slow_resources_for_replication() -> None:
    """Issue 12: the app-role assignment to a just-created identity can fail on replication delay
    (msgraph-bicep-types#193): the grant waits for the Function App and the vault, and the
    deployment guide says what to do if it still fails."""
    text = Path(ROOT, "infra", "main.bicep").read_text()
    grant = text[text.index("module graphGrant") :]
    grant = grant[: grant.index("\n}\n")]
    assert "dependsOn" in grant and "functionApp" in grant and "keyVault" in grant
    assert "msgraph-bicep-types#193" in Path(ROOT, "docs", "deployment.md").read_text()
