"""`make run` layers settings (issue 12): the stack's defaults < its endpoints < the user's
local.settings.json < the environment, validated with the errors the app gives in Azure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local_settings import LocalSettingsError, layer, read_local_settings
from shared.config import load_settings
from shared.errors import ConfigurationError
from tests.conftest import ROOT

STACK = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "ROTATOR_TENANT_ID": "00000000-0000-0000-0000-00000000cafe",
    "ROTATOR_VAULT_URL": "https://127.0.0.1:8443",
    "ROTATOR_GRAPH_URL": "https://127.0.0.1:9443",
    "ROTATOR_HTTP_TIMEOUT_SECONDS": "30",
}


def test_each_layer_overrides_the_one_before() -> None:
    file_values = {
        "ROTATOR_CREDENTIAL_PREFIX": "from-file",
        "ROTATOR_GRAPH_URL": "https://graph.contoso.example",
    }
    environ = {"ROTATOR_CREDENTIAL_PREFIX": "from-env", "ROTATOR_CLAIM_TIMEOUT_MINUTES": "45", "PATH": "/bin"}
    layered = layer(STACK, file_values, environ)
    assert layered.values["ROTATOR_VERIFY_TIMEOUT_SECONDS"] == "60"  # the stack's default
    assert layered.sources["ROTATOR_VERIFY_TIMEOUT_SECONDS"] == "defaults"
    assert layered.values["ROTATOR_VAULT_URL"] == STACK["ROTATOR_VAULT_URL"]
    assert layered.values["ROTATOR_GRAPH_URL"] == "https://graph.contoso.example"  # file over stack
    assert layered.values["ROTATOR_CREDENTIAL_PREFIX"] == "from-env"  # environment over file
    assert layered.sources["ROTATOR_CREDENTIAL_PREFIX"] == "environment"
    assert layered.values["ROTATOR_CLAIM_TIMEOUT_MINUTES"] == "45"
    assert "PATH" not in layered.values  # not a setting of the app
    settings = load_settings(layered.values)
    assert settings.credential_prefix == "from-env" and settings.claim_timeout_minutes == 45
    # An exported verify timeout beats the stack's default too.
    assert (
        layer(STACK, {}, {"ROTATOR_VERIFY_TIMEOUT_SECONDS": "120"}).values["ROTATOR_VERIFY_TIMEOUT_SECONDS"]
        == "120"
    )


def test_an_invalid_value_is_refused_naming_the_setting_not_its_value() -> None:
    layered = layer(STACK, {}, {"ROTATOR_HTTP_TIMEOUT_SECONDS": "abc"})
    with pytest.raises(ConfigurationError) as raised:
        load_settings(layered.values)
    assert "ROTATOR_HTTP_TIMEOUT_SECONDS" in raised.value.message and "abc" not in raised.value.message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not readable JSON"),
        ('{"IsEncrypted": true, "Values": {}}', "encrypted"),
        ('{"Values": {"ROTATOR_TENANT_ID": {"nested": 1}}}', "must map names to strings"),
        ("[]", "expected an object"),
    ],
)
def test_a_local_settings_file_that_cannot_be_used_says_why(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(content)
    with pytest.raises(LocalSettingsError, match=reason):
        read_local_settings(path)


def test_a_core_tools_file_is_read_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    assert read_local_settings(path) == {}
    path.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", "X": True}})
    )
    assert read_local_settings(path) == {"FUNCTIONS_WORKER_RUNTIME": "python", "X": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_make_run_stops_with_the_configuration_error_of_an_invalid_exported_value() -> None:
    """Named example: ROTATOR_HTTP_TIMEOUT_SECONDS=abc no longer starts without complaint."""
    env = {
        **os.environ,
        "ROTATOR_HTTP_TIMEOUT_SECONDS": "abc",
        "ROTATOR_LOCAL_PORT": str(_free_port()),
        "ROTATOR_LOCAL_AZURITE_BLOB_PORT": str(_free_port()),
        "ROTATOR_LOCAL_AZURITE_QUEUE_PORT": str(_free_port()),
        "ROTATOR_LOCAL_AZURITE_TABLE_PORT": str(_free_port()),
        "ROTATOR_LOCAL_KEEP_DATA": "1",  # leave the developer's .local/ alone
    }
    result = subprocess.run(
        [sys.executable, "-m", "scripts.dev_stack"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Configuration error" in result.stdout and "ROTATOR_HTTP_TIMEOUT_SECONDS" in result.stdout
