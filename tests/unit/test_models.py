"""Validation edges of the registration model: every range boundary, wrong types, unknown kinds."""

import json
import re
from typing import Any

import pytest

from shared.api.http import parse_model
from shared.domain.models import ApplicationConfig
from shared.errors import ValidationError

APP = {
    "appId": "11111111-1111-1111-1111-111111111111",
    "objectId": "22222222-2222-2222-2222-222222222222",
    "displayName": "Payroll API",
}


def problems(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_model(ApplicationConfig, data)
    return {problem.field: problem.as_dict() for problem in caught.value.problems}


def valid(data: dict[str, Any]) -> ApplicationConfig:
    result = parse_model(ApplicationConfig, data)
    assert isinstance(result, ApplicationConfig)
    return result


def test_defaults_follow_the_product_documentation() -> None:
    config = valid(APP)
    assert config.rotation.secret_lifetime_days == 21
    assert config.rotation.update_threshold_hours == 1
    assert config.rotation.enabled is False
    assert config.notifications.include_secret_in_email is False
    assert config.state == "Active"


@pytest.mark.parametrize("days", [1, 90])
def test_lifetime_bounds_accepted(days: int) -> None:
    assert valid({**APP, "rotation": {"secretLifetimeDays": days}}).rotation.secret_lifetime_days == days


@pytest.mark.parametrize("days", [0, 91, -1, "21", 21.5, True, None])
def test_lifetime_out_of_range_or_wrong_type(days: Any) -> None:
    found = problems({**APP, "rotation": {"secretLifetimeDays": days}})
    assert found["rotation.secretLifetimeDays"]["allowed"] == "1 to 90 days"


@pytest.mark.parametrize("hours", [1, 23])
def test_threshold_bounds_accepted(hours: int) -> None:
    assert (
        valid({**APP, "rotation": {"updateThresholdHours": hours}}).rotation.update_threshold_hours == hours
    )


@pytest.mark.parametrize("hours", [0, 24])
def test_threshold_out_of_range(hours: int) -> None:
    found = problems({**APP, "rotation": {"updateThresholdHours": hours}})
    assert found["rotation.updateThresholdHours"]["allowed"] == "1 to 23 hours"


@pytest.mark.parametrize(("days", "ok"), [(0, False), (1, True), (30, True), (31, False)])
def test_threshold_alert_days_bounds(days: int, ok: bool) -> None:
    data = {**APP, "notifications": {"thresholdAlertDays": days}}
    if ok:
        assert valid(data).notifications.threshold_alert_days == days
    else:
        assert problems(data)["notifications.thresholdAlertDays"]["allowed"] == "1 to 30 days"


def test_secret_in_email_needs_explicit_acknowledgement() -> None:
    found = problems({**APP, "notifications": {"includeSecretInEmail": True}})
    assert "acknowledgeSecretInEmailRisk" in found["notifications.acknowledgeSecretInEmailRisk"]["message"]
    config = valid(
        {**APP, "notifications": {"includeSecretInEmail": True, "acknowledgeSecretInEmailRisk": True}}
    )
    assert config.notifications.include_secret_in_email


def test_unknown_integration_kind_lists_the_known_ones() -> None:
    found = problems({**APP, "integrations": [{"kind": "ftpServer"}]})
    assert "keyVault" in found["integrations.0.kind"]["allowed"]


def test_integration_fields_are_validated_and_named() -> None:
    found = problems(
        {
            **APP,
            "integrations": [
                {"kind": "keyVault", "vaultUrl": "http://not-tls"},
                {
                    "kind": "azureDevOps",
                    "organization": "contoso",
                    "project": "p",
                    "serviceConnectionId": "x",
                },
            ],
        }
    )
    assert (
        found["integrations.0.vaultUrl"]["allowed"]
        == "an https:// URL (ASCII host name, optional port, no query) of at most 2048 characters"
    )
    assert "integrations.1.serviceConnectionId" in found


def test_integrations_get_stable_unique_names() -> None:
    config = valid(
        {
            **APP,
            "integrations": [
                {"kind": "keyVault", "vaultUrl": "https://a.vault.azure.net"},
                {"kind": "keyVault", "vaultUrl": "https://b.vault.azure.net", "name": "backup"},
            ],
        }
    )
    assert [i.name for i in config.integrations] == ["keyVault-1", "backup"]
    duplicate = {"kind": "keyVault", "vaultUrl": "https://a.vault.azure.net", "name": "same"}
    assert "integrations.1.name" in problems({**APP, "integrations": [duplicate, duplicate]})


def test_vercel_needs_a_group_and_valid_targets() -> None:
    vercel = {"kind": "vercel", "projectId": "web", "envVarName": "CLIENT_SECRET", "targets": ["production"]}
    assert "groupId" in problems({**APP, "integrations": [vercel]})
    assert valid({**APP, "groupId": "web-team", "integrations": [vercel]}).integrations[0].kind == "vercel"
    found = problems({**APP, "groupId": "g", "integrations": [{**vercel, "targets": ["staging"]}]})
    assert "integrations.0.targets.0" in found


def test_unknown_fields_are_refused() -> None:
    assert (
        problems({**APP, "rotation": {"lifetime": 21}})["rotation.lifetime"]["message"]
        == "is not a known field"
    )


def test_recipient_and_integration_counts_are_bounded() -> None:
    found = problems({**APP, "notifications": {"recipients": [f"u{i}@contoso.com" for i in range(21)]}})
    assert found["notifications.recipients"]["allowed"] == "0 to 20 items"
    many = [{"kind": "keyVault", "vaultUrl": "https://a.vault.azure.net"}] * 21
    assert problems({**APP, "integrations": many})["integrations"]["allowed"] == "0 to 20 items"


def test_errors_never_echo_input() -> None:
    planted = "pat-c2VjcmV0LXZhbHVl"
    found = problems({**APP, "displayName": 5, "rotation": {"secretLifetimeDays": planted}})
    assert planted not in repr(found)


def test_every_https_url_the_models_accept_parses_the_same_in_urllib() -> None:
    """Found by schemathesis: a vault URL with ']' (or a port over 65535, or non-ASCII that NFKC
    turns into a delimiter) passed the old pattern and made urllib raise ValueError -> 500."""
    import re
    from urllib.parse import urlsplit

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from shared.adapters.vault import same_vault
    from shared.domain import fields

    pattern = r"https://" + fields._AUTHORITY + fields._URL_PATH

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(re.compile(pattern), fullmatch=True))
    def parses(url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port is None or isinstance(parts.port, int)
        same_vault(url, "https://rotator.vault.azure.net")

    parses()


def webhook(name: str) -> dict[str, Any]:
    """An automation webhook as stored (the URL itself is in the rotator's vault)."""
    return {"kind": "automation", "target": "webhook", "name": name, "webhookSecretName": "cred-hook"}


def accepted_credentials(names: list[str], app_id: str = APP["appId"]) -> list[str] | None:
    """What PUT does with automation webhooks of these names: the credentials' vault secret names
    without their random suffix (the part that tells whose credential it is) when the body is
    accepted, None when it is refused (naming integrations.N.name)."""
    from shared.credentials import extract_integration_credentials
    from shared.integrations.registry import default_registry

    hooks = [
        {
            "kind": "automation",
            "target": "webhook",
            "name": name,
            "webhookUrl": f"https://hooks.example/{index}",
        }
        for index, name in enumerate(names)
    ]
    body = {**APP, "appId": app_id, "integrations": hooks}
    changes = extract_integration_credentials(body, app_id, default_registry())
    try:
        parse_model(ApplicationConfig, body)
    except ValidationError as error:
        assert [p.field for p in error.problems] == [f"integrations.{_first_clash(names)}.name"]
        return None
    return [credential.secret_name.rsplit("-", 1)[0] for credential in changes.pending]


def _first_clash(names: list[str]) -> int:
    from shared.domain.fields import integration_name_key

    seen: set[str] = set()
    for index, name in enumerate(names):
        if integration_name_key(name) in seen:
            return index
        seen.add(integration_name_key(name))
    raise AssertionError("no clash")


@pytest.mark.parametrize(
    "names",
    [
        ["hook.a", "hook_a"],
        ["hook.a", "hook-a"],
        ["Hook", "hook"],
        ["a", "a-"],
        ["a.-_b", "a-b"],
        ["x", "X."],
    ],
)
def test_names_that_would_share_a_credential_are_refused_naming_the_field(names: list[str]) -> None:
    """D2: the vault secret name maps runs of '.', '_' and '-' to one '-' and Key Vault ignores
    case, so these pairs would share one credential (the second webhook URL overwriting the first)."""
    found = problems({**APP, "integrations": [webhook(name) for name in names]})
    assert list(found) == ["integrations.1.name"]
    assert "letter case" in found["integrations.1.name"]["allowed"]
    assert names[1] not in found["integrations.1.name"]["message"]


def test_a_registration_stored_before_the_name_check_still_loads() -> None:
    """The check is the request's: a stored row with such names is read (and rotated) as before."""
    stored = ApplicationConfig.model_validate(
        {**APP, "integrations": [webhook(name) for name in ("hook.a", "hook_a")]},
        strict=False,
    )
    text = stored.model_dump_json(by_alias=True)
    assert [i.name for i in ApplicationConfig.model_validate_json(text, strict=False).integrations] == [
        "hook.a",
        "hook_a",
    ]


def test_the_longest_integration_name_is_never_truncated_in_its_credential_name() -> None:
    """Integration names are at most 64 characters so that the name stays whole in
    cred-<appId>-<name>-<suffix>-<random>, which is shortened to fit Key Vault's 127 characters:
    distinct name keys then give distinct credential names for every plugin's suffix."""
    from shared.credentials import new_credential_name
    from shared.domain.fields import INTEGRATION_NAME_LENGTH, VAULT_NAME_LENGTH
    from shared.integrations.registry import PLUGINS

    longest = "a" * INTEGRATION_NAME_LENGTH
    for plugin in PLUGINS:
        for declared in plugin.write_only:
            name = new_credential_name(APP["appId"], longest, declared.name_suffix)
            assert len(name) <= VAULT_NAME_LENGTH
            assert name.startswith(f"cred-{APP['appId']}-{longest}-{declared.name_suffix[:1]}"), name
    assert problems({**APP, "integrations": [webhook("a" * (INTEGRATION_NAME_LENGTH + 1))]})


def test_accepted_names_always_map_to_distinct_credentials() -> None:
    """Any accepted set of integration names gives each credential its own vault secret name, told
    apart without the random suffix and ignoring case (as Key Vault does); a refused set really had
    names that would clash."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from shared.domain.fields import INTEGRATION_NAME_LENGTH, integration_name_key

    # A small alphabet makes clashes common; full-length names exercise the length bound.
    short = st.from_regex(r"[Aa0][Aa0._-]{0,4}", fullmatch=True)
    full = st.from_regex(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{INTEGRATION_NAME_LENGTH - 1}}}", fullmatch=True)
    names = st.lists(st.one_of(short, full), min_size=1, max_size=6)

    @settings(max_examples=300, deadline=None)
    @given(names, st.uuids())
    def distinct(chosen: list[str], app_id: object) -> None:
        secrets = accepted_credentials(chosen, str(app_id))
        keys = [integration_name_key(name) for name in chosen]
        if secrets is None:
            assert len(set(keys)) < len(keys)
        else:
            assert len({secret.lower() for secret in secrets}) == len(chosen)

    distinct()


@pytest.mark.parametrize("name", ["\u007f\u0080\u009f", "ok\u007f", "ok\u0085", "tab\there"])
def test_display_names_refuse_c0_del_and_c1_controls(name: str) -> None:
    """D7: "without control characters" means C0, DEL and C1, as for email addresses."""
    assert problems({**APP, "displayName": name})["displayName"] == {
        "field": "displayName",
        "message": "must be 1 to 256 characters without control characters",
        "allowed": "1 to 256 characters without control characters",
    }
    from shared.api.openapi import _schemas
    from shared.domain.models import Group

    with pytest.raises(ValidationError):
        parse_model(Group, {"groupId": "g", "displayName": name})
    # The OpenAPI document states the same rule.
    for schema in ("ApplicationConfig", "Group"):
        assert not re.fullmatch(_schemas()[schema]["properties"]["displayName"]["pattern"], name)


def test_display_names_take_other_characters_and_stored_ones_still_load() -> None:
    assert valid({**APP, "displayName": "Paie \u00a0\u00e9t\u00e9 \u20ac \U0001f511"}).display_name
    # Stored before DEL and C1 were refused: read as before (a PUT must then change it).
    stored = ApplicationConfig.model_validate_json(
        json.dumps({**APP, "displayName": "old\u0085"}),
        strict=False,
    )
    assert stored.display_name == "old\u0085"


def _without(key: str) -> dict[str, Any]:
    return {name: value for name, value in APP.items() if name != key}


@pytest.mark.parametrize(
    ("data", "field", "allowed"),
    [
        ({**APP, "rotation": {"enabled": "true"}}, "rotation.enabled", "true or false"),
        ({**APP, "rotation": None}, "rotation", "an object"),
        ({**APP, "integrations": {}}, "integrations", "an array of at most 20 items"),
        ({**APP, "objectId": "not-a-guid"}, "objectId", "a GUID"),
        ({**APP, "objectId": 42}, "objectId", "a GUID"),
        (_without("objectId"), "objectId", "a GUID"),
        (_without("displayName"), "displayName", "1 to 256 characters without control characters"),
        ({**APP, "state": "Paused"}, "state", "'Active' or 'Disabled'"),
        ({**APP, "rotation": {"lifetime": 21}}, "rotation.lifetime", "the fields enabled, "),
        ({**APP, "integrations": [5]}, "integrations.0", "an object whose kind is one of "),
        ({**APP, "integrations": [{"kind": "keyVault"}]}, "integrations.0.vaultUrl", "an https:// URL"),
        (
            {
                **APP,
                "integrations": [{"kind": "keyVault", "vaultUrl": "https://a.vault.azure.net", "name": 7}],
            },
            "integrations.0.name",
            "1 to 64 letters, digits, '.', '_' or '-'",
        ),
        ({**APP, "notifications": {"recipients": "ops@contoso.com"}}, "notifications.recipients", "an array"),
    ],
)
def test_every_problem_says_what_is_allowed_without_echoing_input(
    data: dict[str, Any], field: str, allowed: str
) -> None:
    """D8: type errors and missing fields carry ``allowed`` too, from the error type and the
    field's schema; messages are ours (pydantic's quote input, such as a GUID's first bad character)."""
    found = problems(data)
    assert field in found, found
    assert found[field]["allowed"].startswith(allowed), found[field]
    message = found[field]["message"]
    assert "Input" not in message and "`" not in message and "not-a-guid" not in message
    assert message in ("is required", "is not a known field", f"must be {found[field]['allowed']}")


def test_a_refresh_flag_of_the_wrong_type_says_what_is_allowed() -> None:
    from shared.domain.models import RefreshRequest

    with pytest.raises(ValidationError) as caught:
        parse_model(RefreshRequest, {"compromised": 1})
    assert [p.as_dict() for p in caught.value.problems] == [
        {"field": "compromised", "message": "must be true or false", "allowed": "true or false"}
    ]


def test_a_group_field_named_like_an_integration_kind_keeps_its_name() -> None:
    from shared.domain.models import Group

    with pytest.raises(ValidationError) as caught:
        parse_model(Group, {"groupId": "g", "displayName": "G", "vercel": 5})
    assert [p.as_dict() for p in caught.value.problems] == [
        {"field": "vercel", "message": "must be an object (or null)", "allowed": "an object (or null)"}
    ]


def test_an_unpaired_surrogate_names_its_field_and_what_is_allowed() -> None:
    """D8: JSON may escape a lone surrogate; Python reads it, the model's JSON parser refuses it
    (once reported as an invalid body quoting the parser's error)."""
    data = json.loads(
        '{"displayName": "\\ud800", "integrations": [{"kind": "keyVault", "name": "a\\udfff"}]}'
    )
    found = problems({**APP, **data})
    assert set(found) == {"displayName", "integrations.0.name"}
    assert found["displayName"]["allowed"].startswith("1 to 256 characters without control characters")
    assert "no unpaired surrogates" in found["integrations.0.name"]["allowed"]
