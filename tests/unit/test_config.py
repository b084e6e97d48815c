import pytest

from shared.config import SETTINGS, load_settings
from shared.errors import ConfigurationError

GOOD = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ROTATOR_TENANT_ID": "00000000-0000-0000-0000-00000000cafe",
    "ROTATOR_VAULT_URL": "https://rotator-kv.vault.azure.net/",
}


def test_defaults_are_the_public_cloud() -> None:
    settings = load_settings(GOOD)
    assert settings.graph_url == "https://graph.microsoft.com"
    assert settings.login_authority == "https://login.microsoftonline.com"
    assert settings.arm_url == "https://management.azure.com"
    assert settings.vault_url == "https://rotator-kv.vault.azure.net"  # trailing slash dropped
    assert settings.graph_scope == "https://graph.microsoft.com/.default"
    assert settings.claim_timeout_minutes == 30
    assert not settings.email_enabled


def test_audiences_come_from_the_cloud_never_from_a_url() -> None:
    """Issue 12: a proxy or alias URL must not change the token audience; sovereign clouds get theirs."""
    proxied = load_settings(
        {
            **GOOD,
            "ROTATOR_GRAPH_URL": "https://graph-proxy.contoso.example",
            "ROTATOR_ARM_URL": "https://arm.contoso.example",
        }
    )
    assert proxied.graph_scope == "https://graph.microsoft.com/.default"
    assert proxied.arm_scope == "https://management.azure.com/.default"
    government = load_settings(
        {**GOOD, "ROTATOR_CLOUD": "AzureUSGovernment", "ROTATOR_GRAPH_URL": "https://graph.microsoft.us"}
    )
    assert government.graph_scope == "https://graph.microsoft.us/.default"
    assert government.arm_scope == "https://management.usgovcloudapi.net/.default"
    china = load_settings({**GOOD, "ROTATOR_CLOUD": "AzureChinaCloud"})
    assert china.graph_scope == "https://microsoftgraph.chinacloudapi.cn/.default"
    dod = load_settings(
        {
            **GOOD,
            "ROTATOR_CLOUD": "AzureUSGovernment",
            "ROTATOR_GRAPH_SCOPE": "https://dod-graph.microsoft.us/.default",
        }
    )
    assert dod.graph_scope == "https://dod-graph.microsoft.us/.default"
    with pytest.raises(ConfigurationError, match="ROTATOR_GRAPH_SCOPE: must be a scope"):
        load_settings({**GOOD, "ROTATOR_GRAPH_SCOPE": "https://graph.microsoft.com"})
    with pytest.raises(ConfigurationError, match="ROTATOR_CLOUD: must be one of"):
        load_settings({**GOOD, "ROTATOR_CLOUD": "AzureGermanCloud"})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ROTATOR_TENANT_ID", "", "ROTATOR_TENANT_ID: required"),
        ("ROTATOR_TENANT_ID", "contoso", "ROTATOR_TENANT_ID: must be a GUID"),
        ("ROTATOR_VAULT_URL", "ftp://x", "ROTATOR_VAULT_URL: must be an absolute https:// URL"),
        ("ROTATOR_GRAPH_URL", "http://graph.example.com", "ROTATOR_GRAPH_URL: must use https://"),
        ("ROTATOR_CLAIM_TIMEOUT_MINUTES", "4", "ROTATOR_CLAIM_TIMEOUT_MINUTES: must be from 5 to 240"),
        ("ROTATOR_CLAIM_TIMEOUT_MINUTES", "241", "ROTATOR_CLAIM_TIMEOUT_MINUTES: must be from 5 to 240"),
        ("ROTATOR_HTTP_TIMEOUT_SECONDS", "ten", "ROTATOR_HTTP_TIMEOUT_SECONDS: must be a whole number"),
        ("ROTATOR_CREDENTIAL_PREFIX", "a:b", "ROTATOR_CREDENTIAL_PREFIX: must be 1 to 40"),
        ("ROTATOR_CA_BUNDLE", "/no/such/file", "ROTATOR_CA_BUNDLE: must name an existing file"),
    ],
)
def test_bad_setting_is_named(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**GOOD, name: value})
    assert expected in str(caught.value)


def test_error_never_echoes_the_value() -> None:
    secret_ish = "AccountKey=c2VjcmV0LXZhbHVlLTEyMw=="
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**GOOD, "ROTATOR_HTTP_TIMEOUT_SECONDS": secret_ish})
    assert secret_ish not in str(caught.value)


def test_storage_needs_a_connection_or_an_account() -> None:
    env = {k: v for k, v in GOOD.items() if k != "AzureWebJobsStorage"}
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage"):
        load_settings(env)
    settings = load_settings({**env, "AzureWebJobsStorage__accountName": "rotatorsa"})
    assert settings.storage.table_endpoint == "https://rotatorsa.table.core.windows.net"


