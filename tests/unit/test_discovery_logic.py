"""The pure parts of the pickers and discovery: permission matching, what a service connection is,
and the continuation tokens a caller sends back (generated inputs)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.discovery.consumers import resource_group_of
from shared.discovery.pickers import (
    SET_SECRET_ACTION,
    actions_allow,
    connection_client_id,
    service_connection_choice,
)
from shared.discovery.rest import decode_token, encode_token, same_origin_path
from shared.errors import ValidationError

APP = "0b6c2f1e-2a1d-4c1e-9a57-6b1f3c2d4e5f"


@pytest.mark.parametrize(
    ("entries", "allowed"),
    [
        ([{"dataActions": ["Microsoft.KeyVault/vaults/secrets/*"], "notDataActions": []}], True),
        ([{"dataActions": ["*"], "notDataActions": []}], True),
        ([{"dataActions": ["Microsoft.KeyVault/vaults/secrets/getSecret/action"]}], False),
        (
            [
                {
                    "dataActions": ["Microsoft.KeyVault/vaults/secrets/*"],
                    "notDataActions": ["Microsoft.KeyVault/vaults/secrets/setSecret/action"],
                }
            ],
            False,
        ),
        ([{"actions": ["*"], "dataActions": []}], False),  # control-plane rights write no secret
        ([], False),
    ],
)
def test_effective_data_actions_decide_whether_the_rotator_may_write_secrets(
    entries: list[dict[str, list[str]]], allowed: bool
) -> None:
    assert actions_allow(entries, SET_SECRET_ACTION) is allowed


def _endpoint(kind: str, scheme: str, **parameters: str) -> dict[str, object]:
    return {
        "id": "5a0c2d1e-0000-4000-8000-000000000001",
        "name": "prod",
        "type": kind,
        "authorization": {"scheme": scheme, "parameters": {"serviceprincipalid": APP, **parameters}},
    }


@pytest.mark.parametrize(
    ("endpoint", "supported", "reason"),
    [
        (_endpoint("azurerm", "ServicePrincipal", authenticationType="spnKey"), True, None),
        (_endpoint("AzureRM", "ServicePrincipal"), True, None),
        (_endpoint("azurerm", "WorkloadIdentityFederation"), False, "workload identity federation"),
        (_endpoint("azurerm", "ManagedServiceIdentity"), False, "managed identity"),
        (_endpoint("azurerm", "ServicePrincipal", authenticationType="spnCertificate"), False, "certificate"),
        (_endpoint("github", "Token"), False, "not Azure Resource Manager"),
    ],
)
def test_only_secret_based_azurerm_connections_are_supported_and_the_others_say_why(
    endpoint: dict[str, object], supported: bool, reason: str | None
) -> None:
    choice = service_connection_choice(endpoint)
    assert choice.supported is supported
    assert choice.service_principal_id == APP
    if reason is None:
        assert choice.reason is None
    else:
        assert choice.reason is not None and reason in choice.reason


@pytest.mark.parametrize(
    "properties",
    [
        {"parameterValues": {"token:clientId": APP}},
        {"nonSecretParameterValues": {"token:clientId": APP}},
        {"parameterValueSet": {"name": "x", "values": {"token:clientId": {"value": APP}}}},
    ],
)
def test_an_api_connection_client_id_is_read_from_every_documented_shape(
    properties: dict[str, object],
) -> None:
    assert connection_client_id({"properties": properties}) == APP


def test_a_connection_without_a_client_id_has_none() -> None:
    assert connection_client_id({"properties": {"parameterValues": {"token:TenantId": "t"}}}) is None


@given(st.text(max_size=300), st.sampled_from(["keyVaults", "sites", "devopsProjects"]))
def test_a_continuation_token_round_trips_for_its_own_picker_only(cursor: str, kind: str) -> None:
    """A service's cursor (printable ASCII: a number, an opaque token, a percent-encoded URL)
    comes back from its own picker's token; any other text is refused, as is any other picker."""
    token = encode_token(kind, cursor)
    if cursor.isascii() and cursor.isprintable():
        assert decode_token(token, kind) == cursor
    else:
        with pytest.raises(ValidationError):
            decode_token(token, kind)
    with pytest.raises(ValidationError) as refused:
        decode_token(token, "vercelProjects")
    assert refused.value.problems[0].field == "continuationToken"


@given(st.text(max_size=500) | st.builds(lambda v: encode_token("keyVaults", v), st.text(max_size=100)))
def test_any_text_as_a_continuation_token_is_a_400_naming_the_field_or_a_cursor_a_url_carries(
    text: str,
) -> None:
    try:
        cursor = decode_token(text, "keyVaults")
    except ValidationError as error:
        assert error.problems[0].field == "continuationToken"
    else:
        assert cursor is not None
        cursor.encode("ascii")  # a query string or a URL can carry it (no lone surrogate, no NUL)
        assert cursor.isprintable()


def test_a_next_link_must_stay_on_the_arm_host_and_under_the_same_list() -> None:
    base = "https://management.azure.com"
    path = "/subscriptions/s/providers/Microsoft.KeyVault/vaults"
    assert same_origin_path(f"{base}{path}?$skiptoken=x", base, path)
    assert same_origin_path(f"https://MANAGEMENT.azure.com{path.upper()}?a=b", base, path)
    assert not same_origin_path(f"https://evil.example{path}", base, path)
    assert not same_origin_path(f"http://management.azure.com{path}", base, path)
    assert not same_origin_path(f"{base}/subscriptions/s/providers/Microsoft.Web/sites", base, path)


def test_the_resource_group_of_a_resource_id() -> None:
    rid = "/subscriptions/S1/resourceGroups/RG-a/providers/Microsoft.Web/sites/x"
    assert resource_group_of(rid) == "/subscriptions/S1/resourceGroups/RG-a"
    assert resource_group_of("/providers/x") is None
