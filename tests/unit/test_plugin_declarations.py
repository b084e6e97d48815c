"""Each integration plugin declares its settings model, write-only credentials and failure steps;
the credential handling, the OpenAPI document and the failure email are built from them."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from shared.api.openapi import build_openapi
from shared.credentials import extract_integration_credentials
from shared.domain.models import Integration
from shared.integrations.base import PluginRegistry, WriteOnlyField
from shared.integrations.registry import default_registry
from shared.notifications.templates import integration_troubleshooting


def union_members() -> set[type]:
    union = typing.get_args(Integration)[0]
    return set(typing.get_args(union))


def test_every_registered_plugin_declares_a_model_of_the_union_and_steps() -> None:
    registry = default_registry()
    assert {plugin.settings_model for plugin in registry.plugins()} == union_members()
    for plugin in registry.plugins():
        assert plugin.settings_model.model_fields["kind"].annotation == typing.Literal[plugin.kind]
        assert plugin.troubleshooting and integration_troubleshooting(plugin.kind) == plugin.troubleshooting


def test_write_only_fields_come_from_the_declarations() -> None:
    schemas = build_openapi()["components"]["schemas"]
    for plugin in default_registry().plugins():
        properties = schemas[plugin.settings_model.__name__]["properties"]
        for declared in plugin.write_only:
            assert properties[declared.input_field]["writeOnly"] is True
            assert properties[declared.reference_field]["readOnly"] is True


def test_a_new_plugins_credential_is_taken_out_of_the_body_by_its_declaration() -> None:
    @dataclass
    class Seventh:
        kind: str = "seventh"
        settings_model: type[Any] = dict
        write_only: tuple[WriteOnlyField, ...] = (
            WriteOnlyField(
                "apiKey", "apiKeySecretName", "api-key", "An API key.", defaults=(("auth", "key"),)
            ),
        )
        troubleshooting: tuple[str, ...] = ("Check the key.",)

        def check(self, settings: Any, app: Any) -> list[Any]:
            return []

        def describe(self, settings: Any, app: Any) -> str:
            return ""

        async def deploy(self, context: Any) -> Any:
            return None

        async def verify(self, context: Any) -> None:
            return None

    registry = PluginRegistry()
    registry.register(Seventh())
    body = {"integrations": [{"kind": "seventh", "apiKey": "the-key-value"}]}
    [pending] = extract_integration_credentials(
        body, "11111111-2222-3333-4444-555555555555", registry
    ).pending
    assert pending.value.reveal() == "the-key-value" and pending.field == "integrations.0.apiKey"
    assert pending.secret_name.startswith("cred-11111111-2222-3333-4444-555555555555-seventh-1-api-key-")
    assert body["integrations"][0] == {
        "kind": "seventh",
        "apiKeySecretName": pending.secret_name,
        "auth": "key",
    }
    assert registry.troubleshooting("seventh") == ("Check the key.",)


SEVENTH_MODULE = """
from typing import Literal
from shared.domain.fields import HttpsUrl, IntegrationBase


class SeventhIntegration(IntegrationBase):
    kind: Literal["seventh"]
    endpoint: HttpsUrl


class SeventhPlugin:
    kind = "seventh"
    settings_model = SeventhIntegration
    write_only = ()
    troubleshooting = ("Check the endpoint.",)

    def check(self, settings, app):
        return []

    def describe(self, settings, app):
        return "seventh"

    async def deploy(self, context):
        return None

    async def verify(self, context):
        return None


PLUGIN = SeventhPlugin()
"""

SEVENTH_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import seventh
import shared.integrations.registry as registry
registry.PLUGINS = (*registry.PLUGINS, seventh.PLUGIN)  # the one registration line
from shared.api.openapi import build_openapi
from shared.domain.models import ApplicationConfig
from pydantic import ValidationError
app = ApplicationConfig.model_validate_json(json.dumps({
    "appId": "11111111-2222-3333-4444-555555555555", "objectId": "11111111-2222-3333-4444-555555555556",
    "displayName": "x", "integrations": [{"kind": "seventh", "endpoint": "https://hooks.example"}],
}))
try:
    ApplicationConfig.model_validate_json(json.dumps({
        "appId": "11111111-2222-3333-4444-555555555555", "objectId": "11111111-2222-3333-4444-555555555556",
        "displayName": "x", "integrations": [{"kind": "seventh", "endpoint": "http://plain"}],
    }))
    refused = ""
except ValidationError as error:
    refused = str(error.errors()[0]["loc"])
schemas = build_openapi()["components"]["schemas"]
print(json.dumps({
    "type": type(app.integrations[0]).__name__,
    "refused": refused,
    "documented": "SeventhIntegration" in schemas,
}))
"""


def test_a_seventh_integration_is_one_module_and_one_registration(tmp_path: Any) -> None:
    """The union the API validates with, and the OpenAPI document, are built from the registry: a
    new module plus one entry in ``PLUGINS`` is accepted, validated and documented (run in a fresh
    interpreter, since the union is built when the models are first imported)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "seventh.py").write_text(SEVENTH_MODULE)
    result = subprocess.run(
        [sys.executable, "-c", SEVENTH_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["type"] == "SeventhIntegration"
    assert "endpoint" in answer["refused"]
    assert answer["documented"] is True