def test_email_needs_endpoint_and_sender_together() -> None:
    with pytest.raises(ConfigurationError, match="ROTATOR_EMAIL_SENDER"):
        load_settings({**GOOD, "ROTATOR_ACS_ENDPOINT": "https://acs.communication.azure.com"})


def test_sample_settings_file_lists_every_setting() -> None:
    import json
    from pathlib import Path

    sample = json.loads((Path(__file__).parents[2] / "local.settings.sample.json").read_text())
    assert {spec.name for spec in SETTINGS} <= set(sample["Values"])


def test_readme_explains_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [spec.name for spec in SETTINGS if f"`{spec.name}`" not in readme]
    assert missing == []


def test_identity_storage_uses_the_service_uris_when_given() -> None:
    """Issue 12: sovereign clouds: the service URIs from the account, not <name>.core.windows.net."""
    env = {k: v for k, v in GOOD.items() if k != "AzureWebJobsStorage"}
    settings = load_settings(
        {
            **env,
            "AzureWebJobsStorage__tableServiceUri": "https://rotatorsa.table.core.usgovcloudapi.net",
            "AzureWebJobsStorage__queueServiceUri": "https://rotatorsa.queue.core.usgovcloudapi.net",
        }
    )
    assert settings.storage.table_endpoint == "https://rotatorsa.table.core.usgovcloudapi.net"
    assert settings.storage.queue_endpoint == "https://rotatorsa.queue.core.usgovcloudapi.net"
    with pytest.raises(ConfigurationError, match="tableServiceUri"):
        load_settings({**env, "AzureWebJobsStorage__queueServiceUri": "https://q.example"})


def test_the_credential_follows_the_setting_and_the_host() -> None:
    """Issue 12: a managed identity where the host provides one; elsewhere the developer chain."""
    from shared.config import credential_kind

    assert (
        credential_kind("auto", {"IDENTITY_ENDPOINT": "http://169.254.255.2:8081/msi/token"})
        == "managedidentity"
    )
    assert credential_kind("auto", {}) == "default"
    assert credential_kind("cli", {"IDENTITY_ENDPOINT": "x"}) == "cli"
    assert credential_kind("managedidentity", {}) == "managedidentity"
    with pytest.raises(ConfigurationError, match="ROTATOR_CREDENTIAL: must be one of auto, managedidentity"):
        load_settings({**GOOD, "ROTATOR_CREDENTIAL": "password"})


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        (
            "auto",
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi", "IDENTITY_HEADER": "h"},
            "ManagedIdentityCredential",
        ),
        ("auto", {}, "DefaultAzureCredential"),
        ("cli", {}, "AzureCliCredential"),
    ],
)
def test_services_build_the_chosen_credential(
    setting: str, environ: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from shared.services import Services

    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    async def build() -> str:
        services = Services(load_settings({**GOOD, "ROTATOR_CREDENTIAL": setting}))
        try:
            return type(services.credential).__name__
        finally:
            await services.close()

    assert asyncio.run(build()) == expected


def test_timeouts_are_checked_against_each_other_and_the_function_timeout() -> None:
    """Issue 12: the verification wait fits in host.json's functionTimeout with room for the other
    steps, and a claim outlives it (the claim is also renewed while it waits)."""
    import json
    import re
    from pathlib import Path

    from shared.config import CLAIM_MARGIN_SECONDS, SETTINGS_BY_NAME

    host = json.loads((Path(__file__).parents[2] / "host.json").read_text())
    hours, minutes, seconds = (
        int(part) for part in re.fullmatch(r"(\d+):(\d+):(\d+)", host["functionTimeout"]).groups()
    )
    function_timeout = hours * 3600 + minutes * 60 + seconds
    verify_max = SETTINGS_BY_NAME["ROTATOR_VERIFY_TIMEOUT_SECONDS"].maximum
    assert verify_max is not None and verify_max + 120 <= function_timeout
    with pytest.raises(ConfigurationError, match="ROTATOR_CLAIM_TIMEOUT_MINUTES: must exceed"):
        load_settings({**GOOD, "ROTATOR_CLAIM_TIMEOUT_MINUTES": "5", "ROTATOR_VERIFY_TIMEOUT_SECONDS": "300"})
    assert load_settings(
        {
            **GOOD,
            "ROTATOR_CLAIM_TIMEOUT_MINUTES": "5",
            "ROTATOR_VERIFY_TIMEOUT_SECONDS": str(300 - CLAIM_MARGIN_SECONDS),
        }
    )
    with pytest.raises(ConfigurationError, match="ROTATOR_VERIFY_TIMEOUT_SECONDS: must be from 10 to 480"):
        load_settings({**GOOD, "ROTATOR_VERIFY_TIMEOUT_SECONDS": "900"})
